/*
** alloc.c -- the allocator of the states conc makes.
**
** A new thread's state does a burst of small allocations (the standard
** libraries, conc's modules, the transferred values) and a thread that runs
** an empty function frees them all moments later. Through malloc that burst
** costs as much as the rest of starting a thread. So a state starts in
** "startup" mode: blocks of up to SMALL bytes are bump-allocated from one
** REGION, which lua_close drops whole. Once the state is ready to run user
** code, new blocks come from malloc.
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
/* What a state's free lists may hold. Sanitizer builds keep none, so that
** every free reaches the sanitizer and a stale pointer is caught. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LIST_BUDGET 0
#else
#define LIST_BUDGET (256 * 1024)
#endif

typedef struct Free {
  struct Free *next;
} Free;

typedef struct Arena {
  int startup;
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

static char *region_get(void) {
  char *r = NULL;
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

/* Blocks of at most SMALL bytes have the full size of their class (what
** class_size says), wherever they come from: the region, a free list or
** malloc. So a block freed as n bytes fits any later request of n's class,
** and a resize within the class keeps the block. */
static size_t class_of(size_t n) {
  return (n - 1) / ALIGN;
}

static size_t class_size(size_t c) {
  return (c + 1) * ALIGN;
}

static void *bump(Arena *a, size_t n) {
  void *p;
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
static void *small_get(Arena *a, size_t n) {
  size_t c = class_of(n);
  Free *f = a->free[c];
  if (f != NULL) {
    a->free[c] = f->next;
    a->listed -= class_size(c);
    return f;
  }
  if (a->startup && (f = bump(a, class_size(c))) != NULL) return f;
  return malloc(class_size(c));
}

static void small_put(Arena *a, void *p, size_t n) {
  size_t c = class_of(n);
  if (a->listed + class_size(c) > LIST_BUDGET) {
    if (!in_arena(a, p)) free(p);  /* a region block stays till close */
    return;
  }
  ((Free *)p)->next = a->free[c];
  a->free[c] = p;
  a->listed += class_size(c);
}

static void *arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Arena *a = ud;
  void *n;
  if (ptr == NULL) osize = 0;  /* Lua passes the kind of object there */
  if (nsize == 0) {
    if (ptr != NULL && osize <= SMALL) small_put(a, ptr, osize);
    else free(ptr);
    return NULL;
  }
  if (ptr != NULL) {
    if (osize <= SMALL && nsize <= SMALL && class_of(osize) == class_of(nsize))
      return ptr;
    if (osize > SMALL && nsize > SMALL) return realloc(ptr, nsize);
  }
  n = nsize <= SMALL ? small_get(a, nsize) : malloc(nsize);
  if (n == NULL) {
    /* a shrink can always keep its block: it is larger than asked, and
    ** stays larger than the class its new size names */
    return ptr != NULL && nsize < osize ? ptr : NULL;
  }
  if (ptr != NULL) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    if (osize <= SMALL) small_put(a, ptr, osize);
    else free(ptr);
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
