/*
** encode.c -- values of one lua_State as wire bytes (wire.h has the format).
**
** Three ways in, one set of writers: the general encoder (any value, ids
** for shared references, paths in its errors, under a pcall), the record's
** path (a flat table straight into a 256-byte buffer) and the scalar's
** (one plain value into the caller's buffer). The last two skip the
** general encoder's state, which takes several kilobytes to set up; all
** three turn a Lua scalar into bytes through put_scalar.
*/
#include <stdlib.h>
#include <string.h>

#include "lconc.h"
#include "names.h"
#include "wire.h"

#define MAP_INLINE 128  /* entries of the pointer map kept in the Enc itself */

static const char DUMPS_KEY = 'd';  /* registry, weak: function -> bytecode
                                       and its hash */

/* ======================================================================
** Scalars, for every path
** ====================================================================== */

/*
** The one place a Lua scalar (nil, boolean, number, string) becomes its
** tag: writes the value at idx at p when its bytes fit in room, and returns
** how many they are, written or not; 0 when the value is no scalar. As a
** table key (key), a short string is KSTR. Exact, so that a message that
** fits a buffer to the byte goes there.
*/
static size_t put_scalar(lua_State *L, int idx, int key, unsigned char *p,
                         size_t room) {
  size_t n, len;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      if (room >= 1) wire_put_nil(p);
      return 1;
    case LUA_TBOOLEAN:
      if (room >= 1) wire_put_bool(p, lua_toboolean(L, idx));
      return 1;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        n = wire_int_size(i);
        if (room >= n) wire_put_int(p, i);
        return n;
      }
      if (room >= WIRE_FLOAT_SIZE) wire_put_float(p, lua_tonumber(L, idx));
      return WIRE_FLOAT_SIZE;
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &len);
      n = wire_str_size(len);
      if (room >= n) wire_put_str(p, s, len, key);
      return n;
    default:
      return 0;
  }
}

/* put_scalar for the paths with a fixed buffer, which ends at end: advances
** *p; 0 when the value is no scalar or does not fit. */
static int put_fixed(lua_State *L, int idx, int key, unsigned char **p,
                     unsigned char *end) {
  size_t room = (size_t)(end - *p), n = put_scalar(L, idx, key, *p, room);
  if (n == 0 || n > room) return 0;
  *p += n;
  return 1;
}

/* Is the key at idx in 1..narr, the array part a table's walk wrote
** first? (A record has no array: one test.) */
static int in_array(lua_State *L, int idx, lua_Integer narr) {
  lua_Integer k;
  if (narr == 0 || !lua_isinteger(L, idx)) return 0;
  k = lua_tointeger(L, idx);
  return k >= 1 && k <= narr;
}

/* ======================================================================
** The general encoder
** ====================================================================== */

typedef struct PathSeg {
  int kind;       /* 'k' key at stack index idx, 'i' array index i,
                     'u' upvalue name, 'm' meta, 'K' a key itself */
  int idx;
  lua_Integer i;
  const char *name;
} PathSeg;

typedef struct Enc {
  lua_State *L;
  char *buf;
  size_t len, cap;
  conc_Obj **objs;
  unsigned nobjs, capobjs;
  int nseen;     /* ids given so far */
  int backrefs;  /* a REF, UPVAL or FUNC was written: the header says 'C' */
  int names;     /* stack index of the named-value index, 0 until needed */
  int depth;
  const char *root;
  /* What has an id, by address (see the map below): tables, functions,
  ** userdata (lua_topointer), short string keys (their bytes), upvalue
  ** cells (lua_upvalueid). These are distinct objects, so their addresses
  ** never collide, and all stay alive while the value is encoded. */
  size_t mapcap, mapn;     /* 0 until the first entry */
  const void **mapkeys;
  uint64_t *mapvals;
  const void *inlkeys[MAP_INLINE];
  uint64_t inlvals[MAP_INLINE];
  PathSeg path[WIRE_MAX_DEPTH + 2];
  char inl[256]; /* small messages never touch the heap until the end */
} Enc;

