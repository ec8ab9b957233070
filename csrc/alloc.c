/*
** alloc.c -- the allocator of the states conc makes.
**
** A new thread's state does a burst of small allocations (the standard
** libraries, conc's modules, the transferred values) and a thread that runs
** an empty function frees them all moments later. Through malloc that burst
** costs as much as the rest of starting a thread. So a state starts in
** "startup" mode: blocks of up to SMALL bytes are bump-allocated from one
** REGION and never freed one by one; lua_close drops the region whole. Once the state is ready to run user code, new allocations go to
** malloc as usual, so a long-lived thread's heap behaves like any other; what
** the startup left in the arena (tens of KiB) stays until the state closes.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

#define REGION (192 * 1024)  /* a warm state's startup needs ~150 KiB */
#define SMALL 256
#define ALIGN 16
#define MAX_CACHED 8

typedef struct Arena {
  int startup;
  char *base, *cur, *end;  /* one region: "is it ours" is one comparison */
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

static void *bump(Arena *a, size_t n) {
  void *p;
  n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (a->base == NULL || (size_t)(a->end - a->cur) < n) return NULL;
  p = a->cur;
  a->cur += n;
  return p;
}

static void *arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Arena *a = ud;
  int old_in_arena = ptr != NULL && in_arena(a, ptr);
  void *n;
  if (nsize == 0) {
    if (!old_in_arena) free(ptr);
    return NULL;
  }
  if (old_in_arena && nsize <= osize) return ptr;  /* shrinking in place */
  n = NULL;
  if (a->startup && nsize <= SMALL) n = bump(a, nsize);
  if (n == NULL) {
    if (ptr != NULL && !old_in_arena) return realloc(ptr, nsize);
    n = malloc(nsize);
    if (n == NULL) return NULL;
  }
  if (ptr != NULL) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    if (!old_in_arena) free(ptr);
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
    if (a->base) region_put(a->base);
    free(a);
  }
}
