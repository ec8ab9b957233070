/*
** lshared.c -- conc.shared.list and conc.shared.dict seen from Lua, and
** multiprocessing's Manager, whose list, dict and Namespace are the same
** containers in a shared heap (docs/shared.md, docs/multiprocessing.md).
**
** Values go in as one-value messages and come out decoded afresh (for a
** Manager's container, messages naming no conc object: conc__encode_plain
** refuses the others, as an mp.Queue's put does). A value
** that fits inline is encoded into a conc_Val on the C stack and decoded
** from one: a read or write of a small scalar allocates nothing. Anything
** that owns memory while Lua code might raise (a message being decoded, a
** batch being encoded) is handled under lua_pcall, so an error frees it
** before it propagates.
*/
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

/* The kinds, for proxy.c: the containers' proxies are userdata, the
** Manager's a table of bound methods. */
static int meta_list(lua_State *L);
static int meta_dict(lua_State *L);
static int meta_namespace(lua_State *L);
static int meta_manager(lua_State *L);

static conc_Binding list_binding = {.type = &conc__shlist_type, .open = meta_list};
static conc_Binding dict_binding = {.type = &conc__shdict_type, .open = meta_dict};
static conc_Binding ns_binding = {.type = &conc__namespace_type,
                                  .open = meta_namespace};
static conc_Binding manager_binding = {.type = &conc__heap_type,
                                       .open = meta_manager, .bound = 1};

/* Python's proxies fail once their manager is gone: so do these, in every
** process, once it is shut down. */
static int down_error(lua_State *L) {
  return conc__raise(L, CONC_ECONNREFUSED, "the Manager has been shut down");
}

static inline void *check_up(lua_State *L, void *container) {
  if (conc__sh_down(container)) down_error(L);
  return container;
}

static inline conc_ShList *check_list(lua_State *L) {
  return check_up(L, conc__checkobj(L, 1, &conc__shlist_type));
}

static inline conc_ShDict *check_dict_of(lua_State *L, conc_ObjType *type) {
  return check_up(L, conc__checkobj(L, 1, type));
}

static inline conc_ShDict *check_dict(lua_State *L) {
  return check_dict_of(L, &conc__shdict_type);
}

/* Values for another process: what a shared heap's container holds. */
static int list_plain(conc_ShList *l) {
  return conc__sh_shared(l);
}

static int dict_plain(conc_ShDict *d) {
  return conc__sh_shared(d);
}

/* The core's result codes that every call may give. EVALUE: a value naming
** a conc object reached a shared heap by a way the encoder did not check
** (it refuses them first everywhere else). */
static int check_rc(lua_State *L, int rc) {
  if (rc == CONC_ENOMEM) return conc__raise(L, CONC_ENOMEM, NULL);
  if (rc == CONC_EVALUE)
    return conc__raise(L, CONC_EVALUE, "a Manager's containers cannot hold "
                       "conc objects");
  return rc;
}

/* ======================================================================
** Values in and out
** ====================================================================== */

/* The general path: a message, or for plain (another process's) values
** the bytes inline when they fit, and a conc object refused. */
static void encode_any(lua_State *L, int idx, conc_Val *v, int plain) {
  size_t len = sizeof v->inl;
  if (!plain) {
    v->msg = conc__encode(L, idx, 1, NULL);
    return;
  }
  v->msg = conc__encode_plain(L, idx, NULL, v->inl, &len);
  if (v->msg == NULL) v->len = (uint32_t)len;
}

static int encode_p(lua_State *L) {
  conc_Val *v = lua_touserdata(L, 1);
  encode_any(L, 2, v, lua_toboolean(L, 3));
  return 0;
}

/* Encodes the value at idx into v: inline when small, else as a message
** (plain: one for another process). held, a value made before (or NULL),
** is freed if this raises. */
static void encode(lua_State *L, int idx, conc_Val *v, conc_Val *held,
                   int plain) {
  size_t n = conc__encode_small(L, idx, v->inl, sizeof v->inl);
  v->msg = NULL;
  v->len = (uint32_t)n;
  if (n > 0) return;
  if (held == NULL) {
    encode_any(L, idx, v, plain);
    return;
  }
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 4)) {
    conc__val_free(held);
    luaL_error(L, "stack overflow");
  }
  lua_pushcfunction(L, encode_p);
  lua_pushlightuserdata(L, v);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, plain);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    conc__val_free(held);
    lua_error(L);
  }
}

