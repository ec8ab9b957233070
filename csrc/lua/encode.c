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
#include "deep.h"
#include "names.h"
#include "wire.h"

#define MAP_INLINE 128  /* entries of the pointer map kept in the Enc itself */
#define GROW_MIN 4096   /* the message's first buffer on the heap */

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
static inline size_t put_scalar(lua_State *L, int idx, int key,
                                unsigned char *p, size_t room) {
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

/*
** An open table or Lua function, kept by deep.h (no C recursion: a value
** nests as deep as memory allows). at says where its walk is, which is
** also its step in an error's path: 'i' array element i, 'k' the value of
** the key in the frame's key slot, 'K' a key that is a table or function
** itself, 'm' the metatable, 'u' upvalue i (a function's only step).
*/
typedef struct EFrame {
  char at;
  char walk;         /* 'i': the elements come from lua_next, in order */
  char pending;      /* 'k': the slot's key is taken but not yet written */
  uint32_t nhash;    /* a table's pairs written so far */
  lua_Integer n, i;  /* array length or upvalue count; the one being written */
  size_t head;       /* a table's: the end of its head, for wire_set_hint */
  uint64_t id;       /* a function's id, which UPVAL names its upvalues by */
  const char *name;  /* upvalue i's name */
} EFrame;

typedef struct Enc {
  lua_State *L;
  char *buf;
  size_t len, cap;
  conc_Obj **objs;
  unsigned nobjs, capobjs;
  int nseen;     /* ids given so far */
  int backrefs;  /* a REF, UPVAL or FUNC was written: the header says 'C' */
  int names;     /* stack index of the named-value index, 0 until needed */
  int names_at;  /* the slot kept for it below the frames */
  const char *root;
  /* What has an id, by address (see the map below): tables, functions,
  ** userdata, short string keys (lua_topointer), upvalue cells
  ** (lua_upvalueid). These are distinct objects, so their addresses never
  ** collide, and all stay alive while the value is encoded. */
  size_t mapcap, mapn;     /* 0 until the first entry */
  const void **mapkeys;
  uint64_t *mapvals;
  const void *inlkeys[MAP_INLINE];
  uint64_t inlvals[MAP_INLINE];
  conc_Deep deep;               /* the open tables and functions */
  EFrame win[DEEP_WINDOW];
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
  e->nseen = e->names = e->names_at = e->backrefs = 0;
  e->root = "value";
  conc__deep_init(&e->deep, L, e->win, sizeof(EFrame));
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
  if (cap < GROW_MIN) cap = GROW_MIN;  /* past the inline buffer, few steps */
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

/* A scalar of n bytes that did not fit: grows, then writes it. */
static void enc_scalar_grow(Enc *e, int idx, int key, size_t n) {
  put_scalar(e->L, idx, key, enc_room(e, n), n);
}

/* Writes the scalar at idx and returns 1, or returns 0 for any other value. */
static inline int enc_scalar(Enc *e, int idx, int key) {
  size_t room = e->cap - e->len;
  size_t n = put_scalar(e->L, idx, key, (unsigned char *)e->buf + e->len, room);
  if (n > room) enc_scalar_grow(e, idx, key, n);
  e->len += n;
  return n > 0;
}

/* Pushes the step of frame j in the path of an error, e.g. ".conn" or
** "[2]". */
static void push_step(Enc *e, int j) {
  lua_State *L = e->L;
  EFrame *f = conc__deep_frame(&e->deep, j, -1);
  int t;
  size_t n;
  const char *k;
  switch (f->at) {
    case 'i': lua_pushfstring(L, "[%I]", (LUAI_UACINT)f->i); return;
    case 'u': lua_pushfstring(L, "<upvalue %s>", f->name[0] ? f->name : "?");
      return;
    case 'm': lua_pushliteral(L, "<metatable>"); return;
    case 'K': lua_pushliteral(L, "<key>"); return;
  }
  conc__deep_frame(&e->deep, j, 1);  /* 'k': the key */
  t = lua_type(L, -1);
  if (t == LUA_TSTRING) {
    int ident = 1;
    k = lua_tolstring(L, -1, &n);
    for (size_t i = 0; i < n; i++) {
      char c = k[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
            (i > 0 && c >= '0' && c <= '9')))
        ident = 0;
    }
    if (ident && n > 0) lua_pushfstring(L, ".%s", k);
    else lua_pushfstring(L, "[\"%s\"]", k);
  } else if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
    lua_pushfstring(L, "[%s]", luaL_tolstring(L, -1, NULL));
    lua_remove(L, -2);
  } else {
    lua_pushfstring(L, "[%s]", luaL_typename(L, -1));
  }
  lua_remove(L, -2);
}

