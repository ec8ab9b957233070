/*
** deep.c -- the chunks of a deep walk's frames (deep.h has the why).
**
** The table of chunks at aux holds chunk c (frames c * DEEP_HALF up to
** the next DEEP_HALF) at [c + 1]: lo is always a multiple of DEEP_HALF.
** A chunk brought back stays in the table, to be filled again by the next
** spill at that place: a walk that goes up and down there allocates it
** once.
*/
#include <string.h>

#include "deep.h"

static char *win_frame(const conc_Deep *k, int i) {
  return (char *)k->win + (size_t)i * k->fsize;
}

/* The window is full and the container of the frame to open is on top:
** moves the window's outer half into a chunk. */
void conc__deep_spill(conc_Deep *k) {
  lua_State *L = k->L;
  int chunk = k->lo / DEEP_HALF + 1;
  luaL_checkstack(L, 3, "value nested too deep");
  if (k->aux == 0) {  /* the first spill: below the window, which moves up */
    lua_newtable(L);
    lua_insert(L, k->base);
    k->aux = k->base++;
  }
  if (lua_rawgeti(L, k->aux, chunk) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    lua_newuserdatauv(L, DEEP_HALF * k->fsize, 2 * DEEP_HALF);
    lua_pushvalue(L, -1);
    lua_rawseti(L, k->aux, chunk);
  }
  memcpy(lua_touserdata(L, -1), k->win, DEEP_HALF * k->fsize);
  memmove(k->win, win_frame(k, DEEP_HALF),
          (DEEP_WINDOW - DEEP_HALF) * k->fsize);
  for (int i = 0; i < 2 * DEEP_HALF; i++) {
    lua_pushvalue(L, k->base + i);
    lua_setiuservalue(L, -2, i + 1);
  }
  lua_pop(L, 1);
  /* the inner half's slots (and the container on top) move down */
  lua_rotate(L, k->base, -2 * DEEP_HALF);
  lua_pop(L, 2 * DEEP_HALF);
  k->lo += DEEP_HALF;
}

/* The window has just emptied with frames spilled: brings the last chunk
** back below the keep values on top. */
void conc__deep_restore(conc_Deep *k, int keep) {
  lua_State *L = k->L;
  int c;
  luaL_checkstack(L, 2 * DEEP_HALF + 1, "value nested too deep");
  k->lo -= DEEP_HALF;
  lua_rawgeti(L, k->aux, k->lo / DEEP_HALF + 1);
  c = lua_gettop(L);
  memcpy(k->win, lua_touserdata(L, c), DEEP_HALF * k->fsize);
  for (int i = 1; i <= 2 * DEEP_HALF; i++) lua_getiuservalue(L, c, i);
  /* [keep values, chunk, slots] -> [slots, keep values, chunk] */
  lua_rotate(L, k->base, -(keep + 1));
  lua_pop(L, 1);
}

void *conc__deep_frame(conc_Deep *k, int j, int which) {
  lua_State *L = k->L;
  char *f;
  if (j >= k->lo) {
    if (which >= 0) lua_pushvalue(L, k->base + 2 * (j - k->lo) + which);
    return win_frame(k, j - k->lo);
  }
  /* spilled: the chunk stays alive in the table of chunks */
  lua_rawgeti(L, k->aux, j / DEEP_HALF + 1);
  f = (char *)lua_touserdata(L, -1) + (size_t)(j % DEEP_HALF) * k->fsize;
  if (which >= 0) {
    lua_getiuservalue(L, -1, 2 * (j % DEEP_HALF) + which + 1);
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
  }
  return f;
}