/* Pushes a copy of the value v holds; v stays the caller's. */
static void decode(lua_State *L, const conc_Val *v) {
  if (v->msg)
    conc__decode_bytes(L, v->msg->data, v->msg->len, v->msg->objs,
                       v->msg->nobjs);
  else
    conc__decode_bytes(L, v->inl, v->len, NULL, 0);
}

/* Pushes the value v holds and frees v. */
static int push_value(lua_State *L, conc_Val *v) {
  conc_Msg *m = v->msg;
  if (m == NULL) {  /* nothing to free: no pcall on the fast path */
    decode(L, v);
    return 1;
  }
  v->msg = NULL;
  conc__decode_free(L, m);
  return 1;
}

/* What a snapshot becomes: a sequence of the values, a sequence of
** {key, value} pairs, or a table key -> value. */
enum { AS_SEQ, AS_ITEMS, AS_MAP };

typedef struct Batch {
  conc_Val *v;
  size_t n;
  int shape;
  int plain;    /* gather: values for a shared heap */
} Batch;

static int snapshot_p(lua_State *L) {
  Batch *b = lua_touserdata(L, 1);
  size_t per = b->shape == AS_SEQ ? 1 : 2, n = b->n / per;
  lua_createtable(L, b->shape == AS_MAP ? 0 : (int)n,
                  b->shape == AS_MAP ? (int)n : 0);
  for (size_t i = 0; i < n; i++) {
    if (b->shape == AS_SEQ) {
      decode(L, &b->v[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
      continue;
    }
    if (b->shape == AS_ITEMS) lua_createtable(L, 2, 0);
    decode(L, &b->v[2 * i]);
    decode(L, &b->v[2 * i + 1]);
    if (b->shape == AS_MAP) {
      lua_rawset(L, -3);
    } else {
      lua_rawseti(L, -3, 2);
      lua_rawseti(L, -2, 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  }
  return 1;
}

/* Pushes a snapshot (n values from the core, freed here) as a table. */
static int push_snapshot(lua_State *L, int rc, conc_Val *v, size_t n,
                         int shape) {
  Batch b = {v, n, shape, 0};
  check_rc(L, rc);
  lua_pushcfunction(L, snapshot_p);
  lua_pushlightuserdata(L, &b);
  rc = lua_pcall(L, 1, 1, 0);
  conc__vals_free(v, n);
  if (rc != LUA_OK) lua_error(L);
  return 1;
}

/* Pushes a list's or dict's snapshot as a table of the given shape. */
static int list_snapshot(lua_State *L, conc_ShList *l) {
  conc_Val *v = NULL;
  size_t n = 0;
  int rc = conc__shlist_snapshot(l, &v, &n);
  return push_snapshot(L, rc, v, n, AS_SEQ);
}

static int dict_snapshot(lua_State *L, conc_ShDict *d, int which, int shape) {
  conc_Val *v = NULL;
  size_t n = 0;
  int rc = conc__shdict_snapshot(d, which, &v, &n);
  return push_snapshot(L, rc, v, n, shape);
}

/* ======================================================================
** Batches: many values encoded before one atomic call takes them all
** ====================================================================== */

static conc_Val *batch_alloc(lua_State *L, Batch *b, lua_Integer n) {
  if (n < 0 || (lua_Unsigned)n > SIZE_MAX / sizeof *b->v / 2 - 1)
    conc__raise(L, CONC_ENOMEM, NULL);
  b->v = malloc(((size_t)n + 1) * sizeof *b->v);
  if (b->v == NULL) conc__raise(L, CONC_ENOMEM, NULL);
  return b->v;
}

static void no_nil(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx))
    conc__raise(L, CONC_EVALUE,
                "a shared.list cannot hold nil (remove items with pop)");
}

/* Under pcall: the items 1..#t of the table at 2 into the batch at 1. */
static int seq_p(lua_State *L) {
  Batch *b = lua_touserdata(L, 1);
  lua_Integer n = luaL_len(L, 2);
  batch_alloc(L, b, n);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    no_nil(L, -1);
    encode(L, -1, &b->v[b->n], NULL, b->plain);
    b->n++;
    lua_pop(L, 1);
  }
  return 0;
}

static int check_key(lua_State *L, int idx, int t);

/* Under pcall: the pairs of the table at 2, key then value, into the batch
** at 1 (raw: a table's own contents, as Python's dict(mapping) reads). */
static int map_p(lua_State *L) {
  Batch *b = lua_touserdata(L, 1);
  lua_Integer n = 0;
  int top;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pop(L, 1);
    n++;
  }
  batch_alloc(L, b, 2 * n);
  lua_pushnil(L);
  top = lua_gettop(L);
  while (lua_next(L, 2)) {
    int k = check_key(L, top, lua_type(L, top));
    encode(L, k, &b->v[b->n], NULL, 0);  /* a key: plain */
    b->n++;
    encode(L, top + 1, &b->v[b->n], NULL, b->plain);
    b->n++;
    lua_settop(L, top);
  }
  return 0;
}

