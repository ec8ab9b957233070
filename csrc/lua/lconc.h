/*
** lconc.h -- internals shared by the files that see lua.h.
*/
#ifndef CONC_LCONC_H
#define CONC_LCONC_H

#include "lua.h"
#include "lauxlib.h"

#include "conc.h"
#include "core.h"

/* ---- the wire format: encode.c, decode.c (wire.h, names.c) -------------- */

/*
** Encodes the n values from stack index `first` into a new message the caller
** owns (free it with conc__msg_free). names[i] names value i in error paths
** ("args[2].conn: cannot transfer userdata"); names may be NULL. On a value
** that cannot cross, raises a Lua error in L and allocates nothing.
*/
conc_Msg *conc__encode(lua_State *L, int first, int n, const char *const *names);
/* The same, except that a message of at most *len bytes naming no conc
** object is written to buf instead (*len set to its length, NULL returned):
** what a queue's put uses to allocate nothing for a small item. */
conc_Msg *conc__encode_buf(lua_State *L, int first, int n,
                           const char *const *names, char *buf, size_t *len);

/*
** Writes the one-value message of the value at idx into buf, for callers
** that keep small values inline (shared.c's containers), and returns its
** length; the bytes are what conc__encode would make. Returns 0 (what buf
** holds is then unspecified) when the value is not plain (nil, boolean,
** number, string) or its message needs more than size bytes: encode it with
** conc__encode then. Never raises, never allocates. (conc__encode_buf
** tries it first.)
*/
size_t conc__encode_small(lua_State *L, int idx, char *buf, size_t size);

/* conc__encode_buf of the one value at idx, for another process: a value
** naming a conc object raises RuntimeError (references are this
** process's; Python too shares locks only through inheritance). */
conc_Msg *conc__encode_plain(lua_State *L, int idx, const char *const *names,
                             char *buf, size_t *len);
/* The message conc__encode writes for {n = j - i + 1, t[i], ..., t[j]}
** (raw gets) of the table t at idx, made with no such table: a pool's
** chunk of its caller's list. i >= 1, j >= i - 1. */
conc_Msg *conc__encode_slice(lua_State *L, int idx, lua_Integer i,
                             lua_Integer j);

/*
** Pushes the values a message holds and returns how many. Raises a Lua error
** on corrupt or truncated input, having read nothing outside the message.
** The message stays the caller's.
*/
int conc__decode(lua_State *L, const conc_Msg *m);
/* The same, then frees m, also when decoding raises (after a pcall). */
int conc__decode_free(lua_State *L, conc_Msg *m);
int conc__decode_bytes(lua_State *L, const char *data, size_t len,
                       conc_Obj *const *objs, unsigned nobjs);
/* Decodes a message of one table into the table at into: its elements go
** from index first on, its pairs and metatable as they are. Raises on
** anything else. */
int conc__decode_into(lua_State *L, const char *data, size_t len, int into,
                      lua_Integer first);
/* Pushes one value received from another process: the string itself when
** raw, else the value it encodes; owned says data is malloc'd, freed here
** also when the push raises. Returns 1. */
int conc__push_block(lua_State *L, char *data, size_t len, int raw, int owned);

/* ---- state.c, proxy.c, errors.c, lib.c ------------------------------------ */

/* Makes a state for a conc thread or worker: standard libraries, the given
** package.path/cpath (NULL: Lua's defaults), every conc module, then the
** embedder's state-init hook. NULL when out of memory. */
lua_State *conc__newstate(const char *path, const char *cpath);
/* conc__newstate, or the one this worker prepared while parked. */
lua_State *conc__newstate_for_thread(const char *path, const char *cpath);
/* The state is built: user code runs from here (ends the startup arena and
** lets the GC run). */
void conc__state_ready(lua_State *L);
void conc__closestate(lua_State *L);
/* Called by conc_openlibs: parked workers may build warm states from now. */
void conc__state_setup(void);

/* ---- alloc.c ------------------------------------------------------------- */

lua_State *conc__alloc_newstate(void);
void conc__alloc_ready(lua_State *L);
void conc__alloc_close(lua_State *L);  /* lua_close, then the arena */

/* Pushes registry[key], a table with the given weak mode ("k", "v"),
** making it the first time. */
void conc__weak_registry(lua_State *L, const void *key, const char *mode);

