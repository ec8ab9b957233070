/*
** lib.c -- conc's modules registered in a state (package.preload), the
** conc.core table, and Python's end-of-script join of non-daemon threads.
*/
#include <stdio.h>

#include "lconc.h"
#include "names.h"

static const char SENTINEL_KEY = 's'; /* registry: joins threads at close */

void conc__require(lua_State *L, const char *name) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
}


/* print, writing each call's line with one fwrite: stdio locks a FILE per
** call, so lines printed by threads at the same time never interleave
** (the base library's print writes every piece separately). */
static int l_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  {
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    fwrite(line, 1, len, stdout);
    fflush(stdout);
  }
  return 0;
}

static int load_embedded(lua_State *L) {
  const conc_Embedded *m = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, (const char *)m->code, m->len, m->name, "b") != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

void conc_openlibs(lua_State *L) {
  lua_pushcfunction(L, l_print);
  lua_setglobal(L, "print");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_conc_core);
  lua_setfield(L, -2, "conc.core");
  for (const conc_Embedded *m = conc__embedded; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
  conc__names_watch(L);  /* what loads after this gets its snapshot */
  conc__thread_main();  /* the thread that opens conc first is MainThread */
  conc__state_setup();
}

int luaopen_conc(lua_State *L) {
  conc_openlibs(L);
  conc__require(L, "conc");
  return 1;
}

/* threading._run_atexit(), when this state loaded conc.threading. */
static void run_atexit(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "conc.threading") == LUA_TTABLE &&
      lua_getfield(L, -1, "_run_atexit") == LUA_TFUNCTION)
    lua_call(L, 0, 0);
  lua_settop(L, 0);
}

static int shutdown_p(lua_State *L) {
  conc_Thread *t;
  run_atexit(L);
  while ((t = conc__thread_next_nondaemon()) != NULL) {
    int rc = conc__thread_join(t, CONC_FOREVER);
    conc__obj_decref((conc_Obj *)t);
    conc__check_wait(L, rc);
  }
  conc__check_wait(L, conc__process_shutdown());
  return 0;
}

int conc_shutdown(lua_State *L) {
  lua_pushcfunction(L, shutdown_p);
  return lua_pcall(L, 0, 0, 0);
}

/* __gc of a sentinel in the main state's registry: under a stock lua5.4 the
** script's end closes the state, and non-daemon threads are waited for there,
** as Python does at exit. A Ctrl-C while waiting gives up the wait. */
static int sentinel_gc(lua_State *L) {
  conc_Thread *t;
  while ((t = conc__thread_next_nondaemon()) != NULL) {
    int rc = conc__thread_join(t, CONC_FOREVER);
    conc__obj_decref((conc_Obj *)t);
    if (rc != CONC_OK) return 0;
  }
  conc__process_shutdown();
  (void)L;
  return 0;
}

static void install_sentinel(lua_State *L) {
  if (conc__thread_current() != conc__thread_main()) return;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SENTINEL_KEY) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_newuserdatauv(L, 0, 0);
  lua_newtable(L);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SENTINEL_KEY);
}

/* ======================================================================
** conc.core
** ====================================================================== */

static void push_live(lua_State *L, conc_ObjType *type) {
  lua_pushinteger(L, (lua_Integer)atomic_load(&type->live));
  lua_setfield(L, -2, type->name);
}

/* Objects alive per kind, for tests that check nothing is left behind:
** every kind the core lists. */
static int l_live_objects(lua_State *L) {
  lua_newtable(L);
  for (conc_ObjType *const *t = conc__obj_types; *t != NULL; t++)
    push_live(L, *t);
  return 1;
}

/* core._raise(code): raises the error a result code stands for, as every
** binding does: for specs of the error table. */
static int l_raise(lua_State *L) {
  return conc__raise(L, (int)luaL_checkinteger(L, 1), NULL);
}

