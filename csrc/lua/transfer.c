/*
** transfer.c -- the wire format: values from one lua_State as bytes, and the
** bytes back as values in another. The only file that reads a state to write
** a message for a different one.
**
** A message is:  'C' version count value*
** or, when it has no REF, UPVAL or FUNC, 'c' version count value*: the
** decoder then keeps no table of ids (most items in a queue are like this,
** and that table was a third of decoding one).
** and a value is one tag byte and its payload:
**
**   NIL FALSE TRUE GLOBALS       no payload (GLOBALS: the receiver's _G)
**   INT       zigzag varint
**   FLOAT     8 bytes, native order (messages never leave the machine)
**   STR       varint length, bytes
**   KSTR      the same, for a table key of at most KEY_MAXLEN bytes: it gets
**             an id, and the same key later in the message is a REF
**   TABLE     varint narray, u32 nhash hint, narray values, key/value pairs,
**             END, then the metatable as a value (NIL for none)
**   REF       varint id of a table, function or object seen earlier in this
**             message: shared references and cycles survive
**   FUNC      varint length, bytecode, u64 hash of it, varint nups, then
**             per upvalue either a value or UPVAL
**   UPVAL     varint id of a FUNC seen earlier, varint n (1-based): this
**             upvalue is that function's n-th one, shared (two closures over
**             one local still share it); valid only in an upvalue's place
**   NAMED     a STR-shaped payload "module\0field": a value found in
**             package.loaded (field empty for the module itself), looked up
**             (and required) in the receiver
**   OBJ       varint index into the message's object array
**
** The tag bytes: NIL 0, FALSE 1, TRUE 2, INT 3, FLOAT 4, STR 5, TABLE 6,
** REF 7, FUNC 8, NAMED 9, GLOBALS 10, OBJ 11, END 12, UPVAL 13, KSTR 14.
**
** Tables, functions, named values, objects and KSTR keys get ids in the order they are
** first written, on both sides (GLOBALS and UPVAL get none). The decoder
** bounds every read by the message's length, refuses nesting deeper than
** MAX_DEPTH, and loads bytecode only when its hash matches: a corrupt message
** raises an error, and corrupt bytecode is never handed to lua_load (Lua does
** not verify bytecode, so loading it could crash the receiver later). What it
** preallocates is bounded by the whole message, not by each table: every
** array element is at least its tag byte and belongs to one table only, so
** the narray of all tables together cannot exceed the message's length, and
** the nhash hints together are held to half of it (a nested run of tables
** that each claim the rest of the message allocates once, not per level).
*/
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lualib.h"

#include "lconc.h"

#define VERSION 1
#define MAX_DEPTH 200

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_REF, T_FUNC,
  T_NAMED, T_GLOBALS, T_OBJ, T_END, T_UPVAL, T_KSTR
};

/*
** String keys up to KEY_MAXLEN bytes are written once per message (KSTR,
** which takes an id as a table does) and as a REF after that: in a list of
** records, the receiver
** interns each field name once instead of once per record, which was a
** fifth of decoding such a list. The sender finds a key it has written by
** its address: a short Lua string is interned, so equal contents are one
** object, alive as long as the table holding it (on the stack throughout).
*/
#define KEY_MAXLEN 40
#define MAP_INLINE 128  /* entries of the pointer map kept in the Enc itself */

/* Registry keys (their addresses). */
static const char NAMES_KEY = 'n';   /* value -> "module\0field" */
static const char NAMES_LOADED = 'l';  /* true: watched; else package.loaded
                                          as NAMES_KEY saw it */
static const char NAMES_COUNT = 'c';   /* and how many entries it had */
static const char NAMES_FRESH = 'f';   /* while watched, the index's tables
                                          as a NameSet (see below) */
static const char DUMPS_KEY = 'd';     /* weak: function -> bytecode..hash */
static const char NAMES_WATCH = 'w';   /* the metatable watching package.loaded */

static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 14695981039346656037ULL;  /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* ======================================================================
** Encoder
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
  /* What has an id, by address (see PtrMap below): tables, functions,
  ** userdata (lua_topointer), short string keys (their bytes), upvalue
  ** cells (lua_upvalueid). These are distinct objects, so their addresses
  ** never collide, and all stay alive while the value is encoded. */
  size_t mapcap, mapn;     /* 0 until the first entry */
  const void **mapkeys;
  uint64_t *mapvals;
  const void *inlkeys[MAP_INLINE];
  uint64_t inlvals[MAP_INLINE];
  PathSeg path[MAX_DEPTH + 2];
  char inl[256]; /* small messages never touch the heap until the end */
} Enc;

static void enc_init(Enc *e, lua_State *L) {
  e->L = L;
  e->buf = e->inl;
  e->len = 0;
  e->cap = sizeof e->inl;
  e->objs = NULL;
  e->nobjs = e->capobjs = 0;
  e->nseen = e->names = e->depth = e->backrefs = 0;
  e->root = "value";
  e->mapcap = e->mapn = 0;
  e->mapkeys = NULL;
  e->mapvals = NULL;
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
  e->mapkeys = NULL;
  e->mapvals = NULL;
  e->mapcap = e->mapn = 0;
  e->buf = e->inl;
  e->len = 0;
  e->cap = sizeof e->inl;
  e->objs = NULL;
  e->nobjs = e->capobjs = 0;
}

static int enc_nomem(Enc *e) {
  enc_release(e);
  return luaL_error(e->L, "not enough memory");
}

/* The slow half of enc_reserve, kept out of line so the check inlines. */
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

static inline void enc_reserve(Enc *e, size_t n) {
  if (e->cap - e->len < n) enc_grow(e, n);
}

static inline void put_bytes(Enc *e, const void *p, size_t n) {
  enc_reserve(e, n);
  memcpy(e->buf + e->len, p, n);
  e->len += n;
}