static int list_snapshot(lua_State *L, conc_ShList *l);
static int dict_snapshot(lua_State *L, conc_ShDict *d, int which, int shape);

/* Encodes the values a list or dict is made from (the table or shared
** container at idx) into b; plain: for a shared heap. Returns 0 when idx
** holds none (nil), 1 when b holds the values; raises for anything else.
** A thread container's values may name conc objects: for a shared heap
** they are read as a table and encoded again, which refuses those. */
static int gather(lua_State *L, int idx, Batch *b, int dict, int plain) {
  conc_Obj *o = conc__toobj(L, idx);
  int rc;
  b->v = NULL;
  b->n = 0;
  b->plain = plain;
  if (lua_isnoneornil(L, idx)) return 0;
  if (o && !dict && o->type == &conc__shlist_type) {
    conc_ShList *from = (conc_ShList *)o;
    check_up(L, from);
    if (plain && !list_plain(from)) {
      list_snapshot(L, from);
      lua_replace(L, idx);
      return gather(L, idx, b, dict, plain);
    }
    check_rc(L, conc__shlist_snapshot(from, &b->v, &b->n));
    return 1;
  }
  if (o && dict && (o->type == &conc__shdict_type ||
                    o->type == &conc__namespace_type)) {
    conc_ShDict *from = (conc_ShDict *)o;
    check_up(L, from);
    if (plain && !dict_plain(from)) {
      dict_snapshot(L, from, CONC_SH_KEYS | CONC_SH_VALUES, AS_MAP);
      lua_replace(L, idx);
      return gather(L, idx, b, dict, plain);
    }
    check_rc(L, conc__shdict_snapshot(from, CONC_SH_KEYS | CONC_SH_VALUES,
                                      &b->v, &b->n));
    return 1;
  }
  if (!lua_istable(L, idx))
    return conc__raise(L, CONC_ETYPE,
                       "expected a table or a shared.%s, got %s",
                       dict ? "dict" : "list", luaL_typename(L, idx));
  lua_pushcfunction(L, dict ? map_p : seq_p);
  lua_pushlightuserdata(L, b);
  lua_pushvalue(L, idx);
  rc = lua_pcall(L, 2, 0, 0);
  if (rc != LUA_OK) {
    conc__vals_free(b->v, b->n);
    lua_error(L);
  }
  return 1;
}

/* Hands a batch to the core (rc its result), then frees what is left. */
static void batch_done(lua_State *L, Batch *b, int rc) {
  conc__vals_free(b->v, b->n);
  check_rc(L, rc);
}

/* ======================================================================
** list
** ====================================================================== */

/* A new list in heap h, from the sequence or list at 1 (or none). */
static int list_new(lua_State *L, conc_Heap *h) {
  Batch b;
  conc_ShList *l;
  int rc;
  gather(L, 1, &b, 0, conc__heap_shared(h));
  l = conc__shlist_new(h);
  rc = l ? conc__shlist_insert(l, INT64_MAX, b.v, b.n) : CONC_ENOMEM;
  if (rc != 0 && l) conc__obj_decref((conc_Obj *)l);
  batch_done(L, &b, rc);
  return conc__pushnew(L, (conc_Obj *)l);
}

static int l_list_new(lua_State *L) {
  return list_new(L, &conc__heap_private);
}

