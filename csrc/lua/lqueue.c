/*
** lqueue.c -- queue.Queue, LifoQueue, PriorityQueue and SimpleQueue seen
** from Lua, and conc.select.
**
** put encodes the item in the putter's state (into the item itself when it
** is small) and get decodes it in the getter's: items are copies, conc
** objects inside them go by reference. A PriorityQueue item also gets a sort
** key, made here from the Lua value (see queue.c for its form).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lconc.h"

/* What a SimpleQueue lacks, methods and fields, as Python's does: the one
** list its proxy (hides), its __index, __newindex and methods go by. */
static int lacks(conc_Queue *q, const char *name) {
  static const char *const names[] = {
    "task_done", "join", "shutdown", "full", "maxsize", "unfinished_tasks",
    "is_shutdown", NULL};
  if (!conc__queue_is_simple(q)) return 0;
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0) return 1;
  return 0;
}

static int queue_hides(conc_Obj *o, const char *method) {
  return lacks((conc_Queue *)o, method);
}

static int meta_queue(lua_State *L);

/* The kind, for proxy.c: proxies are tables of bound methods. */
static conc_Binding queue_binding = {.type = &conc__queue_type,
                                     .open = meta_queue, .bound = 1,
                                     .hides = queue_hides};

static conc_Queue *check_queue(lua_State *L) {
  return (conc_Queue *)conc__checkbound(L, 1, &conc__queue_type);
}

/* Queue(maxsize=0): maxsize <= 0 is unbounded, as in Python */
static int queue_new(lua_State *L, int kind) {
  double maxsize = (double)luaL_optnumber(L, 1, 0);
  return conc__pushnew(L, (conc_Obj *)conc__queue_new(kind, maxsize, 0));
}

static int l_queue_new(lua_State *L) {
  return queue_new(L, CONC_FIFO);
}

static int l_lifo_new(lua_State *L) {
  return queue_new(L, CONC_LIFO);
}

static int l_priority_new(lua_State *L) {
  return queue_new(L, CONC_PRIORITY);
}

static int l_simple_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__queue_new(CONC_FIFO, 0, 1));
}

/* ---- sort keys ----------------------------------------------------------- */

#define KEY_MAXDEPTH 32

typedef struct Key {
  char *p;
  size_t n, cap;
  int nomem;
  char inl[128];
} Key;

static void key_put(Key *k, const void *s, size_t n) {
  if (k->nomem) return;
  if (k->n + n > k->cap) {
    size_t cap = k->cap * 2 > k->n + n ? k->cap * 2 : k->n + n;
    char *np = k->p == k->inl ? malloc(cap) : realloc(k->p, cap);
    if (np == NULL) {
      k->nomem = 1;
      return;
    }
    if (k->p == k->inl) memcpy(np, k->inl, k->n);
    k->p = np;
    k->cap = cap;
  }
  memcpy(k->p + k->n, s, n);
  k->n += n;
}

static void key_tag(Key *k, char tag) {
  key_put(k, &tag, 1);
}

static void key_other(Key *k, char what) {
  key_tag(k, 'o');
  key_tag(k, what);
}

/* A table is a tuple when its keys are exactly 1..#t. */
static int is_sequence(lua_State *L, int idx, lua_Integer *len) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
        lua_tointeger(L, -1) > n || ++count > n) {
      lua_pop(L, 1);
      return 0;
    }
  }
  *len = n;
  return count == n;
}

static void key_value(lua_State *L, Key *k, int idx, int depth) {
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        int64_t i = (int64_t)lua_tointeger(L, idx);
        key_tag(k, 'i');
        key_put(k, &i, 8);
      } else {
        double d = (double)lua_tonumber(L, idx);
        key_tag(k, 'f');
        key_put(k, &d, 8);
      }
      return;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      uint32_t n32 = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
      key_tag(k, 's');
      key_put(k, &n32, 4);
      key_put(k, s, n32);
      return;
    }
    case LUA_TTABLE: {
      lua_Integer n;
      if (depth >= KEY_MAXDEPTH || !lua_checkstack(L, 4) ||
          !is_sequence(L, idx, &n)) {
        key_other(k, 't');
        return;
      }
      key_tag(k, '(');
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        key_value(L, k, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
      }
      key_tag(k, ')');
      return;
    }
    case LUA_TBOOLEAN: key_other(k, 'b'); return;
    case LUA_TNIL: key_other(k, 'n'); return;
    case LUA_TFUNCTION: key_other(k, 'f'); return;
    case LUA_TTHREAD: key_other(k, 'c'); return;
    default: key_other(k, 'u'); return;
  }
}

