/*
** decode.c -- wire bytes back as values in a lua_State (wire.h has the
** format, and what the decoder guarantees on corrupt input).
**
** Three ways in, one set of readers: the general decoder, the record's
** path (a 'c' message of one flat table) and the scalar's (a 'c' message of
** one plain value). The last two set up no Dec, and on anything they do not
** take, well formed or not, push nothing and leave it to the general
** decoder, which decodes it or says what is wrong. All three read a scalar
** through push_scalar.
*/
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include "deep.h"
#include "lconc.h"
#include "wire.h"

/* ======================================================================
** Scalars, for every path
** ====================================================================== */

/*
** The one reader of the scalar tags: pushes the value whose tag is at p and
** returns what follows it; NULL, having pushed nothing, for any other tag
** or a payload that the bytes before end cannot hold (why_not says which).
*/
static inline const unsigned char *push_scalar(lua_State *L,
                                               const unsigned char *p,
                                               const unsigned char *end) {
  int tag;
  lua_Integer i;
  lua_Number x;
  const char *s;
  size_t n;
  if (p >= end) return NULL;
  tag = *p++;
  switch (tag) {
    case WIRE_NIL: lua_pushnil(L); return p;
    case WIRE_FALSE: case WIRE_TRUE: lua_pushboolean(L, tag == WIRE_TRUE); return p;
    case WIRE_INT:
      if ((p = wire_get_int(p, end, &i)) != NULL) lua_pushinteger(L, i);
      return p;
    case WIRE_FLOAT:
      if ((p = wire_get_float(p, end, &x)) != NULL) lua_pushnumber(L, x);
      return p;
    case WIRE_STR: case WIRE_KSTR:
      if ((p = wire_get_str(p, end, tag, &s, &n)) != NULL)
        lua_pushlstring(L, s, n);
      return p;
    default: return NULL;
  }
}

/* A varint that did not read: it ran past the message, or past the longest
** a varint can be. */
static const char *varint_why(const unsigned char *p, const unsigned char *end) {
  return end - p >= WIRE_VARINT_MAX ? "bad varint" : "truncated";
}

/*
** Why a reader refused what follows the tag at p, in the words the specs
** and the fuzz test know: its first varint, then what the tag's reader
** checks past it. Only for the message an error is raised on.
*/
static const char *why_not(int tag, const unsigned char *p,
                           const unsigned char *end) {
  uint64_t v;
  const char *s;
  size_t n;
  switch (tag) {
    case WIRE_FLOAT: return "truncated";
    case WIRE_INT: case WIRE_STR: case WIRE_KSTR: case WIRE_NAMED:
    case WIRE_TABLE: case WIRE_FUNC:
      break;
    default: return "unknown tag";
  }
  if (wire_get_varint(p, end, &v) == NULL) return varint_why(p, end);
  if (tag == WIRE_KSTR) return "bad key";
  if (tag == WIRE_NAMED && wire_get_lstr(p, end, &s, &n) != NULL)
    return "bad module name";
  return "truncated";
}

/* ======================================================================
** The general decoder
** ====================================================================== */

/*
** An open table or Lua function, kept by deep.h (no C recursion: a value
** nests as deep as memory allows). at says what the walk waits for: 'i'
** array element i, 'h' a key or END, 'K' the value of the key on top,
** 'v' a value that is a table or function (its key in the frame's key
** slot), 'm' the metatable, 'd' nothing more; 'u' upvalue i (a function).
*/
typedef struct DFrame {
  char at;
  uint64_t n, i;  /* array length or upvalue count; the one being read */
  lua_Integer base;  /* element i goes to index base + i (decode_into's) */
} DFrame;

typedef struct Dec {
  lua_State *L;
  const unsigned char *p, *end;
  conc_Obj *const *objs;
  unsigned nobjs;
  int seen;    /* stack index of {id + 1 -> value, -(id + 1) -> true for
                  a FUNC}, 0 until needed */
  int nseen;
  size_t arr_left;   /* array slots the rest of the message may still hold */
  size_t hash_left;  /* hash slots we may still preallocate */
  int norefs;        /* a 'c' message: ids are counted, not kept */
  conc_Deep deep;    /* the open tables and functions */
  uint64_t cached[8];  /* hashes of the cached closures this message used */
  int ncached;
  DFrame win[DEEP_WINDOW];
} Dec;

