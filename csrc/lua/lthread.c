/*
** lthread.c -- threads and thread-local data, seen from Lua.
**
** A thread's Lua side (class, names, excepthook) lives in
** lua/conc/threading.lua; this file gives it handles on thread.c's objects
** and runs a started thread: a new state, the transferred Thread instance,
** and threading._bootstrap(self) in it.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

static const char DUMMY_KEY = 'd';   /* registry: this state's Dummy thread */
static const char LOCALS_KEY = 'l';  /* registry: local proxy -> its table */

static int meta_thread(lua_State *L);
static int meta_local(lua_State *L);

/* The kinds, for proxy.c: their proxies are userdata. */
static conc_Binding thread_binding = {.type = &conc__thread_type,
                                      .open = meta_thread};
static conc_Binding local_binding = {.type = &conc__local_type,
                                     .open = meta_local};

static conc_Thread *check_thread(lua_State *L, int idx) {
  return (conc_Thread *)conc__checkobj(L, idx, &conc__thread_type);
}

/* ======================================================================
** Running a thread
** ====================================================================== */

typedef struct Start {
  conc_Msg *msg;   /* target, args, self, excepthook */
  char *path, *cpath;
} Start;

static char *dupfield(lua_State *L, const char *field) {
  const char *s;
  char *d = NULL;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, field);
    s = lua_tostring(L, -1);
    if (s) {
      size_t n = strlen(s) + 1;
      d = malloc(n);
      if (d) memcpy(d, s, n);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return d;
}

static void start_free(Start *s) {
  conc__msg_free(s->msg);
  free(s->path);
  free(s->cpath);
  free(s);
}

static int run_p(lua_State *L) {
  Start *s = lua_touserdata(L, 1);
  lua_settop(L, 0);
  conc__require(L, "conc.threading");
  lua_getfield(L, 1, "_bootstrap");
  conc__decode(L, s->msg);  /* target, args, self, excepthook */
  conc__msg_free(s->msg);
  s->msg = NULL;
  conc__state_ready(L);
  lua_call(L, 4, 0);
  return 0;
}

static void report(conc_Thread *t, const char *msg) {
  char name[256];
  fprintf(stderr, "Exception in thread %s:\n%s\n",
          conc__thread_name(t, name, sizeof name), msg);
  fflush(stderr);
}

/* The body of every conc thread. The state is closed before the thread is
** marked done, so that join() returning means its resources are gone. */
static void thread_body(conc_Thread *t, void *arg) {
  Start *s = arg;
  lua_State *L = conc__newstate_for_thread(s->path, s->cpath);
  if (L == NULL) {
    report(t, "cannot create a Lua state: not enough memory");
  } else {
    lua_pushcfunction(L, run_p);
    lua_pushlightuserdata(L, s);
    /* _bootstrap reports errors of run() itself; what lands here is an
    ** error in getting there, e.g. a value the state cannot resolve */
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      const char *msg = luaL_tolstring(L, -1, NULL);
      report(t, msg ? msg : "(error object is not a string)");
    }
    conc__closestate(L);
  }
  start_free(s);
}

/* h:start(target, args, self, excepthook) */
static int thread_start(lua_State *L) {
  static const char *const names[] = {"target", "args", "self", "excepthook"};
  conc_Thread *t = check_thread(L, 1);
  conc_Msg *msg;
  Start *s;
  int rc;
  lua_settop(L, 5);
  if (conc__thread_status(t) != CONC_THREAD_NEW)
    return conc__raise(L, CONC_ERUNTIME, "threads can only be started once");
  msg = conc__encode(L, 2, 4, names);  /* raises before anything is owned */
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    conc__msg_free(msg);
    return conc__raise(L, CONC_ENOMEM, NULL);
  }
  s->msg = msg;
  s->path = dupfield(L, "path");
  s->cpath = dupfield(L, "cpath");
  rc = conc__thread_start(t, thread_body, s);
  if (rc == CONC_OK) return 0;
  start_free(s);
  if (rc == CONC_ESTARTED) return conc__raise(L, rc, NULL);
  return conc__raise(L, rc, "can't start new thread: %s", strerror(-rc));
}

/* ======================================================================
** Handle methods
** ====================================================================== */