static inline void put_byte(Enc *e, int b) {
  enc_reserve(e, 1);
  e->buf[e->len++] = (char)b;
}

static inline void put_varint(Enc *e, uint64_t v) {
  enc_reserve(e, 10);
  while (v >= 0x80) {
    e->buf[e->len++] = (char)(v | 0x80);
    v >>= 7;
  }
  e->buf[e->len++] = (char)v;
}

static void put_u32_at(Enc *e, size_t at, uint32_t v) {
  memcpy(e->buf + at, &v, 4);
}

static inline void put_string(Enc *e, const char *s, size_t n) {
  put_varint(e, n);
  put_bytes(e, s, n);
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
static size_t map_slot(const void *k, size_t cap) {
  uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & (cap - 1);
}

static int map_get(const Enc *e, const void *k, uint64_t *v) {
  if (e->mapcap == 0) return 0;
  for (size_t i = map_slot(k, e->mapcap);; i = (i + 1) & (e->mapcap - 1)) {
    if (e->mapkeys[i] == k) {
      *v = e->mapvals[i];
      return 1;
    }
    if (e->mapkeys[i] == NULL) return 0;
  }
}

static void map_insert(const void **keys, uint64_t *vals, size_t cap,
                       const void *k, uint64_t v) {
  size_t i = map_slot(k, cap);
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

static void add_name(lua_State *L, int index, int value, const char *mod,
                     const char *field) {
  lua_pushvalue(L, value);
  if (lua_rawget(L, index) != LUA_TNIL) {  /* first name wins */
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, value);
  lua_pushfstring(L, "%s%c%s", mod, '\0', field);
  lua_rawset(L, index);
}

/* Copies package.loaded into a new table on top, and counts it. */
static int snapshot_loaded(lua_State *L, int loaded) {
  int n = 0;
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
    n++;
  }
  return n;
}

/* The index is stale: the next message rebuilds it. */
static void drop_names(lua_State *L) {
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_KEY);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH);
}

/* package.loaded's __newindex: a module is loaded (or a key set again
** after being cleared, as a reload does); the index is stale. */
static int loaded_newindex(lua_State *L) {
  drop_names(L);
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

/* Is the watch on the table at idx (package.loaded)? Installs it when the
** table has no metatable: finding the index fresh then costs two lookups
** per message, not a walk over every module. (Called when the index is
** built: a metatable set on package.loaded later goes unnoticed, and the
** index then follows new modules only as name_holds finds it stale.) */
static int watched(lua_State *L, int idx) {
  int ok;
  if (!lua_getmetatable(L, idx)) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_WATCH) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_createtable(L, 0, 1);
      lua_pushcfunction(L, loaded_newindex);
      lua_setfield(L, -2, "__newindex");
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_WATCH);
    }
    lua_setmetatable(L, idx);
    return 1;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_WATCH);
  ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok;
}

/* Does package.loaded still hold what it did when the index was built?
** With the watch on it (NAMES_LOADED is true), a new key would have dropped
** the index, so yes; a module replaced in place (package.loaded.m = other,
** no nil between) is found out when a value it named no longer holds
** (name_holds). Without the watch (package.loaded had a metatable of
** someone else's), compare it whole: O(#package.loaded) per message. */
static int loaded_unchanged(lua_State *L) {
  int loaded, snap, n = 0, same = 1;
  int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_LOADED);
  if (t != LUA_TTABLE) {
    lua_pop(L, 1);
    return t == LUA_TBOOLEAN;
  }
  snap = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  lua_pushnil(L);
  while (same && lua_next(L, loaded)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, snap);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    n++;
  }
  if (!same) lua_pop(L, 1);  /* the key lua_next left */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_COUNT);
  same = same && lua_tointeger(L, -1) == n;
  lua_pop(L, 3);
  return same;
}

/* Module names in package.loaded, sorted, so that a value reachable under two
** names always crosses under the same one. */
static int sorted_modules(lua_State *L, int loaded) {
  int n = 0;
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, -3, ++n);
    }
  }
  /* insertion sort: a few dozen modules */
  for (int i = 2; i <= n; i++) {
    for (int j = i; j > 1; j--) {
      lua_rawgeti(L, -1, j - 1);
      lua_rawgeti(L, -2, j);
      if (strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) <= 0) {
        lua_pop(L, 2);
        break;
      }
      lua_rawseti(L, -3, j - 1);
      lua_rawseti(L, -2, j);
    }
  }
  return n;
}

/*
** The index of named values: every module in package.loaded and the tables
** and functions directly in it; but from the standard library's modules only
** what the standard library put there: C functions (print, string.format),
** and package's tables. A Lua function there is the script's own addition
** (string.split), which the receiver lacks: it crosses as a function.
** Rebuilt when package.loaded changes, or when asked to (a C function was
** not found: a module may have grown).
*/
static int is_stdlib(const char *mod) {
  static const char *const names[] = {
    LUA_GNAME, LUA_LOADLIBNAME, LUA_COLIBNAME, LUA_TABLIBNAME, LUA_IOLIBNAME,
    LUA_OSLIBNAME, LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
    LUA_DBLIBNAME, NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(mod, names[i]) == 0) return 1;
  return 0;
}

/*
** The tables the index holds, by address: what the record path asks ("is
** this table a module value?") answered in C, where a Lua lookup by a table
** key costs a division to hash. A full userdata whose user value is the
** index, which keeps every table in it alive: an address in the set is
** never a newer table's. O(1) expected per lookup; kept at most half full.
*/
typedef struct NameSet {
  size_t cap;           /* a power of two */
  const void *keys[];   /* NULL: a free slot */
} NameSet;

static int nameset_has(const NameSet *set, const void *p) {
  for (size_t i = map_slot(p, set->cap);; i = (i + 1) & (set->cap - 1)) {
    if (set->keys[i] == p) return 1;
    if (set->keys[i] == NULL) return 0;
  }
}

