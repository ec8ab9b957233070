/*
** state.c -- making states, registering conc's modules in them, proxies for
** shared objects, errors, and the embedding API of conc.h.
*/
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lualib.h"

#include "lconc.h"

static const char PROXIES_KEY = 'p';  /* registry: lightuserdata -> proxy */
static const char SENTINEL_KEY = 's'; /* registry: joins threads at close */
const char conc__box_magic = 'b';     /* its address marks a box (lconc.h) */

static pthread_mutex_t state_init_mu = PTHREAD_MUTEX_INITIALIZER;
static conc_StateInit state_init;  /* under state_init_mu: workers read it */
static void *state_init_ud;
static atomic_uint state_init_gen;  /* bumped when the hook changes */

static void *warm_prepare(void);
static void warm_discard(void *p);

/* ======================================================================
** Proxies
** ====================================================================== */

void conc__weak_registry(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

static void push_proxies(lua_State *L) {
  conc__weak_registry(L, &PROXIES_KEY, "v");
}

static void push_meta(lua_State *L, conc_ObjType *type);

/* Is the value on top one of the kind's methods as conc__newmeta made them,
** a C closure over the metatable at meta? Only those may be bound: any
** other C function a script put among them (another kind's method, an
** __index function, the watch on added methods), closed over a box, would
** read the box as what its own upvalue 1 was meant to be. */
static int own_method(lua_State *L, int meta) {
  int own;
  if (lua_tocfunction(L, -1) == NULL || lua_getupvalue(L, -1, 1) == NULL)
    return 0;
  own = lua_rawequal(L, -1, meta);
  lua_pop(L, 1);
  return own;
}

/* Pushes a table of the methods in the table at idx bound to the box on
** top (which it replaces): each a closure of the same C function with the
** box as upvalue 1 and the table as upvalue 2, so that `lock:acquire()`
** finds its object by comparing its first argument with upvalue 2, with
** no metatable to look at. Called on anything else (`lock.acquire(other)`),
** the method checks its first argument as before. */
static void bind_methods(lua_State *L, int methods, conc_Obj *o) {
  int box = lua_gettop(L), meta, proxy;
  lua_CFunction index_fn;
  lua_getmetatable(L, box);
  meta = lua_gettop(L);
  lua_getfield(L, meta, "__index");
  index_fn = lua_tocfunction(L, -1);  /* NULL when __index is the table */
  lua_pop(L, 1);
  lua_createtable(L, 1, 12);
  proxy = lua_gettop(L);
  lua_pushvalue(L, box);
  lua_rawseti(L, proxy, 1);  /* the box: an array slot is the quickest read */
  lua_pushnil(L);
  while (lua_next(L, methods)) {
    lua_CFunction f = lua_tocfunction(L, -1);
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int own = k != NULL && k[0] != '_' && f != index_fn && own_method(L, meta);
    lua_pop(L, 1);
    if (!own || (o->type->hides && o->type->hides(o, k))) continue;
    lua_pushvalue(L, -1);
    lua_pushvalue(L, box);
    lua_pushvalue(L, proxy);
    lua_pushcclosure(L, f, 2);
    lua_rawset(L, proxy);
  }
  lua_pushvalue(L, meta);
  lua_setmetatable(L, proxy);
  lua_replace(L, box);
  lua_settop(L, box);
}

/* The box of the proxy at idx (the userdata itself, or what a table proxy
** holds), or NULL. */
static conc_Box *anybox(lua_State *L, int idx) {
  conc_Box *box;
  if (lua_type(L, idx) != LUA_TTABLE) return conc__tobox(L, idx);
  lua_rawgeti(L, idx, 1);
  box = conc__tobox(L, -1);
  lua_pop(L, 1);  /* the table holds it */
  return box;
}

/* A proxy is a full userdata holding the object's pointer (the box: it owns
** one reference, dropped by __gc) with the kind's metatable; for a `bound`
** kind the proxy scripts see is a table of bound methods holding the box
** (see bind_methods): a method call on it is one table lookup, where a
** userdata's goes through its metatable's __index. */
void conc__pushobj(lua_State *L, conc_Obj *o) {
  conc_Box *box;
  push_proxies(L);
  if (lua_rawgetp(L, -1, o) != LUA_TNIL) {
    /* a box emptied by a __gc called by hand still sits in the cache, and
    ** a new object may have the old one's address */
    box = anybox(L, -1);
    if (box != NULL && box->obj == o) {
      lua_remove(L, -2);
      return;
    }
  }
  lua_pop(L, 1);
  box = lua_newuserdatauv(L, sizeof *box, 0);
  box->obj = o;
  box->magic = &conc__box_magic;
  conc__obj_incref(o);
  push_meta(L, o->type);
  lua_setmetatable(L, -2);
  if (o->type->bound) {
    int top = lua_gettop(L);
    lua_getmetatable(L, top);
    if (lua_getfield(L, -1, "__index") != LUA_TTABLE) {
      lua_pop(L, 1);  /* __index is a function: methods are in the metatable */
      lua_pushvalue(L, -1);
    }
    lua_remove(L, -2);
    lua_pushvalue(L, top);
    bind_methods(L, lua_gettop(L) - 1, o);
    lua_replace(L, top);
    lua_settop(L, top);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, o);
  lua_remove(L, -2);
}

void conc__lazymeta(lua_State *L, conc_ObjType *type, lua_CFunction open) {
  lua_pushcfunction(L, open);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &type->live);
}

