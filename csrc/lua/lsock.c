/*
** lsock.c -- the descriptors asyncio's transports move bytes through:
** stream sockets (TCP, Unix), reads and writes that never block, name
** resolution, and child processes with their stdio on socket pairs.
** Descriptors are plain integers here; the Lua transports own them.
*/
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

/* The descriptors these functions take are the ones conc made (sockets,
** pairs, pidfds): never the standard streams, which a stray 0 or 1 would
** otherwise close or read from (stdin may block). */
static int check_fd(lua_State *L, int idx) {
  lua_Integer fd = luaL_checkinteger(L, idx);
  luaL_argcheck(L, fd > 2 && fd < 1 << 30, idx,
                "not a descriptor conc made");
  return (int)fd;
}

/* A child's pid: never 0 or negative, which kill and waitpid take as a
** whole process group (or every process). */
static int check_pid(lua_State *L, int idx) {
  lua_Integer pid = luaL_checkinteger(L, idx);
  luaL_argcheck(L, pid > 0 && pid < 1 << 30, idx, "not a process id");
  return (int)pid;
}

static const char *const families[] = {"unix", "inet", "inet6", NULL};
static const int family_codes[] = {CONC_AF_UNIX, CONC_AF_INET, CONC_AF_INET6};

static void check_addr(lua_State *L, int idx, conc_SockAddr *a) {
  size_t len;
  const char *host;
  a->family = family_codes[luaL_checkoption(L, idx, NULL, families)];
  host = luaL_checklstring(L, idx + 1, &len);
  if (len >= sizeof a->host)
    conc__raise(L, CONC_EVALUE, "address too long: %s", host);
  memcpy(a->host, host, len + 1);
  a->port = (int)luaL_optinteger(L, idx + 2, 0);
  if (a->port < 0 || a->port > 65535)
    conc__raise(L, CONC_EVALUE, "port must be 0-65535, not %d", a->port);
}

static int push_addr(lua_State *L, const conc_SockAddr *a) {
  lua_pushstring(L, a->family == CONC_AF_INET    ? "inet"
                    : a->family == CONC_AF_INET6 ? "inet6" : "unix");
  lua_pushstring(L, a->host);
  lua_pushinteger(L, a->port);
  return 3;
}

static int bad_address(lua_State *L, int rc, const conc_SockAddr *a) {
  if (rc == CONC_EVALUE)
    return conc__raise(L, rc, "not a numeric address: %s", a->host);
  return conc__raise(L, rc, "[Errno %d] %s ('%s', %d)", -rc,
                     conc__err_message(rc) ? conc__err_message(rc) : "error",
                     a->host, a->port);
}

/* sock_listen(family, host, port, backlog) -> fd */
static int l_listen(lua_State *L) {
  conc_SockAddr a;
  int fd;
  check_addr(L, 1, &a);
  fd = conc__sock_listen(&a, (int)luaL_optinteger(L, 4, 100));
  if (fd < 0) return bad_address(L, fd, &a);
  lua_pushinteger(L, fd);
  return 1;
}

/* sock_connect(family, host, port) -> fd, pending */
static int l_connect(lua_State *L) {
  conc_SockAddr a;
  int pending, fd;
  check_addr(L, 1, &a);
  fd = conc__sock_connect(&a, &pending);
  if (fd < 0) return bad_address(L, fd, &a);
  lua_pushinteger(L, fd);
  lua_pushboolean(L, pending);
  return 2;
}

/* sock_accept(fd) -> fd, family, host, port; or nil when none waits */
static int l_accept(lua_State *L) {
  conc_SockAddr peer;
  int fd = conc__sock_accept(check_fd(L, 1), &peer);
  if (fd == CONC_EAGAIN) return 0;
  conc__check_rc(L, fd);
  lua_pushinteger(L, fd);
  return 1 + push_addr(L, &peer);
}

/* sock_error(fd) -> nil, or the pending error as an error value */
static int l_sock_error(lua_State *L) {
  int rc = conc__sock_error(check_fd(L, 1));
  if (rc == CONC_OK) return 0;
  conc__push_error(L, rc, NULL);
  return 1;
}

/* sock_name(fd, peer) -> family, host, port */
static int l_sock_name(lua_State *L) {
  conc_SockAddr a;
  conc__check_rc(L, conc__sock_name(check_fd(L, 1), lua_toboolean(L, 2), &a));
  return push_addr(L, &a);
}

static int l_shutdown(lua_State *L) {
  int rc = conc__sock_shutdown(check_fd(L, 1));
  lua_pushboolean(L, rc == CONC_OK);
  return 1;
}

#define RESOLVE_MAX 16

