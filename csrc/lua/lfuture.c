/*
** lfuture.c -- concurrent.futures.Future seen from Lua.
**
** The outcome crosses with the wire format: set_result(...) encodes the
** values, result() decodes them anew in each caller (a copy each, as a
** value any thread gets from a queue). Callbacks follow Python's rule:
** one added to a future that is already done runs at once, in the caller;
** any other runs in the thread that settles the future (set_result,
** set_exception, cancel), copied there as a thread's target is. A
** callback that raises is reported on stderr and the next one runs.
*/
#include <stdio.h>

#include "lconc.h"

static int meta_future(lua_State *L);

static conc_Binding future_binding = {.type = &conc__future_type,
                                      .open = meta_future};

static conc_Future *check_future(lua_State *L) {
  return (conc_Future *)conc__checkbound(L, 1, &conc__future_type);
}

static int l_future_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__future_new());
}

static int is_done(int s) {
  return s == CONC_FUTURE_CANCELLED || s == CONC_FUTURE_NOTIFIED ||
         s == CONC_FUTURE_FINISHED;
}

static const char *state_name(int s) {
  switch (s) {
    case CONC_FUTURE_PENDING: return "pending";
    case CONC_FUTURE_RUNNING: return "running";
    case CONC_FUTURE_FINISHED: return "finished";
    default: return "cancelled";
  }
}

/* ---- callbacks ------------------------------------------------------------ */

/* What one callback call is given: its message (taken by the protected
** call, so that the caller frees it only when the call never began). */
typedef struct Call {
  conc_Msg *msg;
} Call;

/* Under lua_pcall: [1] the Call, [2] the future, [3] the callback when
** it is a value here (else the Call's message holds it); calls it with
** the future. */
static int call_callback(lua_State *L) {
  Call *c = lua_touserdata(L, 1);
  if (c->msg != NULL) {
    conc_Msg *m = c->msg;
    c->msg = NULL;
    lua_settop(L, 2);
    conc__decode_free(L, m);
    lua_settop(L, 3);
  }
  lua_pushvalue(L, 2);
  lua_call(L, 1, 0);
  return 0;
}

static int traceback(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the callback at fn (a value, or NULL: the message m) with the
** future at fut; an error is Python's logged one: reported, then
** forgotten. */
static void run_callback(lua_State *L, int fut, int fn, conc_Msg *m) {
  Call c = {m};
  int top = lua_gettop(L);
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, call_callback);
  lua_pushlightuserdata(L, &c);
  lua_pushvalue(L, fut);
  if (fn) lua_pushvalue(L, fn);
  if (lua_pcall(L, fn ? 3 : 2, 0, top + 1) != LUA_OK) {
    const char *err = lua_tostring(L, -1), *what;
    lua_pushvalue(L, fut);
    what = luaL_tolstring(L, -1, NULL);  /* after err: it moves the top */
    fprintf(stderr, "exception calling callback for %s\n%s\n", what,
            err ? err : "(error object is not a string)");
    fflush(stderr);
  }
  conc__msg_free(c.msg);  /* the call never began */
  lua_settop(L, top);
}

static void run_callbacks(lua_State *L, int fut, conc_Msg **cbs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    conc_Msg *m = cbs[i];
    cbs[i] = NULL;
    run_callback(L, fut, 0, m);
  }
  conc__future_free_callbacks(cbs, n);
}

/* ---- waiting and the outcome ---------------------------------------------- */

/* Waits for the future at [1] to be done, the timeout at idx; raises
** TimeoutError (or KeyboardInterrupt) if it is not, CancelledError if it
** was cancelled. Returns the outcome. */
static const conc_Msg *await_outcome(lua_State *L, conc_Future *f, int idx,
                                     int *failed) {
  int s = conc__future_state(f);
  if (!is_done(s)) {
    double deadline = conc__opt_deadline(L, idx, CONC_NEG_NOWAIT, NULL);
    conc__check_interrupt(L);
    if (!conc__check_wait(L, conc__future_wait(f, deadline)))
      conc__raise(L, CONC_ETIMEDOUT, NULL);
    s = conc__future_state(f);
  }
  if (s != CONC_FUTURE_FINISHED) conc__raise(L, CONC_ECANCELLED, NULL);
  return conc__future_outcome(f, failed);
}

/* future:result(timeout=nil) -> the task's values, or raises its error */
static int future_result(lua_State *L) {
  conc_Future *f = check_future(L);
  int failed, n;
  const conc_Msg *m = await_outcome(L, f, 2, &failed);
  lua_settop(L, 1);
  n = m ? conc__decode(L, m) : 0;
  if (failed) return lua_error(L);
  return n;
}

/* future:exception(timeout=nil) -> the task's error, or nil */
static int future_exception(lua_State *L) {
  conc_Future *f = check_future(L);
  int failed;
  const conc_Msg *m = await_outcome(L, f, 2, &failed);
  lua_settop(L, 1);
  if (!failed || m == NULL || conc__decode(L, m) == 0) lua_pushnil(L);
  return 1;
}