/* Pushes the metatable of a kind of object, making it if this state has
** not yet: by its registered maker, else by opening conc.core (a fresh
** state that meets an object in a message may not have opened it). */
static void push_meta(lua_State *L, conc_ObjType *type) {
  if (luaL_getmetatable(L, type->name) == LUA_TTABLE) return;
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &type->live) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    luaL_requiref(L, "conc.core", luaopen_conc_core, 0);
    lua_pop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &type->live);
  }
  if (lua_isfunction(L, -1)) lua_call(L, 0, 0);
  else lua_pop(L, 1);
  luaL_getmetatable(L, type->name);
}

/* The end of every constructor: the new object (its creator's reference)
** passes to its proxy. NULL means the allocation failed. */
int conc__pushnew(lua_State *L, conc_Obj *o) {
  if (o == NULL) return luaL_error(L, "not enough memory");
  conc__pushobj(L, o);
  conc__obj_decref(o);
  return 1;
}

/* A box stands for its object (its mark proves it owns a reference; it is
** what a bound kind's enter() returns). A table is a proxy only when the
** cache maps the object it names back to that table: that rejects a table
** made to hold some proxy's box. */
conc_Obj *conc__toobj(lua_State *L, int idx) {
  conc_Box *box;
  int ok;
  if (lua_type(L, idx) != LUA_TTABLE) {
    box = conc__tobox(L, idx);
    return box != NULL ? box->obj : NULL;
  }
  idx = lua_absindex(L, idx);
  box = anybox(L, idx);
  if (box == NULL || box->obj == NULL) return NULL;
  push_proxies(L);
  lua_rawgetp(L, -1, box->obj);
  ok = lua_rawequal(L, -1, idx);
  lua_pop(L, 2);
  return ok ? box->obj : NULL;
}

/* What conc__checkobj's quick test did not take: a table proxy, or an error
** naming the kind expected. */
conc_Obj *conc__checkobj_slow(lua_State *L, int idx, conc_ObjType *type) {
  conc_Box *box = anybox(L, idx);
  if (box == NULL || (box->obj != NULL && box->obj->type != type)) {
    luaL_typeerror(L, idx, type->name);
    return NULL;
  }
  if (box->obj == NULL) {  /* collected by a __gc called by hand */
    const char *name = luaL_getmetafield(L, idx, "__name") == LUA_TSTRING
                           ? lua_tostring(L, -1)
                           : type->name;
    luaL_error(L, "%s is closed", name);
  }
  return box->obj;
}

static int proxy_gc(lua_State *L) {
  /* NULL for a table proxy (it shares the metatable): its box has its own */
  conc_Box *box = conc__tobox(L, 1);
  if (box && box->obj) {
    conc__obj_decref(box->obj);
    box->obj = NULL;
  }
  return 0;
}

/* __newindex of a metatable whose methods an __index function looks up:
** a method a script adds (getmetatable(q).peek = f) gets its bit, so that
** conc__getmethod looks for it. The bit is the process's: other states
** look that name up in vain, which costs them one lookup. */
static int methods_newindex(lua_State *L) {
  conc_ObjType *type = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t len;
    const char *k = lua_tolstring(L, 2, &len);
    atomic_fetch_or_explicit(&type->method_bits,
                             1ull << conc__method_bit(k, len),
                             memory_order_relaxed);
  }
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

