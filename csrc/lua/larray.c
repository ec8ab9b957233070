/*
** larray.c -- multiprocessing.Value, Array, RawValue and RawArray seen
** from Lua: `v.value`, `a[i]` (1-based), `#a`, `get_lock()`, `get_obj()`.
**
** A synchronized one takes its lock around every read and write, as
** Python's wrappers do: with an RLock (the default) a script's own
** `local _ <close> = v:get_lock():enter()` around `v.value = v.value + 1`
** re-enters it, so the increment is one step for the other processes.
*/
#include <string.h>

#include "lconc.h"

static int meta_array(lua_State *L);

/* Proxies are boxes, not tables of bound methods: a table proxy keeps its
** box at [1], which a[1] would read. __index looks at "value" before the
** methods. */
static conc_Binding array_binding = {.type = &conc__array_type,
                                     .open = meta_array, .uservalues = 1};

static conc_Array *check_array(lua_State *L) {
  return (conc_Array *)conc__checkobj(L, 1, &conc__array_type);
}

/* ctypes' names, for messages and tostring. */
static const char *ctype_name(int typecode) {
  switch (typecode) {
    case 'b': return "c_byte";     case 'B': return "c_ubyte";
    case 'h': return "c_short";    case 'H': return "c_ushort";
    case 'i': return "c_int";      case 'I': return "c_uint";
    case 'l': return "c_long";     case 'L': return "c_ulong";
    case 'q': return "c_longlong"; case 'Q': return "c_ulonglong";
    case 'f': return "c_float";    case 'd': return "c_double";
    case 'c': return "c_char";
  }
  return "?";
}

static int check_typecode(lua_State *L, int idx) {
  size_t len;
  const char *tc = luaL_checklstring(L, idx, &len);
  if (len != 1 || conc__array_elsize((unsigned char)tc[0]) == 0)
    return conc__raise(L, CONC_ETYPE,
                       "bad typecode '%s' (must be b, B, h, H, i, I, l, L, q, "
                       "Q, f, d or c)", tc);
  return (unsigned char)tc[0];
}

/* The lock argument: nil or true makes a shared RLock, false none, else a
** multiprocessing Lock or RLock. Returns it with a reference, or NULL. */
static conc_Obj *lock_arg(lua_State *L, int idx) {
  conc_Obj *o;
  if (lua_isnoneornil(L, idx) || (lua_isboolean(L, idx) && lua_toboolean(L, idx))) {
    o = (conc_Obj *)conc__rlock_new(CONC_SHARED);
    if (o == NULL) conc__raise(L, CONC_ENOMEM, NULL);
    return o;
  }
  if (lua_isboolean(L, idx)) return NULL;
  o = conc__toobj(L, idx);
  if (o != NULL && ((o->type == &conc__lock_type &&
                     conc__lock_shared((conc_Lock *)o)) ||
                    (o->type == &conc__rlock_type &&
                     conc__rlock_shared((conc_RLock *)o)))) {
    conc__obj_incref(o);
    return o;
  }
  return conc__raise(L, CONC_ETYPE,
                     "lock must be a boolean or a multiprocessing Lock or "
                     "RLock, not %s", luaL_typename(L, idx)), NULL;
}

/* An element's value, converted before any lock is taken. */
typedef struct Elem {
  int64_t i;
  double f;
} Elem;

/* Reads the Lua value at idx as an element of a, or raises TypeError. */
static void check_elem(lua_State *L, conc_Array *a, int idx, Elem *e) {
  int tc = conc__array_typecode(a);
  if (tc == 'c') {
    size_t len;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len)
                                                     : NULL;
    if (s == NULL || len != 1)
      conc__raise(L, CONC_ETYPE, "one character string expected, got %s",
                  s ? "a longer string" : luaL_typename(L, idx));
    e->i = (unsigned char)s[0];
  } else if (conc__array_is_float(a)) {
    if (lua_type(L, idx) != LUA_TNUMBER)
      conc__raise(L, CONC_ETYPE, "must be real number, not %s",
                  luaL_typename(L, idx));
    e->f = (double)lua_tonumber(L, idx);
  } else {
    int isint = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tointegerx(L, idx, &isint);
    if (!isint)
      conc__raise(L, CONC_ETYPE, "int expected instead of %s",
                  lua_type(L, idx) == LUA_TNUMBER ? "float"
                                                  : luaL_typename(L, idx));
    e->i = (int64_t)v;
  }
}