/*
** core._memory_limit(bytes): from now on this state may grow by at most
** bytes more; an allocation past that fails as when memory runs out (Lua
** collects, then raises "not enough memory"). core._memory_limit() lifts
** it. For specs of what running out of memory does: this wraps whatever
** allocator the state has, so it costs nothing until called.
*/
typedef struct Limit {
  lua_Alloc f;       /* the state's own allocator */
  void *ud;
  lua_Integer left;  /* bytes the state may still grow by */
} Limit;

static const char LIMIT_KEY = 'l';  /* registry: the Limit in force */

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Limit *l = ud;
  lua_Integer old = ptr != NULL ? (lua_Integer)osize : 0;
  if ((lua_Integer)nsize - old > l->left) return NULL;
  ptr = l->f(l->ud, ptr, osize, nsize);
  if (ptr != NULL || nsize == 0) l->left -= (lua_Integer)nsize - old;
  return ptr;
}

static int l_memory_limit(lua_State *L) {
  void *ud;
  Limit *l;
  if (lua_getallocf(L, &ud) == limited_alloc) {
    l = ud;
    lua_setallocf(L, l->f, l->ud);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LIMIT_KEY);
  }
  if (lua_isnoneornil(L, 1)) return 0;
  l = lua_newuserdatauv(L, sizeof *l, 0);
  l->left = luaL_checkinteger(L, 1);
  l->f = lua_getallocf(L, &l->ud);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LIMIT_KEY);  /* alive while in force */
  lua_setallocf(L, limited_alloc, l);
  return 0;
}

/* core.newtable(narr, nrec): lua_createtable from Lua, for the pools'
** chunks and result lists, which grew by doubling (a tenth of a map of
** 100 000 squares was spent in luaH_resize). Sizes are hints, clamped
** (past 2^18 slots a table grows as any does). */
static int clamp_size(lua_Integer n, int max) {
  return n < 0 ? 0 : n > max ? max : (int)n;
}

static int l_newtable(lua_State *L) {
  lua_createtable(L, clamp_size(luaL_optinteger(L, 1, 0), 1 << 18),
                  clamp_size(luaL_optinteger(L, 2, 0), 1 << 10));
  return 1;
}

/* core.rawmove(a1, f, e, t [, a2]): table.move without metamethods, for
** the pools' chunks and lists. Into a table presized by newtable, a raw
** set fills the slot at once, where table.move's lua_seti takes the slow
** path for every element (an empty slot might have a __newindex). */
static int l_rawmove(lua_State *L) {
  lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
  lua_Integer t = luaL_checkinteger(L, 4), i;
  int dst = lua_isnoneornil(L, 5) ? 1 : 5;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, dst, LUA_TTABLE);
  if (e >= f) {
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3,
                  "too many elements to move");
    luaL_argcheck(L, t <= LUA_MAXINTEGER - (e - f), 4,
                  "destination wrap around");
    if (t > e || t <= f || (dst != 1 && !lua_rawequal(L, 1, dst))) {
      for (i = 0; i <= e - f; i++) {
        lua_rawgeti(L, 1, f + i);
        lua_rawseti(L, dst, t + i);
      }
    } else {  /* overlapping, forward: from the end */
      for (i = e - f; i >= 0; i--) {
        lua_rawgeti(L, 1, f + i);
        lua_rawseti(L, dst, t + i);
      }
    }
  }
  lua_pushvalue(L, dst);
  return 1;
}

int luaopen_conc_core(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"live_objects", l_live_objects}, {"_raise", l_raise},
    {"_memory_limit", l_memory_limit}, {"newtable", l_newtable},
    {"rawmove", l_rawmove}, {NULL, NULL}};
  conc__thread_main();  /* the thread that opens conc first is MainThread */
  conc__names_watch(L);  /* a stock lua5.4's: the modules loaded so far */
  luaL_newlib(L, fns);
  conc__open_transfer(L);
  conc__open_thread(L);
  conc__open_time(L);
  conc__open_sync(L);
  conc__open_queue(L);
  conc__open_shared(L);
  conc__open_proc(L);
  conc__open_array(L);
  conc__open_mpqueue(L);
  conc__open_conn(L);
  conc__open_future(L);
  conc__open_loop(L);
  conc__open_sock(L);
  install_sentinel(L);
  return 1;
}