static int corrupt(Dec *d, const char *why) {
  return luaL_error(d->L, "corrupt message: %s", why);
}

/* Takes what a reader of tag returned: the end of its payload, or NULL. */
static inline void dec_took(Dec *d, int tag, const unsigned char *q) {
  if (q == NULL) corrupt(d, why_not(tag, d->p, d->end));
  d->p = q;
}

static inline uint64_t get_varint(Dec *d) {
  uint64_t v = 0;  /* corrupt() does not return; the compiler cannot know */
  const unsigned char *q = wire_get_varint(d->p, d->end, &v);
  if (q == NULL) corrupt(d, varint_why(d->p, d->end));
  d->p = q;
  return v;
}

/* Records the value on top as the next id. */
static void dec_seen(Dec *d) {
  lua_State *L = d->L;
  if (d->norefs) return;
  if (d->seen == 0) {
    /* Below the value, which is on top and the first of this message to
    ** get an id: a table or function does before its frame opens, so no
    ** frame is open yet, and the one to come starts a slot higher. */
    lua_newtable(L);
    lua_insert(L, -2);
    d->seen = lua_gettop(L) - 1;
    d->deep.base++;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->seen, ++d->nseen);
}

/* A table's head: a new table, or (into, a stack index) that table, whose
** elements go from base + 1 on. */
static void dec_table(Dec *d, int into, lua_Integer base) {
  lua_State *L = d->L;
  uint64_t narr = 0;
  uint32_t nhash = 0;
  DFrame *f;
  dec_took(d, WIRE_TABLE, wire_get_table(d->p, d->end, &narr, &nhash));
  /* every element takes at least one byte, of this table alone: see the
  ** top of wire.h */
  if (narr > (uint64_t)(d->end - d->p) || narr > d->arr_left || narr > INT_MAX)
    corrupt(d, "array longer than the message");
  d->arr_left -= (size_t)narr;
  if (nhash > d->hash_left) nhash = (uint32_t)d->hash_left;
  if (nhash > INT_MAX) nhash = INT_MAX;
  d->hash_left -= nhash;
  /* room: the caller's (DEEP_ROOM), then conc__deep_open's */
  if (into) lua_pushvalue(L, into);
  else lua_createtable(L, (int)narr, (int)nhash);
  dec_seen(d);
  f = conc__deep_open(&d->deep);
  f->at = 'i';
  f->n = narr;
  f->i = 0;
  f->base = base;
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

/*
** The functions this state loaded whose only upvalue can be its globals
** (none, or one sent as GLOBALS), by bytecode: a worker sent the same task
** 100 000 times loads it once. Two such decodes give one closure, which
** Lua allows ("functions created at different times but with no
** detectable differences may be classified as equal"); the one difference
** it hides, a function assigning to that upvalue, is in docs/transfer.md.
** Within one message each function is its own closure, as sent.
** {[hash] = {bytecode, closure}}, dropped whole past FUNCS_MAX entries.
*/
static const char FUNCS_KEY = 'f';
#define FUNCS_MAX 256

static void push_funcs(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &FUNCS_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &FUNCS_KEY);
}

/* Pushes the cached closure of code (hash h) and returns 1, or returns 0
** having pushed nothing. */
static int cached_function(lua_State *L, const char *code, size_t codelen,
                           uint64_t h) {
  size_t n;
  const char *s;
  push_funcs(L);
  if (lua_rawgeti(L, -1, (lua_Integer)h) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_rawgeti(L, -1, 1);
  s = lua_tolstring(L, -1, &n);
  if (s == NULL || n != codelen || memcmp(s, code, n) != 0) {
    lua_pop(L, 3);
    return 0;
  }
  lua_rawgeti(L, -2, 2);
  lua_replace(L, -4);
  lua_pop(L, 2);
  return 1;
}

/* Caches the function on top (just loaded from code, hash h). */
static void cache_function(lua_State *L, const char *code, size_t codelen,
                           uint64_t h) {
  lua_Integer n;
  push_funcs(L);
  lua_getfield(L, -1, "n");  /* a plain table: getfield is raw */
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n >= FUNCS_MAX) {  /* a state that meets many functions starts afresh */
    lua_pop(L, 1);
    lua_createtable(L, 0, 8);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &FUNCS_KEY);
    n = 0;
  }
  lua_pushinteger(L, n + 1);
  lua_setfield(L, -2, "n");
  lua_createtable(L, 2, 0);
  lua_pushlstring(L, code, codelen);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, (lua_Integer)h);
  lua_pop(L, 1);
}