static void store_elem(conc_Array *a, size_t i, const Elem *e) {
  if (conc__array_is_float(a)) conc__array_set_float(a, i, e->f);
  else conc__array_set_int(a, i, e->i);
}

/* Stores the Lua value at idx into element i, or raises TypeError having
** stored nothing (no lock taken: for a new array). */
static void set_elem(lua_State *L, conc_Array *a, size_t i, int idx) {
  Elem e;
  check_elem(L, a, idx, &e);
  store_elem(a, i, &e);
}

/* Element i, read under the lock into e; pushed after it is let go, since
** pushing a 'c' element makes a string, which may raise a memory error. */
static void load_elem(conc_Array *a, size_t i, Elem *e) {
  int is_float = conc__array_is_float(a);
  e->f = is_float ? conc__array_get_float(a, i) : 0;
  e->i = is_float ? 0 : conc__array_get_int(a, i);
}

static void push_elem(lua_State *L, conc_Array *a, const Elem *e) {
  if (conc__array_typecode(a) == 'c') {
    char c = (char)e->i;
    lua_pushlstring(L, &c, 1);
  } else if (conc__array_is_float(a)) {
    lua_pushnumber(L, (lua_Number)e->f);
  } else {
    lua_pushinteger(L, (lua_Integer)e->i);
  }
}

static void lock(lua_State *L, conc_Array *a) {
  conc__check_interrupt(L);
  conc__check_wait(L, conc__array_acquire(a));
}

/* Value(typecode, init=0, lock=true) */
static int l_value_new(lua_State *L) {
  int tc = check_typecode(L, 1);
  conc_Obj *lk;
  conc_Array *a;
  lk = lock_arg(L, 3);
  a = conc__array_new(tc, 1, lk, 1);
  if (lk) conc__obj_decref(lk);  /* the array holds its own */
  conc__pushnew(L, (conc_Obj *)a);
  if (!lua_isnoneornil(L, 2)) set_elem(L, a, 0, 2);
  return 1;
}

/* Array(typecode, size_or_initializer, lock=true) */
static int l_array_new(lua_State *L) {
  int tc = check_typecode(L, 1);
  lua_Integer n = 0;
  conc_Obj *lk;
  conc_Array *a;
  int init = lua_type(L, 2) == LUA_TTABLE ||
             (tc == 'c' && lua_type(L, 2) == LUA_TSTRING);
  if (init) {
    n = (lua_Integer)luaL_len(L, 2);
  } else {
    int isint = 0;
    if (lua_type(L, 2) == LUA_TNUMBER) n = lua_tointegerx(L, 2, &isint);
    if (!isint)
      return conc__raise(L, CONC_ETYPE,
                         "size_or_initializer must be an integer or a "
                         "sequence, not %s", luaL_typename(L, 2));
    if (n < 0) return conc__raise(L, CONC_EVALUE, "array size must be >= 0");
  }
  if ((lua_Unsigned)n > ((size_t)1 << 40))
    return conc__raise(L, CONC_EVALUE, "array too large");
  lk = lock_arg(L, 3);
  a = conc__array_new(tc, (size_t)n, lk, 0);
  if (lk) conc__obj_decref(lk);
  conc__pushnew(L, (conc_Obj *)a);
  if (init && lua_type(L, 2) == LUA_TSTRING) {
    const char *s = lua_tostring(L, 2);
    for (lua_Integer i = 0; i < n; i++)
      conc__array_set_int(a, (size_t)i, (unsigned char)s[i]);
  } else if (init) {
    for (lua_Integer i = 0; i < n; i++) {
      lua_geti(L, 2, i + 1);
      set_elem(L, a, (size_t)i, -1);
      lua_pop(L, 1);
    }
  }
  return 1;
}

/* a[i] for 1 <= i <= #a, else nil for a key of no element; IndexError
** for an integer out of range (Python's) would break ipairs, which stops
** at the first nil. */
static int index_of(lua_State *L, conc_Array *a, int idx, size_t *i) {
  int isint = 0;
  lua_Integer k = lua_tointegerx(L, idx, &isint);
  if (!isint || k < 1 || (lua_Unsigned)k > conc__array_len(a)) return 0;
  *i = (size_t)(k - 1);
  return 1;
}