static void nameset_add(NameSet *set, const void *p) {
  size_t i = map_slot(p, set->cap);
  while (set->keys[i] != NULL && set->keys[i] != p)
    i = (i + 1) & (set->cap - 1);
  set->keys[i] = p;
}

/* Pushes the NameSet of the index at idx, with _G in it too, whether or not
** package.loaded holds it: the record path then need not look for _G
** (which crosses as GLOBALS) on its own. */
static void push_nameset(lua_State *L, int idx) {
  size_t n = 1, cap = 16;
  NameSet *set;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n += lua_istable(L, -2);
    lua_pop(L, 1);
  }
  while (cap < 2 * n) cap *= 2;
  set = lua_newuserdatauv(L, sizeof *set + cap * sizeof set->keys[0], 1);
  set->cap = cap;
  memset(set->keys, 0, cap * sizeof set->keys[0]);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_istable(L, -2)) nameset_add(set, lua_topointer(L, -2));
    lua_pop(L, 1);
  }
  lua_pushglobaltable(L);
  nameset_add(set, lua_topointer(L, -1));
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
}

static void build_names(lua_State *L) {
  int loaded, index, mods, n;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  lua_newtable(L);
  index = lua_gettop(L);
  n = sorted_modules(L, loaded);
  mods = lua_gettop(L);
  for (int i = 1; i <= n; i++) {  /* modules first: they beat fields */
    lua_rawgeti(L, mods, i);
    lua_pushvalue(L, -1);
    lua_rawget(L, loaded);
    if (lua_istable(L, -1) || lua_isfunction(L, -1))
      add_name(L, index, lua_gettop(L), lua_tostring(L, -2), "");
    lua_pop(L, 2);
  }
  for (int i = 1; i <= n; i++) {
    const char *mod;
    int std, package;
    lua_rawgeti(L, mods, i);
    mod = lua_tostring(L, -1);  /* stays alive in mods */
    std = is_stdlib(mod);
    package = strcmp(mod, LUA_LOADLIBNAME) == 0;
    if (lua_rawget(L, loaded) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        int t = lua_type(L, -1);
        int ok = std ? lua_iscfunction(L, -1) || (package && t == LUA_TTABLE)
                     : (t == LUA_TTABLE || t == LUA_TFUNCTION);
        if (ok && lua_type(L, -2) == LUA_TSTRING) {
          lua_rawgeti(L, mods, i);
          add_name(L, index, lua_gettop(L) - 1, lua_tostring(L, -1),
                   lua_tostring(L, -3));
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* mods */
  lua_pushvalue(L, index);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_KEY);
  if (watched(L, loaded)) {
    push_nameset(L, index);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH);
    lua_pushboolean(L, 1);
  } else {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH);
    lua_pushinteger(L, snapshot_loaded(L, loaded));
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_COUNT);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_LOADED);
  lua_remove(L, loaded);  /* leaves the index on top */
}

/* Leaves the index at e->names, building it if stale. */
static void enc_names(Enc *e, int rebuild) {
  lua_State *L = e->L;
  if (e->names && !rebuild) return;
  if (!rebuild &&
      (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_KEY) != LUA_TTABLE ||
       !loaded_unchanged(L))) {
    lua_pop(L, 1);
    rebuild = 1;
  }
  if (rebuild) build_names(L);
  if (e->names) lua_replace(L, e->names);
  else e->names = lua_gettop(L);
}

/* Does "module\0field" (n bytes at s) still name the value at idx? Looked up
** as the decoder will. A module's field may have been reassigned since the
** index was built. */
static int name_holds(lua_State *L, const char *s, size_t n, int idx) {
  const char *field = memchr(s, '\0', n);
  size_t modlen = (size_t)(field - s);
  int ok;
  field++;
  if (modlen == strlen(LUA_GNAME) && memcmp(s, LUA_GNAME, modlen) == 0) {
    lua_pushglobaltable(L);
  } else {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushlstring(L, s, modlen);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  if (field < s + n) {
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_pushlstring(L, field, (size_t)(s + n - field));
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  ok = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  return ok;
}

/* Writes NAMED and returns 1 if the value at idx has a module name. */
static int enc_named(Enc *e, int idx, int rebuild) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  enc_names(e, rebuild);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->names) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  s = lua_tolstring(L, -1, &n);
  if (!name_holds(L, s, n, idx)) {
    lua_pop(L, 1);
    return rebuild ? 0 : enc_named(e, idx, 1);  /* stale: once more, fresh */
  }
  put_byte(e, T_NAMED);
  put_string(e, s, n);
  lua_pop(L, 1);
  return 1;
}

static void enc_push(Enc *e, int kind, int idx, const char *name) {
  PathSeg *s;
  if (e->depth >= MAX_DEPTH) enc_error(e, "a value nested this deep");
  s = &e->path[e->depth++];
  s->kind = kind;
  s->idx = idx;
  s->name = name;
}

/* Writes a table key: a short string as KSTR, or as REF when repeated. */
static void enc_key(Enc *e, int idx) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING) {
    enc_value(e, idx);
    return;
  }
  s = lua_tolstring(L, idx, &n);
  if (n <= KEY_MAXLEN) {
    uint64_t id;
    if (map_get(e, s, &id)) {
      e->backrefs = 1;
      put_byte(e, T_REF);
      put_varint(e, id);
      return;
    }
    map_put(e, s, (uint64_t)e->nseen++);  /* an id like a table's */
    put_byte(e, T_KSTR);
    put_string(e, s, n);
    return;
  }
  put_byte(e, T_STR);
  put_string(e, s, n);
}