/* No buffers of its own: the inline ones, empty. */
static void enc_empty(Enc *e) {
  e->buf = e->inl;
  e->len = 0;
  e->cap = sizeof e->inl;
  e->objs = NULL;
  e->nobjs = e->capobjs = 0;
  e->mapcap = e->mapn = 0;
  e->mapkeys = NULL;
  e->mapvals = NULL;
}

static void enc_init(Enc *e, lua_State *L) {
  e->L = L;
  e->nseen = e->names = e->depth = e->backrefs = 0;
  e->root = "value";
  enc_empty(e);
}

/* Safe to call twice: an out-of-memory error releases before it raises, and
** conc__encode releases again when the error reaches it. */
static void enc_release(Enc *e) {
  if (e->buf != e->inl) free(e->buf);
  free(e->objs);
  if (e->mapkeys != e->inlkeys) {
    free(e->mapkeys);
    free(e->mapvals);
  }
  enc_empty(e);
}

static int enc_nomem(Enc *e) {
  enc_release(e);
  return conc__raise(e->L, CONC_ENOMEM, NULL);
}

/* Makes room for n more bytes; out of line, so that enc_room's check
** inlines. */
static void enc_grow(Enc *e, size_t n) {
  size_t cap;
  char *nb;
  cap = e->cap * 2;
  while (cap < e->len + n) cap *= 2;
  if (e->buf == e->inl) {
    nb = malloc(cap);
    if (nb) memcpy(nb, e->inl, e->len);
  } else {
    nb = realloc(e->buf, cap);
  }
  if (nb == NULL) enc_nomem(e);
  e->buf = nb;
  e->cap = cap;
}

/* Where a writer of wire.h writes next, with room for n bytes; enc_done
** takes the end it returns. */
static inline unsigned char *enc_room(Enc *e, size_t n) {
  if (e->cap - e->len < n) enc_grow(e, n);
  return (unsigned char *)e->buf + e->len;
}

static inline void enc_done(Enc *e, unsigned char *end) {
  e->len = (size_t)((char *)end - e->buf);
}

static void enc_bytes(Enc *e, const void *p, size_t n) {
  memcpy(enc_room(e, n), p, n);
  e->len += n;
}

/* Writes the scalar at idx and returns 1, or returns 0 for any other value. */
static int enc_scalar(Enc *e, int idx, int key) {
  size_t room = e->cap - e->len;
  size_t n = put_scalar(e->L, idx, key, (unsigned char *)e->buf + e->len, room);
  if (n > room)  /* a string longer than the room left: grow, then write */
    put_scalar(e->L, idx, key, enc_room(e, n), n);
  e->len += n;
  return n > 0;
}

/* Writes the path to the value being encoded, e.g. args[2].conn, and raises
** "PATH: cannot transfer WHAT". A path of more than PATH_KEEP * 2 + 4 steps
** (a long linked list, say) keeps its ends: value.next.next<184 more
** levels>.next.next. */
#define PATH_KEEP 8