/* The index at idx: an integer, or a float with an integral value. */
static lua_Integer check_index(lua_State *L, int idx) {
  int isnum = 0;
  lua_Integer i = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) i = lua_tointegerx(L, idx, &isnum);
  if (!isnum)
    conc__raise(L, CONC_ETYPE, "list indices must be integers, not %s",
                lua_type(L, idx) == LUA_TNUMBER ? "float"
                                                : luaL_typename(L, idx));
  return i;
}

static int list_index_mm(lua_State *L) {
  conc_ShList *l = check_list(L);
  conc_Val v;
  int rc;
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t len;
    const char *k = lua_tolstring(L, 2, &len);
    if (!conc__getmethod(L, &list_binding, k, len))
      lua_pushnil(L);  /* l.append */
    return 1;
  }
  rc = check_rc(L, conc__shlist_get(l, check_index(L, 2), &v));
  if (rc == CONC_ERANGE) {
    lua_pushnil(L);
    return 1;
  }
  return push_value(L, &v);
}

static int list_newindex(lua_State *L) {
  conc_ShList *l = check_list(L);
  lua_Integer i = check_index(L, 2);
  conc_Val v;
  int rc;
  no_nil(L, 3);
  encode(L, 3, &v, NULL, list_plain(l));
  rc = conc__shlist_set(l, i, &v);
  conc__val_free(&v);
  if (check_rc(L, rc) == CONC_ERANGE)
    return conc__raise(L, CONC_ERANGE, "list assignment index out of range");
  return 0;
}

static int list_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__shlist_len(check_list(L)));
  return 1;
}

/* Inserts the value at idx before item i (INT64_MAX: at the end). */
static int insert_value(lua_State *L, conc_ShList *l, lua_Integer i, int idx) {
  conc_Val v;
  int rc;
  no_nil(L, idx);
  encode(L, idx, &v, NULL, list_plain(l));
  rc = conc__shlist_insert(l, i, &v, 1);
  conc__val_free(&v);
  check_rc(L, rc);
  return 0;
}

static int list_append(lua_State *L) {
  return insert_value(L, check_list(L), INT64_MAX, 2);
}

static int list_insert(lua_State *L) {
  conc_ShList *l = check_list(L);
  return insert_value(L, l, luaL_checkinteger(L, 2), 3);
}

static int list_extend(lua_State *L) {
  conc_ShList *l = check_list(L);
  Batch b;
  if (!gather(L, 2, &b, 0, list_plain(l)))
    return conc__raise(L, CONC_ETYPE, "expected a table or a shared.list, "
                       "got %s", luaL_typename(L, 2));
  batch_done(L, &b, conc__shlist_insert(l, INT64_MAX, b.v, b.n));
  return 0;
}

static int list_pop(lua_State *L) {
  conc_ShList *l = check_list(L);
  conc_Val v;
  int rc = conc__shlist_pop(l, luaL_optinteger(L, 2, -1), &v);
  if (rc == CONC_ERANGE)
    return conc__raise(L, CONC_ERANGE, "pop index out of range");
  if (rc != CONC_OK) return conc__raise(L, rc, NULL);
  return push_value(L, &v);
}

/*
** The value at 2 as what to look for: its message, and for a number with
** an integral value also the other of its integer and float forms, so that
** 1 finds 1.0 as Lua's == does. Returns how many (the caller frees them).
*/
static int needles(lua_State *L, conc_Val *needle) {
  int isnum = 0, n = 1;
  luaL_checkany(L, 2);
  encode(L, 2, &needle[0], NULL, 0);
  if (lua_type(L, 2) != LUA_TNUMBER) return 1;
  if (lua_isinteger(L, 2)) {
    lua_Integer i = lua_tointeger(L, 2);
    lua_Number x = (lua_Number)i;
    if (x >= -(lua_Number)LUA_MININTEGER || (lua_Integer)x != i) return 1;
    lua_pushnumber(L, x);
  } else {
    lua_Integer i = lua_tointegerx(L, 2, &isnum);
    if (!isnum) return 1;
    lua_pushinteger(L, i);
  }
  encode(L, -1, &needle[n++], NULL, 0);  /* a number: small, cannot raise */
  lua_pop(L, 1);
  return n;
}

static void free_needles(conc_Val *needle, int n) {
  for (int i = 0; i < n; i++) conc__val_free(&needle[i]);
}

static int not_in_list(lua_State *L, const char *what) {
  return conc__raise(L, CONC_EVALUE, what, luaL_tolstring(L, 2, NULL));
}

