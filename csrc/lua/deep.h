/*
** deep.h -- the open tables and functions of a value that the encoder or
** the decoder is in the middle of, kept without C recursion, so that a
** value nests as deep as memory allows whatever the thread's C stack.
**
** Each open container is a frame: a C struct of the caller's (where its
** walk is) and two Lua stack slots, the container and a key (the encoder's
** lua_next key, the decoder's key waiting for its value). Frame j's slots
** are the two at base + 2 * (j - lo): the frames' slots are consecutive,
** the innermost on top, so a child's container is pushed exactly where its
** frame's slots begin, and the encoder's lua_next always finds its key on
** top.
**
** Only the innermost DEEP_WINDOW frames are there (the window: the C
** structs in the caller's array, the values on the Lua stack). Opening one
** more moves the outer DEEP_HALF of them into a chunk, a full userdata
** holding their C structs with their Lua values as its user values, kept in
** a table of chunks just below the window (made at the first spill, so a
** shallow value costs no slot for it); closing the last frame of the
** window brings the chunk back. Why this and not the alternatives:
**
** - every frame on the Lua stack: the stack is capped (LUAI_MAXSTACK, a
**   million slots), which would cap nesting at about 500 000 levels with
**   a "stack overflow" that is no memory's fault, and the C structs would
**   still need a growing buffer that a Lua error must not leak;
** - every frame in a Lua table: a rawseti and a rawgeti for each table
**   opened, which the shallow values (nearly all) would pay too.
**
** The window costs nothing until a value nests more than DEEP_WINDOW deep;
** past that, a chunk moves at most once per DEEP_HALF levels gone down or
** up (halves, so a walk that goes up and down around one level does not
** move a chunk each time), and a level costs about 70 bytes of chunk. Every
** byte of it belongs to the Lua state (userdata, tables): a Lua error
** raised mid-walk (a corrupt message, a refused value, memory running out)
** leaves nothing to free by hand, and running out of memory is the one
** limit, as Lua's own "not enough memory".
*/
#ifndef CONC_DEEP_H
#define CONC_DEEP_H

#include <stddef.h>

#include "lua.h"
#include "lauxlib.h"

#define DEEP_WINDOW 64
#define DEEP_HALF (DEEP_WINDOW / 2)

/* Stack slots a walk may use above its innermost frame's two. */
#define DEEP_ROOM 8

typedef struct conc_Deep {
  lua_State *L;
  void *win;     /* the caller's array of DEEP_WINDOW frames */
  size_t fsize;  /* the size of one */
  int aux;       /* stack index of the table of chunks, 0 until needed */
  int base;      /* stack index of the window's first slot */
  int lo;        /* the window holds frames lo .. depth - 1 */
  int depth;     /* frames open */
} conc_Deep;

/* Out of line, as rarely needed: see the top of this file. */
void conc__deep_spill(conc_Deep *k);
void conc__deep_restore(conc_Deep *k, int keep);

/* Any frame's C struct, pushing its container (which 0) or key (which 1)
** unless which is -1: for error messages, which name the path. */
void *conc__deep_frame(conc_Deep *k, int j, int which);

static inline void conc__deep_init(conc_Deep *k, lua_State *L, void *win,
                                   size_t fsize) {
  k->L = L;
  k->win = win;
  k->fsize = fsize;
  k->aux = k->base = k->lo = k->depth = 0;
}

/* The walk of one value starts, no frame open: the next value pushed is
** where the first frame's slots begin. */
static inline void conc__deep_start(conc_Deep *k) {
  k->base = lua_gettop(k->L) + 1;
  k->lo = k->depth = 0;
}

/* The walk is done, no frame open: drops the table of chunks, if the walk
** made one (below the window, so below a value the walk left on top). */
static inline void conc__deep_finish(conc_Deep *k) {
  if (k->aux) {
    lua_remove(k->L, k->aux);
    k->aux = 0;
  }
}

/* Stack index of the innermost frame's container (its key is above it). */
static inline int conc__deep_slot(const conc_Deep *k) {
  return k->base + 2 * (k->depth - 1 - k->lo);
}

static inline void *conc__deep_top(const conc_Deep *k) {
  return (char *)k->win + (size_t)(k->depth - 1 - k->lo) * k->fsize;
}

/* Opens a frame for the container on top of the stack: pushes its key slot
** (nil) and returns its C struct, for the caller to fill in. */
static inline void *conc__deep_open(conc_Deep *k) {
  luaL_checkstack(k->L, 2 + DEEP_ROOM, "value nested too deep");
  if (k->depth - k->lo == DEEP_WINDOW) conc__deep_spill(k);
  lua_pushnil(k->L);
  k->depth++;
  return conc__deep_top(k);
}

/* Closes the innermost frame, leaving its container on top (keep 1, the
** decoder's: the parent takes it) or not (keep 0). */
static inline void conc__deep_close(conc_Deep *k, int keep) {
  int s = conc__deep_slot(k);
  lua_settop(k->L, s - 1 + keep);
  if (--k->depth == k->lo && k->lo > 0) conc__deep_restore(k, keep);
}

#endif
