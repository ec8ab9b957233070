/*
** ltime.c -- conc.time: Python's time.sleep, monotonic, perf_counter, time.
*/
#include <math.h>

#include "lconc.h"

static int l_sleep(lua_State *L) {
  double secs;
  if (lua_type(L, 1) != LUA_TNUMBER)  /* no string coercion: Python's TypeError */
    return luaL_typeerror(L, 1, "number");
  secs = lua_tonumber(L, 1);
  if (secs < 0 || isnan(secs))
    return conc__raise(L, "ValueError", "sleep length must be non-negative");
  conc__check_wait(L, conc__sleep_until(conc__monotonic() + secs));
  return 0;
}

static int l_monotonic(lua_State *L) {
  lua_pushnumber(L, conc__monotonic());
  return 1;
}

static int l_time(lua_State *L) {
  lua_pushnumber(L, conc__walltime());
  return 1;
}

void conc__open_time(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"sleep", l_sleep}, {"monotonic", l_monotonic},
    {"perf_counter", l_monotonic}, {"time", l_time}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
