/*
** wire.h -- the wire format's bytes: the tags, and one writer and one reader
** per tag over plain byte buffers. encode.c and decode.c see the format only
** through these, so a tag's bytes are spelled once.
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
**   KSTR      the same, for a table key of at most WIRE_KEY_MAXLEN bytes: it
**             gets an id, and the same key later in the message is a REF
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
** Tables, functions, named values, objects and KSTR keys get ids in the
** order they are first written, on both sides (GLOBALS and UPVAL get none).
** The decoder bounds every read by the message's length and loads bytecode
** only when its hash matches: a corrupt message raises an error, and
** corrupt bytecode is never handed to lua_load (Lua does not verify
** bytecode, so loading it could crash the receiver later). What it
** preallocates is bounded by the whole message, not by each table: every
** array element is at least its tag byte and belongs to one table only, so
** the narray of all tables together cannot exceed the message's length, and
** the nhash hints together are held to half of it (a nested run of tables
** that each claim the rest of the message allocates once, not per level).
** Nesting has no limit but memory: neither side recurses in C (deep.h keeps
** the open tables and functions), and a level costs the decoder a table or
** function and about 60 bytes of frame, for the 6 bytes or more that open
** it, so what a message's nesting costs grows with its length alone.
**
** The writers write at p, which the caller has made room at (WIRE_HEAD_MAX
** bytes, plus the bytes of a string or bytecode), and return the end of
** what they wrote. A reader takes the payload after its tag (the caller has
** read the tag to choose the reader), bounded by end, and returns what
** follows it, or NULL when the bytes cannot be that payload; the decoder
** turns the NULL into its "corrupt message" error, and the fast paths into
** "not mine: take the general path".
*/
#ifndef CONC_WIRE_H
#define CONC_WIRE_H

#include <stdint.h>
#include <string.h>

#include "lua.h"

#define WIRE_VERSION 1

/*
** String keys up to WIRE_KEY_MAXLEN bytes are written once per message
** (KSTR, which takes an id as a table does) and as a REF after that: in a
** list of records, the receiver interns each field name once instead of
** once per record, which was a fifth of decoding such a list.
*/
#define WIRE_KEY_MAXLEN 40

enum {
  WIRE_NIL, WIRE_FALSE, WIRE_TRUE, WIRE_INT, WIRE_FLOAT, WIRE_STR,
  WIRE_TABLE, WIRE_REF, WIRE_FUNC, WIRE_NAMED, WIRE_GLOBALS, WIRE_OBJ,
  WIRE_END, WIRE_UPVAL, WIRE_KSTR
};

#define WIRE_VARINT_MAX 10  /* bytes of the longest varint */
#define WIRE_HASH_SIZE 8    /* FUNC's bytecode hash */
/* The most any writer writes besides a string's or bytecode's bytes (UPVAL:
** a tag and two varints); a message's header takes less. */
#define WIRE_HEAD_MAX (1 + 2 * WIRE_VARINT_MAX)

/* ---- numbers ------------------------------------------------------------ */

/* Zigzag: small negative integers get short varints too. */
static inline uint64_t wire_zigzag(lua_Integer i) {
  uint64_t u = (uint64_t)i;
  return (u << 1) ^ (uint64_t)((int64_t)u >> 63);
}

static inline lua_Integer wire_unzigzag(uint64_t z) {
  return (lua_Integer)((z >> 1) ^ (~(z & 1) + 1));
}

static inline size_t wire_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline unsigned char *wire_put_varint(unsigned char *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  return p;
}

/* NULL for a varint that runs past end or past WIRE_VARINT_MAX bytes. */
static inline const unsigned char *wire_get_varint(const unsigned char *p,
                                                   const unsigned char *end,
                                                   uint64_t *v) {
  uint64_t x = 0;
  if (p < end && *p < 0x80) {  /* most are small */
    *v = *p;
    return p + 1;
  }
  for (int shift = 0; shift < 7 * WIRE_VARINT_MAX && p < end; shift += 7) {
    x |= (uint64_t)(*p & 0x7f) << shift;
    if (!(*p++ & 0x80)) {
      *v = x;
      return p;
    }
  }
  return NULL;
}

