/*
** errors.c -- conc's errors as Lua values: instances of conc.errors'
** classes, raised from C; KeyboardInterrupt and the hook that raises it.
*/
#include <stdarg.h>

#include "lconc.h"


/* Pushes an instance of the conc.errors class named cls, message msg (or
** none). */
static void push_error(lua_State *L, const char *cls, const char *msg) {
  conc__require(L, "conc.errors");
  lua_getfield(L, -1, cls);
  lua_remove(L, -2);
  if (msg) lua_pushstring(L, msg);
  else lua_pushnil(L);
  lua_call(L, 1, 1);
}

/* The state conc_interrupt last armed its hook in (the host's main one). */
static lua_State *volatile interrupt_L;

/* A KeyboardInterrupt is being raised: it is no longer pending, and the
** hook that would raise it again is off. */
static void consume_interrupt(void) {
  conc__interrupt_clear();
  if (interrupt_L) lua_sethook(interrupt_L, NULL, 0, 0);
}

static void push_code(lua_State *L, int code, const char *msg) {
  const char *cls = conc__err_class(code);
  if (msg == NULL) msg = conc__err_message(code);
  if (cls == NULL) {  /* a code the table lacks: say so, do not guess */
    cls = "SystemError";
    msg = lua_pushfstring(L, "unexpected error code %d%s%s", code,
                          msg ? ": " : "", msg ? msg : "");
  }
  push_error(L, cls, msg);
}

void conc__push_error(lua_State *L, int code, const char *msg) {
  push_code(L, code, msg);
}

int conc__raise(lua_State *L, int code, const char *fmt, ...) {
  const char *msg = NULL;
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
  }
  if (code == CONC_EINTR) consume_interrupt();
  push_code(L, code, msg);
  return lua_error(L);
}

int conc__check_wait(lua_State *L, int rc) {
  if (rc == CONC_OK) return 1;
  if (rc == CONC_ETIMEDOUT) return 0;
  return conc__raise(L, rc, NULL);
}

/* ======================================================================
** Timeouts: one reading of a timeout argument for every blocking call
** ====================================================================== */

double conc__opt_timeout(lua_State *L, int idx, int negative,
                         const char *negmsg) {
  double t;
  if (lua_isnoneornil(L, idx)) return CONC_FOREVER;
  if (lua_type(L, idx) != LUA_TNUMBER)  /* no string coercion, as Python */
    conc__raise(L, CONC_ETYPE, "timeout must be a number, not %s",
                luaL_typename(L, idx));
  t = (double)lua_tonumber(L, idx);
  if (t != t) conc__raise(L, CONC_EVALUE, "Invalid value NaN (not a number)");
  if (t >= 0) return t;
  switch (negative) {
    case CONC_NEG_NOWAIT: return 0;
    case CONC_NEG_MINUS1:
      if (t == -1) return CONC_FOREVER;
      /* fall through */
    default:
      return conc__raise(L, CONC_EVALUE, "%s",
                         negmsg ? negmsg
                                : "timeout value must be a non-negative number");
  }
}

double conc__opt_deadline(lua_State *L, int idx, int negative,
                          const char *negmsg) {
  return conc__deadline(conc__opt_timeout(L, idx, negative, negmsg));
}

/* ======================================================================
** KeyboardInterrupt
** ====================================================================== */

/* The hook conc_interrupt arms. It raises only where no completed operation
** can be taken back: at a call of a Lua function (inside its frame, so an
** enclosing pcall catches it) or every INTERRUPT_COUNT instructions of Lua
** code that makes no call. Not at a return, whose values the raise would
** drop (a get that took an item, a put that stored one, an acquire that
** took the lock), and not at a call of a C function: conc's own blocking
** calls look at the flag before doing anything (conc__check_interrupt), and
** a raise there would land outside a pcall being called. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  if (ar->event == LUA_HOOKCALL || ar->event == LUA_HOOKTAILCALL) {
    if (!lua_getinfo(L, "S", ar) || ar->what[0] == 'C') return;
  } else if (ar->event != LUA_HOOKCOUNT) {
    return;
  }
  conc__raise(L, CONC_EINTR, NULL);
}

/* Long enough for a loop of conc calls to reach its next check first. */
#define INTERRUPT_COUNT 1000

/* The lua.c way: a signal handler may set a hook and nothing more. The
** flag (os/intr.c) wakes and fails a wait the state is blocked in. */
void conc_interrupt(lua_State *L) {
  interrupt_L = L;
  conc__interrupt_set();
  lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKCOUNT,
              INTERRUPT_COUNT);
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

