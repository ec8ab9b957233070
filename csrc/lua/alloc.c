/*
** alloc.c -- the allocator of the states conc makes.
**
** A new thread's state does a burst of small allocations (the standard
** libraries, conc's modules, the transferred values) and a thread that runs
** an empty function frees them all moments later. Through malloc that burst
** costs as much as the rest of starting a thread. So a state starts in
** "startup" mode: blocks of up to SMALL bytes are bump-allocated from one
** REGION, which lua_close drops whole. Once a thread's state is ready to
** run user code, new blocks come from malloc. (A state from conc_newstate,
** such as the host's main state, never leaves startup mode: its first
** REGION's worth of small blocks come from the region.)
**
** Small blocks, wherever they came from, go back to per-state free lists by
** size class (up to LIST_BUDGET bytes, the rest to free), and small
** allocations take from those lists first: no lock, no search, and a block
** still warm in the cache. Big blocks are malloc's.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

#define REGION (192 * 1024)  /* a warm state's startup needs ~150 KiB */
#define SMALL 256
#define ALIGN 16
#define NCLASS (SMALL / ALIGN)  /* block sizes 16, 32, ..., SMALL */
#define MAX_CACHED 8
#define LIST_BUDGET (256 * 1024)  /* what a state's free lists may hold */
/* Sanitizer builds give a block after startup its exact size and keep no
** lists, so that every overrun and every stale pointer reaches the
** sanitizer. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CLASSES 0
#else
#define CLASSES 1
#endif

typedef struct Free {
  struct Free *next;
} Free;

typedef struct Arena {
  int startup;
  int closing;             /* in lua_close: freed blocks are not reused */
  char *base, *cur, *end;  /* one region: "is it ours" is one comparison */
  Free *free[NCLASS];      /* freed small blocks, by size class */
  size_t listed;           /* bytes in those lists */
} Arena;

/* Regions of closed states, kept for the next state: a worker builds and
** closes states one after another, and a region it reuses is already mapped
** and warm in the cache. */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static char *cached[MAX_CACHED];
static int ncached;

/* The cached regions are plain memory, as valid in a forked child as in
** the parent: the hook only keeps cache_mu from being copied taken. */
static conc_ForkHook fork_hook = {.rank = CONC_FORK_REGIONS,
                                  .mutex = &cache_mu};
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static void register_hook(void) {
  conc__fork_register(&fork_hook);
}

static char *region_get(void) {
  char *r = NULL;
  pthread_once(&hook_once, register_hook);
  pthread_mutex_lock(&cache_mu);
  if (ncached > 0) r = cached[--ncached];
  pthread_mutex_unlock(&cache_mu);
  return r ? r : malloc(REGION);
}

static void region_put(char *r) {
  pthread_mutex_lock(&cache_mu);
  if (ncached < MAX_CACHED) {
    cached[ncached++] = r;
    r = NULL;
  }
  pthread_mutex_unlock(&cache_mu);
  free(r);
}

static int in_arena(const Arena *a, const void *p) {
  const char *c = p;
  return c >= a->base && c < a->end;
}

/* A block Lua knows as n bytes, n at most SMALL, has at least the full size
** of n's class (class_size(class_of(n))), wherever it came from: the
** region, a free list or malloc. So it fits any later request of that
** class, and a resize that stays within it keeps the block. */
static size_t class_of(size_t n) {
  return (n - 1) / ALIGN;
}

static size_t class_size(size_t c) {
  return (c + 1) * ALIGN;
}

static int classed(size_t n) {
  return CLASSES && n <= SMALL;
}

static void *bump(Arena *a, size_t n) {
  void *p;
  n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (a->base == NULL || (size_t)(a->end - a->cur) < n) return NULL;
  p = a->cur;
  a->cur += n;
  return p;
}

/* A small block: a freed one of its class, else (while starting up) from
** the region, else malloc'd. Lua's garbage comes in bursts, a sweep freeing
** many blocks that the program then allocates again, and glibc's per-thread
** cache holds only a few blocks of a size: past those each one costs a trip
** through its bins. */
static void *get(Arena *a, size_t n) {
  void *p;
  if (classed(n)) {
    size_t c = class_of(n);
    Free *f = a->free[c];
    if (f != NULL) {
      a->free[c] = f->next;
      a->listed -= class_size(c);
      return f;
    }
    n = class_size(c);
  }
  if (a->startup && n <= SMALL && (p = bump(a, n)) != NULL) return p;
  return malloc(n);
}

/* Gives back a block Lua knew as n bytes. A region block is never freed
** by itself: the region goes whole when the state closes. */
static void put(Arena *a, void *p, size_t n) {
  size_t c;
  if (!classed(n) || a->closing ||
      a->listed + class_size(class_of(n)) > LIST_BUDGET) {
    if (!in_arena(a, p)) free(p);
    return;
  }
  c = class_of(n);
  ((Free *)p)->next = a->free[c];
  a->free[c] = p;
  a->listed += class_size(c);
}

static void *arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Arena *a = ud;
  void *n;
  if (ptr == NULL) {
    osize = 0;  /* Lua passes the kind of object there */
  } else if (nsize == 0) {
    put(a, ptr, osize);
    return NULL;
  } else if (in_arena(a, ptr) || classed(osize)) {
    /* its size is at least osize's class's: what fits stays */
    if (nsize <= osize || (classed(nsize) && class_of(nsize) <= class_of(osize)))
      return ptr;
  } else if (!classed(nsize)) {
    return realloc(ptr, nsize);
  }
  if (nsize == 0) return NULL;
  n = get(a, nsize);
  if (n == NULL)  /* a shrink can keep its block, which is larger */
    return ptr != NULL && nsize < osize ? ptr : NULL;
  if (ptr != NULL) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    put(a, ptr, osize);
  }
  return n;
}

lua_State *conc__alloc_newstate(void) {
  Arena *a = calloc(1, sizeof *a);
  lua_State *L;
  if (a == NULL) return NULL;
  a->startup = 1;
  a->base = a->cur = region_get();
  a->end = a->base ? a->base + REGION : NULL;
  L = lua_newstate(arena_alloc, a);
  if (L == NULL) {
    if (a->base) region_put(a->base);
    free(a);
    return NULL;
  }
  return L;
}

void conc__alloc_ready(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) == arena_alloc) ((Arena *)ud)->startup = 0;
}

void conc__alloc_close(lua_State *L) {
  void *ud;
  int ours = lua_getallocf(L, &ud) == arena_alloc;
  if (ours) ((Arena *)ud)->closing = 1;  /* listing would be wasted work */
  lua_close(L);
  if (ours) {
    Arena *a = ud;
    for (int c = 0; c < NCLASS; c++) {
      for (Free *f = a->free[c], *next; f != NULL; f = next) {
        next = f->next;
        if (!in_arena(a, f)) free(f);
      }
    }
    if (a->base) region_put(a->base);
    free(a);
  }
}