static void enc_table(Enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer narr = (lua_Integer)lua_rawlen(L, idx);
  size_t hint_at;
  uint32_t nhash = 0;
  put_byte(e, T_TABLE);
  put_varint(e, (uint64_t)narr);
  hint_at = e->len;
  put_bytes(e, &nhash, 4);
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
    if (narr > 0 && lua_isinteger(L, top - 1)) {  /* records have no array */
      lua_Integer k = lua_tointeger(L, top - 1);
      if (k >= 1 && k <= narr) {
        lua_pop(L, 1);
        continue;
      }
    }
    enc_push(e, 'K', top - 1, NULL);
    enc_key(e, top - 1);
    e->path[e->depth - 1].kind = 'k';
    enc_value(e, top);
    e->depth--;
    nhash++;
    lua_pop(L, 1);
  }
  put_byte(e, T_END);
  put_u32_at(e, hint_at, nhash);
  if (lua_getmetatable(L, idx)) {
    enc_push(e, 'm', 0, NULL);
    enc_value(e, lua_gettop(L));
    e->depth--;
    lua_pop(L, 1);
  } else {
    put_byte(e, T_NIL);
  }
}

static int writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  put_bytes((Enc *)ud, p, n);
  return 0;
}

/* id: the function's own id, which UPVAL names its upvalues by. */
static void enc_function(Enc *e, int idx, int id) {
  lua_State *L = e->L;
  size_t at, codelen;
  uint64_t h;
  lua_Debug ar;
  if (lua_iscfunction(L, idx)) {
    if (enc_named(e, idx, 1)) return;  /* rebuilt: a module may have grown */
    enc_error(e, "C function (only those in a loaded module can cross)");
  }
  luaL_checkstack(L, 4, "value nested too deep");
  e->backrefs = 1;  /* its upvalues may be UPVALs */
  put_byte(e, T_FUNC);
  /* A function sent again (a thread target, a task) reuses its dump: the
  ** bytecode and its hash, kept while the function lives. */
  conc__weak_registry(L, &DUMPS_KEY, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    lua_pop(L, 1);
    at = e->len;
    lua_pushvalue(L, idx);
    lua_dump(L, writer, e, 0);  /* debug info kept: remote tracebacks need it */
    lua_pop(L, 1);
    codelen = e->len - at;
    h = hash_bytes(e->buf + at, codelen);
    put_bytes(e, &h, 8);
    lua_pushvalue(L, idx);
    lua_pushlstring(L, e->buf + at, codelen + 8);
    lua_rawset(L, -3);
    e->len = at;  /* written again below, after its length */
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
  }
  {
    size_t n;
    const char *dump = lua_tolstring(L, -1, &n);
    codelen = n - 8;
    put_varint(e, codelen);
    put_bytes(e, dump, n);  /* the bytecode, then its hash */
  }
  lua_pop(L, 2);
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  put_varint(e, ar.nups);
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
      put_byte(e, T_UPVAL);
      put_varint(e, at >> 8);
      put_varint(e, at & 0xff);
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
  put_byte(e, T_OBJ);
  put_varint(e, e->nobjs++);
}

static void enc_value(Enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: put_byte(e, T_NIL); return;
    case LUA_TBOOLEAN: put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); return;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        uint64_t u = (uint64_t)lua_tointeger(L, idx);
        put_byte(e, T_INT);
        put_varint(e, (u << 1) ^ (uint64_t)((int64_t)u >> 63));  /* zigzag */
      } else {
        lua_Number d = lua_tonumber(L, idx);
        put_byte(e, T_FLOAT);
        put_bytes(e, &d, sizeof d);
      }
      return;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      put_byte(e, T_STR);
      put_string(e, s, n);
      return;
    }
    default: break;
  }
  /* tables, functions, userdata: identity matters from here on */
  {
    int t = lua_type(L, idx);
    conc_Obj *o = NULL;
    int id;
    if (t == LUA_TTHREAD) enc_error(e, "coroutine");
    if (t == LUA_TLIGHTUSERDATA) enc_error(e, "light userdata");
    if (t == LUA_TUSERDATA) {
      o = conc__toobj(L, idx);
      if (o == NULL) enc_error(e, "userdata");
    } else if (t == LUA_TTABLE && lua_getmetatable(L, idx)) {
      lua_pop(L, 1);
      o = conc__toobj(L, idx);  /* a table proxy (a Lock's), or NULL */
    }
    lua_pushglobaltable(L);
    if (lua_rawequal(L, idx, -1)) {
      lua_pop(L, 1);
      put_byte(e, T_GLOBALS);
      return;
    }
    lua_pop(L, 1);
    id = enc_seen(e, idx);
    if (id >= 0) {
      e->backrefs = 1;
      put_byte(e, T_REF);
      put_varint(e, (uint64_t)id);
      return;
    }
    if (o) {
      enc_object(e, o);
      return;
    }
    if (enc_named(e, idx, 0)) return;
    if (e->depth >= MAX_DEPTH) enc_error(e, "a value nested this deep");
    if (t == LUA_TTABLE) enc_table(e, idx);
    else enc_function(e, idx, e->nseen - 1);
  }
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

static conc_Msg *enc_finish(Enc *e) {
  return conc__msg_new(e->buf, e->len, e->objs, e->nobjs);
}

/* A message of plain values only is always 'c': it has nothing to refer
** back to. */
static void enc_header(Enc *e, int n, int plain) {
  put_byte(e, plain ? 'c' : 'C');
  put_byte(e, VERSION);
  put_varint(e, (uint64_t)n);
}

/* A varint into p (at least 10 bytes of room); returns its length. */
static size_t varint_to(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (unsigned char)v;
  return n;
}