/* FUNC: opens the function's frame, its upvalues to come (none for a
** cached closure). */
static void dec_function(Dec *d) {
  lua_State *L = d->L;
  uint64_t nups, h = 0;
  const char *code = NULL;
  size_t codelen = 0;
  int plain, hit;
  lua_Debug ar;
  DFrame *f;
  luaL_checkstack(L, 5, "message nested too deep");
  dec_took(d, WIRE_FUNC, wire_get_func(d->p, d->end, &code, &codelen, &h));
  if (h != wire_hash(code, codelen)) corrupt(d, "bytecode checksum");
  nups = get_varint(d);
  plain = nups == 0 ||
          (nups == 1 && d->p < d->end && *d->p == WIRE_GLOBALS);
  /* one message is a graph: two functions in it are two closures */
  for (int i = 0; plain && i < d->ncached; i++)
    if (d->cached[i] == h) plain = 0;
  if (plain && d->ncached == (int)(sizeof d->cached / sizeof *d->cached))
    plain = 0;
  hit = plain && cached_function(L, code, codelen, h);
  if (plain) d->cached[d->ncached++] = h;
  if (!hit) {
    if (luaL_loadbufferx(L, code, codelen, "=transferred", "b") != LUA_OK)
      corrupt(d, lua_tostring(L, -1));
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">u", &ar);
    if (nups != ar.nups) corrupt(d, "upvalue count");
  }
  dec_seen(d);  /* before the upvalues: a recursive function names itself */
  lua_pushboolean(L, 1);  /* UPVAL may name this id: it is a Lua function */
  lua_rawseti(L, d->seen, -(lua_Integer)d->nseen);
  if (hit && nups == 1) {
    d->p++;  /* GLOBALS: what its upvalue holds already */
    nups = 0;
  } else if (plain && !hit) {
    cache_function(L, code, codelen, h);
  }
  /* a frame even when there is nothing left to read: callers count on a
  ** FUNC opening one (dec_opens) */
  f = conc__deep_open(&d->deep);
  f->at = 'u';
  f->n = nups;
  f->i = 0;
}