/* h:join([timeout]): a negative timeout means no wait, as Python's
** max(timeout, 0); only nil waits forever. */
static int thread_join(lua_State *L) {
  conc_Thread *t = check_thread(L, 1);
  double deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  if (conc__thread_status(t) == CONC_THREAD_NEW)
    return conc__raise(L, CONC_ERUNTIME,
                       "cannot join thread before it is started");
  if (t == conc__thread_current())
    return conc__raise(L, CONC_ERUNTIME, "cannot join current thread");
  conc__check_wait(L, conc__thread_join(t, deadline));
  return 0;
}

static int thread_is_alive(lua_State *L) {
  lua_pushboolean(L, conc__thread_status(check_thread(L, 1)) ==
                         CONC_THREAD_RUNNING);
  return 1;
}

static int thread_started(lua_State *L) {
  lua_pushboolean(L, conc__thread_status(check_thread(L, 1)) !=
                         CONC_THREAD_NEW);
  return 1;
}

static int thread_name(lua_State *L) {
  char buf[1024];
  lua_pushstring(L, conc__thread_name(check_thread(L, 1), buf, sizeof buf));
  return 1;
}

static int thread_set_name(lua_State *L) {
  conc_Thread *t = check_thread(L, 1);
  conc__thread_set_name(t, luaL_tolstring(L, 2, NULL));
  return 0;
}

static int thread_daemon(lua_State *L) {
  lua_pushboolean(L, conc__thread_daemon(check_thread(L, 1)));
  return 1;
}

static int thread_set_daemon(lua_State *L) {
  conc_Thread *t = check_thread(L, 1);
  int rc = conc__thread_set_daemon(t, lua_toboolean(L, 2));
  if (rc == CONC_OK) return 0;
  return conc__raise(L, rc, "cannot set daemon status of active thread");
}

static int thread_ident(lua_State *L) {
  uint64_t id = conc__thread_ident(check_thread(L, 1));
  if (id == 0) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

static int thread_native_id(lua_State *L) {
  long id = conc__thread_native_id(check_thread(L, 1));
  if (id < 0) lua_pushnil(L);
  else lua_pushinteger(L, id);
  return 1;
}

static int thread_eq(lua_State *L) {
  lua_pushboolean(L, conc__toobj(L, 1) == conc__toobj(L, 2));
  return 1;
}

/* ======================================================================
** Module functions
** ====================================================================== */

static int l_thread_new(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  return conc__pushnew(
      L, (conc_Obj *)conc__thread_new(name, lua_toboolean(L, 2)));
}

/* Threads conc did not start (an embedder's own) are Python's dummies: a
** handle per state, daemonic, named Dummy-N. */
static int l_current_thread(lua_State *L) {
  conc_Thread *t = conc__thread_current();
  if (t) {
    conc__pushobj(L, (conc_Obj *)t);
    return 1;
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMMY_KEY) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  lua_pushfstring(L, "Dummy-%d", (int)conc__thread_next_number());
  conc__pushnew(L, (conc_Obj *)conc__thread_new(lua_tostring(L, -1), 1));
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DUMMY_KEY);
  return 1;
}

static int l_main_thread(lua_State *L) {
  conc__pushobj(L, (conc_Obj *)conc__thread_main());
  return 1;
}

typedef struct Collect {
  conc_Thread **ts;
  int n, cap;
} Collect;

static void collect(conc_Thread *t, void *ud) {
  Collect *c = ud;
  if (c->n < c->cap) {
    conc__obj_incref((conc_Obj *)t);
    c->ts[c->n++] = t;
  }
}

/* The list is copied under the table's lock, then turned into proxies
** outside it: pushing can run the GC, and a __gc may need the lock. */
static int l_enumerate(lua_State *L) {
  Collect c = {NULL, 0, 0};
  for (;;) {
    int live = conc__thread_each(collect, &c);
    if (c.n >= live) break;
    for (int i = 0; i < c.n; i++) conc__obj_decref((conc_Obj *)c.ts[i]);
    free(c.ts);
    c.cap = live + 8;
    c.n = 0;
    c.ts = malloc((size_t)c.cap * sizeof *c.ts);
    if (c.ts == NULL) return conc__raise(L, CONC_ENOMEM, NULL);
  }
  lua_createtable(L, c.n, 0);
  for (int i = 0; i < c.n; i++) {
    conc__pushobj(L, (conc_Obj *)c.ts[i]);
    lua_rawseti(L, -2, i + 1);
  }
  for (int i = 0; i < c.n; i++) conc__obj_decref((conc_Obj *)c.ts[i]);
  free(c.ts);
  return 1;
}