static int list_index(lua_State *L) {
  conc_ShList *l = check_list(L);
  conc_Val needle[2];
  int n = needles(L, needle);
  int64_t at = conc__shlist_index(l, needle, n);
  free_needles(needle, n);
  if (at == 0) return not_in_list(L, "%s is not in list");
  lua_pushinteger(L, at);
  return 1;
}

static int list_count(lua_State *L) {
  conc_ShList *l = check_list(L);
  conc_Val needle[2];
  int n = needles(L, needle);
  size_t count = conc__shlist_count(l, needle, n);
  free_needles(needle, n);
  lua_pushinteger(L, (lua_Integer)count);
  return 1;
}

static int list_remove(lua_State *L) {
  conc_ShList *l = check_list(L);
  conc_Val needle[2];
  int n = needles(L, needle);
  int rc = conc__shlist_remove(l, needle, n);
  free_needles(needle, n);
  if (rc == CONC_ENOTFOUND)
    return not_in_list(L, "list.remove(x): %s not in list");
  return 0;
}

static int list_clear(lua_State *L) {
  conc__shlist_clear(check_list(L));
  return 0;
}

static int list_copy(lua_State *L) {
  return list_snapshot(L, check_list(L));
}

/* for i, v in pairs(l): over a snapshot taken when the loop starts */
static int seq_next(lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, 2) + 1;
  if (lua_rawgeti(L, 1, i) == LUA_TNIL) return 0;
  lua_pushinteger(L, i);
  lua_insert(L, -2);
  return 2;
}

static int list_pairs(lua_State *L) {
  conc_ShList *l = check_list(L);
  lua_pushcfunction(L, seq_next);
  list_snapshot(L, l);
  lua_pushinteger(L, 0);
  return 3;
}

/* ======================================================================
** dict
** ====================================================================== */

/* The key at idx (of type t), checked, as the dict stores it: a float with
** an integral value becomes that integer, as a Lua table's key does (pushed,
** and its index returned). Strings, numbers and booleans only. */
static int check_key(lua_State *L, int idx, int t) {
  int isint = 0;
  lua_Integer i;
  if (t == LUA_TSTRING || t == LUA_TBOOLEAN) return idx;
  if (t != LUA_TNUMBER)
    return conc__raise(L, CONC_ETYPE, "unhashable type: '%s'",
                       luaL_typename(L, idx));
  if (lua_isinteger(L, idx)) return idx;
  if (lua_tonumber(L, idx) != lua_tonumber(L, idx))
    return conc__raise(L, CONC_EVALUE, "a shared.dict key cannot be NaN");
  i = lua_tointegerx(L, idx, &isint);
  if (!isint) return idx;
  lua_pushinteger(L, i);
  return lua_gettop(L);
}

/* Keys are plain values: they always encode inline or without raising.
** A string key is the common case: it needs no check, and one that fits
** inline (most do) skips encode's general path. */
static void encode_key_t(lua_State *L, int idx, int t, conc_Val *key) {
  if (t == LUA_TSTRING) {
    key->msg = NULL;
    key->len = (uint32_t)conc__encode_small(L, idx, key->inl,
                                            sizeof key->inl);
    if (key->len > 0) return;
  }
  encode(L, check_key(L, idx, t), key, NULL, 0);
}

static void encode_key(lua_State *L, int idx, conc_Val *key) {
  encode_key_t(L, idx, lua_type(L, idx), key);
}

static int key_error(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING)
    return conc__raise(L, CONC_EKEY, "'%s'", lua_tostring(L, idx));
  return conc__raise(L, CONC_EKEY, "%s", luaL_tolstring(L, idx, NULL));
}

/* A new dict of the kind type in heap h, from the table or dict at 1. */
static int dict_new(lua_State *L, conc_Heap *h, conc_ObjType *type) {
  Batch b;
  conc_ShDict *d;
  int rc;
  gather(L, 1, &b, 1, conc__heap_shared(h));
  d = conc__shdict_new(h, type);
  rc = d ? conc__shdict_update(d, b.v, b.n / 2) : CONC_ENOMEM;
  if (rc != 0 && d) conc__obj_decref((conc_Obj *)d);
  batch_done(L, &b, rc);
  return conc__pushnew(L, (conc_Obj *)d);
}

