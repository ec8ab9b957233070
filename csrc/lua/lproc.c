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

/*
** A spawned child's start: a file of
**   u32 from_main, u64 n, n bytes of spawn.c's objects, the message
** whose descriptor the child is given on its command line. from_main: the
** orphan rule applies (the parent's main thread started it).
*/
typedef struct Payload {
  uint32_t from_main;
  uint64_t nobjs;
} Payload;

static const char *export_why(int rc) {
  switch (rc) {
    case CONC_ETYPE: return "a Barrier with an action cannot be";
    case CONC_ERUNTIME: return "its shared memory has no descriptor to give "
                               "(none was free when it was made)";
    case CONC_ECONNCLOSED: return "it is closed";
  }
  return "only multiprocessing's shared objects can be";
}

/* Writes the start file: its descriptor, or a negative code. */
static int write_payload(conc_Msg *m, conc_SpawnObjs *objs) {
  Payload h;
  size_t len = sizeof h + objs->len + m->len;
  char *buf = malloc(len);
  int fd;
  if (buf == NULL) return CONC_ENOMEM;
  memset(&h, 0, sizeof h);  /* no stray bytes in the padding */
  h.from_main = (uint32_t)conc__proc_main_thread();
  h.nobjs = objs->len;
  memcpy(buf, &h, sizeof h);
  if (objs->len) memcpy(buf + sizeof h, objs->data, objs->len);
  memcpy(buf + sizeof h + objs->len, m->data, m->len);
  fd = conc__fd_memfile(buf, len);
  free(buf);
  return fd;
}

static char *env_var(const char *name, const char *value) {
  size_t n = strlen(name), v = strlen(value);
  char *s = malloc(n + v + 2);
  if (s == NULL) return NULL;
  memcpy(s, name, n);
  s[n] = '=';
  memcpy(s + n + 1, value, v + 1);
  return s;
}

/* Starts exe with the start file fd; LUA_PATH_5_4 and LUA_CPATH_5_4 are
** the parent's package.path and cpath, so the child finds conc where the
** parent did. */
static int spawn_exe(conc_Process *p, const char *exe, const char *path,
                     const char *cpath, int fd, conc_SpawnObjs *objs) {
  char boot[96], *vars[2], **env = NULL;
  char *argv[] = {(char *)exe, "-e", boot, NULL};
  int *fds = realloc(objs->fds, (objs->nfds + 1) * sizeof *fds), rc;
  if (fds == NULL) return CONC_ENOMEM;
  objs->fds = fds;
  fds[objs->nfds] = fd;
  snprintf(boot, sizeof boot,
           "require('conc.multiprocessing')._spawn_main(%d)", fd);
  vars[0] = env_var("LUA_PATH_5_4", path);
  vars[1] = env_var("LUA_CPATH_5_4", cpath);
  if (vars[0] && vars[1]) env = conc__proc_env((const char *const *)vars, 2);
  rc = env ? conc__process_spawn(p, exe, argv, env, fds, objs->nfds + 1)
           : CONC_ENOMEM;
  free(env);
  free(vars[0]);
  free(vars[1]);
  return rc;
}

/* h:spawn(exe, path, cpath, target, args, kwargs, self, info) -> pid */
static int process_spawn(lua_State *L) {
  static const char *const names[] = {"target", "args", "kwargs", "self",
                                      "process"};
  conc_Process *p = check_process(L);
  const char *exe = luaL_checkstring(L, 2);
  const char *path = luaL_checkstring(L, 3), *cpath = luaL_checkstring(L, 4);
  conc_SpawnObjs objs;
  unsigned bad = 0;
  conc_Msg *m;
  int rc, fd;
  lua_settop(L, 9);
  if (conc__process_closed(p)) return check_rc(L, CONC_ECLOSED, NULL);
  if (conc__process_started(p)) return check_rc(L, CONC_ESTARTED, NULL);
  m = conc__encode(L, 5, 5, names);  /* raises before anything is owned */
  rc = conc__spawn_export(m->objs, m->nobjs, &objs, &bad);
  if (rc != CONC_OK) {
    const char *kind = m->objs[bad]->type->name;
    conc__msg_free(m);
    if (rc == CONC_ENOMEM) return conc__raise(L, rc, NULL);
    return conc__raise(L, CONC_ETYPE, "cannot pass %s to a spawned process: "
                       "%s", kind, export_why(rc));
  }
  fd = write_payload(m, &objs);
  conc__msg_free(m);
  fflush(NULL);  /* what both would otherwise print */
  rc = fd < 0 ? fd : spawn_exe(p, exe, path, cpath, fd, &objs);
  conc__spawn_objs_free(&objs);
  conc__proc_close_fd(fd);
  if (rc < 0 && rc > -1000)
    return conc__raise(L, rc, "cannot spawn %s: %s", exe, strerror(-rc));
  lua_pushinteger(L, check_rc(L, rc, "start"));
  return 1;
}