static int enc_error(Enc *e, const char *what) {
  lua_State *L = e->L;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, e->root);
  for (int i = 0; i < e->depth; i++) {
    PathSeg *s = &e->path[i];
    if (i == PATH_KEEP && e->depth > PATH_KEEP * 2 + 4) {
      lua_pushfstring(L, "<%d more levels>", e->depth - PATH_KEEP * 2);
      luaL_addvalue(&b);
      i = e->depth - PATH_KEEP - 1;
      continue;
    }
    if (s->kind == 'i') {
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)s->i);
      luaL_addvalue(&b);
    } else if (s->kind == 'u') {
      luaL_addstring(&b, "<upvalue ");
      luaL_addstring(&b, s->name[0] ? s->name : "?");
      luaL_addchar(&b, '>');
    } else if (s->kind == 'm') {
      luaL_addstring(&b, "<metatable>");
    } else if (s->kind == 'K') {
      luaL_addstring(&b, "<key>");
    } else {
      int t = lua_type(L, s->idx);
      size_t n;
      const char *k;
      if (t == LUA_TSTRING) {
        int ident = 1;
        k = lua_tolstring(L, s->idx, &n);
        for (size_t j = 0; j < n; j++) {
          char c = k[j];
          if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                (j > 0 && c >= '0' && c <= '9')))
            ident = 0;
        }
        if (ident && n > 0) {
          luaL_addchar(&b, '.');
          luaL_addlstring(&b, k, n);
          continue;
        }
        lua_pushfstring(L, "[\"%s\"]", k);
      } else if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
        luaL_tolstring(L, s->idx, NULL);
        lua_pushfstring(L, "[%s]", lua_tostring(L, -1));
        lua_remove(L, -2);
      } else {
        lua_pushfstring(L, "[%s]", luaL_typename(L, s->idx));
      }
      /* the pushed piece sits above the buffer; luaL_addvalue expects that */
      luaL_addvalue(&b);
    }
  }
  luaL_pushresult(&b);
  return luaL_error(L, "%s: cannot transfer %s", lua_tostring(L, -1), what);
}

static void enc_value(Enc *e, int idx);

/*
** The encoder's map from an address to an id: open addressing, linear
** probing, kept at most half full. It replaces a Lua table as the "seen"
** set: a message with tables no longer allocates one, and a lookup is a few
** instructions instead of several API calls. O(1) expected per lookup.
*/
static int map_get(const Enc *e, const void *k, uint64_t *v) {
  if (e->mapcap == 0) return 0;
  for (size_t i = conc__names_slot(k, e->mapcap);;
       i = (i + 1) & (e->mapcap - 1)) {
    if (e->mapkeys[i] == k) {
      *v = e->mapvals[i];
      return 1;
    }
    if (e->mapkeys[i] == NULL) return 0;
  }
}

static void map_insert(const void **keys, uint64_t *vals, size_t cap,
                       const void *k, uint64_t v) {
  size_t i = conc__names_slot(k, cap);
  while (keys[i] != NULL) i = (i + 1) & (cap - 1);
  keys[i] = k;
  vals[i] = v;
}

static void map_put(Enc *e, const void *k, uint64_t v) {
  if (e->mapcap == 0) {
    memset(e->inlkeys, 0, sizeof e->inlkeys);
    e->mapkeys = e->inlkeys;
    e->mapvals = e->inlvals;
    e->mapcap = MAP_INLINE;
  } else if (2 * (e->mapn + 1) > e->mapcap) {
    size_t cap = e->mapcap * 2;
    const void **keys = calloc(cap, sizeof *keys);
    uint64_t *vals = malloc(cap * sizeof *vals);
    if (keys == NULL || vals == NULL) {
      free(keys);
      free(vals);
      enc_nomem(e);
    }
    for (size_t i = 0; i < e->mapcap; i++)
      if (e->mapkeys[i]) map_insert(keys, vals, cap, e->mapkeys[i], e->mapvals[i]);
    if (e->mapkeys != e->inlkeys) {
      free(e->mapkeys);
      free(e->mapvals);
    }
    e->mapkeys = keys;
    e->mapvals = vals;
    e->mapcap = cap;
  }
  map_insert(e->mapkeys, e->mapvals, e->mapcap, k, v);
  e->mapn++;
}

/* Finds the id of a table, function or object seen before, or gives it the
** next id. Returns the old id, or -1 when the value is new. */
static int enc_seen(Enc *e, int idx) {
  const void *p = lua_topointer(e->L, idx);
  uint64_t id;
  if (map_get(e, p, &id)) return (int)id;
  map_put(e, p, (uint64_t)e->nseen++);
  return -1;
}