/* Gives it its key: inline after the bytes when there is room. */
static void make_key(lua_State *L, int idx, conc_Item *it) {
  Key k;
  size_t used = it->v.msg ? 0 : it->v.len;
  k.p = k.inl;
  k.n = 0;
  k.cap = sizeof k.inl;
  k.nomem = 0;
  key_value(L, &k, idx, 0);
  if (k.nomem || k.n > UINT32_MAX) {
    if (k.p != k.inl) free(k.p);
    conc__item_free(it);
    conc__raise(L, CONC_ENOMEM, NULL);
  }
  it->keylen = (uint32_t)k.n;
  if (used + k.n <= CONC_VAL_INLINE) {
    memcpy(it->v.inl + used, k.p, k.n);
    if (k.p != k.inl) free(k.p);
  } else if (k.p != k.inl) {
    it->key = k.p;
  } else {
    it->key = malloc(k.n);
    if (it->key == NULL) {
      conc__item_free(it);
      conc__raise(L, CONC_ENOMEM, NULL);
    }
    memcpy(it->key, k.p, k.n);
  }
}

/* ---- items --------------------------------------------------------------- */

static void make_item(lua_State *L, int idx, conc_Item *it, int kind) {
  static const char *const names[] = {"item"};
  size_t len = CONC_VAL_INLINE;
  it->key = NULL;
  it->keylen = 0;
  it->seq = 0;
  it->v.msg = conc__encode_buf(L, idx, 1, names, it->v.inl, &len);
  it->v.len = (uint32_t)(it->v.msg ? 0 : len);
  if (kind == CONC_PRIORITY) make_key(L, idx, it);
}

/* Pushes the item's value and frees the item, also when decoding fails. */
static void push_item(lua_State *L, conc_Item *it) {
  if (it->key != NULL) {  /* a PriorityQueue's long key */
    free(it->key);
    it->key = NULL;
  }
  if (it->v.msg == NULL) {
    conc__decode_bytes(L, it->v.inl, it->v.len, NULL, 0);
  } else {
    conc_Msg *m = it->v.msg;
    it->v.msg = NULL;
    conc__decode_free(L, m);
  }
}

/* ---- put and get --------------------------------------------------------- */

/* The deadline of (block, timeout) at idx, idx + 1, checked as Python
** checks them: timeout nil waits for good, a negative one is an error --
** but only where the call could wait. Python ignores the timeout when block
** is false, a put on an unbounded queue (SimpleQueue's put: always) never
** looks at it, and a shut-down queue raises ShutDown first (for a get, once
** it is empty). Each of those states is final, so the call cannot block. */
static double wait_args(lua_State *L, conc_Queue *q, int idx, int *block,
                        int put) {
  *block = lua_isnoneornil(L, idx) || lua_toboolean(L, idx);
  if (!*block || lua_isnoneornil(L, idx + 1)) return CONC_FOREVER;
  if (put && conc__queue_maxsize(q) == 0) return CONC_FOREVER;
  if (conc__queue_is_shutdown(q) && (put || conc__queue_qsize(q) == 0))
    return CONC_FOREVER;
  return conc__opt_deadline(L, idx + 1, CONC_NEG_ERROR,
                            "'timeout' must be a non-negative number");
}

static int do_put(lua_State *L, conc_Queue *q, int block, double deadline) {
  conc_Item it;
  const char *ta = NULL, *tb = NULL;
  int rc;
  luaL_checkany(L, 2);
  conc__check_interrupt(L);
  make_item(L, 2, &it, conc__queue_kind(q));
  rc = conc__queue_put(q, &it, block, deadline, &ta, &tb);
  if (rc == CONC_OK) return 0;
  conc__item_free(&it);
  if (rc == CONC_EUNORDERED)
    return conc__raise(L, rc,
                       "'<' not supported between instances of '%s' and '%s'",
                       ta, tb);
  return conc__raise(L, rc, NULL);
}

