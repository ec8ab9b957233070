/*
** alloc.c -- the allocator of the states conc makes.
**
** A new thread's state does a burst of small allocations (the standard
** libraries, conc's modules, the transferred values) and a thread that runs
** an empty function frees them all moments later. Through malloc that burst
** costs as much as the rest of starting a thread. So a state starts in
** "startup" mode: blocks of up to SMALL bytes are bump-allocated from a few
** ARENA_BLOCK chunks and never freed one by one; lua_close drops the chunks
** whole. Once the state is ready to run user code, new allocations go to
** malloc as usual, so a long-lived thread's heap behaves like any other; what
** the startup left in the arena (tens of KiB) stays until the state closes.
*/
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

#define ARENA_BLOCK (32 * 1024)
#define MAX_BLOCKS 8
#define SMALL 256
#define ALIGN 16

typedef struct Arena {
  int startup;
  char *cur, *end;
  int nblocks;
  char *blocks[MAX_BLOCKS];
} Arena;

static int in_arena(const Arena *a, const void *p) {
  const char *c = p;
  for (int i = 0; i < a->nblocks; i++)
    if (c >= a->blocks[i] && c < a->blocks[i] + ARENA_BLOCK) return 1;
  return 0;
}

static void *bump(Arena *a, size_t n) {
  void *p;
  n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (a->cur + n > a->end) {
    char *b;
    if (a->nblocks == MAX_BLOCKS || (b = malloc(ARENA_BLOCK)) == NULL)
      return NULL;
    a->blocks[a->nblocks++] = b;
    a->cur = b;
    a->end = b + ARENA_BLOCK;
  }
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
  L = lua_newstate(arena_alloc, a);
  if (L == NULL) {
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
    for (int i = 0; i < a->nblocks; i++) free(a->blocks[i]);
    free(a);
  }
}