static void count(conc_Thread *t, void *ud) {
  (void)t;
  (void)ud;
}

static int l_active_count(lua_State *L) {
  lua_pushinteger(L, conc__thread_each(count, NULL));
  return 1;
}

static int l_get_ident(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__thread_self_ident());
  return 1;
}

static int l_get_native_id(lua_State *L) {
  lua_pushinteger(L, (long)conc__thread_self_tid());
  return 1;
}

/* threading.stack_size([size]): Python's, for the threads started after:
** 0 is the default, otherwise at least 32 KiB; returns the old setting. */
static int l_stack_size(lua_State *L) {
  lua_Integer size = luaL_optinteger(L, 1, -1);
  size_t old;
  if (size == -1) {
    old = conc__worker_stack_size(0);
    conc__worker_stack_size(old);
  } else {
    if (size != 0 && size < 32768)
      return conc__raise(L, CONC_EVALUE, "size not valid: %d bytes",
                         (int)size);
    old = conc__worker_stack_size((size_t)size);
  }
  lua_pushinteger(L, (lua_Integer)old);
  return 1;
}

/* core._pool(): the worker pool's counts, for tests. */
static int l_pool(lua_State *L) {
  conc_PoolStats s = conc__worker_stats();
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, s.workers);
  lua_setfield(L, -2, "workers");
  lua_pushinteger(L, s.idle);
  lua_setfield(L, -2, "idle");
  lua_pushinteger(L, s.bare);
  lua_setfield(L, -2, "bare");
  lua_pushinteger(L, s.warming);
  lua_setfield(L, -2, "warming");
  return 1;
}

static int l_next_number(lua_State *L) {
  lua_pushinteger(L, conc__thread_next_number());
  return 1;
}

/* ======================================================================
** threading.local: one object shared by reference, whose fields each state
** keeps for itself. Since every conc thread has its own state, "per state"
** is "per thread".
** ====================================================================== */

static void push_local_table(lua_State *L, int idx) {
  conc__checkobj(L, idx, &conc__local_type);
  conc__weak_registry(L, &LOCALS_KEY, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

static int local_index(lua_State *L) {
  push_local_table(L, 1);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int local_newindex(lua_State *L) {
  push_local_table(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int l_local_new(lua_State *L) {
  return conc__pushnew(L, conc__local_new());
}

static int meta_thread(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"start", thread_start}, {"join", thread_join},
    {"is_alive", thread_is_alive}, {"started", thread_started},
    {"name", thread_name}, {"set_name", thread_set_name},
    {"daemon", thread_daemon}, {"set_daemon", thread_set_daemon},
    {"ident", thread_ident}, {"native_id", thread_native_id},
    {NULL, NULL}};
  conc__newmeta(L, &thread_binding, methods);
  luaL_getmetatable(L, conc__thread_type.name);
  lua_pushcfunction(L, thread_eq);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);
  return 0;
}

static int meta_local(lua_State *L) {
  static const luaL_Reg local_meta[] = {
    {"__index", local_index}, {"__newindex", local_newindex}, {NULL, NULL}};
  conc__newmeta(L, &local_binding, local_meta);
  return 0;
}

void conc__open_thread(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"thread_new", l_thread_new}, {"current_thread", l_current_thread},
    {"main_thread", l_main_thread}, {"enumerate", l_enumerate},
    {"active_count", l_active_count}, {"get_ident", l_get_ident},
    {"get_native_id", l_get_native_id}, {"next_number", l_next_number},
    {"stack_size", l_stack_size}, {"_pool", l_pool},
    {"local_new", l_local_new}, {NULL, NULL}};
  conc__bind(&thread_binding);
  conc__bind(&local_binding);
  luaL_setfuncs(L, fns, 0);
}