/* Copies n bytes; short runs (a dict key's) by two fixed-size moves that
** may overlap, as memcpy itself would, without the call. */
static void copy_short(char *dst, const char *src, size_t n) {
  uint64_t a, b;
  uint32_t c, d;
  if (n >= 8 && n <= 16) {
    memcpy(&a, src, 8);
    memcpy(&b, src + n - 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    memcpy(&c, src, 4);
    memcpy(&d, src + n - 4, 4);
    memcpy(dst, &c, 4);
    memcpy(dst + n - 4, &d, 4);
  } else if (n > 0 && n < 4) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  } else if (n > 0) {
    memcpy(dst, src, n);
  }
}

/*
** The writer of one scalar for the paths that skip the encoder (its state
** is several kilobytes to set up): conc__encode_small, for shared.c's
** containers and a queue's plain items, and encode_flat. It writes at
** out + *n the bytes enc_value writes for the scalar at idx (nil, boolean,
** number, string; as a table key a short string is KSTR) and advances *n.
** Returns 0, *n unchanged, when the value is no scalar or its bytes would
** not fit in cap. The tag and a number go through tmp when fewer than its
** size of bytes are left, so that the check is exact.
*/
static int put_scalar(lua_State *L, int idx, unsigned char *out, size_t *n,
                      size_t cap, int key) {
  unsigned char tmp[1 + 10];
  size_t at = *n, room = cap - at, len = 1, slen = 0;
  unsigned char *p = room >= sizeof tmp ? out + at : tmp;
  const char *s = NULL;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: p[0] = T_NIL; break;
    case LUA_TBOOLEAN: p[0] = lua_toboolean(L, idx) ? T_TRUE : T_FALSE; break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        uint64_t u = (uint64_t)lua_tointeger(L, idx);
        p[0] = T_INT;
        len += varint_to(p + 1, (u << 1) ^ (uint64_t)((int64_t)u >> 63));
      } else {
        lua_Number d = lua_tonumber(L, idx);
        p[0] = T_FLOAT;
        memcpy(p + 1, &d, sizeof d);
        len += sizeof d;
      }
      break;
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &slen);
      if (slen > room) return 0;
      p[0] = key && slen <= KEY_MAXLEN ? T_KSTR : T_STR;
      len += varint_to(p + 1, slen);
      break;
    default: return 0;
  }
  if (len + slen > room) return 0;
  if (p == tmp) memcpy(out + at, tmp, len);
  copy_short((char *)out + at + len, s, slen);
  *n = at + len + slen;
  return 1;
}

size_t conc__encode_small(lua_State *L, int idx, char *buf, size_t size) {
  unsigned char *out = (unsigned char *)buf;
  size_t n = 3;
  if (size < 4) return 0;
  out[0] = 'c';
  out[1] = VERSION;
  out[2] = 1;  /* varint: one value */
  return put_scalar(L, idx, out, &n, size, 0) ? n : 0;
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

/* Is the table at idx surely neither a module value nor _G? The index of
** module values must be known fresh, by the watch on package.loaded
** (NAMES_FRESH is there), and not hold it. Otherwise the general path
** looks, rebuilding the index if need be. */
static int unnamed(lua_State *L, int idx) {
  int ok = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH) == LUA_TUSERDATA)
    ok = !nameset_has(lua_touserdata(L, -1), lua_topointer(L, idx));
  lua_pop(L, 1);
  return ok;
}

/* The message of the flat table at idx into out (FLAT_MAX bytes); returns
** its length, or 0 when the table is not flat, is a module value or _G,
** or its message is longer: nothing here raises or allocates. */
static size_t encode_flat(lua_State *L, int idx, unsigned char *out) {
  lua_Integer narr;
  uint32_t nhash = 0;
  size_t n = 3, hint_at;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 4)) return 0;
  idx = lua_absindex(L, idx);
  if (lua_getmetatable(L, idx)) {  /* a proxy, or anything with methods */
    lua_pop(L, 1);
    return 0;
  }
  narr = (lua_Integer)lua_rawlen(L, idx);
  out[0] = 'c';
  out[1] = VERSION;
  out[2] = 1;  /* varint: one value */
  out[n++] = T_TABLE;
  n += varint_to(out + n, (uint64_t)narr);
  hint_at = n;
  n += 4;
  for (lua_Integer i = 1; i <= narr; i++) {
    int ok = 0;
    if (n <= FLAT_MAX - 1) {  /* each element takes at least one byte */
      lua_rawgeti(L, idx, i);
      ok = put_scalar(L, -1, out, &n, FLAT_MAX, 0);
      lua_pop(L, 1);
    }
    if (!ok) return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (narr > 0 && lua_isinteger(L, -2)) {  /* as enc_table skips them */
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1 && k <= narr) {
        lua_pop(L, 1);
        continue;
      }
    }
    if (!put_scalar(L, -2, out, &n, FLAT_MAX, 1) ||
        !put_scalar(L, -1, out, &n, FLAT_MAX, 0)) {
      lua_pop(L, 2);
      return 0;
    }
    nhash++;
    lua_pop(L, 1);
  }
  if (n + 2 > FLAT_MAX) return 0;
  out[n++] = T_END;
  out[n++] = T_NIL;  /* no metatable */
  memcpy(out + hint_at, &nhash, 4);
  /* last, as rarely needed: a module's table crosses by name, _G as GLOBALS
  ** (the set unnamed looks in holds _G too) */
  return unnamed(L, idx) ? n : 0;
}

/* Writes the message into e; on an error, releases e and raises. */
static void encode_run(Enc *e, lua_State *L, int first, int n,
                       const char *const *names) {
  int plain;
  first = lua_absindex(L, first);
  plain = is_plain(L, first, n);
  enc_init(e, L);
  enc_header(e, n, plain);
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
  if (!e->backrefs) e->buf[0] = 'c';
}

static conc_Msg *encode_finish(Enc *e) {
  conc_Msg *m = enc_finish(e);
  enc_release(e);
  if (m == NULL) luaL_error(e->L, "not enough memory");
  return m;
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
  if (m == NULL) luaL_error(L, "not enough memory");
  return m;
}

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