static void enc_ref(Enc *e, uint64_t id) {
  e->backrefs = 1;
  enc_done(e, wire_put_ref(enc_room(e, WIRE_HEAD_MAX), id));
}

/*
** Writes NAMED and returns 1 when the value at idx crosses by name: the
** name the index of module values has for it or, for a table with a
** metatable (meta), the one it gives itself (conc__names_self: a class is
** its instances' metatable and has one of its own, which makes them; a
** record has none, and its path costs nothing more for this).
*/
static int enc_named(Enc *e, int idx, int rebuild, int meta) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  if (!conc__names_find(L, idx, &e->names, rebuild) &&
      !(meta && conc__names_self(L, idx)))
    return 0;
  s = lua_tolstring(L, -1, &n);
  enc_done(e, wire_put_named(enc_room(e, WIRE_HEAD_MAX + n), s, n));
  lua_pop(L, 1);
  return 1;
}

static void enc_push(Enc *e, int kind, int idx, const char *name) {
  PathSeg *s;
  if (e->depth >= WIRE_MAX_DEPTH) enc_error(e, "a value nested this deep");
  s = &e->path[e->depth++];
  s->kind = kind;
  s->idx = idx;
  s->name = name;
}

static void enc_identity(Enc *e, int idx);

/*
** Writes a table key: a short string as KSTR the first time, as a REF to
** it after that. The sender finds a key it has written by its address: a
** short Lua string is interned, so equal contents are one object, alive as
** long as the table holding it (on the stack throughout).
*/
static void enc_key(Enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    uint64_t id;
    if (n <= WIRE_KEY_MAXLEN) {
      if (map_get(e, s, &id)) {
        enc_ref(e, id);
        return;
      }
      map_put(e, s, (uint64_t)e->nseen++);  /* an id like a table's */
    }
  }
  if (!enc_scalar(e, idx, 1)) enc_identity(e, idx);
}

static void enc_table(Enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer narr = (lua_Integer)lua_rawlen(L, idx);
  size_t head;
  uint32_t nhash = 0;
  enc_done(e, wire_put_table(enc_room(e, WIRE_HEAD_MAX), (uint64_t)narr));
  head = e->len;
  luaL_checkstack(L, 6, "value nested too deep");
  for (lua_Integer i = 1; i <= narr; i++) {
    lua_rawgeti(L, idx, i);
    enc_push(e, 'i', 0, NULL);
    e->path[e->depth - 1].i = i;  /* no key pushed: only an error needs it */
    enc_value(e, lua_gettop(L));
    e->depth--;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (in_array(L, top - 1, narr)) {
      lua_pop(L, 1);
      continue;
    }
    enc_push(e, 'K', top - 1, NULL);
    enc_key(e, top - 1);
    e->path[e->depth - 1].kind = 'k';
    enc_value(e, top);
    e->depth--;
    nhash++;
    lua_pop(L, 1);
  }
  enc_done(e, wire_put_end(enc_room(e, 1)));
  wire_set_hint((unsigned char *)e->buf + head, nhash);
  if (lua_getmetatable(L, idx)) {
    enc_push(e, 'm', 0, NULL);
    enc_value(e, lua_gettop(L));
    e->depth--;
    lua_pop(L, 1);
  } else {
    enc_done(e, wire_put_nil(enc_room(e, 1)));
  }
}

static int writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  enc_bytes((Enc *)ud, p, n);
  return 0;
}

/*
** Pushes the dump of the Lua function at idx, its bytecode then the hash of
** it, above the table of dumps, and returns it (*n its length). A function
** sent again (a thread target, a task) reuses its dump, kept while the
** function lives.
*/
static const char *enc_dump(Enc *e, int idx, size_t *n) {
  lua_State *L = e->L;
  conc__weak_registry(L, &DUMPS_KEY, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    size_t at = e->len, codelen;
    uint64_t h;
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_dump(L, writer, e, 0);  /* debug info kept: remote tracebacks need it */
    lua_pop(L, 1);
    codelen = e->len - at;
    h = wire_hash(e->buf + at, codelen);
    enc_bytes(e, &h, sizeof h);
    lua_pushvalue(L, idx);
    lua_pushlstring(L, e->buf + at, codelen + sizeof h);
    lua_rawset(L, -3);
    e->len = at;  /* the message has it after FUNC's tag and length */
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
  }
  return lua_tolstring(L, -1, n);
}

