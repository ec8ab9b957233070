/*
** errors.c -- conc's errors as Lua values: instances of conc.errors'
** classes, raised from C; KeyboardInterrupt and the hook that raises it.
*/
#include <stdarg.h>

#include "lconc.h"


void conc__pusherror(lua_State *L, const char *cls, const char *msg) {
  conc__require(L, "conc.errors");
  lua_getfield(L, -1, cls);
  lua_remove(L, -2);
  if (msg) lua_pushstring(L, msg);
  else lua_pushnil(L);
  lua_call(L, 1, 1);
}

int conc__raise(lua_State *L, const char *cls, const char *fmt, ...) {
  va_list ap;
  const char *msg = NULL;
  if (fmt) {
    va_start(ap, fmt);
    msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
  }
  conc__pusherror(L, cls, msg);
  return lua_error(L);
}

static lua_State *volatile interrupt_L;

int conc__raise_interrupt(lua_State *L) {
  conc__interrupt_clear();
  if (interrupt_L) lua_sethook(interrupt_L, NULL, 0, 0);
  return conc__raise(L, "KeyboardInterrupt", NULL);
}

int conc__check_wait(lua_State *L, int rc) {
  if (rc == CONC_EINTR) return conc__raise_interrupt(L);
  return rc == CONC_OK;
}

double conc__opttimeout(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return CONC_FOREVER;
  return luaL_checknumber(L, idx);
}

/* ======================================================================
** Interrupts and shutdown
** ====================================================================== */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  conc__raise_interrupt(L);
}

/* The lua.c way: a signal handler may set a hook and nothing more, and the
** hook raises at the next instruction. sync.c's flag covers the case where
** the state is blocked in C. */
void conc_interrupt(lua_State *L) {
  interrupt_L = L;
  conc__interrupt_set();
  lua_sethook(L, interrupt_hook,
              LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

int conc_iserror(lua_State *L, int idx, const char *name) {
  int ok = 0;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return 0;
  lua_getglobal(L, "package");  /* no require: never load code here */
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "loaded");
    if (lua_istable(L, -1) && lua_getfield(L, -1, "conc.errors") == LUA_TTABLE) {
      lua_getfield(L, -1, name);
      /* walk the class chain through each class's __parent */
      if (lua_getmetatable(L, idx)) {
        while (!ok && lua_istable(L, -1)) {
          ok = lua_rawequal(L, -1, -2);
          lua_getfield(L, -1, "__parent");
          lua_remove(L, -2);
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  return ok;
}