/* getaddrinfo(host, port, family, passive) -> {{family, host, port}...};
** blocks: asyncio calls it on a worker thread */
static int l_getaddrinfo(lua_State *L) {
  conc_SockAddr out[RESOLVE_MAX];
  char msg[256];
  const char *host = luaL_optstring(L, 1, NULL);
  int port = (int)luaL_optinteger(L, 2, 0);
  int family = lua_isnoneornil(L, 3)
                   ? 0 : family_codes[luaL_checkoption(L, 3, NULL, families)];
  int n = conc__sock_resolve(host, port, family, lua_toboolean(L, 4), out,
                             RESOLVE_MAX, msg, sizeof msg);
  if (n == CONC_ENAME)
    return conc__raise(L, n, "[Errno -2] %s: %s", msg, host ? host : "*");
  conc__check_rc(L, n);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 3, 0);
    push_addr(L, &out[i]);
    lua_rawseti(L, -4, 3);
    lua_rawseti(L, -3, 2);
    lua_rawseti(L, -2, 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_numeric(lua_State *L) {
  lua_pushboolean(L, conc__sock_numeric(luaL_checkstring(L, 1)));
  return 1;
}

#define READ_CHUNK 65536

/* fd_read(fd, max) -> the bytes ("" at the end), or false when none are
** there now */
static int l_fd_read(lua_State *L) {
  int fd = check_fd(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, READ_CHUNK);
  luaL_Buffer b;
  char *p;
  long n;
  if (max <= 0) max = READ_CHUNK;
  if (max > READ_CHUNK) max = READ_CHUNK;
  p = luaL_buffinitsize(L, &b, (size_t)max);
  n = conc__fd_read(fd, p, (size_t)max);
  if (n == CONC_EAGAIN) {
    lua_pushboolean(L, 0);
    return 1;
  }
  conc__check_rc(L, (int)(n < 0 ? n : 0));
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* fd_write(fd, s, i) -> bytes of s from i on written now (0: none fit) */
static int l_fd_write(lua_State *L) {
  int fd = check_fd(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  long n;
  luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "out of range");
  n = conc__fd_write(fd, s + i - 1, len - (size_t)(i - 1));
  if (n == CONC_EAGAIN) n = 0;
  conc__check_rc(L, (int)(n < 0 ? n : 0));
  lua_pushinteger(L, n);
  return 1;
}

static int l_fd_close(lua_State *L) {
  conc__proc_close_fd(check_fd(L, 1));
  return 0;
}

/* fd_pair() -> a, b: a duplex socket pair */
static int l_fd_pair(lua_State *L) {
  int fds[2];
  conc__check_rc(L, conc__fd_pair(fds, 1));
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 2;
}

/* fd_blocking(fd): fd's open file blocks from now on (a child's end) */
static int l_fd_blocking(lua_State *L) {
  conc__check_rc(L, conc__fd_blocking(check_fd(L, 1)));
  return 0;
}

static int l_devnull(lua_State *L) {
  lua_pushinteger(L, conc__check_rc(L, conc__fd_devnull()));
  return 1;
}

/* The n strings of the sequence at idx, NULL-terminated, in a userdata
** left on the stack (the strings stay the table's). */
static char **string_list(lua_State *L, int idx, const char *what) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  char **v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      conc__raise(L, CONC_ETYPE, "%s[%d] must be a string, not %s", what,
                  (int)i, luaL_typename(L, -1));
    v[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  v[n] = NULL;
  return v;
}

extern char **environ;

/* spawn(argv, search, env, {fd0, fd1, fd2}) -> pid: argv[1] started with
** its stdio at the given fds (each dup'd to 0, 1, 2); env nil: ours */
static int l_spawn(lua_State *L) {
  char **argv, **envp = environ;
  int fds[3], at[3] = {0, 1, 2}, pid;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  if (lua_rawlen(L, 1) == 0)
    return conc__raise(L, CONC_EVALUE, "the program's arguments are empty");
  argv = string_list(L, 1, "args");
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    envp = string_list(L, 3, "env");
  }
  for (int i = 0; i < 3; i++) {
    lua_rawgeti(L, 4, i + 1);
    fds[i] = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  pid = conc__proc_spawn(argv[0], argv, envp, fds, at, 3,
                         lua_toboolean(L, 2) ? CONC_SPAWN_SEARCH : 0);
  if (pid < 0)
    return conc__raise(L, pid, "[Errno %d] %s: '%s'", -pid,
                       conc__err_message(pid) ? conc__err_message(pid)
                                              : "cannot start",
                       argv[0]);
  lua_pushinteger(L, pid);
  return 1;
}

static int l_pidfd(lua_State *L) {
  lua_pushinteger(L, conc__check_rc(L, conc__proc_pidfd(check_pid(L, 1))));
  return 1;
}

/* child_poll(pid) -> its exit code (-N: killed by signal N), or nil */
static int l_child_poll(lua_State *L) {
  int status, rc = conc__proc_poll(check_pid(L, 1), &status);
  conc__check_rc(L, rc);
  if (rc == 0) return 0;
  lua_pushinteger(L, status);
  return 1;
}

static int l_child_kill(lua_State *L) {
  int rc = conc__proc_kill(check_pid(L, 1), (int)luaL_checkinteger(L, 2));
  lua_pushboolean(L, rc == CONC_OK);
  return 1;
}

void conc__open_sock(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"sock_listen", l_listen}, {"sock_connect", l_connect},
    {"sock_accept", l_accept}, {"sock_error", l_sock_error},
    {"sock_name", l_sock_name}, {"sock_shutdown", l_shutdown},
    {"getaddrinfo", l_getaddrinfo}, {"is_numeric_host", l_numeric},
    {"fd_read", l_fd_read}, {"fd_write", l_fd_write},
    {"fd_close", l_fd_close}, {"fd_pair", l_fd_pair},
    {"devnull", l_devnull}, {"fd_blocking", l_fd_blocking},
    {"spawn", l_spawn}, {"pidfd", l_pidfd},
    {"child_poll", l_child_poll}, {"child_kill", l_child_kill},
    {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
