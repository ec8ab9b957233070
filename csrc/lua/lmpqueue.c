/*
** lmpqueue.c -- multiprocessing.Queue, JoinableQueue and SimpleQueue seen
** from Lua (mpqueue.c has the queue). An item is encoded with the wire
** format into the putter's stack when small, and decoded by the getter;
** conc objects cannot go through (their references are this process's),
** which Python refuses too: locks are shared through inheritance.
*/
#include <stdlib.h>
#include <string.h>

#include "lconc.h"
#include "ring.h"

/* Items up to this size are encoded and read back on the C stack. */
#define STACK_ITEM 256

static int lacks(conc_MPQueue *q, const char *name) {
  static const char *const not_simple[] = {
    "put_nowait", "get_nowait", "qsize", "full", "task_done", "join",
    "join_thread", "cancel_join_thread", NULL};
  static const char *const not_plain[] = {"task_done", "join", NULL};
  const char *const *names;
  switch (conc__mpq_kind(q)) {
    case CONC_MPQ_SIMPLE: names = not_simple; break;
    case CONC_MPQ_QUEUE: names = not_plain; break;
    default: return 0;
  }
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0) return 1;
  return 0;
}

static int mpq_hides(conc_Obj *o, const char *method) {
  return lacks((conc_MPQueue *)o, method);
}

static int meta_mpq(lua_State *L);

static conc_Binding mpq_binding = {.type = &conc__mpq_type, .open = meta_mpq,
                                   .bound = 1, .hides = mpq_hides};

static conc_MPQueue *check_open(lua_State *L) {
  conc_MPQueue *q = (conc_MPQueue *)conc__checkbound(L, 1, &conc__mpq_type);
  if (conc__mpq_closed(q))
    conc__raise(L, CONC_EVALUE, "Queue is closed");
  return q;
}

static conc_MPQueue *check_method(lua_State *L, const char *method) {
  conc_MPQueue *q = check_open(L);
  if (lacks(q, method))
    conc__raise(L, CONC_EATTRIBUTE, "'%s' object has no attribute '%s'",
                conc__mpq_kind(q) == CONC_MPQ_SIMPLE ? "SimpleQueue" : "Queue",
                method);
  return q;
}

static int mpq_new(lua_State *L, int kind) {
  lua_Integer maxsize = luaL_optinteger(L, 1, 0);
  if (maxsize < 0) maxsize = 0;  /* <= 0 is unbounded, as in Python */
  return conc__pushnew(L, (conc_Obj *)conc__mpq_new((uint64_t)maxsize, kind));
}

static int l_queue_new(lua_State *L) { return mpq_new(L, CONC_MPQ_QUEUE); }
static int l_joinable_new(lua_State *L) { return mpq_new(L, CONC_MPQ_JOINABLE); }

static int l_simple_new(lua_State *L) {
  lua_settop(L, 0);
  return mpq_new(L, CONC_MPQ_SIMPLE);
}

/* (block=true, timeout=nil) at idx: the deadline. */
static double wait_args(lua_State *L, int idx, int *block) {
  *block = lua_isnoneornil(L, idx) || lua_toboolean(L, idx);
  if (!*block || lua_isnoneornil(L, idx + 1)) return CONC_FOREVER;
  return conc__opt_deadline(L, idx + 1, CONC_NEG_ERROR,
                            "'timeout' must be a non-negative number");
}