/* id: the function's own id, which UPVAL names its upvalues by. */
static void enc_function(Enc *e, int idx, int id) {
  lua_State *L = e->L;
  size_t n;
  const char *dump;
  lua_Debug ar;
  if (lua_iscfunction(L, idx)) {
    if (enc_named(e, idx, 1, 0)) return;  /* rebuilt: a module may have grown */
    enc_error(e, "C function (only those in a loaded module can cross)");
  }
  luaL_checkstack(L, 4, "value nested too deep");
  e->backrefs = 1;  /* its upvalues may be UPVALs */
  dump = enc_dump(e, idx, &n);
  enc_done(e, wire_put_func(enc_room(e, WIRE_HEAD_MAX + n), dump,
                            n - WIRE_HASH_SIZE));
  lua_pop(L, 2);
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  enc_done(e, wire_put_varint(enc_room(e, WIRE_VARINT_MAX), ar.nups));
  luaL_checkstack(L, 4, "value nested too deep");
  for (int i = 1; i <= ar.nups; i++) {
    /* An upvalue cell seen before, in this function or another, is written
    ** as UPVAL; the map takes the cell's address to id << 8 | i, i being at
    ** most 255. The cell is recorded before its value is written: a closure
    ** in that value may share it. */
    const char *name;
    void *cell = lua_upvalueid(L, idx, i);
    uint64_t at;
    if (map_get(e, cell, &at)) {
      enc_done(e, wire_put_upval(enc_room(e, WIRE_HEAD_MAX), at >> 8,
                                 at & 0xff));
      continue;
    }
    map_put(e, cell, ((uint64_t)id << 8) | (uint64_t)i);
    name = lua_getupvalue(L, idx, i);
    enc_push(e, 'u', 0, name ? name : "");
    enc_value(e, lua_gettop(L));
    e->depth--;
    lua_pop(L, 1);
  }
}

static void enc_object(Enc *e, conc_Obj *o) {
  if (e->nobjs == e->capobjs) {
    unsigned cap = e->capobjs ? e->capobjs * 2 : 4;
    conc_Obj **n = realloc(e->objs, cap * sizeof *n);
    if (n == NULL) enc_nomem(e);
    e->objs = n;
    e->capobjs = cap;
  }
  e->objs[e->nobjs] = o;
  enc_done(e, wire_put_obj(enc_room(e, WIRE_HEAD_MAX), e->nobjs));
  e->nobjs++;
}

/* Tables, functions, userdata: the values whose identity matters. */
static void enc_identity(Enc *e, int idx) {
  lua_State *L = e->L;
  int t = lua_type(L, idx), meta = 0, id;
  conc_Obj *o = NULL;
  if (t == LUA_TTHREAD) enc_error(e, "coroutine");
  if (t == LUA_TLIGHTUSERDATA) enc_error(e, "light userdata");
  if (t == LUA_TUSERDATA) {
    o = conc__toobj(L, idx);
    if (o == NULL) enc_error(e, "userdata");
  } else if (t == LUA_TTABLE && lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    meta = 1;
    o = conc__toobj(L, idx);  /* a table proxy (a Lock's), or NULL */
  }
  lua_pushglobaltable(L);
  if (lua_rawequal(L, idx, -1)) {
    lua_pop(L, 1);
    enc_done(e, wire_put_globals(enc_room(e, 1)));
    return;
  }
  lua_pop(L, 1);
  id = enc_seen(e, idx);
  if (id >= 0) {
    enc_ref(e, (uint64_t)id);
    return;
  }
  if (o) {
    enc_object(e, o);
    return;
  }
  if (enc_named(e, idx, 0, meta)) return;
  if (e->depth >= WIRE_MAX_DEPTH) enc_error(e, "a value nested this deep");
  if (t == LUA_TTABLE) enc_table(e, idx);
  else enc_function(e, idx, e->nseen - 1);
}

