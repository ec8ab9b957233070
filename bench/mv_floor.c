/*
** mv_floor.c -- the floor under bench MV: a Lua C module with the MV
** translation's exact shape and the least work each call can do, none of
** conc:
**
**   do local _ <close> = v:get_lock():enter(); v.value = v.value + 1 end
**
** v is a userdata whose __index gives `value` or get_lock; get_lock returns
** the lock, a table kept in v's user value; its enter takes an uncontended
** lock (one CAS) and returns v, whose __close releases it (one store);
** reading and writing v.value under it check the owner, as a re-entrant
** lock does. What that costs is what Lua's calls cost: no implementation of
** those calls is cheaper. bench/mv_floor.lua times it.
**
**   gcc -O2 -shared -fPIC -I/usr/include/lua5.4 bench/mv_floor.c -o /tmp/mv_floor.so
**   lua5.4 bench/mv_floor.lua /tmp      (or build/conc bench/mv_floor.lua /tmp)
*/
#include <stdatomic.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

typedef struct Value {
  atomic_int lock;
  int owner;
  lua_Integer v;
} Value;

#define ME 1  /* the one thread: an owner check, as an RLock's */

static void relock(Value *x) {
  if (x->owner != ME) {
    int free = 0;
    atomic_compare_exchange_strong(&x->lock, &free, 1);
  }
}

static int get_lock(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int value_index(lua_State *L) {
  Value *x = lua_touserdata(L, 1);
  size_t n;
  const char *k = lua_tolstring(L, 2, &n);
  if (k && n == 5 && memcmp(k, "value", 5) == 0) {
    relock(x);
    lua_pushinteger(L, x->v);
  } else if (k && n == 8 && memcmp(k, "get_lock", 8) == 0) {
    lua_pushcfunction(L, get_lock);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int value_newindex(lua_State *L) {
  Value *x = lua_touserdata(L, 1);
  relock(x);
  x->v = lua_tointeger(L, 3);
  return 0;
}

static int lock_enter(lua_State *L) {
  Value *x = lua_touserdata(L, lua_upvalueindex(1));
  int free = 0;
  atomic_compare_exchange_strong(&x->lock, &free, 1);
  x->owner = ME;
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

static int value_close(lua_State *L) {
  Value *x = lua_touserdata(L, 1);
  x->owner = 0;
  atomic_store(&x->lock, 0);
  return 0;
}

static int new_value(lua_State *L) {
  Value *x = lua_newuserdatauv(L, sizeof *x, 1);
  atomic_init(&x->lock, 0);
  x->owner = 0;
  x->v = 0;
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, value_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, value_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, value_close);
  lua_setfield(L, -2, "__close");
  lua_setmetatable(L, -2);
  lua_createtable(L, 0, 1);  /* the lock */
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, lock_enter, 1);
  lua_setfield(L, -2, "enter");
  lua_setiuservalue(L, -2, 1);
  return 1;
}

int luaopen_mv_floor(lua_State *L) {
  lua_pushcfunction(L, new_value);
  return 1;
}
