/*
** lproc.c -- processes seen from Lua, in conc.core: the handle under
** multiprocessing.Process (conc.multiprocessing gives it Python's shape),
** and the plain calls: fork, waitpid, _exit, getpid, cpu_count.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

static int meta_process(lua_State *L);

static conc_Binding process_binding = {.type = &conc__process_type,
                                       .open = meta_process};

static conc_Process *check_process(lua_State *L) {
  return (conc_Process *)conc__checkobj(L, 1, &conc__process_type);
}

/* Python's messages for the misuses a Process's asserts catch. */
static int check_rc(lua_State *L, int rc, const char *what) {
  switch (rc) {
    case CONC_ESTARTED:
      return conc__raise(L, CONC_EASSERT, "cannot start a process twice");
    case CONC_EASSERT:
      return conc__raise(L, CONC_EASSERT, "can only %s a started process "
                         "that this process started", what);
  }
  if (rc < 0) {
    if (rc > -1000)
      return conc__raise(L, rc, "%s: %s", what, strerror(-rc));
    return conc__raise(L, rc, NULL);
  }
  return rc;
}

/* core.process_new(daemon) */
static int l_process_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__process_new(lua_toboolean(L, 1)));
}

/* h:start() -> the child's pid in the parent, 0 in the child. */
static int process_start(lua_State *L) {
  conc_Process *p = check_process(L);
  int pid;
  fflush(NULL);  /* what both would otherwise print twice */
  pid = conc__process_fork(p);
  lua_pushinteger(L, check_rc(L, pid, "start"));
  return 1;
}

/* h:join(timeout=nil) -> true once it ended, false when the timeout passed */
static int process_join(lua_State *L) {
  conc_Process *p = check_process(L);
  double deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  int rc;
  conc__check_interrupt(L);
  rc = conc__process_join(p, deadline);
  if (rc == CONC_OK || rc == CONC_ETIMEDOUT || rc == CONC_EINTR)
    return lua_pushboolean(L, conc__check_wait(L, rc)), 1;
  return check_rc(L, rc, "join");
}

/* h:exitcode() -> the code once it ended (-N: killed by signal N), nil while
** it runs or before it starts */
static int process_exitcode(lua_State *L) {
  conc_Process *p = check_process(L);
  int code, rc;
  if (!conc__process_started(p)) return 0;
  rc = conc__process_poll(p, &code);
  if (rc == CONC_EASSERT) return 0;  /* another's child: not known here */
  if (check_rc(L, rc, "poll") == 0) return 0;
  lua_pushinteger(L, code);
  return 1;
}

static int process_is_alive(lua_State *L) {
  conc_Process *p = check_process(L);
  int rc;
  if (conc__process_closed(p)) return check_rc(L, CONC_ECLOSED, NULL);
  if (!conc__process_started(p)) return lua_pushboolean(L, 0), 1;
  rc = conc__process_poll(p, NULL);
  lua_pushboolean(L, check_rc(L, rc, "poll") == 0);
  return 1;
}

static int process_pid(lua_State *L) {
  int pid = conc__process_pid(check_process(L));
  if (pid == 0) return 0;
  lua_pushinteger(L, pid);
  return 1;
}

static int process_sentinel(lua_State *L) {
  conc_Process *p = check_process(L);
  int fd = conc__process_sentinel(p);
  if (fd == CONC_ECLOSED) return check_rc(L, fd, NULL);
  if (!conc__process_started(p))
    return conc__raise(L, CONC_EVALUE, "process not started");
  lua_pushinteger(L, fd);
  return 1;
}

static int signal_process(lua_State *L, int sig) {
  check_rc(L, conc__process_signal(check_process(L), sig), "kill");
  return 0;
}

static int process_terminate(lua_State *L) {
  return signal_process(L, SIGTERM);
}

static int process_kill(lua_State *L) {
  return signal_process(L, SIGKILL);
}

static int process_close(lua_State *L) {
  if (conc__process_close(check_process(L)) != CONC_OK)
    return conc__raise(L, CONC_EVALUE, "Cannot close a process while it is "
                       "still running. You should first call join() or "
                       "terminate().");
  return 0;
}

static int process_daemon(lua_State *L) {
  lua_pushboolean(L, conc__process_daemon(check_process(L)));
  return 1;
}

static int process_set_daemon(lua_State *L) {
  if (conc__process_set_daemon(check_process(L), lua_toboolean(L, 2)) != CONC_OK)
    return conc__raise(L, CONC_EASSERT, "process has already started");
  return 0;
}