/* Writes the path to the value being encoded, e.g. args[2].conn, and raises
** "PATH: cannot transfer WHAT". A path of more than PATH_KEEP * 2 + 4 steps
** (a long linked list, say) keeps its ends:
** value.next.next<99984 more levels>.next.next. */
#define PATH_KEEP 8

static int enc_error(Enc *e, const char *what) {
  lua_State *L = e->L;
  int depth = e->deep.depth, n = 1;
  luaL_checkstack(L, PATH_KEEP * 2 + 8, NULL);
  lua_pushstring(L, e->root);
  for (int j = 0; j < depth; j++, n++) {
    if (j == PATH_KEEP && depth > PATH_KEEP * 2 + 4) {
      lua_pushfstring(L, "<%d more levels>", depth - PATH_KEEP * 2);
      j = depth - PATH_KEEP - 1;
      continue;
    }
    push_step(e, j);
  }
  lua_concat(L, n);
  return luaL_error(L, "%s: cannot transfer %s", lua_tostring(L, -1), what);
}

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

static inline void enc_ref(Enc *e, uint64_t id) {
  e->backrefs = 1;
  enc_done(e, wire_put_ref(enc_room(e, WIRE_HEAD_MAX), id));
}

/* Is the value enc_open is at what code needs: a function's upvalue, or a
** table's metatable? Else it is data: an argument, an item, or a field,
** element or key of a table (of any table: one that code needs too, whose
** fields are its data). */
static int enc_in_code(Enc *e) {
  EFrame *f;
  if (e->deep.depth == 0) return 0;
  f = conc__deep_top(&e->deep);
  return f->at == 'u' || f->at == 'm';
}

/* Raises unless the module of the name on top is as it was loaded: checked
** once per message, the module's address plus one (no object's address)
** marking it checked in the map of ids. */
static void enc_check(Enc *e) {
  lua_State *L = e->L;
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  const char *m = conc__names_module(L, s, n);
  uint64_t unused;
  if (m == NULL || map_get(e, m + 1, &unused)) return;
  if (conc__names_changed(L, s, n, e->names)) enc_error(e, lua_tostring(L, -1));
  map_put(e, m + 1, 0);
}

/*
** Writes NAMED and returns 1 when the value at idx crosses by name: a
** function the index of module values names; a table it names, when it is
** _G's or a standard library's, or what code needs (enc_in_code: a module
** reached as data is copied, so that it arrives as it was sent); or, for a
** table with a metatable (meta), the name it gives itself
** (conc__names_self: a class is its instances' metatable and has one of its
** own, which makes them; a record has none, and its path costs nothing
** more for this). A module value crosses only while its module is as it was
** loaded (enc_check).
*/
static int enc_named(Enc *e, int idx, int rebuild, int meta) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  int slot = e->names, kind = conc__names_find(L, idx, &slot, rebuild);
  if (e->names == 0) {  /* the index came on top (below the name, if found):
                           to the slot kept for it, below the frames */
    lua_pushvalue(L, slot);
    lua_replace(L, e->names_at);
    lua_remove(L, slot);
    e->names = e->names_at;
  }
  if (kind == CONC_NAMES_MODULE && lua_istable(L, idx) && !enc_in_code(e)) {
    lua_pop(L, 1);
    kind = CONC_NAMES_NONE;
  }
  if (kind == CONC_NAMES_MODULE) enc_check(e);
  if (kind == CONC_NAMES_NONE && !(meta && conc__names_self(L, idx))) return 0;
  s = lua_tolstring(L, -1, &n);
  enc_done(e, wire_put_named(enc_room(e, WIRE_HEAD_MAX + n), s, n));
  lua_pop(L, 1);
  return 1;
}