static void dec_named(Dec *d) {
  lua_State *L = d->L;
  const char *s = NULL, *field = NULL;
  size_t n = 0, modlen;
  luaL_checkstack(L, DEEP_ROOM, "message nested too deep");
  dec_took(d, WIRE_NAMED, wire_get_named(d->p, d->end, &s, &n, &field));
  modlen = (size_t)(field - 1 - s);
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

/*
** Reads the value whose tag is at d->p: a table or function opens a frame
** (returns 1; its container on top, its contents to come), anything else
** is pushed whole (returns 0).
*/
static int dec_open(Dec *d) {
  lua_State *L = d->L;
  int tag;
  if (d->p >= d->end) corrupt(d, "truncated");
  tag = *d->p;
  switch (tag) {
    case WIRE_GLOBALS: d->p++; lua_pushglobaltable(L); return 0;
    case WIRE_TABLE: d->p++; dec_table(d, 0, 0); return 1;
    case WIRE_FUNC:
      if (d->norefs) corrupt(d, "function in a message marked 'c'");
      d->p++;
      dec_function(d);
      return 1;
    case WIRE_NAMED: d->p++; dec_named(d); dec_seen(d); return 0;
    case WIRE_REF: {
      uint64_t id;
      d->p++;
      id = get_varint(d);
      if (d->seen == 0 || id >= (uint64_t)d->nseen) corrupt(d, "bad reference");
      lua_rawgeti(L, d->seen, (lua_Integer)id + 1);
      return 0;
    }
    case WIRE_OBJ: {
      uint64_t i;
      d->p++;
      i = get_varint(d);
      if (i >= d->nobjs) corrupt(d, "bad object index");
      conc__pushobj(L, d->objs[i]);
      dec_seen(d);
      return 0;
    }
    default: {  /* the scalars; any other tag is push_scalar's NULL */
      const unsigned char *q = push_scalar(L, d->p, d->end);
      d->p++;
      dec_took(d, tag, q);
      if (tag == WIRE_KSTR) {
        if (d->seen == 0 && !d->norefs) corrupt(d, "bad key");
        dec_seen(d);
      }
      return 0;
    }
  }
}

/* Does the value at d->p open a frame? */
static inline int dec_opens(const Dec *d) {
  return d->p < d->end && (*d->p == WIRE_TABLE || *d->p == WIRE_FUNC);
}

/* The value of the key on top, in the table at s: returns 1 when it opens
** a frame, the key waiting in the key slot. */
static int dec_pair(Dec *d, DFrame *f, int s) {
  if (dec_opens(d)) {
    lua_replace(d->L, s + 1);
    f->at = 'v';
    return dec_open(d);
  }
  dec_open(d);
  lua_rawset(d->L, s);
  return 0;
}

/* The pairs of the table at s up to END: returns 1 when a key or value
** opens a frame, 0 at END. */
static int dec_hash(Dec *d, DFrame *f, int s) {
  lua_State *L = d->L;
  for (;;) {
    const unsigned char *q;
    int ktag;
    if (d->p >= d->end) corrupt(d, "truncated");
    ktag = *d->p;  /* the key's tag says whether it can be nil or NaN */
    if (ktag == WIRE_END) {
      d->p++;
      return 0;
    }
    if (ktag == WIRE_REF && d->seen != 0) {  /* most keys: a name seen before */
      uint64_t id;
      d->p++;
      id = get_varint(d);
      if (id >= (uint64_t)d->nseen) corrupt(d, "bad reference");
      lua_rawgeti(L, d->seen, (lua_Integer)id + 1);
    } else {
      if (ktag == WIRE_NIL) corrupt(d, "nil table key");
      if (dec_opens(d)) {
        f->at = 'K';
        return dec_open(d);
      }
      dec_open(d);
      if (ktag == WIRE_FLOAT && lua_tonumber(L, -1) != lua_tonumber(L, -1))
        corrupt(d, "NaN table key");
    }
    /* most values are scalars, read here at once (a KSTR gets an id: that
    ** and the rest are dec_pair's) */
    if (d->p < d->end && *d->p != WIRE_KSTR &&
        (q = push_scalar(L, d->p, d->end)) != NULL) {
      d->p = q;
      lua_rawset(L, s);
    } else if (dec_pair(d, f, s)) {
      return 1;
    }
  }
}

/*
** Reads on in the innermost frame until a value in it opens a frame of its
** own (returns 1) or the frame is done (returns 0). A frame's C struct may
** move when a frame opens (deep.h): f is not touched after that.
*/
static int dec_next(Dec *d) {
  lua_State *L = d->L;
  DFrame *f = conc__deep_top(&d->deep);
  int s = conc__deep_slot(&d->deep);
  switch (f->at) {
    case 'u':
      while (f->i < f->n) {
        int i = (int)++f->i;
        if (d->p < d->end && *d->p == WIRE_UPVAL) {
          d->p++;
          dec_upval(d, s, i);
        } else if (dec_open(d)) {
          return 1;
        } else {
          lua_setupvalue(L, s, i);
        }
      }
      return 0;
    case 'i':
      while (f->i < f->n) {
        f->i++;
        if (dec_open(d)) return 1;
        lua_rawseti(L, s, f->base + (lua_Integer)f->i);
      }
      f->at = 'h';
      if (dec_hash(d, f, s)) return 1;
      break;
    case 'K':  /* a key that was a frame of its own is on top */
      f->at = 'h';
      if (dec_pair(d, f, s) || dec_hash(d, f, s)) return 1;
      break;
    case 'h':
      if (dec_hash(d, f, s)) return 1;
      break;
    default:  /* 'd' */
      return 0;
  }
  f->at = 'm';  /* END was read: the metatable */
  if (dec_open(d)) return 1;
  if (lua_istable(L, -1)) lua_setmetatable(L, s);
  else if (lua_isnil(L, -1)) lua_pop(L, 1);
  else corrupt(d, "metatable is not a table");
  return 0;
}

/* The innermost frame takes the value on top, which a frame of its own
** has just finished. */
static void dec_store(Dec *d) {
  lua_State *L = d->L;
  DFrame *f = conc__deep_top(&d->deep);
  int s = conc__deep_slot(&d->deep);
  switch (f->at) {
    case 'u': lua_setupvalue(L, s, (int)f->i); break;
    case 'i': lua_rawseti(L, s, f->base + (lua_Integer)f->i); break;
    case 'K': break;  /* a key stays on top for its value */
    case 'v':  /* the key in its slot and the value: the pair on top */
      lua_rawset(L, s);
      lua_pushnil(L);
      f->at = 'h';
      break;
    default:  /* 'm' */
      if (!lua_istable(L, -1)) corrupt(d, "metatable is not a table");
      lua_setmetatable(L, s);
      f->at = 'd';
  }
}

/* Reads the frames opened, innermost first, in this loop. */
static void dec_walk(Dec *d) {
  while (d->deep.depth > 0) {
    if (dec_next(d)) continue;
    conc__deep_close(&d->deep, 1);
    if (d->deep.depth > 0) dec_store(d);
  }
  conc__deep_finish(&d->deep);
}

/* Pushes the value at d->p, reading a table or function by a walk over its
** frames. */
static void dec_value(Dec *d) {
  conc__deep_start(&d->deep);
  if (!dec_open(d)) return;
  dec_walk(d);
}

/* ======================================================================
** The paths that set up no Dec
** ====================================================================== */

/* The header of a 'c' message of one value: what follows it, or NULL. */
static const unsigned char *one_value(const unsigned char *p,
                                      const unsigned char *end) {
  int refs;
  uint64_t count;
  p = wire_get_header(p, end, &refs, &count);
  return p != NULL && !refs && count == 1 ? p : NULL;
}

/* A 'c' message of one scalar. Returns 0, having pushed nothing, for any
** other message. */
static int decode_scalar(lua_State *L, const unsigned char *p, size_t len) {
  const unsigned char *end = p + len, *q;
  p = one_value(p, end);
  if (p == NULL || p == end || *p == WIRE_KSTR)  /* a key's tag, never a
                                                    value's */
    return 0;
  q = push_scalar(L, p, end);
  if (q == end) return 1;
  if (q != NULL) lua_pop(L, 1);  /* trailing bytes */
  return 0;
}

/*
** A 'c' message of one record (a table of scalars with no metatable, what
** encode.c's flat path writes): the shape of most queue items that are
** tables. Returns 0, having pushed nothing, for any other message (a nil
** or NaN key, say). What it preallocates is held to the general path's
** budget (see the top of wire.h).
*/
static int decode_record(lua_State *L, const unsigned char *p, size_t len) {
  const unsigned char *end = p + len;
  uint64_t narr;
  uint32_t nhash;
  int top, t;
  p = one_value(p, end);
  if (p == NULL || p == end || *p != WIRE_TABLE) return 0;
  p = wire_get_table(p + 1, end, &narr, &nhash);
  if (p == NULL || narr > (uint64_t)(end - p) || narr > INT_MAX) return 0;
  if (nhash > len / 2) nhash = (uint32_t)(len / 2);
  top = lua_gettop(L);
  lua_createtable(L, (int)narr, (int)nhash);
  t = top + 1;
  for (uint64_t i = 1; i <= narr; i++) {
    if ((p = push_scalar(L, p, end)) == NULL) goto other;
    lua_rawseti(L, t, (lua_Integer)i);
  }
  while (p < end && *p != WIRE_END) {
    int ktag = *p;  /* the key's tag says whether it can be nil or NaN */
    if (ktag == WIRE_NIL || (p = push_scalar(L, p, end)) == NULL) goto other;
    if (ktag == WIRE_FLOAT && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      goto other;
    if ((p = push_scalar(L, p, end)) == NULL) goto other;
    lua_rawset(L, t);
  }
  /* END, then NIL for no metatable, and nothing after */
  if (end - p != 2 || p[1] != WIRE_NIL) goto other;
  return 1;
other:
  lua_settop(L, top);
  return 0;
}

/* ======================================================================
** The entry points
** ====================================================================== */

/* Why the general decoder refuses a message's header. */
static const char *header_why(const unsigned char *p, const unsigned char *end) {
  if (p == end) return "truncated";
  if (p[0] != 'c' && p[0] != 'C') return "bad header";
  if (end - p < 2) return "truncated";
  if (p[1] != WIRE_VERSION) return "bad header";
  return varint_why(p + 2, end);
}

/* A Dec over data, its header read: the number of values follows. */
static uint64_t dec_init(Dec *d, lua_State *L, const char *data, size_t len,
                         conc_Obj *const *objs, unsigned nobjs) {
  uint64_t n = 0;
  int refs = 0;
  const unsigned char *q;
  d->L = L;
  d->p = (const unsigned char *)data;
  d->end = d->p + len;
  d->objs = objs;
  d->nobjs = nobjs;
  d->seen = d->nseen = 0;
  d->ncached = 0;
  d->arr_left = len;
  d->hash_left = len / 2;
  q = wire_get_header(d->p, d->end, &refs, &n);
  if (q == NULL) corrupt(d, header_why(d->p, d->end));
  d->p = q;
  d->norefs = !refs;
  /* each value is at least its tag byte */
  if (n > (uint64_t)(d->end - d->p) || n > INT_MAX - 8) corrupt(d, "value count");
  conc__deep_init(&d->deep, L, d->win, sizeof(DFrame));
  return n;
}

/* core.loads_into's: a message of one table, whose elements go into the
** table at `into` from index first on (its pairs, and its metatable, are
** that table's too). The table is the message's first id, as the one
** decoded would be. */
int conc__decode_into(lua_State *L, const char *data, size_t len, int into,
                      lua_Integer first) {
  Dec d;
  into = lua_absindex(L, into);
  luaL_checkstack(L, 4, "too many values");
  if (dec_init(&d, L, data, len, NULL, 0) != 1 || d.p >= d.end ||
      *d.p != WIRE_TABLE)
    return luaL_error(L, "not the bytes of one table");
  d.p++;
  conc__deep_start(&d.deep);
  dec_table(&d, into, first - 1);
  dec_walk(&d);
  if (d.p != d.end) corrupt(&d, "trailing bytes");
  if (d.seen) lua_remove(L, d.seen);
  lua_pop(L, 1);  /* the table, which the caller has */
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
  n = dec_init(&d, L, data, len, objs, nobjs);
  luaL_checkstack(L, (int)n + 4, "too many values");
  for (uint64_t i = 0; i < n; i++) dec_value(&d);
  if (d.p != d.end) corrupt(&d, "trailing bytes");
  if (d.seen) lua_remove(L, d.seen);
  return (int)n;
}

int conc__decode(lua_State *L, const conc_Msg *m) {
  return conc__decode_bytes(L, m->data, m->len, m->objs, m->nobjs);
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

/* ---- blocks received from another process -------------------------------- */

static int block_p(lua_State *L) {
  const char *data = lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  if (lua_toboolean(L, 3)) {
    lua_pushlstring(L, data, len);
    return 1;
  }
  return conc__decode_bytes(L, data, len, NULL, 0);
}

int conc__push_block(lua_State *L, char *data, size_t len, int raw, int owned) {
  int rc;
  if (!owned) {  /* the caller's stack buffer: nothing to free on error */
    if (raw) lua_pushlstring(L, data, len);
    else conc__decode_bytes(L, data, len, NULL, 0);
    return 1;
  }
  lua_pushcfunction(L, block_p);
  lua_pushlightuserdata(L, data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushboolean(L, raw);
  rc = lua_pcall(L, 3, 1, 0);
  free(data);
  if (rc != LUA_OK) return lua_error(L);
  return 1;
}