/* Proxies: the one userdata per (state, object) pair. pushobj takes a new
** reference for the proxy; toobj returns NULL for anything not a proxy. */
void conc__pushobj(lua_State *L, conc_Obj *o);
conc_Obj *conc__toobj(lua_State *L, int idx);
/* Pushes a proxy for a just-made object, handing it the creator's reference
** (raises "not enough memory" for NULL); returns 1. */
int conc__pushnew(lua_State *L, conc_Obj *o);
/* A proxy's box: the full userdata that owns one reference to its object
** (obj, NULL once collected). `magic` holds the address of a private
** variable: a script cannot write a userdata's bytes, and no other library
** stores that address, so a userdata of this size holding it was made by
** conc__pushobj. That test reads the userdata alone, where comparing its
** metatable would cost three more calls into Lua. */
typedef struct conc_Box {
  conc_Obj *obj;
  const void *magic;
} conc_Box;

extern const char conc__box_magic;

/* The box at idx, or NULL when the value there is not one. */
static inline conc_Box *conc__tobox(lua_State *L, int idx) {
  conc_Box *b = lua_touserdata(L, idx);
  /* a light userdata's length is 0: its pointer is never read */
  if (b != NULL && lua_rawlen(L, idx) == sizeof *b &&
      b->magic == &conc__box_magic)
    return b;
  return NULL;
}

static inline conc_Obj *conc__boxobj(conc_Box *b, conc_ObjType *type) {
  return b != NULL && b->obj != NULL && b->obj->type == type ? b->obj : NULL;
}

conc_Obj *conc__checkobj_slow(lua_State *L, int idx, conc_ObjType *type);
/* The object of the proxy at idx, of the given kind, else a Lua error (the
** slow path words it, and takes table proxies). */
static inline conc_Obj *conc__checkobj(lua_State *L, int idx,
                                       conc_ObjType *type) {
  conc_Obj *o = conc__boxobj(conc__tobox(L, idx), type);
  return o != NULL ? o : conc__checkobj_slow(L, idx, type);
}

/* conc__checkobj for the kinds whose proxies are tables of bound methods
** (`bound` in conc_Binding): called on its own table (upvalue 2), such a
** method's object is its upvalue 1, the box (trusted: only conc__pushobj
** makes these closures; the type check guards any other C function with
** two upvalues). Otherwise (a metamethod, or a method called on another
** value) the argument is checked as any proxy is: a table holding another
** proxy's box acts as that object, which is safe, the box owning its
** reference. */
static inline conc_Obj *conc__checkbound(lua_State *L, int idx,
                                         conc_ObjType *type) {
  if (idx == 1 && lua_rawequal(L, 1, lua_upvalueindex(2))) {
    conc_Obj *o = conc__boxobj(lua_touserdata(L, lua_upvalueindex(1)), type);
    if (o != NULL) return o;
  }
  return conc__checkobj(L, idx, type);
}
/* The end of a bound kind's enter() (Python's __enter__): returns what
** `local _ <close> = x:enter()` holds. Called on the kind's own table that
** is the box, whose __close then takes conc__checkobj's quick test where
** the table would need its box looked up; nothing needs the table back,
** since Python's Lock.__enter__ returns True, not the lock. Otherwise
** (called on a box, say) the argument itself. */
static inline int conc__entered(lua_State *L) {
  if (lua_rawequal(L, 1, lua_upvalueindex(2)))
    lua_pushvalue(L, lua_upvalueindex(1));
  else
    lua_settop(L, 1);
  return 1;
}

/*
** What the Lua layer knows of a kind of object, beyond the core's
** conc_ObjType: one static per kind, in its binding file.
*/
typedef struct conc_Binding {
  conc_ObjType *type;
  lua_CFunction open;   /* makes the kind's metatable (conc__newmeta) */
  /* Proxies are tables holding the methods bound to the object (see
  ** proxy.c): for kinds whose fields are all methods and attributes, never
  ** the user's keys. `hides` (may be NULL) names the methods one object
  ** lacks (a SimpleQueue's task_done). */
  int bound;
  int (*hides)(conc_Obj *o, const char *method);
  /* Lua values each box carries (lua_newuserdatauv): a Value keeps its
  ** lock's proxy there, so that get_lock() needs no cache lookup. */
  int uservalues;
  /* A bit for each method name's conc__method_bit, set when a state makes
  ** the kind's metatable (every state sets the same bits) or a script adds
  ** a method to it: an __index function tells most keys that name no
  ** method by it, not by a lookup. */
  atomic_ullong method_bits;
} conc_Binding;