void conc__newmeta(lua_State *L, conc_ObjType *type, const luaL_Reg *methods) {
  uint64_t bits = 0;
  if (!luaL_newmetatable(L, type->name)) {  /* made already */
    lua_pop(L, 1);
    return;
  }
  lua_pushcfunction(L, proxy_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);  /* the metatable: conc__getmethod's table */
  for (const luaL_Reg *r = methods; r->name; r++)
    if (r->name[0] != '_')  /* metamethods are never methods */
      bits |= 1ull << conc__method_bit(r->name, strlen(r->name));
  atomic_fetch_or_explicit(&type->method_bits, bits, memory_order_relaxed);
  /* metamethods (__close, ...) given among the methods go to the metatable */
  for (const luaL_Reg *r = methods; r->name; r++) {
    if (r->name[0] != '_' || r->name[1] != '_' ||
        strcmp(r->name, "__index") == 0)
      continue;
    lua_getfield(L, -1, r->name);
    lua_setfield(L, -3, r->name);
    lua_pushnil(L);
    lua_setfield(L, -2, r->name);
  }
  if (lua_getfield(L, -1, "__index") != LUA_TNIL) {
    /* the methods define their own __index: they are metamethods */
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -5);
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);  /* the watch on methods added later */
    lua_pushlightuserdata(L, type);
    lua_pushcclosure(L, methods_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
  } else {
    lua_pop(L, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* The first step of an __index function made by conc__newmeta (its upvalue
** 1 is the metatable, which holds the methods): pushes the method the key
** at 2 names and returns 1, else returns 0 having pushed nothing. A method
** call (q:get()) then costs one table lookup, before any field name is
** compared. */
int conc__getmethod(lua_State *L, conc_ObjType *type, const char *k,
                    size_t len) {
  uint64_t bits = atomic_load_explicit(&type->method_bits,
                                       memory_order_relaxed);
  if (k == NULL || !(bits >> conc__method_bit(k, len) & 1)) return 0;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL && k[0] != '_')
    return 1;  /* not __gc, __name, ... */
  lua_pop(L, 1);
  return 0;
}

/* ======================================================================
** Errors
** ====================================================================== */

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
** Module registration
** ====================================================================== */

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
  conc__thread_main();  /* the thread that opens conc first is MainThread */
  conc__worker_set_warmup(warm_prepare, warm_discard);
}

int luaopen_conc(lua_State *L) {
  conc_openlibs(L);
  conc__require(L, "conc");
  return 1;
}

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

static int shutdown_p(lua_State *L) {
  conc_Thread *t;
  while ((t = conc__thread_next_nondaemon()) != NULL) {
    int rc = conc__thread_join(t, CONC_FOREVER);
    conc__obj_decref((conc_Obj *)t);
    conc__check_wait(L, rc);
  }
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
    if (rc != CONC_OK) break;
  }
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

/* ======================================================================
** conc.core
** ====================================================================== */

static void push_live(lua_State *L, conc_ObjType *type) {
  lua_pushinteger(L, (lua_Integer)atomic_load(&type->live));
  lua_setfield(L, -2, type->name);
}

/* Objects alive per kind, for tests that check nothing is left behind. */
static int l_live_objects(lua_State *L) {
  lua_newtable(L);
  push_live(L, &conc__thread_type);
  push_live(L, &conc__lock_type);
  push_live(L, &conc__rlock_type);
  push_live(L, &conc__sem_type);
  push_live(L, &conc__cond_type);
  push_live(L, &conc__barrier_type);
  push_live(L, &conc__event_type);
  push_live(L, &conc__shlist_type);
  push_live(L, &conc__shdict_type);
  return 1;
}

int luaopen_conc_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"live_objects", l_live_objects}, {NULL, NULL}};
  conc__thread_main();  /* the thread that opens conc first is MainThread */
  luaL_newlib(L, fns);
  conc__open_transfer(L);
  conc__open_thread(L);
  conc__open_time(L);
  conc__open_sync(L);
  conc__open_queue(L);
  conc__open_shared(L);
  install_sentinel(L);
  return 1;
}