static int process_name(lua_State *L) {
  char buf[128];
  lua_pushstring(L, conc__process_name(check_process(L), buf, sizeof buf));
  return 1;
}

static int process_set_name(lua_State *L) {
  conc__process_set_name(check_process(L), luaL_checkstring(L, 2));
  return 0;
}

static int process_ident(lua_State *L) {
  lua_pushstring(L, conc__process_ident(check_process(L)));
  return 1;
}

static int process_started(lua_State *L) {
  lua_pushboolean(L, conc__process_started(check_process(L)));
  return 1;
}

static int process_closed(lua_State *L) {
  lua_pushboolean(L, conc__process_closed(check_process(L)));
  return 1;
}

/* core.active_children() -> the handles of the live children, oldest first
** (those found ended are reaped, as Python's active_children() does) */
static int l_active_children(lua_State *L) {
  conc_Process **v;
  int n = conc__process_children(&v), k = 0;
  if (n < 0) return conc__raise(L, n, NULL);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    if (conc__process_poll(v[i], NULL) == 0) {
      conc__pushobj(L, (conc_Obj *)v[i]);
      lua_rawseti(L, -2, ++k);
    }
    conc__obj_decref((conc_Obj *)v[i]);
  }
  free(v);
  return 1;
}

/* core.process_exit(code): how a child ends once its target returned or
** failed: its non-daemon threads and its own children are waited for, as
** Python's child does, then the process ends without closing its states. */
static int l_process_exit(lua_State *L) {
  int code = (int)luaL_optinteger(L, 1, 0);
  if (conc_shutdown(L) != LUA_OK) {
    lua_pop(L, 1);  /* interrupted: go anyway */
    conc__interrupt_clear();
  }
  fflush(NULL);
  conc__proc_exit(code);
  return 0;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, conc__proc_self());
  return 1;
}

static int l_getppid(lua_State *L) {
  lua_pushinteger(L, conc__proc_parent());
  return 1;
}

static int l_cpu_count(lua_State *L) {
  lua_pushinteger(L, conc__cpu_count());
  return 1;
}

/* core.fork() -> the child's pid in the parent, 0 in the child. conc's
** fork hooks run around it: the child has one thread, this one. */
static int l_fork(lua_State *L) {
  int pid;
  fflush(NULL);  /* what both would otherwise print twice */
  pid = conc__proc_fork();
  if (pid < 0) return conc__raise(L, pid, "fork failed: %s", strerror(-pid));
  lua_pushinteger(L, pid);
  return 1;
}

/* core.waitpid(pid, timeout=nil) -> exit code (-N: killed by signal N),
** or nil when the timeout passes. */
static int l_waitpid(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  double deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  int status, rc;
  conc__check_interrupt(L);
  rc = conc__proc_wait((int)pid, deadline, &status);
  if (rc == CONC_ETIMEDOUT) return 0;
  if (rc != CONC_OK)
    return conc__raise(L, rc, "waitpid(%d): %s", (int)pid, strerror(-rc));
  lua_pushinteger(L, status);
  return 1;
}

/* core._exit(code=0): ends this process now, as os._exit does: no atexit
** handler, no closing of states, no waiting for threads. */
static int l_exit(lua_State *L) {
  lua_Integer code = luaL_optinteger(L, 1, 0);
  fflush(NULL);
  conc__proc_exit((int)code);
  return 0;
}

static int meta_process(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"start", process_start}, {"join", process_join},
    {"exitcode", process_exitcode}, {"is_alive", process_is_alive},
    {"pid", process_pid}, {"sentinel", process_sentinel},
    {"terminate", process_terminate}, {"kill", process_kill},
    {"close", process_close}, {"daemon", process_daemon},
    {"set_daemon", process_set_daemon}, {"started", process_started},
    {"closed", process_closed}, {"name", process_name},
    {"set_name", process_set_name}, {"ident", process_ident}, {NULL, NULL}};
  conc__newmeta(L, &process_binding, meta);
  return 0;
}

void conc__open_proc(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"fork", l_fork}, {"waitpid", l_waitpid}, {"_exit", l_exit},
    {"process_new", l_process_new}, {"process_exit", l_process_exit},
    {"active_children", l_active_children}, {"getpid", l_getpid},
    {"getppid", l_getppid}, {"cpu_count", l_cpu_count}, {NULL, NULL}};
  conc__bind(&process_binding);
  luaL_setfuncs(L, fns, 0);
}