static int do_get(lua_State *L, conc_Queue *q, int block, double deadline) {
  conc_Item it;
  int rc;
  conc__check_interrupt(L);
  rc = conc__queue_get(q, &it, block, deadline);
  if (rc != CONC_OK) return conc__raise(L, rc, NULL);
  push_item(L, &it);
  return 1;
}

/* q:put(item, block=true, timeout=nil) */
static int queue_put(lua_State *L) {
  conc_Queue *q = check_queue(L);
  int block;
  double deadline = wait_args(L, q, 3, &block, 1);
  return do_put(L, q, block, deadline);
}

static int queue_put_nowait(lua_State *L) {
  return do_put(L, check_queue(L), 0, CONC_FOREVER);
}

/* q:get(block=true, timeout=nil) -> item */
static int queue_get(lua_State *L) {
  conc_Queue *q = check_queue(L);
  int block;
  double deadline = wait_args(L, q, 2, &block, 0);
  return do_get(L, q, block, deadline);
}

static int queue_get_nowait(lua_State *L) {
  return do_get(L, check_queue(L), 0, CONC_FOREVER);
}

/* queue_poll(q) -> true, item; or false when it is empty: the loop's
** get for a task awaiting a thread's queue (asyncio.wrap), which looks
** often and finds nothing often, so raising Empty would cost it an error
** object each time. ShutDown is raised as get raises it. */
static int l_queue_poll(lua_State *L) {
  conc_Queue *q = (conc_Queue *)conc__checkobj(L, 1, &conc__queue_type);
  conc_Item it;
  int rc = conc__queue_get(q, &it, 0, CONC_FOREVER);
  if (rc == CONC_EEMPTY) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc != CONC_OK) return conc__raise(L, rc, NULL);
  lua_pushboolean(L, 1);
  push_item(L, &it);
  return 2;
}

static int queue_qsize(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__queue_qsize(check_queue(L)));
  return 1;
}

static int queue_empty(lua_State *L) {
  lua_pushboolean(L, conc__queue_qsize(check_queue(L)) == 0);
  return 1;
}

/* A queue with tasks and shutdown: not a SimpleQueue (whose __index hides
** these methods; this catches them called through the metatable). */
static conc_Queue *check_tasks(lua_State *L, const char *method) {
  conc_Queue *q = check_queue(L);
  if (lacks(q, method))
    conc__raise(L, CONC_EATTRIBUTE,
                "'SimpleQueue' object has no attribute '%s'", method);
  return q;
}

static int queue_full(lua_State *L) {
  conc_Queue *q = check_tasks(L, "full");
  size_t max = conc__queue_maxsize(q);
  lua_pushboolean(L, max > 0 && conc__queue_qsize(q) >= max);
  return 1;
}

static int queue_task_done(lua_State *L) {
  int rc = conc__queue_task_done(check_tasks(L, "task_done"));
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int queue_join(lua_State *L) {
  conc_Queue *q = check_tasks(L, "join");
  conc__check_interrupt(L);
  conc__check_wait(L, conc__queue_join(q));
  return 0;
}

/* q:shutdown(immediate=false) */
static int queue_shutdown(lua_State *L) {
  conc__queue_shutdown(check_tasks(L, "shutdown"), lua_toboolean(L, 2));
  return 0;
}

/* the methods, then q.maxsize, q.unfinished_tasks, q.is_shutdown */
static int queue_index(lua_State *L) {
  conc_Queue *q = check_queue(L);
  size_t len = 0;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len)
                                                : NULL;
  if (k && lacks(q, k)) {
    lua_pushnil(L);
  } else if (conc__getmethod(L, &queue_binding, k, len)) {
    return 1;
  } else if (k && strcmp(k, "maxsize") == 0) {
    lua_Number m = (lua_Number)conc__queue_maxsize_arg(q);
    lua_Integer i;
    if (m == floor(m) && lua_numbertointeger(m, &i)) lua_pushinteger(L, i);
    else lua_pushnumber(L, m);
  } else if (k && strcmp(k, "unfinished_tasks") == 0) {
    lua_pushinteger(L, (lua_Integer)conc__queue_unfinished(q));
  } else if (k && strcmp(k, "is_shutdown") == 0) {
    lua_pushboolean(L, conc__queue_is_shutdown(q));
  } else {
    lua_pushnil(L);
  }
  return 1;
}