/* Makes the kind known to the process: its conc_ObjType points at b from
** now on, and b->open makes its metatable in each state the first time
** that state pushes such an object. */
void conc__bind(conc_Binding *b);
/* In b->open: creates the metatable: __name, __gc, the methods in
** `methods` reachable through __index unless `methods` sets __index
** itself. */
void conc__newmeta(lua_State *L, conc_Binding *b, const luaL_Reg *methods);

/* The end of a __newindex of a bound kind, for a key that names no C
** state: a table proxy keeps it as its own field (this state's only, as
** any proxy field); a box, which cannot, raises AttributeError. */
int conc__set_own_field(lua_State *L);

/* In an __index function given to conc__newmeta: pushes the method the key
** at 2 names and returns 1, or returns 0 having pushed nothing. k and len
** are that key (k NULL when it is not a string). */
int conc__getmethod(lua_State *L, conc_Binding *b, const char *k, size_t len);
/* Where a name falls in conc_Binding's method_bits. */
static inline unsigned conc__method_bit(const char *k, size_t len) {
  return ((unsigned char)k[0] * 7u + (unsigned char)k[len ? len - 1 : 0] +
          (unsigned)len * 13u) & 63u;
}

/* Pushes package.loaded[name], requiring it if need be. */
void conc__require(lua_State *L, const char *name);
/* Raises the error of a code of the table (os/errors.h): its Python
** class, with the printf-style message (lua_pushfstring's formats) or, for
** fmt NULL, the table's. A code the table lacks raises SystemError naming
** it. CONC_EINTR raises KeyboardInterrupt and consumes the pending
** interrupt. Never returns. */
int conc__raise(lua_State *L, int code, const char *fmt, ...);
/* rc when it is not an error (>= 0, a count or an fd), else raised. */
static inline int conc__check_rc(lua_State *L, int rc) {
  if (rc < 0) conc__raise(L, rc, NULL);
  return rc;
}
/* Pushes the error conc__raise would raise (msg NULL: the table's), for a
** caller that hands it on instead (an event loop's transport). */
void conc__push_error(lua_State *L, int code, const char *msg);
/* A wait's result as Lua sees it: 1 for CONC_OK, 0 for CONC_ETIMEDOUT
** (the call returns false), any other code raised. */
int conc__check_wait(lua_State *L, int rc);
/* Raises KeyboardInterrupt if one is pending for this OS thread: the first
** thing every blocking call does, so that an interrupt that came while the
** script ran Lua code fails the next call before it does anything. */
static inline void conc__check_interrupt(lua_State *L) {
  if (conc__interrupt_pending()) conc__raise(L, CONC_EINTR, NULL);
}

/* A Python-style timeout argument, in seconds: nil or none is
** CONC_FOREVER; a non-number (a string too) raises TypeError and NaN
** ValueError; a negative one means what `negative` says, as Python's
** call does: */
enum {
  CONC_NEG_NOWAIT,  /* no wait (Event.wait, Condition.wait, join, ...) */
  CONC_NEG_MINUS1,  /* -1 is forever, others ValueError (Lock.acquire) */
  CONC_NEG_ERROR    /* ValueError with negmsg (Queue.get, time.sleep) */
};
double conc__opt_timeout(lua_State *L, int idx, int negative,
                         const char *negmsg);
/* The same as a deadline (conc__deadline). */
double conc__opt_deadline(lua_State *L, int idx, int negative,
                          const char *negmsg);

/* The Lua facades compiled into the library (embedded.c, generated). */
typedef struct conc_Embedded {
  const char *name;
  const unsigned char *code;
  size_t len;
} conc_Embedded;
extern const conc_Embedded conc__embedded[];

/* ---- the bindings, each opened into conc.core ---------------------------- */

void conc__open_thread(lua_State *L);
void conc__open_time(lua_State *L);
void conc__open_transfer(lua_State *L);
void conc__open_sync(lua_State *L);
void conc__open_queue(lua_State *L);
void conc__open_shared(lua_State *L);
void conc__open_proc(lua_State *L);
void conc__open_array(lua_State *L);
void conc__open_mpqueue(lua_State *L);
void conc__open_conn(lua_State *L);
void conc__open_future(lua_State *L);
void conc__open_loop(lua_State *L);
void conc__open_sock(lua_State *L);

#endif
