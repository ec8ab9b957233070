/*
** state.c -- making the states conc runs threads in: standard libraries
** opened lazily, conc's modules, the embedder's state-init hook, and the
** warm states parked workers build ahead of time.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lualib.h"

#include "lconc.h"

static pthread_mutex_t state_init_mu = PTHREAD_MUTEX_INITIALIZER;
static conc_StateInit state_init;  /* under state_init_mu: workers read it */
static void *state_init_ud;
static atomic_uint state_init_gen;  /* bumped when the hook changes */

void conc_set_state_init(conc_StateInit fn, void *ud) {
  pthread_mutex_lock(&state_init_mu);
  state_init = fn;
  state_init_ud = ud;
  pthread_mutex_unlock(&state_init_mu);
  atomic_fetch_add(&state_init_gen, 1);  /* states built before are stale */
}

static void set_path(lua_State *L, const char *field, const char *value) {
  if (value == NULL) return;
  lua_getglobal(L, "package");
  lua_pushstring(L, value);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

/*
** The standard libraries of a thread's state. base, package and string
** (strings' metatable) open at once; each of the others is a table that
** fills itself from the real library on its first lookup, so a thread that
** never touches math or io does not pay for them (opening them all was a
** third of building a state with only the standard libraries). Until then
** the table looks empty to next/pairs/rawget; any field lookup fills it,
** and require "math" gives the same table.
*/
static const luaL_Reg lazy_libs[] = {
  {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
  {LUA_IOLIBNAME, luaopen_io}, {LUA_OSLIBNAME, luaopen_os},
  {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
  {LUA_DBLIBNAME, luaopen_debug}, {NULL, NULL}};

static int lazy_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

/* Fills the lazy table (upvalue 1) from luaopen (upvalue 2), once. */
static void lazy_fill(lua_State *L) {
  lua_CFunction open = lua_tocfunction(L, lua_upvalueindex(2));
  int t = lua_upvalueindex(1);
  if (lua_getmetatable(L, t) == 0) return;  /* filled already */
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setmetatable(L, t);
  lua_pushcfunction(L, open);
  lua_call(L, 0, 1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, t);
  }
  lua_pop(L, 1);
}

static int lazy_index(lua_State *L) {
  lazy_fill(L);
  lua_rawget(L, 1);
  return 1;
}

static int lazy_newindex(lua_State *L) {
  lazy_fill(L);
  lua_rawset(L, 1);
  return 0;
}

static int lazy_pairs(lua_State *L) {
  lazy_fill(L);
  lua_pushcfunction(L, lazy_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* The loader package.preload holds for a lazy library: the filled table. */
static int lazy_require(lua_State *L) {
  lazy_fill(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

static void open_libs_lazily(lua_State *L) {
  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_LOADLIBNAME, luaopen_package, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  lua_pop(L, 3);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
    lua_newtable(L);                       /* the library's table, empty */
    lua_createtable(L, 0, 3);              /* its metatable */
    lua_pushvalue(L, -2);
    lua_pushcfunction(L, lib->func);
    lua_pushcclosure(L, lazy_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -2);
    lua_pushcfunction(L, lib->func);
    lua_pushcclosure(L, lazy_newindex, 2);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -2);
    lua_pushcfunction(L, lib->func);
    lua_pushcclosure(L, lazy_pairs, 2);
    lua_setfield(L, -2, "__pairs");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setglobal(L, lib->name);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, lib->name);        /* package.loaded */
    lua_pushvalue(L, -1);
    lua_pushcfunction(L, lib->func);
    lua_pushcclosure(L, lazy_require, 2);
    lua_setfield(L, -3, lib->name);        /* package.preload */
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

static int newstate_p(lua_State *L) {
  const char **paths = lua_touserdata(L, 1);
  open_libs_lazily(L);
  set_path(L, "path", paths[0]);
  set_path(L, "cpath", paths[1]);
  conc_openlibs(L);
  {
    conc_StateInit fn;
    void *ud;
    pthread_mutex_lock(&state_init_mu);
    fn = state_init;
    ud = state_init_ud;
    pthread_mutex_unlock(&state_init_mu);
    if (fn) fn(L, ud);
  }
  return 0;
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  fflush(stderr);
  return 0;  /* and Lua aborts */
}

/* lauxlib's warning protocol ("@on", "@off", pieces joined by tocont), its
** on/off switch kept in the state's extra space. Off at first, as in lua.c. */
static void warnf(void *ud, const char *msg, int tocont) {
  lua_State *L = ud;
  int *mode = lua_getextraspace(L);  /* 0 off, 1 on, 2 on and mid-message */
  if (*mode != 2 && !tocont && *msg == '@') {
    if (strcmp(msg, "@off") == 0) *mode = 0;
    else if (strcmp(msg, "@on") == 0) *mode = 1;
    return;
  }
  if (*mode == 0) return;
  if (*mode == 1) fputs("Lua warning: ", stderr);
  fputs(msg, stderr);
  if (tocont) {
    *mode = 2;
  } else {
    fputs("\n", stderr);
    fflush(stderr);
    *mode = 1;
  }
}

lua_State *conc_newstate(void) {
  lua_State *L = conc__alloc_newstate();
  if (L == NULL) return NULL;
  lua_atpanic(L, panic);
  *(int *)lua_getextraspace(L) = 0;
  lua_setwarnf(L, warnf, L);
  return L;
}

void conc_close(lua_State *L) {
  conc__alloc_close(L);
}

lua_State *conc__newstate(const char *path, const char *cpath) {
  const char *paths[2] = {path, cpath};
  lua_State *L = conc_newstate();
  if (L == NULL) return NULL;
  lua_gc(L, LUA_GCSTOP);  /* nothing to collect while it is being built */
  lua_pushcfunction(L, newstate_p);
  lua_pushlightuserdata(L, paths);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "conc: cannot set up a thread's state: %s\n",
            lua_tostring(L, -1));
    conc__closestate(L);
    return NULL;
  }
  return L;
}

/* A state a parked worker builds for the next thread it will run (see
** worker.c): conc.threading loaded, paths still the defaults. */
typedef struct Warm {
  lua_State *L;
  unsigned gen;
} Warm;

/* What a warm state has beyond conc__newstate's: every thread's state
** loads conc.threading to run _bootstrap. (The collector stays stopped
** until the thread runs: see conc__state_ready.) */
static int warm_p(lua_State *L) {
  conc__require(L, "conc.threading");
  return 0;
}

static void *warm_prepare(void) {
  Warm *w = malloc(sizeof *w);
  if (w == NULL) return NULL;
  w->gen = atomic_load(&state_init_gen);
  w->L = conc__newstate(NULL, NULL);
  if (w->L) {
    lua_pushcfunction(w->L, warm_p);
    if (lua_pcall(w->L, 0, 0, 0) != LUA_OK) lua_pop(w->L, 1);
  }
  if (w->L == NULL) {
    free(w);
    return NULL;
  }
  return w;
}

static void warm_discard(void *p) {
  Warm *w = p;
  conc__closestate(w->L);
  free(w);
}

lua_State *conc__newstate_for_thread(const char *path, const char *cpath) {
  Warm *w = conc__worker_take_warm();
  if (w) {
    lua_State *L = w->L;
    int fresh = w->gen == atomic_load(&state_init_gen);
    free(w);
    if (fresh) {
      set_path(L, "path", path);
      set_path(L, "cpath", cpath);
      return L;
    }
    conc__closestate(L);
  }
  return conc__newstate(path, cpath);
}

/* LUA_GCRESTART leaves the collector in debt 0, so its first cycle would
** start at the thread's first allocation and mark everything the state's
** startup made (a thread that runs an empty function paid for that). A
** negative step is a credit: the collector is paced as after a cycle that
** found the whole heap alive, the next one starting once the heap has
** grown by as much again (the default pause of 200%). */
void conc__state_ready(lua_State *L) {
  conc__alloc_ready(L);
  if (!lua_gc(L, LUA_GCISRUNNING)) {
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCSTEP, -lua_gc(L, LUA_GCCOUNT));
  }
}

void conc__closestate(lua_State *L) {
  conc__alloc_close(L);
}


/* The hook a worker may be reading when another thread forks. */
static conc_ForkHook fork_hook = {.rank = CONC_FORK_STATE,
                                  .mutex = &state_init_mu};

/* Once conc is opened in a state: parked workers may build warm states. */
void conc__state_setup(void) {
  conc__fork_register(&fork_hook);
  conc__worker_set_warmup(warm_prepare, warm_discard);
}