typedef struct Start {
  const char *data;
  size_t len;
  conc_Obj **objs;
  unsigned nobjs;
} Start;

static int decode_start_p(lua_State *L) {
  Start *s = lua_touserdata(L, 1);
  lua_pop(L, 1);
  return conc__decode_bytes(L, s->data, s->len, s->objs, s->nobjs);
}

/* Decodes data[at .. len) with objs, then frees both, even on an error
** (the proxies hold their own references). */
static int decode_start(lua_State *L, char *data, size_t len, size_t at,
                        conc_Obj **objs, unsigned nobjs) {
  Start s = {data + at, len - at, objs, nobjs};
  int top = lua_gettop(L), rc;
  lua_pushcfunction(L, decode_start_p);
  lua_pushlightuserdata(L, &s);
  rc = lua_pcall(L, 1, LUA_MULTRET, 0);
  for (unsigned i = 0; i < nobjs; i++) conc__obj_decref(objs[i]);
  free(objs);
  free(data);
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L) - top;
}

/* core.spawn_receive(fd) -> target, args, kwargs, self, info, from_main:
** a spawned child's start, read from the file its parent wrote. */
static int l_spawn_receive(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), rc, n;
  char *data;
  size_t len;
  Payload h;
  conc_Obj **objs = NULL;
  unsigned nobjs = 0;
  rc = conc__fd_slurp(fd, &data, &len);
  conc__proc_close_fd(fd);
  if (rc != CONC_OK)
    return conc__raise(L, rc, "cannot read this process's start: %s",
                       strerror(-rc));
  if (len >= sizeof h) memcpy(&h, data, sizeof h);
  if (len < sizeof h || h.nobjs > len - sizeof h ||
      (rc = conc__spawn_attach(data + sizeof h, (size_t)h.nobjs, &objs,
                               &nobjs)) != CONC_OK) {
    free(data);
    return conc__raise(L, rc == CONC_ENOMEM ? rc : CONC_EVALUE,
                       "bad start for a spawned process");
  }
  lua_settop(L, 0);
  lua_pushboolean(L, h.from_main);
  n = decode_start(L, data, len, sizeof h + (size_t)h.nobjs, objs, nobjs);
  lua_rotate(L, 1, -1);  /* from_main last */
  return n + 1;
}

/* core.process_adopt(ident, parent_pid, daemon, from_main) -> the handle
** of this spawned process itself */
static int l_process_adopt(lua_State *L) {
  const char *ident = luaL_checkstring(L, 1);
  int parent = (int)luaL_checkinteger(L, 2);
  conc_Process *p = conc__process_adopt(ident, parent, lua_toboolean(L, 3));
  /* an orphan is not left running (docs/multiprocessing.md) */
  if (lua_toboolean(L, 4)) conc__proc_orphan_rule(parent);
  return conc__pushnew(L, (conc_Obj *)p);
}

/* h:join(timeout=nil) -> true once it ended, false when the timeout passes */
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

/* core.orphan_rule(parent_pid): this process gets SIGTERM when the thread
** that started it ends (PR_SET_PDEATHSIG; at once if its parent is gone
** already). For a pool's workers, whose manager thread lives as long as
** the pool: docs/futures.md. */
static int l_orphan_rule(lua_State *L) {
  conc__proc_orphan_rule((int)luaL_checkinteger(L, 1));
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

/* core.executable() -> the path of this process's program, the default
** for what spawn starts */
static int l_executable(lua_State *L) {
  char buf[4096];
  int n = conc__proc_executable(buf, sizeof buf);
  if (n < 0)
    return conc__raise(L, n, "cannot find this program: %s", strerror(-n));
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* core.stdin_null(): a child's stdin reads from /dev/null from now on */
static int l_stdin_null(lua_State *L) {
  int rc = conc__proc_stdin_null();
  if (rc < 0)
    return conc__raise(L, rc, "cannot open /dev/null: %s", strerror(-rc));
  return 0;
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
    {"start", process_start}, {"spawn", process_spawn},
    {"join", process_join},
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
    {"getppid", l_getppid}, {"cpu_count", l_cpu_count},
    {"orphan_rule", l_orphan_rule},
    {"executable", l_executable}, {"spawn_receive", l_spawn_receive},
    {"process_adopt", l_process_adopt}, {"stdin_null", l_stdin_null},
    {NULL, NULL}};
  conc__bind(&process_binding);
  luaL_setfuncs(L, fns, 0);
}