/* FNV-1a: FUNC's check that the bytecode arrived as it was dumped. */
static inline uint64_t wire_hash(const char *p, size_t n) {
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* Copies n bytes; short runs (a record's keys) by two fixed-size moves that
** may overlap, as memcpy itself would, without the call. */
static inline void wire_copy(unsigned char *dst, const char *src, size_t n) {
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
    dst[0] = (unsigned char)src[0];
    dst[n / 2] = (unsigned char)src[n / 2];
    dst[n - 1] = (unsigned char)src[n - 1];
  } else if (n > 0) {
    memcpy(dst, src, n);
  }
}

/* ---- the header --------------------------------------------------------- */

/* 'C' when the message may refer back (REF, UPVAL, FUNC), else 'c'. The
** encoder learns which only at the end, and says so here again then. */
static inline void wire_set_refs(unsigned char *msg, int refs) {
  msg[0] = refs ? 'C' : 'c';
}

static inline unsigned char *wire_put_header(unsigned char *p, int refs,
                                             uint64_t count) {
  wire_set_refs(p, refs);
  p[1] = WIRE_VERSION;
  return wire_put_varint(p + 2, count);
}

/* The one reader that starts at a message's first byte, not after a tag. */
static inline const unsigned char *wire_get_header(const unsigned char *p,
                                                   const unsigned char *end,
                                                   int *refs,
                                                   uint64_t *count) {
  if (end - p < 2 || (p[0] != 'c' && p[0] != 'C') || p[1] != WIRE_VERSION)
    return NULL;
  *refs = p[0] == 'C';
  return wire_get_varint(p + 2, end, count);
}

/* ---- scalars ------------------------------------------------------------ */

static inline unsigned char *wire_put_nil(unsigned char *p) {
  *p = WIRE_NIL;
  return p + 1;
}

static inline unsigned char *wire_put_bool(unsigned char *p, int b) {
  *p = b ? WIRE_TRUE : WIRE_FALSE;
  return p + 1;
}
/* (NIL, FALSE and TRUE have no payload to read: their tag is the value.) */

static inline size_t wire_int_size(lua_Integer i) {
  return 1 + wire_varint_len(wire_zigzag(i));
}

static inline unsigned char *wire_put_int(unsigned char *p, lua_Integer i) {
  *p = WIRE_INT;
  return wire_put_varint(p + 1, wire_zigzag(i));
}

static inline const unsigned char *wire_get_int(const unsigned char *p,
                                                const unsigned char *end,
                                                lua_Integer *i) {
  uint64_t z;
  p = wire_get_varint(p, end, &z);
  if (p != NULL) *i = wire_unzigzag(z);
  return p;
}

#define WIRE_FLOAT_SIZE (1 + sizeof(lua_Number))

static inline unsigned char *wire_put_float(unsigned char *p, lua_Number x) {
  *p = WIRE_FLOAT;
  memcpy(p + 1, &x, sizeof x);
  return p + WIRE_FLOAT_SIZE;
}

static inline const unsigned char *wire_get_float(const unsigned char *p,
                                                  const unsigned char *end,
                                                  lua_Number *x) {
  if ((size_t)(end - p) < sizeof *x) return NULL;
  memcpy(x, p, sizeof *x);
  return p + sizeof *x;
}

/* STR, KSTR and NAMED share a shape: a length and the bytes. */
static inline size_t wire_str_size(size_t n) {
  return 1 + wire_varint_len(n) + n;
}

static inline unsigned char *wire_put_lstr(unsigned char *p, int tag,
                                           const char *s, size_t n) {
  *p = (unsigned char)tag;
  p = wire_put_varint(p + 1, n);
  wire_copy(p, s, n);
  return p + n;
}

static inline const unsigned char *wire_get_lstr(const unsigned char *p,
                                                 const unsigned char *end,
                                                 const char **s, size_t *n) {
  uint64_t len;
  p = wire_get_varint(p, end, &len);
  if (p == NULL || len > (uint64_t)(end - p)) return NULL;
  *s = (const char *)p;
  *n = (size_t)len;
  return p + len;
}

/* STR, or KSTR for a table key (key) of at most WIRE_KEY_MAXLEN bytes: a
** longer key is a STR. */
static inline unsigned char *wire_put_str(unsigned char *p, const char *s,
                                          size_t n, int key) {
  int tag = key && n <= WIRE_KEY_MAXLEN ? WIRE_KSTR : WIRE_STR;
  return wire_put_lstr(p, tag, s, n);
}

/* The payload of a STR or, tag being WIRE_KSTR, of a KSTR, which is NULL
** too when longer than any key the encoder writes as one. */
static inline const unsigned char *wire_get_str(const unsigned char *p,
                                                const unsigned char *end,
                                                int tag, const char **s,
                                                size_t *n) {
  p = wire_get_lstr(p, end, s, n);
  if (p != NULL && tag == WIRE_KSTR && *n > WIRE_KEY_MAXLEN) return NULL;
  return p;
}

/* ---- what has identity -------------------------------------------------- */

/* s is "module\0field", n bytes in all. */
static inline unsigned char *wire_put_named(unsigned char *p, const char *s,
                                            size_t n) {
  return wire_put_lstr(p, WIRE_NAMED, s, n);
}

/* Also NULL when the bytes hold no '\0': *field is what follows it. */
static inline const unsigned char *wire_get_named(const unsigned char *p,
                                                  const unsigned char *end,
                                                  const char **s, size_t *n,
                                                  const char **field) {
  p = wire_get_lstr(p, end, s, n);
  if (p == NULL || (*field = memchr(*s, '\0', *n)) == NULL) return NULL;
  (*field)++;
  return p;
}

/* TABLE's head: the tag, narray, and a placeholder for the nhash hint, which
** wire_set_hint fills in (at the end returned here) once the hash part is
** written and counted. */
#define WIRE_HINT_SIZE 4

static inline unsigned char *wire_put_table(unsigned char *p, uint64_t narr) {
  *p = WIRE_TABLE;
  p = wire_put_varint(p + 1, narr);
  memset(p, 0, WIRE_HINT_SIZE);
  return p + WIRE_HINT_SIZE;
}

static inline void wire_set_hint(unsigned char *head_end, uint32_t nhash) {
  memcpy(head_end - WIRE_HINT_SIZE, &nhash, WIRE_HINT_SIZE);
}

static inline const unsigned char *wire_get_table(const unsigned char *p,
                                                  const unsigned char *end,
                                                  uint64_t *narr,
                                                  uint32_t *nhash) {
  p = wire_get_varint(p, end, narr);
  if (p == NULL || end - p < WIRE_HINT_SIZE) return NULL;
  memcpy(nhash, p, WIRE_HINT_SIZE);
  return p + WIRE_HINT_SIZE;
}

/* After a table's hash part (read where the next key's tag would be). */
static inline unsigned char *wire_put_end(unsigned char *p) {
  *p = WIRE_END;
  return p + 1;
}

/* FUNC up to its upvalues: code is the bytecode and its hash, codelen the
** bytecode's length (the hash's WIRE_HASH_SIZE bytes follow it). Then the
** caller writes nups and the upvalues. */
static inline unsigned char *wire_put_func(unsigned char *p, const char *code,
                                           size_t codelen) {
  *p = WIRE_FUNC;
  p = wire_put_varint(p + 1, codelen);
  memcpy(p, code, codelen + WIRE_HASH_SIZE);
  return p + codelen + WIRE_HASH_SIZE;
}

/* Does not check the hash: *hash is what the message says it is. */
static inline const unsigned char *wire_get_func(const unsigned char *p,
                                                 const unsigned char *end,
                                                 const char **code,
                                                 size_t *codelen,
                                                 uint64_t *hash) {
  p = wire_get_lstr(p, end, code, codelen);
  if (p == NULL || end - p < WIRE_HASH_SIZE) return NULL;
  memcpy(hash, p, WIRE_HASH_SIZE);
  return p + WIRE_HASH_SIZE;
}

/* REF, OBJ and UPVAL are varints, read as any varint is. */
static inline unsigned char *wire_put_ref(unsigned char *p, uint64_t id) {
  *p = WIRE_REF;
  return wire_put_varint(p + 1, id);
}

static inline unsigned char *wire_put_obj(unsigned char *p, uint64_t index) {
  *p = WIRE_OBJ;
  return wire_put_varint(p + 1, index);
}

static inline unsigned char *wire_put_upval(unsigned char *p, uint64_t id,
                                            uint64_t n) {
  *p = WIRE_UPVAL;
  return wire_put_varint(wire_put_varint(p + 1, id), n);
}

static inline unsigned char *wire_put_globals(unsigned char *p) {
  *p = WIRE_GLOBALS;
  return p + 1;
}

#endif
