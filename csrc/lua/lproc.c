/*
** lproc.c -- processes seen from Lua, in conc.core: fork, waiting for a
** child, a child's exit. The building blocks of conc.multiprocessing (its
** facade will give them Python's shape); the specs use them directly.
*/
#include <stdio.h>
#include <string.h>

#include "lconc.h"

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

void conc__open_proc(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"fork", l_fork}, {"waitpid", l_waitpid}, {"_exit", l_exit},
    {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