/* Fields backed by the queue's C state are never shadowed by a key of the
** proxy's own: maxsize writes through (later puts see the new bound, as in
** Python), the others are read-only. */
static int queue_newindex(lua_State *L) {
  conc_Queue *q = check_queue(L);
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k && lacks(q, k))
    return conc__raise(L, CONC_EATTRIBUTE,
                       "'SimpleQueue' object has no attribute '%s'", k);
  if (k && strcmp(k, "maxsize") == 0) {
    if (lua_type(L, 3) != LUA_TNUMBER)
      return conc__raise(L, CONC_ETYPE, "maxsize must be a number, not %s",
                         luaL_typename(L, 3));
    conc__queue_set_maxsize(q, (double)lua_tonumber(L, 3));
    return 0;
  }
  if (k && (strcmp(k, "unfinished_tasks") == 0 ||
            strcmp(k, "is_shutdown") == 0))
    return conc__raise(L, CONC_EATTRIBUTE, "attribute '%s' is read-only", k);
  return conc__set_own_field(L);
}

static int meta_queue(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", queue_index}, {"__newindex", queue_newindex},
    {"put", queue_put},
    {"put_nowait", queue_put_nowait}, {"get", queue_get},
    {"get_nowait", queue_get_nowait}, {"qsize", queue_qsize},
    {"empty", queue_empty}, {"full", queue_full},
    {"task_done", queue_task_done}, {"join", queue_join},
    {"shutdown", queue_shutdown}, {NULL, NULL}};
  conc__newmeta(L, &queue_binding, meta);
  return 0;
}

/* ---- conc.select --------------------------------------------------------- */

#define SELECT_INLINE 16

/* select(objs, timeout=nil) -> the first ready object and its index in
** objs, or nil when the timeout passes. Ready: a queue with an item (or
** shut down: its get will not block), an event that is set. */
static int l_select(lua_State *L) {
  conc_Obj *objs_inl[SELECT_INLINE], **objs = objs_inl;
  conc_WaitLink links_inl[SELECT_INLINE], *links = links_inl;
  double deadline;
  lua_Integer n;
  int index, rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (conc__toobj(L, 1) != NULL)  /* a table proxy: its [1] is its box */
    return luaL_typeerror(L, 1, "list of objects");
  deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 1)
    return conc__raise(L, CONC_EVALUE, "select needs objects to wait on");
  if (n > 1 << 20) return conc__raise(L, CONC_EVALUE, "too many objects");
  lua_settop(L, 2);
  if (n > SELECT_INLINE) {
    objs = lua_newuserdatauv(L, (size_t)n * sizeof *objs, 0);
    links = lua_newuserdatauv(L, (size_t)n * sizeof *links, 0);
  }
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    objs[i] = conc__toobj(L, -1);
    if (objs[i] == NULL || (objs[i]->type != &conc__queue_type &&
                            objs[i]->type != &conc__mpq_type &&
                            objs[i]->type != &conc__event_type &&
                            objs[i]->type != &conc__future_type))
      return conc__raise(L, CONC_ETYPE,
                         "select: objs[%d] is a %s, not a Queue, an Event "
                         "or a Future", (int)i + 1,
                         objs[i] ? objs[i]->type->name : luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  /* the table keeps every proxy (so every object) alive meanwhile */
  conc__check_interrupt(L);
  rc = conc__select(objs, links, (int)n, CONC_READABLE, deadline, &index);
  if (!conc__check_wait(L, rc)) return 0;
  lua_rawgeti(L, 1, index + 1);
  lua_pushinteger(L, index + 1);
  return 2;
}

void conc__open_queue(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"Queue", l_queue_new}, {"LifoQueue", l_lifo_new},
    {"PriorityQueue", l_priority_new}, {"SimpleQueue", l_simple_new},
    {"select", l_select}, {"queue_poll", l_queue_poll}, {NULL, NULL}};
  conc__bind(&queue_binding);
  luaL_setfuncs(L, fns, 0);
}