/*
** Writes a table key: a short string as KSTR the first time, as a REF to
** it after that. The sender finds a key it has written by its string
** object (lua_topointer): a short Lua string is interned, so equal contents
** are one object, alive as long as the table holding it (on the stack
** throughout). Returns 0, having written nothing, for a key that is no
** scalar.
*/
static int enc_key(Enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const void *p = lua_topointer(L, idx);
    uint64_t id;
    if (map_get(e, p, &id)) {
      enc_ref(e, id);
      return 1;
    }
    if (lua_rawlen(L, idx) <= WIRE_KEY_MAXLEN)
      map_put(e, p, (uint64_t)e->nseen++);  /* an id like a table's */
  }
  return enc_scalar(e, idx, 1);
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

/* The Lua function at idx up to its upvalues, which its frame writes (id:
** its own, which UPVAL names its upvalues by); a C function by name, or
** refused. Returns 1 when it opened the frame. */
static int enc_function(Enc *e, int idx, uint64_t id) {
  lua_State *L = e->L;
  size_t n;
  const char *dump;
  lua_Debug ar;
  EFrame *f;
  if (lua_iscfunction(L, idx)) {
    /* the index rebuilt: a module may have grown */
    if (enc_named(e, idx, 1, 0)) return 0;
    enc_error(e, "C function (only those in a loaded module can cross)");
  }
  e->backrefs = 1;  /* its upvalues may be UPVALs */
  dump = enc_dump(e, idx, &n);
  enc_done(e, wire_put_func(enc_room(e, WIRE_HEAD_MAX + n), dump,
                            n - WIRE_HASH_SIZE));
  lua_pop(L, 2);
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  enc_done(e, wire_put_varint(enc_room(e, WIRE_VARINT_MAX), ar.nups));
  f = conc__deep_open(&e->deep);
  f->at = 'u';
  f->n = ar.nups;
  f->i = 0;
  f->id = id;
  return 1;
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

/*
** The value on top of the stack, which is no scalar: a table, function or
** userdata, whose identity matters. A table or Lua function met for the
** first time opens a frame (returns 1; the value stays, as its container);
** anything else is written whole (REF, GLOBALS, OBJ, NAMED) or refused,
** and returns 0.
*/
static int enc_open(Enc *e) {
  lua_State *L = e->L;
  int idx = lua_gettop(L), t = lua_type(L, idx), meta = 0, id;
  int kind = CONC_NAMES_ASK;
  conc_Obj *o = NULL;
  lua_Integer narr;
  EFrame *f;
  if (t == LUA_TTHREAD) enc_error(e, "coroutine");
  if (t == LUA_TLIGHTUSERDATA) enc_error(e, "light userdata");
  if (t == LUA_TUSERDATA) {
    o = conc__toobj(L, idx);
    if (o == NULL) enc_error(e, "userdata");
  } else if (t == LUA_TTABLE && lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    meta = 1;
    o = conc__toobj(L, idx);  /* a table proxy (a Lock's), or NULL */
  } else if (t == LUA_TTABLE) {
    /* most tables: the record path's test, a C set, says what they can be
    ** (nearly always nothing), so that what they cannot be is not looked
    ** for below */
    kind = conc__names_kind(L, idx);
    if (kind == CONC_NAMES_MODULE && !enc_in_code(e)) kind = CONC_NAMES_NONE;
  }
  if (kind == CONC_NAMES_ASK || kind == CONC_NAMES_ENV) {
    lua_pushglobaltable(L);
    if (lua_rawequal(L, idx, -1)) {
      lua_pop(L, 1);
      enc_done(e, wire_put_globals(enc_room(e, 1)));
      return 0;
    }
    lua_pop(L, 1);
  }
  id = enc_seen(e, idx);
  if (id >= 0) {
    enc_ref(e, (uint64_t)id);
    return 0;
  }
  if (o) {
    enc_object(e, o);
    return 0;
  }
  if (kind != CONC_NAMES_NONE && enc_named(e, idx, 0, meta)) return 0;
  if (t != LUA_TTABLE) return enc_function(e, idx, (uint64_t)e->nseen - 1);
  narr = (lua_Integer)lua_rawlen(L, idx);
  enc_done(e, wire_put_table(enc_room(e, WIRE_HEAD_MAX), (uint64_t)narr));
  f = conc__deep_open(&e->deep);
  f->at = 'i';
  f->walk = 1;
  f->pending = 0;
  f->n = narr;
  f->i = 0;
  f->nhash = 0;
  f->head = e->len;
  return 1;
}

/* The pair of the key in the frame's slot s + 1 and the value above it:
** 0 when it is written (scalars) or is an array element, both popped; 1
** when a value of its own is next, pushed: the value, or the key (a table
** or function). */
static int enc_pair(Enc *e, EFrame *f, int s) {
  lua_State *L = e->L;
  if (in_array(L, s + 1, f->n)) {
    lua_pop(L, 1);
    return 0;
  }
  f->nhash++;
  if (enc_key(e, s + 1)) {  /* its value is next: most are scalars */
    if (!enc_scalar(e, s + 2, 0)) return 1;
    lua_pop(L, 1);
    return 0;
  }
  /* a table or function as a key: it first, then its value */
  lua_pop(L, 1);
  lua_pushvalue(L, s + 1);
  f->at = 'K';
  return 1;
}

/*
** The array part, 1..n, is written first, by one walk with the hash part:
** lua_next gives the array part's keys first, in order, so while they are
** 1, 2, ... the walk writes them, and once at n, it goes on as the hash
** walk from there (everything before was 1..n), which skips nothing and
** walks no element twice. A hole (a nil in 1..n) or an element in the hash
** part breaks the order: the rest of 1..n is then written by index, and
** the hash walk resumes at the key it stopped on, skipping elements.
** Scalars are written in these loops, so most tables are one call here.
*/
static int enc_next(Enc *e) {
  lua_State *L = e->L;
  EFrame *f = conc__deep_top(&e->deep);
  int s = conc__deep_slot(&e->deep);
  switch (f->at) {
    case 'i':
      while (f->walk && f->i < f->n) {
        if (!lua_next(L, s)) {  /* cannot be, as t[n] is there: by index */
          lua_pushnil(L);
          f->walk = 0;
        } else if (lua_isinteger(L, s + 1) &&
                   lua_tointeger(L, s + 1) == f->i + 1) {
          f->i++;
          if (!enc_scalar(e, s + 2, 0)) return 1;
          lua_pop(L, 1);
        } else {
          lua_pop(L, 1);
          f->walk = 0;
          f->pending = 1;
        }
      }
      while (f->i < f->n) {
        lua_rawgeti(L, s, ++f->i);
        if (!enc_scalar(e, -1, 0)) return 1;
        lua_pop(L, 1);
      }
      f->at = 'k';
      if (f->pending) {
        f->pending = 0;
        lua_pushvalue(L, s + 1);
        lua_rawget(L, s);
        if (enc_pair(e, f, s)) return 1;
      }
      /* fall through: the hash walk, from the slot's key */
    case 'k':
      while (lua_next(L, s))
        if (enc_pair(e, f, s)) return 1;
      lua_pushnil(L);  /* lua_next took the key slot */
      enc_done(e, wire_put_end(enc_room(e, 1)));
      wire_set_hint((unsigned char *)e->buf + f->head, f->nhash);
      f->at = 'm';
      if (lua_getmetatable(L, s)) return 1;
      enc_done(e, wire_put_nil(enc_room(e, 1)));
      return 0;
    case 'K':  /* the key is written: now its value */
      lua_pushvalue(L, s + 1);
      lua_rawget(L, s);
      f->at = 'k';
      return 1;
    case 'u':
      while (f->i < f->n) {
        /* An upvalue cell seen before, in this function or another, is
        ** written as UPVAL; the map takes the cell's address to id << 8 | i,
        ** i being at most 255. The cell is recorded before its value is
        ** written: a closure in that value may share it. */
        int i = (int)++f->i;
        void *cell = lua_upvalueid(L, s, i);
        uint64_t at;
        if (map_get(e, cell, &at)) {
          enc_done(e, wire_put_upval(enc_room(e, WIRE_HEAD_MAX), at >> 8,
                                     at & 0xff));
          continue;
        }
        map_put(e, cell, (f->id << 8) | (uint64_t)i);
        f->name = lua_getupvalue(L, s, i);
        if (f->name == NULL) f->name = "";
        return 1;
      }
      return 0;
    default:  /* 'm': the metatable is written */
      return 0;
  }
}

/* Writes the value at idx: a scalar at once, a table or function by a walk
** over its frames, innermost first, in this loop. */
static void enc_value(Enc *e, int idx) {
  lua_State *L = e->L;
  if (enc_scalar(e, idx, 0)) return;
  luaL_checkstack(L, 1 + DEEP_ROOM, "too many values");
  conc__deep_start(&e->deep);
  lua_pushvalue(L, idx);
  if (!enc_open(e)) {
    lua_pop(L, 1);
    return;
  }
  while (e->deep.depth > 0) {
    if (!enc_next(e)) conc__deep_close(&e->deep, 0);
    else if (enc_scalar(e, -1, 0) || !enc_open(e)) lua_pop(L, 1);
  }
  conc__deep_finish(&e->deep);
}

/* Everything that can raise runs here, under lua_pcall, so conc__encode can
** free its buffers before passing the error on. A slot is kept below the
** frames for the named-value index. */
static int encode_p(lua_State *L) {
  Enc *e = lua_touserdata(L, 1);
  const char *const *names = lua_touserdata(L, 2);
  int n = lua_gettop(L) - 2;
  luaL_checkstack(L, 1, "too many values");
  lua_pushnil(L);
  e->names_at = lua_gettop(L);
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

/* The slice's table, written as enc_open and enc_next would write it: its
** head (it takes the next id, as any table does, so that the decoder's ids
** agree), the elements, then n, END and no metatable. */
static int encode_slice_p(lua_State *L) {
  Enc *e = lua_touserdata(L, 1);
  lua_Integer i = lua_tointeger(L, 3), j = lua_tointeger(L, 4);
  size_t head;
  luaL_checkstack(L, 2, "too many values");
  lua_pushnil(L);
  e->names_at = lua_gettop(L);
  e->root = "item";
  e->nseen++;
  enc_done(e, wire_put_table(enc_room(e, WIRE_HEAD_MAX), (uint64_t)(j - i + 1)));
  head = e->len;
  for (lua_Integer k = i; k <= j; k++) {
    lua_rawgeti(L, 2, k);
    enc_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pushliteral(L, "n");
  enc_key(e, lua_gettop(L));
  lua_pushinteger(L, j - i + 1);
  enc_scalar(e, lua_gettop(L), 0);
  lua_pop(L, 2);
  enc_done(e, wire_put_end(enc_room(e, 1)));
  wire_set_hint((unsigned char *)e->buf + head, 1);
  enc_done(e, wire_put_nil(enc_room(e, 1)));
  return 0;
}

conc_Msg *conc__encode_slice(lua_State *L, int idx, lua_Integer i,
                             lua_Integer j) {
  Enc e;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 5, "too many values");
  enc_init(&e, L);
  enc_done(&e, wire_put_header(enc_room(&e, WIRE_HEAD_MAX), 1, 1));
  lua_pushcfunction(L, encode_slice_p);
  lua_pushlightuserdata(L, &e);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, i);
  lua_pushinteger(L, j);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    enc_release(&e);
    lua_error(L);
  }
  if (!e.backrefs) wire_set_refs((unsigned char *)e.buf, 0);
  return encode_finish(&e);
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
  /* last, as rarely needed: _G crosses as GLOBALS, a standard library's
  ** table by name (a module's record is data, copied here) */
  switch (conc__names_kind(L, idx)) {
    case CONC_NAMES_NONE: case CONC_NAMES_MODULE: return (size_t)(p - out);
    default: return 0;
  }
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
