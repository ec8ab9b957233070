/*
** embed_test.c -- an application embedding conc through conc.h alone: its
** own C function, registered by the state-init hook, must exist in every
** thread state conc creates, and conc_shutdown must wait for the threads.
** Then a state from conc_newstate (conc's allocator) runs a churn of blocks
** of every small size, grown, shrunk and freed, and checks what it reads
** back: a block shorter than its size class promises would corrupt it.
*/
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "conc.h"

static atomic_int calls;
static atomic_int inits;

static int app_hello(lua_State *L) {
  atomic_fetch_add(&calls, (int)luaL_checkinteger(L, 1));
  lua_pushstring(L, "hello from the app");
  return 1;
}

static void state_init(lua_State *L, void *ud) {
  if (strcmp((const char *)ud, "app") != 0) return;
  atomic_fetch_add(&inits, 1);
  lua_pushcfunction(L, app_hello);
  lua_setglobal(L, "app_hello");
}

static const char *script =
  "local threading = require 'conc.threading'\n"
  "local ts = {}\n"
  "for i = 1, 4 do\n"
  "  ts[i] = threading.Thread{target = function(n)\n"
  "    assert(app_hello(n) == 'hello from the app')\n"
  "  end, args = {i}}\n"
  "  ts[i]:start()\n"
  "end\n"
  "-- no join here: conc_shutdown waits for them\n";

static const char *churn =
  "local keep, sum = {}, 0\n"
  "for round = 1, 20 do\n"
  "  for n = 1, 300 do\n"
  "    local t = {}\n"
  "    for i = 1, n % 40 do t[i] = i; t['k' .. i] = n end\n"
  "    for i = n % 40, 1, -1 do t[i] = nil end\n"
  "    keep[n] = {s = string.rep(string.char(65 + n % 26), n), t = t}\n"
  "  end\n"
  "  collectgarbage()\n"
  "  for n = 1, 300 do\n"
  "    local s = keep[n].s\n"
  "    assert(#s == n and s == string.rep(string.char(65 + n % 26), n))\n"
  "    for i = 1, n % 40 do assert(keep[n].t['k' .. i] == n) end\n"
  "    sum = sum + #s\n"
  "  end\n"
  "end\n"
  "assert(sum == 20 * 300 * 301 // 2)\n";

static int fail(const char *what) {
  fprintf(stderr, "embed_test: %s\n", what);
  return 1;
}

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  conc_set_state_init(state_init, "app");
  conc_openlibs(L);
  if (luaL_dostring(L, script) != LUA_OK) return fail(lua_tostring(L, -1));
  if (conc_shutdown(L) != LUA_OK) return fail(lua_tostring(L, -1));
  if (atomic_load(&calls) != 1 + 2 + 3 + 4) return fail("a thread missed app_hello");
  if (atomic_load(&inits) < 4) return fail("the state-init hook did not run");
  lua_close(L);
  printf("embed_test: 4 threads called the app's C function\n");
  L = conc_newstate();
  if (L == NULL) return fail("conc_newstate: not enough memory");
  luaL_openlibs(L);
  conc_openlibs(L);
  if (luaL_dostring(L, churn) != LUA_OK) return fail(lua_tostring(L, -1));
  conc_close(L);
  printf("embed_test: a conc_newstate state read back what it wrote\n");
  return 0;
}