/* ======================================================================
** Decoder
** ====================================================================== */

typedef struct Dec {
  lua_State *L;
  const unsigned char *p, *end;
  conc_Obj *const *objs;
  unsigned nobjs;
  int seen;    /* stack index of {id + 1 -> value, -(id + 1) -> true for
                  a FUNC}, 0 until needed */
  int nseen;
  int depth;
  size_t arr_left;   /* array slots the rest of the message may still hold */
  size_t hash_left;  /* hash slots we may still preallocate */
  int norefs;        /* a 'c' message: ids are counted, not kept */
} Dec;

static int corrupt(Dec *d, const char *why) {
  return luaL_error(d->L, "corrupt message: %s", why);
}

static inline int get_byte(Dec *d) {
  if (d->p >= d->end) corrupt(d, "truncated");
  return *d->p++;
}

static inline uint64_t get_varint(Dec *d) {
  uint64_t v = 0;
  if (d->p < d->end && *d->p < 0x80) return *d->p++;  /* most are small */
  for (int shift = 0; shift < 70; shift += 7) {
    int c = get_byte(d);
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  corrupt(d, "bad varint");
  return 0;
}

static const char *get_bytes(Dec *d, size_t n) {
  const char *p = (const char *)d->p;
  if ((size_t)(d->end - d->p) < n) corrupt(d, "truncated");
  d->p += n;
  return p;
}

/* Records the value on top as the next id. */
static void dec_seen(Dec *d) {
  lua_State *L = d->L;
  if (d->norefs) return;
  if (d->seen == 0) {
    lua_newtable(L);
    lua_insert(L, -2);
    d->seen = lua_gettop(L) - 1;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->seen, ++d->nseen);
}

static void dec_value(Dec *d);

static void dec_table(Dec *d) {
  lua_State *L = d->L;
  uint64_t narr = get_varint(d);
  uint32_t nhash;
  size_t left;
  int t;
  memcpy(&nhash, get_bytes(d, 4), 4);
  left = (size_t)(d->end - d->p);
  /* every element takes at least one byte, of this table alone: see the
  ** top of the file */
  if (narr > left || narr > d->arr_left || narr > INT_MAX)
    corrupt(d, "array longer than the message");
  d->arr_left -= (size_t)narr;
  if (nhash > d->hash_left) nhash = (uint32_t)d->hash_left;
  if (nhash > INT_MAX) nhash = INT_MAX;
  d->hash_left -= nhash;
  luaL_checkstack(L, 8, "message nested too deep");  /* table, key, value, seen */
  lua_createtable(L, (int)narr, (int)nhash);
  dec_seen(d);
  t = lua_gettop(L);
  for (uint64_t i = 1; i <= narr; i++) {
    dec_value(d);
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (;;) {
    int ktag;
    if (d->p >= d->end) corrupt(d, "truncated");
    ktag = *d->p;  /* the key's tag says whether it can be nil or NaN */
    if (ktag == T_END) {
      d->p++;
      break;
    }
    if (ktag == T_NIL) corrupt(d, "nil table key");
    dec_value(d);
    if (ktag == T_FLOAT && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      corrupt(d, "NaN table key");
    dec_value(d);
    lua_rawset(L, t);
  }
  dec_value(d);
  if (lua_istable(L, -1)) lua_setmetatable(L, t);
  else if (lua_isnil(L, -1)) lua_pop(L, 1);
  else corrupt(d, "metatable is not a table");
}

/* Joins upvalue i of the function at f to the upvalue an UPVAL names. Lua
** checks neither side of lua_upvaluejoin, so both are checked here: the id
** must be a function this message loaded (a Lua closure), n one of its
** upvalues. */
static void dec_upval(Dec *d, int f, int i) {
  lua_State *L = d->L;
  uint64_t id = get_varint(d), n = get_varint(d);
  lua_Debug ar;
  if (id >= (uint64_t)d->nseen) corrupt(d, "bad upvalue reference");
  if (lua_rawgeti(L, d->seen, -(lua_Integer)id - 1) != LUA_TBOOLEAN)
    corrupt(d, "bad upvalue reference");
  lua_pop(L, 1);
  lua_rawgeti(L, d->seen, (lua_Integer)id + 1);
  lua_pushvalue(L, -1);
  lua_getinfo(L, ">u", &ar);
  if (n < 1 || n > ar.nups) corrupt(d, "bad upvalue reference");
  lua_upvaluejoin(L, f, i, -1, (int)n);
  lua_pop(L, 1);
}

static void dec_function(Dec *d) {
  lua_State *L = d->L;
  uint64_t codelen = get_varint(d), nups, h;
  const char *code;
  lua_Debug ar;
  int f;
  luaL_checkstack(L, 8, "message nested too deep");
  if (codelen > (uint64_t)(d->end - d->p)) corrupt(d, "truncated");
  code = get_bytes(d, (size_t)codelen);
  memcpy(&h, get_bytes(d, 8), 8);
  if (h != hash_bytes(code, (size_t)codelen)) corrupt(d, "bytecode checksum");
  if (luaL_loadbufferx(L, code, (size_t)codelen, "=transferred", "b") != LUA_OK)
    corrupt(d, lua_tostring(L, -1));
  dec_seen(d);  /* before the upvalues: a recursive function names itself */
  f = lua_gettop(L);
  lua_pushboolean(L, 1);  /* UPVAL may name this id: it is a Lua function */
  lua_rawseti(L, d->seen, -(lua_Integer)d->nseen);
  nups = get_varint(d);
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  if (nups != ar.nups) corrupt(d, "upvalue count");
  for (int i = 1; i <= (int)nups; i++) {
    if (d->p < d->end && *d->p == T_UPVAL) {
      d->p++;
      dec_upval(d, f, i);
    } else {
      dec_value(d);
      lua_setupvalue(L, f, i);
    }
  }
}

static void dec_named(Dec *d) {
  lua_State *L = d->L;
  size_t n = (size_t)get_varint(d);
  const char *s, *field;
  size_t modlen;
  luaL_checkstack(L, 8, "message nested too deep");
  if (n > (size_t)(d->end - d->p)) corrupt(d, "truncated");
  s = get_bytes(d, n);
  field = memchr(s, '\0', n);
  if (field == NULL) corrupt(d, "bad module name");
  modlen = (size_t)(field - s);
  field++;
  lua_pushlstring(L, s, modlen);
  if (strcmp(lua_tostring(L, -1), LUA_GNAME) == 0) {
    lua_pop(L, 1);
    lua_pushglobaltable(L);
  } else {
    /* package.loaded first: require itself is the slow path */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pop(L, 2);
      lua_getglobal(L, "require");
      lua_insert(L, -2);
      lua_call(L, 1, 1);
    } else {
      lua_replace(L, -3);
      lua_pop(L, 1);
    }
  }
  if (s + n > field) {
    lua_pushlstring(L, field, (size_t)(s + n - field));
    if (!lua_istable(L, -2)) corrupt(d, "module is not a table");
    /* not raw: a module may make its fields on first use (conc.errors'
    ** classes, the lazily opened standard libraries of a thread's state) */
    lua_gettable(L, -2);
    lua_remove(L, -2);
  }
  if (lua_isnil(L, -1)) {
    lua_pushlstring(L, s, modlen);
    if (s + n > field) {
      lua_pushliteral(L, ".");
      lua_pushlstring(L, field, (size_t)(s + n - field));
      lua_concat(L, 3);
    }
    luaL_error(L, "transferred value %s not found in this state",
               lua_tostring(L, -1));
  }
}

static void dec_value(Dec *d) {
  lua_State *L = d->L;
  int tag;
  if (++d->depth > MAX_DEPTH + 2) corrupt(d, "nested too deep");
  /* room for this value: the caller's; containers make their own below */
  tag = get_byte(d);
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_GLOBALS: lua_pushglobaltable(L); break;
    case T_INT: {
      uint64_t z = get_varint(d);
      lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (~(z & 1) + 1)));
      break;
    }
    case T_FLOAT: {
      lua_Number x;
      memcpy(&x, get_bytes(d, sizeof x), sizeof x);
      lua_pushnumber(L, x);
      break;
    }
    case T_STR: {
      uint64_t n = get_varint(d);
      if (n > (uint64_t)(d->end - d->p)) corrupt(d, "truncated");
      lua_pushlstring(L, get_bytes(d, (size_t)n), (size_t)n);
      break;
    }
    case T_KSTR: {
      uint64_t n = get_varint(d);
      if (n > KEY_MAXLEN || n > (uint64_t)(d->end - d->p) ||
          (d->seen == 0 && !d->norefs))
        corrupt(d, "bad key");
      lua_pushlstring(L, get_bytes(d, (size_t)n), (size_t)n);
      dec_seen(d);
      break;
    }
    case T_TABLE: dec_table(d); break;
    case T_FUNC:
      if (d->norefs) corrupt(d, "function in a message marked 'c'");
      dec_function(d);
      break;
    case T_NAMED: dec_named(d); dec_seen(d); break;
    case T_REF: {
      uint64_t id = get_varint(d);
      if (d->seen == 0 || id >= (uint64_t)d->nseen) corrupt(d, "bad reference");
      lua_rawgeti(L, d->seen, (lua_Integer)id + 1);
      break;
    }
    case T_OBJ: {
      uint64_t i = get_varint(d);
      if (i >= d->nobjs) corrupt(d, "bad object index");
      conc__pushobj(L, d->objs[i]);
      dec_seen(d);
      break;
    }
    default: corrupt(d, "unknown tag");
  }
  d->depth--;
}

