/*
** proxy.c -- proxies: the one userdata (or table of bound methods) per
** (state, object) pair, and the metatables of the kinds of object.
*/
#include <string.h>

#include "lconc.h"

static const char PROXIES_KEY = 'p';  /* registry: lightuserdata -> proxy */
const char conc__box_magic = 'b';     /* its address marks a box (lconc.h) */


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

static conc_Binding *push_meta(lua_State *L, conc_ObjType *type);

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
static void bind_methods(lua_State *L, int methods, conc_Obj *o,
                         conc_Binding *b) {
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
    if (!own || (b->hides && b->hides(o, k))) continue;
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
  conc_Binding *b;
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
  b = push_meta(L, o->type);
  box = lua_newuserdatauv(L, sizeof *box, b->uservalues);
  box->obj = o;
  box->magic = &conc__box_magic;
  conc__obj_incref(o);
  lua_rotate(L, -2, 1);
  lua_setmetatable(L, -2);
  if (b->bound) {
    int top = lua_gettop(L);
    lua_getmetatable(L, top);
    if (lua_getfield(L, -1, "__index") != LUA_TTABLE) {
      lua_pop(L, 1);  /* __index is a function: methods are in the metatable */
      lua_pushvalue(L, -1);
    }
    lua_remove(L, -2);
    lua_pushvalue(L, top);
    bind_methods(L, lua_gettop(L) - 1, o, b);
    lua_replace(L, top);
    lua_settop(L, top);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, o);
  lua_remove(L, -2);
}

void conc__bind(conc_Binding *b) {
  atomic_store_explicit(&b->type->binding, b, memory_order_release);
}

static conc_Binding *binding(conc_ObjType *type) {
  return atomic_load_explicit(&type->binding, memory_order_acquire);
}

/* Pushes the metatable of a kind of object, making it the first time this
** state meets the kind (a thread's state that never sees a Barrier does
** not build its metatable), and returns the kind's binding. Every kind is
** bound once conc.core is open in some state of the process; a state that
** meets an object before is made to open it. */
static conc_Binding *push_meta(lua_State *L, conc_ObjType *type) {
  conc_Binding *b = binding(type);
  if (b == NULL) {
    luaL_requiref(L, "conc.core", luaopen_conc_core, 0);
    lua_pop(L, 1);
    b = binding(type);
  }
  if (luaL_getmetatable(L, type->name) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushcfunction(L, b->open);
    lua_call(L, 0, 0);
    luaL_getmetatable(L, type->name);
  }
  return b;
}

/* The end of every constructor: the new object (its creator's reference)
** passes to its proxy. NULL means the allocation failed. */
int conc__pushnew(lua_State *L, conc_Obj *o) {
  if (o == NULL) return conc__raise(L, CONC_ENOMEM, NULL);
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

int conc__set_own_field(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE)
    return conc__raise(L, CONC_EATTRIBUTE, "cannot set field '%s' on %s",
                       luaL_tolstring(L, 2, NULL), luaL_typename(L, 1));
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

/* __newindex of a metatable whose methods an __index function looks up:
** a method a script adds (getmetatable(q).peek = f) gets its bit, so that
** conc__getmethod looks for it. The bit is the process's: other states
** look that name up in vain, which costs them one lookup. */
static int methods_newindex(lua_State *L) {
  conc_Binding *b = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t len;
    const char *k = lua_tolstring(L, 2, &len);
    atomic_fetch_or_explicit(&b->method_bits,
                             1ull << conc__method_bit(k, len),
                             memory_order_relaxed);
  }
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

void conc__newmeta(lua_State *L, conc_Binding *b, const luaL_Reg *methods) {
  uint64_t bits = 0;
  if (!luaL_newmetatable(L, b->type->name)) {  /* made already */
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
  atomic_fetch_or_explicit(&b->method_bits, bits, memory_order_relaxed);
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
    lua_pushlightuserdata(L, b);
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
int conc__getmethod(lua_State *L, conc_Binding *b, const char *k,
                    size_t len) {
  uint64_t bits = atomic_load_explicit(&b->method_bits, memory_order_relaxed);
  if (k == NULL || !(bits >> conc__method_bit(k, len) & 1)) return 0;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL && k[0] != '_')
    return 1;  /* not __gc, __name, ... */
  lua_pop(L, 1);
  return 0;
}