static int l_dict_new(lua_State *L) {
  return dict_new(L, &conc__heap_private, &conc__shdict_type);
}

/* Pushes d[key at 2] (of type t), or the value at dflt (0: nil) when
** absent. */
static int get_or(lua_State *L, conc_ShDict *d, int t, int dflt) {
  conc_Val key, v;
  int rc;
  encode_key_t(L, 2, t, &key);
  rc = conc__shdict_get(d, &key, &v);
  conc__val_free(&key);
  if (check_rc(L, rc) == 0) return push_value(L, &v);
  if (dflt) lua_pushvalue(L, dflt);
  else lua_pushnil(L);
  return 1;
}

static int dict_index_mm(lua_State *L) {
  conc_ShDict *d = check_dict(L);
  /* method names win over keys: d.keys (d:get("keys") reads the key) */
  int t = lua_type(L, 2);
  if (t == LUA_TSTRING) {
    size_t len;
    const char *k = lua_tolstring(L, 2, &len);
    if (conc__getmethod(L, &dict_binding, k, len)) return 1;
  }
  return get_or(L, d, t, 0);
}

/* d[k] = v (the key at 2, the value at 3); nil removes k */
static int dict_store(lua_State *L, conc_ShDict *d) {
  conc_Val key, v;
  int rc;
  encode_key(L, 2, &key);
  if (lua_isnil(L, 3)) {
    rc = conc__shdict_pop(d, &key, &v);
    conc__val_free(&key);
    if (rc == 0) conc__val_free(&v);
    return 0;
  }
  encode(L, 3, &v, &key, dict_plain(d));
  rc = conc__shdict_set(d, &key, &v);
  conc__val_free(&key);  /* what the call did not keep */
  conc__val_free(&v);
  check_rc(L, rc);
  return 0;
}

static int dict_newindex(lua_State *L) {
  return dict_store(L, check_dict(L));
}

static int dict_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__shdict_len(check_dict(L)));
  return 1;
}

static int dict_get(lua_State *L) {
  conc_ShDict *d = check_dict(L);
  luaL_checkany(L, 2);
  return get_or(L, d, lua_type(L, 2), lua_gettop(L) >= 3 ? 3 : 0);
}

/* d:setdefault(k, default): d[k], set to default first when absent (a nil
** default sets nothing: a dict cannot hold nil) */
static int dict_setdefault(lua_State *L) {
  conc_ShDict *d = check_dict(L);
  conc_Val key, v, out;
  int rc;
  luaL_checkany(L, 2);
  if (lua_isnoneornil(L, 3)) return get_or(L, d, lua_type(L, 2), 0);
  encode_key(L, 2, &key);
  encode(L, 3, &v, &key, dict_plain(d));
  rc = conc__shdict_setdefault(d, &key, &v, &out);
  if (rc != 0) {
    conc__val_free(&key);
    conc__val_free(&v);
    check_rc(L, rc);
  }
  return push_value(L, &out);
}

static int dict_update(lua_State *L) {
  conc_ShDict *d = check_dict(L);
  Batch b;
  if (gather(L, 2, &b, 1, dict_plain(d)))
    batch_done(L, &b, conc__shdict_update(d, b.v, b.n / 2));
  return 0;
}

/* d:pop(k[, default]): removes and returns d[k]; KeyError when absent and
** no default was given (an explicit nil is a default) */
static int dict_pop(lua_State *L) {
  conc_ShDict *d = check_dict(L);
  conc_Val key, v;
  int rc, has_default = lua_gettop(L) >= 3;
  luaL_checkany(L, 2);
  encode_key(L, 2, &key);
  rc = conc__shdict_pop(d, &key, &v);
  conc__val_free(&key);
  if (rc == 0) return push_value(L, &v);
  if (!has_default) return key_error(L, 2);
  lua_pushvalue(L, 3);
  return 1;
}

static int dict_keys(lua_State *L) {
  return dict_snapshot(L, check_dict(L), CONC_SH_KEYS, AS_SEQ);
}

static int dict_values(lua_State *L) {
  return dict_snapshot(L, check_dict(L), CONC_SH_VALUES, AS_SEQ);
}

static int dict_items(lua_State *L) {
  return dict_snapshot(L, check_dict(L), CONC_SH_KEYS | CONC_SH_VALUES,
                       AS_ITEMS);
}