/* A varint at p (before end) into *v; returns what follows it, or NULL. */
static const unsigned char *rec_varint(const unsigned char *p,
                                       const unsigned char *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70 && p < end; shift += 7) {
    x |= (uint64_t)(*p & 0x7f) << shift;
    if (!(*p++ & 0x80)) {
      *v = x;
      return p;
    }
  }
  return NULL;
}

/* Pushes the scalar at p (before end) and returns what follows it; NULL,
** having pushed nothing, for any other tag or a truncated payload. */
static const unsigned char *rec_scalar(lua_State *L, const unsigned char *p,
                                       const unsigned char *end) {
  uint64_t v;
  int tag;
  if (p >= end) return NULL;
  tag = *p++;
  switch (tag) {
    case T_NIL: lua_pushnil(L); return p;
    case T_FALSE: case T_TRUE: lua_pushboolean(L, tag == T_TRUE); return p;
    case T_INT:
      if ((p = rec_varint(p, end, &v)) == NULL) return NULL;
      lua_pushinteger(L, (lua_Integer)((v >> 1) ^ (~(v & 1) + 1)));
      return p;
    case T_FLOAT: {
      lua_Number x;
      if ((size_t)(end - p) < sizeof x) return NULL;
      memcpy(&x, p, sizeof x);
      lua_pushnumber(L, x);
      return p + sizeof x;
    }
    case T_STR: case T_KSTR:
      if ((p = rec_varint(p, end, &v)) == NULL || v > (uint64_t)(end - p) ||
          (tag == T_KSTR && v > KEY_MAXLEN))
        return NULL;
      lua_pushlstring(L, (const char *)p, (size_t)v);
      return p + v;
    default: return NULL;
  }
}