static int is_value_key(const char *k, size_t len) {
  return len == 5 && memcmp(k, "value", 5) == 0;
}

static int array_index(lua_State *L) {
  conc_Array *a = check_array(L);
  size_t i;
  Elem e;
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t len;
    const char *k = lua_tolstring(L, 2, &len);
    if (is_value_key(k, len) && conc__array_is_value(a)) i = 0;
    else if (conc__getmethod(L, &array_binding, k, len)) return 1;
    else if (strcmp(k, "typecode") == 0) {
      char tc = (char)conc__array_typecode(a);
      lua_pushlstring(L, &tc, 1);
      return 1;
    } else {
      lua_pushnil(L);
      return 1;
    }
  } else if (conc__array_is_value(a) || !index_of(L, a, 2, &i)) {
    lua_pushnil(L);
    return 1;
  }
  lock(L, a);
  load_elem(a, i, &e);
  conc__array_release(a);
  push_elem(L, a, &e);
  return 1;
}

static int array_newindex(lua_State *L) {
  conc_Array *a = check_array(L);
  size_t i, len = 0;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len)
                                                : NULL;
  Elem e;
  if (k && conc__array_is_value(a) && is_value_key(k, len)) {
    i = 0;
  } else if (!conc__array_is_value(a) && index_of(L, a, 2, &i)) {
    /* an element */
  } else if (!conc__array_is_value(a) && lua_type(L, 2) == LUA_TNUMBER) {
    return conc__raise(L, CONC_ERANGE, "invalid index");
  } else {
    return conc__raise(L, CONC_EATTRIBUTE, "'%s' object has no attribute '%s'",
                       conc__array_is_value(a) ? "Value" : "Array",
                       luaL_tolstring(L, 2, NULL));
  }
  check_elem(L, a, 3, &e);  /* may raise: before the lock is taken */
  lock(L, a);
  store_elem(a, i, &e);
  conc__array_release(a);
  return 0;
}

static int array_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__array_len(check_array(L)));
  return 1;
}

static int array_get_lock(lua_State *L) {
  conc_Array *a = check_array(L);
  conc_Obj *lk = conc__array_lock(a);
  if (lk == NULL)
    return conc__raise(L, CONC_EATTRIBUTE, "'%s' object has no attribute "
                       "'get_lock'", ctype_name(conc__array_typecode(a)));
  if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
    conc_Box *box;
    lua_rawgeti(L, -1, 1);
    box = conc__tobox(L, -1);
    lua_pop(L, 1);
    if (box != NULL && box->obj == lk) return 1;
  }
  lua_settop(L, 1);
  conc__pushobj(L, lk);
  if (lua_type(L, 1) == LUA_TUSERDATA) {
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  return 1;
}

/* get_obj(): Python's raw ctypes object; here the same one. */
static int array_get_obj(lua_State *L) {
  check_array(L);
  lua_settop(L, 1);
  return 1;
}

static int array_tostring(lua_State *L) {
  conc_Array *a = check_array(L);
  const char *ct = ctype_name(conc__array_typecode(a));
  const char *wrap = conc__array_lock(a) ? "Synchronized" : NULL;
  if (conc__array_is_value(a)) {
    Elem e;
    lock(L, a);
    load_elem(a, 0, &e);
    conc__array_release(a);
    push_elem(L, a, &e);
    luaL_tolstring(L, -1, NULL);
    if (wrap) lua_pushfstring(L, "<%s wrapper for %s(%s)>", wrap, ct,
                              lua_tostring(L, -2));
    else lua_pushfstring(L, "%s(%s)", ct, lua_tostring(L, -2));
    return 1;
  }
  if (wrap)
    lua_pushfstring(L, "<SynchronizedArray wrapper for %s_Array_%d>", ct,
                    (int)conc__array_len(a));
  else
    lua_pushfstring(L, "%s_Array_%d", ct, (int)conc__array_len(a));
  return 1;
}

static int meta_array(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", array_index}, {"__newindex", array_newindex},
    {"__len", array_len}, {"__tostring", array_tostring},
    {"get_lock", array_get_lock}, {"get_obj", array_get_obj},
    {NULL, NULL}};
  conc__newmeta(L, &array_binding, meta);
  return 0;
}

void conc__open_array(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"Value", l_value_new}, {"Array", l_array_new}, {NULL, NULL}};
  conc__bind(&array_binding);
  luaL_setfuncs(L, fns, 0);
}
