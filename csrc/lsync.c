/*
** lsync.c -- threading.Lock and threading.Event, seen from Lua.
**
** `with lock:` translates to `do local _ <close> = lock:enter() ... end`:
** enter acquires and returns the lock, __close releases it, on errors too.
*/
#include "lconc.h"

static conc_Lock *check_lock(lua_State *L) {
  return (conc_Lock *)conc__checkobj(L, 1, &conc__lock_type);
}

static conc_Event *check_event(lua_State *L) {
  return (conc_Event *)conc__checkobj(L, 1, &conc__event_type);
}

static int l_lock_new(lua_State *L) {
  conc_Lock *l = conc__lock_new();
  if (l == NULL) return luaL_error(L, "not enough memory");
  conc__pushobj(L, (conc_Obj *)l);
  conc__obj_decref((conc_Obj *)l);
  return 1;
}

/* lock:acquire(blocking=true, timeout=-1) -> boolean, as Python's */
static int lock_acquire(lua_State *L) {
  conc_Lock *l = check_lock(L);
  int blocking = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  double timeout = luaL_optnumber(L, 3, -1);
  if (!blocking && timeout != -1)
    return conc__raise(L, "ValueError",
                       "can't specify a timeout for a non-blocking call");
  if (timeout < 0 && timeout != -1)
    return conc__raise(L, "ValueError",
                       "timeout value must be a non-negative number");
  if (conc__lock_try(l)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!blocking) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, conc__check_wait(L, conc__lock_acquire(
                         l, timeout == -1 ? CONC_FOREVER
                                          : conc__deadline(timeout))));
  return 1;
}

static int lock_release(lua_State *L) {
  if (conc__lock_release(check_lock(L)) != 0)
    return conc__raise(L, "RuntimeError", "release unlocked lock");
  return 0;
}

static int lock_locked(lua_State *L) {
  lua_pushboolean(L, conc__lock_locked(check_lock(L)));
  return 1;
}

/* lock:enter(): Python's __enter__, for `local _ <close> = lock:enter()` */
static int lock_enter(lua_State *L) {
  conc_Lock *l = check_lock(L);
  if (!conc__lock_try(l))
    conc__check_wait(L, conc__lock_acquire(l, CONC_FOREVER));
  lua_settop(L, 1);
  return 1;
}

/* __close: Python's __exit__; a close with an error in flight releases too */
static int lock_close(lua_State *L) {
  return lock_release(L);
}

static int l_event_new(lua_State *L) {
  conc_Event *e = conc__event_new();
  if (e == NULL) return luaL_error(L, "not enough memory");
  conc__pushobj(L, (conc_Obj *)e);
  conc__obj_decref((conc_Obj *)e);
  return 1;
}

static int event_set(lua_State *L) {
  conc__event_set(check_event(L));
  return 0;
}

static int event_clear(lua_State *L) {
  conc__event_clear(check_event(L));
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, conc__event_is_set(check_event(L)));
  return 1;
}

/* event:wait(timeout=nil) -> boolean: nil waits for good; a negative
** timeout does not wait, as in Python */
static int event_wait(lua_State *L) {
  conc_Event *e = check_event(L);
  double timeout = conc__opttimeout(L, 2);
  if (!lua_isnoneornil(L, 2) && !(timeout > 0)) timeout = 0;
  lua_pushboolean(L, conc__check_wait(L, conc__event_wait(
                         e, conc__deadline(timeout))));
  return 1;
}

void conc__open_sync(lua_State *L) {
  static const luaL_Reg lock_methods[] = {
    {"acquire", lock_acquire}, {"release", lock_release},
    {"locked", lock_locked}, {"enter", lock_enter}, {NULL, NULL}};
  static const luaL_Reg event_methods[] = {
    {"set", event_set}, {"clear", event_clear}, {"is_set", event_is_set},
    {"isSet", event_is_set}, {"wait", event_wait}, {NULL, NULL}};
  static const luaL_Reg fns[] = {
    {"Lock", l_lock_new}, {"Event", l_event_new}, {NULL, NULL}};
  conc__newmeta(L, &conc__lock_type, lock_methods);
  luaL_getmetatable(L, conc__lock_type.name);
  lua_pushcfunction(L, lock_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  conc__newmeta(L, &conc__event_type, event_methods);
  luaL_setfuncs(L, fns, 0);
}