static void enc_value(Enc *e, int idx) {
  if (!enc_scalar(e, idx, 0)) enc_identity(e, idx);
}

/* Everything that can raise runs here, under lua_pcall, so conc__encode can
** free its buffers before passing the error on. */
static int encode_p(lua_State *L) {
  Enc *e = lua_touserdata(L, 1);
  const char *const *names = lua_touserdata(L, 2);
  int n = lua_gettop(L) - 2;
  for (int i = 0; i < n; i++) {
    e->root = names ? names[i] : "value";
    enc_value(e, 3 + i);
  }
  return 0;
}

static int is_plain(lua_State *L, int first, int n) {
  for (int i = 0; i < n; i++) {
    int t = lua_type(L, first + i);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER &&
        t != LUA_TSTRING)
      return 0;
  }
  return 1;
}

/* Writes the message into e; on an error, releases e and raises. A message
** of plain values only is always 'c': it has nothing to refer back to. */
static void encode_run(Enc *e, lua_State *L, int first, int n,
                       const char *const *names) {
  int plain;
  first = lua_absindex(L, first);
  plain = is_plain(L, first, n);
  enc_init(e, L);
  enc_done(e, wire_put_header(enc_room(e, WIRE_HEAD_MAX), !plain,
                              (uint64_t)n));
  if (plain) {
    /* nothing here can raise: no pcall, no allocation for small messages */
    for (int i = 0; i < n; i++) enc_value(e, first + i);
    return;
  }
  luaL_checkstack(L, n + 4, "too many values");
  lua_pushcfunction(L, encode_p);
  lua_pushlightuserdata(L, e);
  lua_pushlightuserdata(L, (void *)names);
  for (int i = 0; i < n; i++) lua_pushvalue(L, first + i);
  if (lua_pcall(L, n + 2, 0, 0) != LUA_OK) {
    enc_release(e);
    lua_error(L);
  }
  if (!e->backrefs) wire_set_refs((unsigned char *)e->buf, 0);
}

static conc_Msg *encode_finish(Enc *e) {
  conc_Msg *m = conc__msg_new(e->buf, e->len, e->objs, e->nobjs);
  enc_release(e);
  if (m == NULL) conc__raise(e->L, CONC_ENOMEM, NULL);
  return m;
}

/* ======================================================================
** The paths that skip the general encoder
** ====================================================================== */

size_t conc__encode_small(lua_State *L, int idx, char *buf, size_t size) {
  unsigned char *out = (unsigned char *)buf, *p;
  if (size < 4) return 0;
  p = wire_put_header(out, 0, 1);
  return put_fixed(L, idx, 0, &p, out + size) ? (size_t)(p - out) : 0;
}

/*
** A flat table: no metatable, and only scalars (nil, booleans, numbers,
** strings) as keys and values, the shape of a queue's record such as
** {id = i, name = "item"}. Its message is written here straight into a
** buffer, with no pcall, no id map and no path kept for errors: the same
** bytes enc_table writes (a key appears once in a table, so no REF is
** needed, and the header is 'c'). That was most of a put of such a record.
**
** FLAT_MAX bounds the message (the rest go the general way).
*/
#define FLAT_MAX 256

