/*
** ltransfer.c -- the wire format seen from Lua: conc.core.dumps, loads and
** copy (tests, and whatever wants a value as bytes). The bytes carry no
** objects: a value holding a conc object cannot be dumped to a string.
*/
#include "lconc.h"

/* Pushes m's bytes as a string and frees m; one naming a conc object
** raises instead (bytes carry no objects). */
static int push_bytes(lua_State *L, conc_Msg *m) {
  if (m->nobjs > 0) {
    conc__msg_free(m);
    return luaL_error(L, "conc objects cannot be dumped to bytes");
  }
  lua_pushlstring(L, m->data, m->len);
  conc__msg_free(m);
  return 1;
}

static int l_dumps(lua_State *L) {
  return push_bytes(L, conc__encode(L, 1, lua_gettop(L), NULL));
}

/* core.dumps_slice(t, i, j): core.dumps{n = j - i + 1, t[i], ..., t[j]}
** (raw gets) with no such table made: a pool's chunk of its caller's list,
** which costs the caller no table of its own. */
static int l_dumps_slice(lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, 2), j = luaL_checkinteger(L, 3);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, i >= 1, 2, "slice must start at 1 or after");
  luaL_argcheck(L, j >= i - 1 && j - i < (lua_Integer)1 << 40, 3,
                "slice end out of range");
  return push_bytes(L, conc__encode_slice(L, 1, i, j));
}

static int l_loads(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  return conc__decode_bytes(L, s, len, NULL, 0);
}

/* core.loads_into(s, t, first) -> t: the table whose bytes s are (core.
** dumps of a table), its elements put into t from index first on, with no
** table of its own made: a pool's chunk of results into the caller's
** list. Its pairs and metatable go to t as they are. */
static int l_loads_into(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer first = luaL_optinteger(L, 3, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  conc__decode_into(L, s, len, 2, first);
  return 1;
}

/* Round trip through a message, objects included: what a thread receives. */
static int l_copy(lua_State *L) {
  conc_Msg *m = conc__encode(L, 1, lua_gettop(L), NULL);
  lua_settop(L, 0);
  return conc__decode_free(L, m);
}

void conc__open_transfer(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"dumps", l_dumps}, {"dumps_slice", l_dumps_slice}, {"loads", l_loads},
    {"loads_into", l_loads_into}, {"copy", l_copy}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