static int dict_clear(lua_State *L) {
  conc__shdict_clear(check_dict(L));
  return 0;
}

static int dict_copy(lua_State *L) {
  return dict_snapshot(L, check_dict(L), CONC_SH_KEYS | CONC_SH_VALUES,
                       AS_MAP);
}

/* The iterator of pairs(d): upvalue 1 holds the snapshot as a sequence
** k1, v1, k2, v2, ... (insertion order), upvalue 2 the position. */
static int flat_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  if (lua_rawgeti(L, lua_upvalueindex(1), i + 1) == LUA_TNIL) return 0;
  lua_rawgeti(L, lua_upvalueindex(1), i + 2);
  lua_pushinteger(L, i + 2);
  lua_replace(L, lua_upvalueindex(2));
  return 2;
}

static int pairs_of(lua_State *L, conc_ShDict *d) {
  dict_snapshot(L, d, CONC_SH_KEYS | CONC_SH_VALUES, AS_SEQ);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, flat_next, 2);
  return 1;
}

static int dict_pairs(lua_State *L) {
  return pairs_of(L, check_dict(L));
}

/* ======================================================================
** Namespace: a Manager's dict whose keys are attributes (ns.x = 1)
** ====================================================================== */

static conc_ShDict *check_ns(lua_State *L) {
  return check_dict_of(L, &conc__namespace_type);
}

/* ns.x: the value, nil when absent (no method hides a key) */
static int ns_index(lua_State *L) {
  conc_ShDict *d = check_ns(L);
  return get_or(L, d, lua_type(L, 2), 0);
}

static int ns_newindex(lua_State *L) {
  return dict_store(L, check_ns(L));
}

static int ns_pairs(lua_State *L) {
  return pairs_of(L, check_ns(L));
}

/* Python's repr: Namespace(a=1, b='x'), the fields sorted. */
static int ns_tostring(lua_State *L) {
  conc_ShDict *d = check_ns(L);
  luaL_Buffer buf;
  lua_Integer n;
  lua_settop(L, 1);
  dict_snapshot(L, d, CONC_SH_KEYS | CONC_SH_VALUES, AS_ITEMS);
  n = luaL_len(L, -1);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {  /* 2: the items, 3: the fields */
    const char *k, *v;
    lua_geti(L, 2, i);
    lua_geti(L, 4, 1);
    k = luaL_tolstring(L, 5, NULL);
    lua_geti(L, 4, 2);
    if (lua_type(L, 7) == LUA_TSTRING) {
      lua_pushfstring(L, "%s='%s'", k, lua_tostring(L, 7));
    } else {
      v = luaL_tolstring(L, 7, NULL);
      lua_pushfstring(L, "%s=%s", k, v);
    }
    lua_seti(L, 3, i);
    lua_settop(L, 3);
  }
  conc__require(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, 3);
  lua_call(L, 1, 0);
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, "Namespace(");
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&buf, ", ");
    lua_geti(L, 3, i);
    luaL_addvalue(&buf);
  }
  luaL_addchar(&buf, ')');
  luaL_pushresult(&buf);
  return 1;
}

/* ======================================================================
** Manager: a shared heap, and the containers in it
** ====================================================================== */

static conc_Heap *check_manager(lua_State *L) {
  conc_Heap *h = (conc_Heap *)conc__checkbound(L, 1, &conc__heap_type);
  if (conc__heap_down(h)) down_error(L);
  return h;
}

/* core._shared_hold(c): takes c's lock for good (tests only: a process
** that dies holding it, deterministically) */
static int l_hold(lua_State *L) {
  conc_Obj *o = conc__toobj(L, 1);
  luaL_argcheck(L, o && (o->type == &conc__shlist_type ||
                         o->type == &conc__shdict_type ||
                         o->type == &conc__namespace_type), 1,
                "a shared list or dict expected");
  conc__sh_hold(o);
  return 0;
}

static int l_manager_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__heap_new());
}

static int manager_dict(lua_State *L) {
  conc_Heap *h = check_manager(L);
  lua_remove(L, 1);
  return dict_new(L, h, &conc__shdict_type);
}

static int manager_list(lua_State *L) {
  conc_Heap *h = check_manager(L);
  lua_remove(L, 1);
  return list_new(L, h);
}