/* The message of the flat table at idx into out (FLAT_MAX bytes); returns
** its length, or 0 when the table is not flat, is a module value or _G,
** or its message is longer: nothing here raises or allocates. */
static size_t encode_flat(lua_State *L, int idx, unsigned char *out) {
  unsigned char *p, *head, *end = out + FLAT_MAX;
  lua_Integer narr;
  uint32_t nhash = 0;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 4)) return 0;
  idx = lua_absindex(L, idx);
  if (lua_getmetatable(L, idx)) {  /* a proxy, or anything with methods */
    lua_pop(L, 1);
    return 0;
  }
  narr = (lua_Integer)lua_rawlen(L, idx);
  p = head = wire_put_table(wire_put_header(out, 0, 1), (uint64_t)narr);
  for (lua_Integer i = 1; i <= narr; i++) {
    int ok = 0;
    if (p < end) {  /* each element takes at least one byte */
      lua_rawgeti(L, idx, i);
      ok = put_fixed(L, -1, 0, &p, end);
      lua_pop(L, 1);
    }
    if (!ok) return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (in_array(L, -2, narr)) {
      lua_pop(L, 1);
      continue;
    }
    if (!put_fixed(L, -2, 1, &p, end) || !put_fixed(L, -1, 0, &p, end)) {
      lua_pop(L, 2);
      return 0;
    }
    nhash++;
    lua_pop(L, 1);
  }
  if (end - p < 2) return 0;
  p = wire_put_nil(wire_put_end(p));  /* no metatable */
  wire_set_hint(head, nhash);
  /* last, as rarely needed: a module's table crosses by name, _G as GLOBALS
  ** (the set conc__names_unnamed looks in holds _G too) */
  return conc__names_unnamed(L, idx) ? (size_t)(p - out) : 0;
}

/* A message of one flat table, or NULL (and *len 0) for anything else;
** when it fits in *len bytes, it is written to buf (*len set to its length)
** and NULL returned too. */
static conc_Msg *encode_flat_msg(lua_State *L, int idx, char *buf,
                                 size_t *len) {
  unsigned char flat[FLAT_MAX];
  size_t k = encode_flat(L, idx, flat);
  conc_Msg *m;
  if (k > 0 && k <= *len) {
    memcpy(buf, flat, k);
    *len = k;
    return NULL;
  }
  *len = 0;
  if (k == 0) return NULL;
  m = conc__msg_new((const char *)flat, k, NULL, 0);
  if (m == NULL) conc__raise(L, CONC_ENOMEM, NULL);
  return m;
}

/* ======================================================================
** The entry points
** ====================================================================== */

conc_Msg *conc__encode(lua_State *L, int first, int n,
                       const char *const *names) {
  Enc e;
  if (n == 1) {
    size_t len = 0;  /* no buffer: a flat table comes back as a message */
    conc_Msg *m = encode_flat_msg(L, first, NULL, &len);
    if (m != NULL) return m;
  }
  encode_run(&e, L, first, n, names);
  return encode_finish(&e);
}

conc_Msg *conc__encode_buf(lua_State *L, int first, int n,
                           const char *const *names, char *buf, size_t *len) {
  Enc e;
  if (n == 1) {  /* one plain value (a queue's integer): no encoder at all */
    size_t k = conc__encode_small(L, first, buf, *len);
    conc_Msg *m;
    if (k > 0) {
      *len = k;
      return NULL;
    }
    k = *len;  /* a record: no Enc either */
    m = encode_flat_msg(L, first, buf, &k);
    if (m != NULL || k > 0) {
      *len = k;
      return m;
    }
  }
  encode_run(&e, L, first, n, names);
  if (e.nobjs == 0 && e.len <= *len) {
    memcpy(buf, e.buf, e.len);
    *len = e.len;
    enc_release(&e);
    return NULL;
  }
  return encode_finish(&e);
}

conc_Msg *conc__encode_plain(lua_State *L, int idx, const char *const *names,
                             char *buf, size_t *len) {
  conc_Msg *m = conc__encode_buf(L, idx, 1, names, buf, len);
  if (m != NULL && m->nobjs > 0) {
    conc__msg_free(m);
    conc__raise(L, CONC_ERUNTIME, "conc objects (locks, queues, ...) should "
                "only be shared between processes through inheritance");
  }
  return m;
}