/* A 'c' message of one scalar, pushed by the record's reader: no Dec to set
** up. Returns 0, having pushed nothing, for any other message, well formed
** or not: the general path decodes it or says what is wrong. */
static int decode_scalar(lua_State *L, const unsigned char *p, size_t len) {
  const unsigned char *end = p + len, *q;
  if (len < 4 || p[0] != 'c' || p[1] != VERSION || p[2] != 1 ||
      p[3] == T_KSTR)  /* a key's tag, never a value's */
    return 0;
  q = rec_scalar(L, p + 3, end);
  if (q == end) return 1;
  if (q != NULL) lua_pop(L, 1);  /* trailing bytes */
  return 0;
}

/*
** A 'c' message of one record (a table of scalars with no metatable, what
** encode_flat writes), pushed without setting up a Dec: the shape of most
** queue items that are tables. Returns 0, having pushed nothing, for any
** other message, well formed or not (a nil or NaN key, say): the general
** path decodes it or says what is wrong. What it preallocates is held to
** the general path's budget (see the top of the file).
*/
static int decode_record(lua_State *L, const unsigned char *p, size_t len) {
  const unsigned char *end = p + len;
  uint64_t narr;
  uint32_t nhash;
  int top, t;
  if (len < 10 || p[0] != 'c' || p[1] != VERSION || p[2] != 1 ||
      p[3] != T_TABLE)
    return 0;
  p = rec_varint(p + 4, end, &narr);
  if (p == NULL || end - p < 4) return 0;
  memcpy(&nhash, p, 4);
  p += 4;
  if (narr > (uint64_t)(end - p) || narr > INT_MAX) return 0;
  if (nhash > len / 2) nhash = (uint32_t)(len / 2);
  top = lua_gettop(L);
  lua_createtable(L, (int)narr, (int)nhash);
  t = top + 1;
  for (uint64_t i = 1; i <= narr; i++) {
    if ((p = rec_scalar(L, p, end)) == NULL) goto other;
    lua_rawseti(L, t, (lua_Integer)i);
  }
  while (p < end && *p != T_END) {
    int ktag = *p;  /* the key's tag says whether it can be nil or NaN */
    if (ktag == T_NIL || (p = rec_scalar(L, p, end)) == NULL) goto other;
    if (ktag == T_FLOAT && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      goto other;
    if ((p = rec_scalar(L, p, end)) == NULL) goto other;
    lua_rawset(L, t);
  }
  /* END, then NIL for no metatable, and nothing after */
  if (end - p != 2 || p[1] != T_NIL) goto other;
  return 1;
other:
  lua_settop(L, top);
  return 0;
}

int conc__decode_bytes(lua_State *L, const char *data, size_t len,
                       conc_Obj *const *objs, unsigned nobjs) {
  Dec d;
  uint64_t n;
  luaL_checkstack(L, 3, "too many values");  /* as the general path's n + 2 */
  if (decode_scalar(L, (const unsigned char *)data, len) ||
      decode_record(L, (const unsigned char *)data, len))
    return 1;
  d.L = L;
  d.p = (const unsigned char *)data;
  d.end = d.p + len;
  d.objs = objs;
  d.nobjs = nobjs;
  d.seen = d.nseen = d.depth = 0;
  d.arr_left = len;
  d.hash_left = len / 2;
  d.norefs = get_byte(&d) == 'c';
  if ((!d.norefs && d.p[-1] != 'C') || get_byte(&d) != VERSION)
    corrupt(&d, "bad header");
  n = get_varint(&d);
  /* each value is at least its tag byte */
  if (n > (uint64_t)(d.end - d.p) || n > INT_MAX - 8) corrupt(&d, "value count");
  luaL_checkstack(L, (int)n + 2, "too many values");
  for (uint64_t i = 0; i < n; i++) dec_value(&d);
  if (d.p != d.end) corrupt(&d, "trailing bytes");
  if (d.seen) lua_remove(L, d.seen);
  return (int)n;
}

int conc__decode(lua_State *L, const conc_Msg *m) {
  return conc__decode_bytes(L, m->data, m->len, m->objs, m->nobjs);
}

/* ======================================================================
** conc.core.encode / decode: the wire format seen from Lua (tests, and
** whatever wants a value as bytes). The bytes carry no objects: a value
** holding a conc object cannot be dumped to a string.
** ====================================================================== */

static int l_dumps(lua_State *L) {
  conc_Msg *m = conc__encode(L, 1, lua_gettop(L), NULL);
  if (m->nobjs > 0) {
    conc__msg_free(m);
    return luaL_error(L, "conc objects cannot be dumped to bytes");
  }
  lua_pushlstring(L, m->data, m->len);
  conc__msg_free(m);
  return 1;
}

static int l_loads(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  return conc__decode_bytes(L, s, len, NULL, 0);
}

static int decode_p(lua_State *L) {
  const conc_Msg *m = lua_touserdata(L, 1);
  lua_pop(L, 1);
  return conc__decode(L, m);
}

int conc__decode_free(lua_State *L, conc_Msg *m) {
  int top = lua_gettop(L), rc;
  lua_pushcfunction(L, decode_p);
  lua_pushlightuserdata(L, m);
  rc = lua_pcall(L, 1, LUA_MULTRET, 0);
  conc__msg_free(m);  /* the proxies hold their own references now */
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L) - top;
}

/* Round trip through a message, objects included: what a thread receives. */
static int l_copy(lua_State *L) {
  conc_Msg *m = conc__encode(L, 1, lua_gettop(L), NULL);
  lua_settop(L, 0);
  return conc__decode_free(L, m);
}

/* core._forget_names(): a module grew a field (conc.errors makes its classes
** on first use); the next message rebuilds the index of module values. */
static int l_forget_names(lua_State *L) {
  drop_names(L);
  return 0;
}

void conc__open_transfer(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"dumps", l_dumps}, {"loads", l_loads}, {"copy", l_copy},
    {"_forget_names", l_forget_names}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
