/*
** lloop.c -- the event loop's core as a Lua value (core.loop_new): fds,
** timers and watched conc objects in, keys and events out. It belongs to
** the state that made it; lua/conc/asyncio.lua runs callbacks over it.
*/
#include "lconc.h"

#define LOOP_META "conc.LoopCore"

typedef struct LoopBox {
  conc_Loop *loop;
} LoopBox;

static conc_Loop *check_loop(lua_State *L) {
  LoopBox *b = luaL_checkudata(L, 1, LOOP_META);
  if (b->loop == NULL)
    conc__raise(L, CONC_ERUNTIME, "Event loop is closed");
  return b->loop;
}

static int l_loop_new(lua_State *L) {
  LoopBox *b = lua_newuserdatauv(L, sizeof *b, 0);
  int rc;
  b->loop = NULL;
  luaL_setmetatable(L, LOOP_META);
  if ((b->loop = conc__loop_new(&rc)) == NULL) conc__check_rc(L, rc);
  return 1;
}

static int l_close(lua_State *L) {
  LoopBox *b = luaL_checkudata(L, 1, LOOP_META);
  conc__loop_free(b->loop);
  b->loop = NULL;
  return 0;
}

static int l_fd_add(lua_State *L) {
  conc_Loop *l = check_loop(L);
  conc__check_rc(L, conc__loop_fd_add(l, (int)luaL_checkinteger(L, 2),
                                (unsigned)luaL_checkinteger(L, 3),
                                luaL_checkinteger(L, 4)));
  return 0;
}

static int l_fd_mod(lua_State *L) {
  conc_Loop *l = check_loop(L);
  conc__check_rc(L, conc__loop_fd_mod(l, (int)luaL_checkinteger(L, 2),
                                (unsigned)luaL_checkinteger(L, 3),
                                luaL_checkinteger(L, 4)));
  return 0;
}

/* An fd closed already has left the set by itself: not an error here. */
static int l_fd_del(lua_State *L) {
  conc_Loop *l = check_loop(L);
  int rc = conc__loop_fd_del(l, (int)luaL_checkinteger(L, 2));
  lua_pushboolean(L, rc == CONC_OK);
  return 1;
}

static int l_timer(lua_State *L) {
  conc_Loop *l = check_loop(L);
  long long id = conc__loop_timer_add(l, luaL_checknumber(L, 2));
  conc__check_rc(L, id < 0 ? (int)id : 0);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

static int l_timer_cancel(lua_State *L) {
  conc__loop_timer_cancel(check_loop(L), luaL_checkinteger(L, 2));
  return 0;
}

static int l_timers(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__loop_timers(check_loop(L)));
  return 1;
}

static int l_watch(lua_State *L) {
  conc_Loop *l = check_loop(L);
  conc_Obj *o = conc__toobj(L, 2);
  int rc;
  if (o == NULL)
    return conc__raise(L, CONC_ETYPE, "cannot watch a %s", luaL_typename(L, 2));
  rc = conc__loop_watch(l, o, (unsigned)luaL_checkinteger(L, 3),
                        luaL_checkinteger(L, 4));
  if (rc == CONC_ETYPE)
    return conc__raise(L, rc, "a loop cannot await a %s", o->type->name);
  conc__check_rc(L, rc);
  return 0;
}

static int l_unwatch(lua_State *L) {
  conc__loop_unwatch(check_loop(L), luaL_checkinteger(L, 2));
  return 0;
}

static int l_wakeup(lua_State *L) {
  conc__loop_wakeup(check_loop(L));
  return 0;
}

#define POLL_MAX 512

/* poll(timeout, out) -> n: out[2i-1] the key or timer id of event i,
** out[2i] its code: an fd's CONC_POLL_* bits (1 readable, 2 writable, 4
** error, 8 the peer hung up), 16 for a timer, 32 + the events of a
** watch. timeout nil or negative: until something happens. */
static int l_poll(lua_State *L) {
  conc_Loop *l = check_loop(L);
  conc_LoopEvent evs[POLL_MAX];
  double timeout = luaL_optnumber(L, 2, -1);
  int n;
  luaL_checktype(L, 3, LUA_TTABLE);
  conc__check_interrupt(L);
  n = conc__loop_poll(l, timeout, evs, POLL_MAX);
  conc__check_rc(L, n);
  for (int i = 0; i < n; i++) {
    int code = evs[i].kind == CONC_LOOP_FD      ? (int)evs[i].events
               : evs[i].kind == CONC_LOOP_TIMER ? 16
                                                : 32 + (int)evs[i].events;
    lua_pushinteger(L, (lua_Integer)evs[i].key);
    lua_rawseti(L, 3, 2 * i + 1);
    lua_pushinteger(L, code);
    lua_rawseti(L, 3, 2 * i + 2);
  }
  lua_pushinteger(L, n);
  return 1;
}

static int meta_loop(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", l_close}, {"fd_add", l_fd_add}, {"fd_mod", l_fd_mod},
    {"fd_del", l_fd_del}, {"timer", l_timer}, {"timer_cancel", l_timer_cancel},
    {"timers", l_timers}, {"watch", l_watch}, {"unwatch", l_unwatch},
    {"wakeup", l_wakeup}, {"poll", l_poll}, {NULL, NULL}};
  if (luaL_newmetatable(L, LOOP_META)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  return 0;
}

void conc__open_loop(lua_State *L) {
  static const luaL_Reg fns[] = {{"loop_new", l_loop_new}, {NULL, NULL}};
  meta_loop(L);
  luaL_setfuncs(L, fns, 0);
}