static int future_done(lua_State *L) {
  lua_pushboolean(L, is_done(conc__future_state(check_future(L))));
  return 1;
}

static int future_running(lua_State *L) {
  lua_pushboolean(L,
                  conc__future_state(check_future(L)) == CONC_FUTURE_RUNNING);
  return 1;
}

static int future_cancelled(lua_State *L) {
  int s = conc__future_state(check_future(L));
  lua_pushboolean(L, s == CONC_FUTURE_CANCELLED || s == CONC_FUTURE_NOTIFIED);
  return 1;
}

/* ---- settling ------------------------------------------------------------- */

static int future_cancel(lua_State *L) {
  conc_Future *f = check_future(L);
  conc_Msg **cbs;
  size_t n;
  int cancelled = conc__future_cancel(f, &cbs, &n);
  lua_settop(L, 1);
  run_callbacks(L, 1, cbs, n);
  lua_pushboolean(L, cancelled);
  return 1;
}

static int future_start(lua_State *L) {
  int rc = conc__future_start(check_future(L));
  if (rc < 0) return conc__raise(L, rc, NULL);
  lua_pushboolean(L, rc);
  return 1;
}

/* set_result(...) and set_exception(e): the values from [2] on become the
** outcome. */
static int finish(lua_State *L, int failed) {
  static const char *const names[] = {"exception"};
  conc_Future *f = check_future(L);
  conc_Msg *m, **cbs;
  size_t n;
  int rc;
  if (failed) lua_settop(L, 2);
  m = conc__encode(L, 2, lua_gettop(L) - 1, failed ? names : NULL);
  rc = conc__future_finish(f, failed, m, &cbs, &n);
  if (rc != CONC_OK) {
    conc__msg_free(m);
    lua_settop(L, 1);
    return conc__raise(L, rc, "%s: %s",
                       state_name(conc__future_state(f)),
                       luaL_tolstring(L, 1, NULL));
  }
  lua_settop(L, 1);
  run_callbacks(L, 1, cbs, n);
  return 0;
}

static int future_set_result(lua_State *L) {
  return finish(L, 0);
}

static int future_set_exception(lua_State *L) {
  return finish(L, 1);
}

/* future:add_done_callback(fn) */
static int future_add_done_callback(lua_State *L) {
  static const char *const names[] = {"fn"};
  conc_Future *f = check_future(L);
  conc_Msg *m;
  int rc;
  if (lua_type(L, 2) != LUA_TFUNCTION &&
      luaL_getmetafield(L, 2, "__call") == LUA_TNIL)
    return conc__raise(L, CONC_ETYPE, "fn must be callable, not %s",
                       luaL_typename(L, 2));
  lua_settop(L, 2);
  if (is_done(conc__future_state(f))) {
    run_callback(L, 1, 2, NULL);
    return 0;
  }
  m = conc__encode(L, 2, 1, names);
  rc = conc__future_add_callback(f, m);
  if (rc == 0) return 0;
  conc__msg_free(m);
  if (rc < 0) return conc__raise(L, rc, NULL);
  run_callback(L, 1, 2, NULL);  /* it was done by then */
  return 0;
}

/* <Future at 0x... state=finished returned number>, as Python's repr */
static int future_tostring(lua_State *L) {
  conc_Future *f = check_future(L);
  int s = conc__future_state(f), failed, t;
  const conc_Msg *m;
  if (s != CONC_FUTURE_FINISHED) {
    lua_pushfstring(L, "<Future at %p state=%s>", (void *)f, state_name(s));
    return 1;
  }
  m = conc__future_outcome(f, &failed);
  lua_settop(L, 1);
  if (m == NULL || conc__decode(L, m) == 0) lua_pushnil(L);
  lua_settop(L, 2);
  t = failed ? luaL_getmetafield(L, 2, "__qualname") : LUA_TNIL;
  if (t != LUA_TSTRING) {
    if (t != LUA_TNIL) lua_pop(L, 1);
    lua_pushstring(L, luaL_typename(L, 2));
  }
  lua_replace(L, 2);
  lua_pushfstring(L, "<Future at %p state=finished %s %s>", (void *)f,
                  failed ? "raised" : "returned", lua_tostring(L, 2));
  return 1;
}

static int meta_future(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"result", future_result}, {"exception", future_exception},
    {"done", future_done}, {"running", future_running},
    {"cancelled", future_cancelled}, {"cancel", future_cancel},
    {"add_done_callback", future_add_done_callback},
    {"set_result", future_set_result},
    {"set_exception", future_set_exception},
    {"set_running_or_notify_cancel", future_start},
    {"__tostring", future_tostring}, {NULL, NULL}};
  conc__newmeta(L, &future_binding, methods);
  return 0;
}

void conc__open_future(lua_State *L) {
  static const luaL_Reg fns[] = {{"Future", l_future_new}, {NULL, NULL}};
  conc__bind(&future_binding);
  luaL_setfuncs(L, fns, 0);
}
