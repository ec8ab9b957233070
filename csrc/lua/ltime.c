/*
** ltime.c -- conc.time: Python's time.sleep, monotonic, perf_counter, time.
*/
#include "lconc.h"

static int l_sleep(lua_State *L) {
  double deadline;
  if (lua_isnoneornil(L, 1))  /* the one timeout that is not optional */
    return conc__raise(L, CONC_ETYPE, "sleep() needs a number of seconds");
  deadline = conc__opt_deadline(L, 1, CONC_NEG_ERROR,
                                "sleep length must be non-negative");
  conc__check_interrupt(L);
  conc__check_wait(L, conc__sleep_until(deadline));
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