static int do_put(lua_State *L, conc_MPQueue *q, int block, double deadline) {
  static const char *const names[] = {"obj"};
  char buf[STACK_ITEM];
  size_t len = sizeof buf;
  conc_Msg *m;
  conc_RingPart part;
  int rc;
  luaL_checkany(L, 2);
  conc__check_interrupt(L);
  m = conc__encode_plain(L, 2, names, buf, &len);
  part.data = m ? m->data : buf;
  part.len = m ? m->len : len;
  rc = conc__mpq_put(q, &part, 1, block, deadline);
  conc__msg_free(m);
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int mpq_put(lua_State *L) {
  conc_MPQueue *q = check_open(L);
  int block;
  double deadline = wait_args(L, 3, &block);
  return do_put(L, q, block, deadline);
}

static int mpq_put_nowait(lua_State *L) {
  return do_put(L, check_method(L, "put_nowait"), 0, CONC_FOREVER);
}

static int do_get(lua_State *L, conc_MPQueue *q, int block, double deadline) {
  char buf[STACK_ITEM], *data;
  size_t len;
  int rc;
  conc__check_interrupt(L);
  rc = conc__mpq_get(q, buf, sizeof buf, &data, &len, block, deadline);
  if (rc != CONC_OK) return conc__raise(L, rc, NULL);
  lua_settop(L, 0);
  return conc__push_block(L, data, len, 0, data != buf);
}

static int mpq_get(lua_State *L) {
  conc_MPQueue *q = check_open(L);
  int block;
  double deadline = wait_args(L, 2, &block);
  return do_get(L, q, block, deadline);
}

static int mpq_get_nowait(lua_State *L) {
  return do_get(L, check_method(L, "get_nowait"), 0, CONC_FOREVER);
}

static int mpq_qsize(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc__mpq_qsize(check_method(L, "qsize")));
  return 1;
}

static int mpq_empty(lua_State *L) {
  lua_pushboolean(L, conc__mpq_qsize(check_open(L)) == 0);
  return 1;
}

static int mpq_full(lua_State *L) {
  lua_pushboolean(L, conc__mpq_full(check_method(L, "full")));
  return 1;
}

static int mpq_task_done(lua_State *L) {
  int rc = conc__mpq_task_done(check_method(L, "task_done"));
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int mpq_join(lua_State *L) {
  conc_MPQueue *q = check_method(L, "join");
  conc__check_interrupt(L);
  conc__check_wait(L, conc__mpq_join(q, CONC_FOREVER));
  return 0;
}

/* close(): this process puts and gets no more through it (others may). */
static int mpq_close(lua_State *L) {
  conc__mpq_close((conc_MPQueue *)conc__checkbound(L, 1, &conc__mpq_type));
  return 0;
}

/* join_thread, cancel_join_thread: Python's feeder thread; there is none
** (a put has stored its item when it returns), so nothing to wait for. */
static int mpq_nothing(lua_State *L) {
  conc__checkbound(L, 1, &conc__mpq_type);
  return 0;
}

/* The methods, less those the kind lacks (the table proxy holds its own
** bound ones; this serves a method called through the metatable). */
static int mpq_index(lua_State *L) {
  conc_MPQueue *q = (conc_MPQueue *)conc__checkbound(L, 1, &conc__mpq_type);
  size_t len = 0;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len)
                                                : NULL;
  if ((k && lacks(q, k)) || !conc__getmethod(L, &mpq_binding, k, len))
    lua_pushnil(L);
  return 1;
}

static int meta_mpq(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", mpq_index}, {"put", mpq_put}, {"get", mpq_get}, {"put_nowait", mpq_put_nowait},
    {"get_nowait", mpq_get_nowait}, {"qsize", mpq_qsize},
    {"empty", mpq_empty}, {"full", mpq_full}, {"task_done", mpq_task_done},
    {"join", mpq_join}, {"close", mpq_close}, {"join_thread", mpq_nothing},
    {"cancel_join_thread", mpq_nothing}, {NULL, NULL}};
  conc__newmeta(L, &mpq_binding, meta);
  return 0;
}

void conc__open_mpqueue(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"mp_Queue", l_queue_new}, {"mp_JoinableQueue", l_joinable_new},
    {"mp_SimpleQueue", l_simple_new}, {NULL, NULL}};
  conc__bind(&mpq_binding);
  luaL_setfuncs(L, fns, 0);
}