static int manager_namespace(lua_State *L) {
  conc_Heap *h = check_manager(L);
  lua_settop(L, 0);
  return dict_new(L, h, &conc__namespace_type);
}

/* start(): a Manager is running from the start (Python's Manager() is
** started too); returns it, for `m = Manager(); m.start()` habits */
static int manager_start(lua_State *L) {
  check_manager(L);
  lua_settop(L, 1);
  return 1;
}

/* shutdown(), and __close: every process's containers of this Manager fail
** from now on; called from another process than the one that made it
** (a child), nothing happens, as in Python */
static int manager_shutdown(lua_State *L) {
  conc__heap_shutdown((conc_Heap *)conc__checkbound(L, 1, &conc__heap_type));
  return 0;
}

/* The synchronization objects and queues a Manager makes are
** multiprocessing's own, which live in shared memory already: each method
** calls the module's function of the same name with its arguments. */
static int forward(lua_State *L, const char *name) {
  int nargs;
  check_manager(L);
  nargs = lua_gettop(L) - 1;
  conc__require(L, "conc.multiprocessing");
  lua_getfield(L, -1, name);
  lua_replace(L, 1);
  lua_pop(L, 1);
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L);
}

#define FORWARD(fn, name) \
  static int fn(lua_State *L) { return forward(L, name); }
FORWARD(manager_queue, "Queue")
FORWARD(manager_joinable, "JoinableQueue")
FORWARD(manager_lock, "Lock")
FORWARD(manager_rlock, "RLock")
FORWARD(manager_semaphore, "Semaphore")
FORWARD(manager_bounded, "BoundedSemaphore")
FORWARD(manager_condition, "Condition")
FORWARD(manager_event, "Event")
FORWARD(manager_barrier, "Barrier")
FORWARD(manager_value, "Value")
FORWARD(manager_array, "Array")

/* ======================================================================
** Registration
** ====================================================================== */

static int meta_list(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", list_index_mm}, {"__newindex", list_newindex},
    {"__len", list_len}, {"__pairs", list_pairs},
    {"append", list_append}, {"extend", list_extend},
    {"insert", list_insert}, {"pop", list_pop}, {"remove", list_remove},
    {"index", list_index}, {"count", list_count}, {"clear", list_clear},
    {"copy", list_copy}, {NULL, NULL}};
  conc__newmeta(L, &list_binding, meta);
  return 0;
}

static int meta_dict(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", dict_index_mm}, {"__newindex", dict_newindex},
    {"__len", dict_len}, {"__pairs", dict_pairs},
    {"get", dict_get}, {"setdefault", dict_setdefault},
    {"update", dict_update}, {"pop", dict_pop}, {"keys", dict_keys},
    {"values", dict_values}, {"items", dict_items}, {"clear", dict_clear},
    {"copy", dict_copy}, {NULL, NULL}};
  conc__newmeta(L, &dict_binding, meta);
  return 0;
}

static int meta_namespace(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", ns_index}, {"__newindex", ns_newindex},
    {"__pairs", ns_pairs}, {"__tostring", ns_tostring}, {NULL, NULL}};
  conc__newmeta(L, &ns_binding, meta);
  return 0;
}

static int meta_manager(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"dict", manager_dict}, {"list", manager_list},
    {"Namespace", manager_namespace}, {"start", manager_start},
    {"shutdown", manager_shutdown}, {"__close", manager_shutdown},
    {"Queue", manager_queue}, {"JoinableQueue", manager_joinable},
    {"Lock", manager_lock}, {"RLock", manager_rlock},
    {"Semaphore", manager_semaphore}, {"BoundedSemaphore", manager_bounded},
    {"Condition", manager_condition}, {"Event", manager_event},
    {"Barrier", manager_barrier}, {"Value", manager_value},
    {"Array", manager_array}, {NULL, NULL}};
  conc__newmeta(L, &manager_binding, meta);
  return 0;
}

void conc__open_shared(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"shared_list", l_list_new}, {"shared_dict", l_dict_new},
    {"Manager", l_manager_new}, {"_shared_hold", l_hold}, {NULL, NULL}};
  conc__bind(&list_binding);
  conc__bind(&dict_binding);
  conc__bind(&ns_binding);
  conc__bind(&manager_binding);
  luaL_setfuncs(L, fns, 0);
}
