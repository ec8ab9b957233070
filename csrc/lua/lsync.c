/*
** lsync.c -- threading.Lock, RLock, Condition, Semaphore, BoundedSemaphore,
** Barrier and Event, seen from Lua.
**
** `with lock:` translates to `do local _ <close> = lock:enter() ... end`:
** enter acquires the lock and returns its box (conc__entered), whose __close
** releases it, on errors too.
*/
#include <limits.h>
#include <string.h>

#include "lconc.h"

/* The kinds, for proxy.c: every proxy a table of bound methods. */
static int meta_lock(lua_State *L);
static int meta_rlock(lua_State *L);
static int meta_sem(lua_State *L);
static int meta_cond(lua_State *L);
static int meta_barrier(lua_State *L);
static int meta_event(lua_State *L);

static conc_Binding lock_binding = {.type = &conc__lock_type, .open = meta_lock,
                                 .bound = 1};
static conc_Binding rlock_binding = {.type = &conc__rlock_type, .open = meta_rlock,
                                 .bound = 1};
static conc_Binding sem_binding = {.type = &conc__sem_type, .open = meta_sem,
                                 .bound = 1};
static conc_Binding cond_binding = {.type = &conc__cond_type, .open = meta_cond,
                                 .bound = 1};
static conc_Binding barrier_binding = {.type = &conc__barrier_type, .open = meta_barrier,
                                 .bound = 1};
static conc_Binding event_binding = {.type = &conc__event_type, .open = meta_event,
                                 .bound = 1};

static conc_Lock *check_lock(lua_State *L) {
  return (conc_Lock *)conc__checkbound(L, 1, &conc__lock_type);
}

static conc_Event *check_event(lua_State *L) {
  return (conc_Event *)conc__checkbound(L, 1, &conc__event_type);
}

/* Lock(shared=false): a true `shared` puts it in memory the children this
** process forks from then on share (multiprocessing.Lock). */
static int shared_arg(lua_State *L) {
  return lua_toboolean(L, 1) ? CONC_SHARED : CONC_PRIVATE;
}

static int l_lock_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__lock_new(shared_arg(L)));
}

/* The arguments of Lock's and RLock's acquire(blocking=true, timeout=-1),
** checked as Python checks them; returns the deadline. */
static double lock_args(lua_State *L, int *blocking) {
  double timeout = conc__opt_timeout(L, 3, CONC_NEG_MINUS1, NULL);
  *blocking = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  if (!*blocking && timeout != CONC_FOREVER)
    conc__raise(L, CONC_EVALUE,
                "can't specify a timeout for a non-blocking call");
  return conc__deadline(timeout);
}

/* lock:acquire(blocking=true, timeout=-1) -> boolean, as Python's; also
** what Condition.acquire does on its Lock */
static int acquire_lock(lua_State *L, conc_Lock *l) {
  int blocking;
  double deadline;
  conc__check_interrupt(L);
  if (lua_gettop(L) == 1 && conc__lock_try(l)) {  /* acquire(): the hot path */
    lua_pushboolean(L, 1);
    return 1;
  }
  deadline = lock_args(L, &blocking);
  if (conc__lock_try(l)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!blocking) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, conc__check_wait(L, conc__lock_acquire(l, deadline)));
  return 1;
}

static int lock_acquire(lua_State *L) {
  return acquire_lock(L, check_lock(L));
}

static int release_lock(lua_State *L, conc_Lock *l) {
  int rc = conc__lock_release(l);
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int lock_release(lua_State *L) {
  return release_lock(L, check_lock(L));
}

static int lock_locked(lua_State *L) {
  lua_pushboolean(L, conc__lock_locked(check_lock(L)));
  return 1;
}

/* lock:enter(): Python's __enter__, for `local _ <close> = lock:enter()` */
static int lock_enter(lua_State *L) {
  conc_Lock *l = check_lock(L);
  conc__check_interrupt(L);
  if (!conc__lock_try(l))
    conc__check_wait(L, conc__lock_acquire(l, CONC_FOREVER));
  return conc__entered(L);
}

/* __close: Python's __exit__; a close with an error in flight releases too */
static int lock_close(lua_State *L) {
  return lock_release(L);
}

/* ---- RLock --------------------------------------------------------------- */

static conc_RLock *check_rlock(lua_State *L) {
  return (conc_RLock *)conc__checkbound(L, 1, &conc__rlock_type);
}

static int l_rlock_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__rlock_new(shared_arg(L)));
}

static int acquire_rlock(lua_State *L, conc_RLock *r) {
  int blocking;
  double deadline = lock_args(L, &blocking);
  conc__check_interrupt(L);
  lua_pushboolean(L, conc__check_wait(L, conc__rlock_acquire(r, blocking,
                                                             deadline)));
  return 1;
}

static int rlock_acquire(lua_State *L) {
  return acquire_rlock(L, check_rlock(L));
}

static int release_rlock(lua_State *L, conc_RLock *r) {
  int rc = conc__rlock_release(r);
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int rlock_release(lua_State *L) {
  return release_rlock(L, check_rlock(L));
}

static int rlock_enter(lua_State *L) {
  conc__check_interrupt(L);
  conc__check_wait(L, conc__rlock_acquire(check_rlock(L), 1, CONC_FOREVER));
  return conc__entered(L);
}

/* ---- Semaphore and BoundedSemaphore -------------------------------------- */

static conc_Semaphore *check_sem(lua_State *L) {
  return (conc_Semaphore *)conc__checkbound(L, 1, &conc__sem_type);
}

static int sem_new(lua_State *L, int bounded) {
  lua_Integer value = luaL_optinteger(L, 1, 1);
  if (value < 0)
    return conc__raise(L, CONC_EVALUE, "semaphore initial value must be >= 0");
  if (value > (lua_Integer)UINT_MAX / 2)
    return conc__raise(L, CONC_EVALUE, "semaphore initial value too large");
  return conc__pushnew(L, (conc_Obj *)conc__sem_new((unsigned)value, bounded,
      lua_toboolean(L, 2) ? CONC_SHARED : CONC_PRIVATE));
}

static int l_sem_new(lua_State *L) {
  return sem_new(L, 0);
}

static int l_bsem_new(lua_State *L) {
  return sem_new(L, 1);
}

/* sem:acquire(blocking=true, timeout=nil) -> boolean, as Python's: nil
** waits for good, a negative timeout only tries */
static int sem_acquire(lua_State *L) {
  conc_Semaphore *s = check_sem(L);
  int blocking = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  double deadline = conc__opt_deadline(L, 3, CONC_NEG_NOWAIT, NULL);
  if (!blocking && !lua_isnoneornil(L, 3))
    return conc__raise(L, CONC_EVALUE,
                       "can't specify timeout for non-blocking acquire");
  conc__check_interrupt(L);
  lua_pushboolean(L, conc__check_wait(L, conc__sem_acquire(s, blocking,
                                                           deadline)));
  return 1;
}

static int sem_release(lua_State *L) {
  conc_Semaphore *s = check_sem(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  int rc;
  if (n < 1) return conc__raise(L, CONC_EVALUE, "n must be one or more");
  rc = n > INT_MAX ? CONC_EOVERRELEASE : conc__sem_release(s, (unsigned)n);
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int sem_enter(lua_State *L) {
  conc__check_interrupt(L);
  conc__check_wait(L, conc__sem_acquire(check_sem(L), 1, CONC_FOREVER));
  return conc__entered(L);
}

static int sem_close(lua_State *L) {
  lua_settop(L, 1);
  return sem_release(L);
}

/* ---- Condition ----------------------------------------------------------- */

static conc_Condition *check_cond(lua_State *L) {
  return (conc_Condition *)conc__checkbound(L, 1, &conc__cond_type);
}

/* Condition(lock=nil, shared=false): over the given Lock or RLock, else a
** new RLock; a shared one (multiprocessing's) needs a shared lock. */
static int l_cond_new(lua_State *L) {
  conc_Obj *lock;
  conc_Condition *c;
  int shared = lua_toboolean(L, 2) ? CONC_SHARED : CONC_PRIVATE;
  if (lua_isnoneornil(L, 1)) {
    lock = (conc_Obj *)conc__rlock_new(shared);
    if (lock == NULL) return conc__raise(L, CONC_ENOMEM, NULL);
  } else {
    lock = conc__toobj(L, 1);
    if (lock == NULL || (lock->type != &conc__lock_type &&
                         lock->type != &conc__rlock_type))
      return conc__raise(L, CONC_ETYPE,
                         "Condition needs a Lock or an RLock, got %s",
                         luaL_typename(L, 1));
    if (shared == CONC_SHARED &&
        !(lock->type == &conc__lock_type ? conc__lock_shared((conc_Lock *)lock)
                                         : conc__rlock_shared((conc_RLock *)lock)))
      return conc__raise(L, CONC_ETYPE, "a multiprocessing Condition needs a "
                         "multiprocessing Lock or RLock");
    conc__obj_incref(lock);
  }
  c = conc__cond_new(lock, shared);
  conc__obj_decref(lock);  /* the condition holds its own reference */
  return conc__pushnew(L, (conc_Obj *)c);
}

static int cond_acquire(lua_State *L) {
  conc_Obj *lock = conc__cond_lock(check_cond(L));
  if (lock->type == &conc__rlock_type)
    return acquire_rlock(L, (conc_RLock *)lock);
  return acquire_lock(L, (conc_Lock *)lock);
}

static int cond_release(lua_State *L) {
  conc_Obj *lock = conc__cond_lock(check_cond(L));
  if (lock->type == &conc__rlock_type)
    return release_rlock(L, (conc_RLock *)lock);
  return release_lock(L, (conc_Lock *)lock);
}

static int cond_enter(lua_State *L) {
  conc_Obj *lock = conc__cond_lock(check_cond(L));
  conc__check_interrupt(L);
  if (lock->type == &conc__rlock_type)
    conc__check_wait(L, conc__rlock_acquire((conc_RLock *)lock, 1,
                                            CONC_FOREVER));
  else
    conc__check_wait(L, conc__lock_acquire((conc_Lock *)lock, CONC_FOREVER));
  return conc__entered(L);
}

static int cond_close(lua_State *L) {
  lua_settop(L, 1);
  return cond_release(L);
}

/* Waits until deadline: true if notified. The lock is held again after. */
static int wait_until(lua_State *L, conc_Condition *c, double deadline) {
  return conc__check_wait(L, conc__cond_wait(c, deadline));
}

/* cond:wait(timeout=nil) -> boolean; a negative timeout does not wait */
static int cond_wait(lua_State *L) {
  conc_Condition *c = check_cond(L);
  double deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  conc__check_interrupt(L);
  lua_pushboolean(L, wait_until(L, c, deadline));
  return 1;
}

/* cond:wait_for(predicate, timeout=nil) -> the predicate's last result,
** as Python's: waits while it is falsy, up to timeout in all */
static int cond_wait_for(lua_State *L) {
  conc_Condition *c = check_cond(L);
  double deadline = conc__opt_deadline(L, 3, CONC_NEG_NOWAIT, NULL);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  conc__check_interrupt(L);
  lua_settop(L, 2);
  for (;;) {
    lua_pushvalue(L, 2);
    lua_call(L, 0, 1);
    if (lua_toboolean(L, -1)) return 1;
    if (deadline != CONC_FOREVER && conc__monotonic() >= deadline) return 1;
    lua_pop(L, 1);
    wait_until(L, c, deadline);
  }
}

static int cond_notify(lua_State *L) {
  conc_Condition *c = check_cond(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  int rc;
  if (n < 0) return conc__raise(L, CONC_EVALUE, "n must be >= 0");
  rc = conc__cond_notify(c, (unsigned long)n);
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

static int cond_notify_all(lua_State *L) {
  int rc = conc__cond_notify(check_cond(L), (unsigned long)-1);
  return rc == CONC_OK ? 0 : conc__raise(L, rc, NULL);
}

/* ---- Barrier ------------------------------------------------------------- */

static conc_Barrier *check_barrier(lua_State *L) {
  return (conc_Barrier *)conc__checkbound(L, 1, &conc__barrier_type);
}

static void free_msg(void *m) {
  conc__msg_free(m);
}

/* Barrier(parties, action=nil, timeout=nil): the action crosses like a
** thread's target, and is run in the state of the last thread to arrive */
static int l_barrier_new(lua_State *L) {
  static const char *const names[] = {"action"};
  lua_Integer parties = luaL_checkinteger(L, 1);
  double timeout = conc__opt_timeout(L, 3, CONC_NEG_NOWAIT, NULL);
  conc_Msg *action = NULL;
  conc_Barrier *b;
  if (parties < 1 || parties > INT_MAX)
    return conc__raise(L, CONC_EVALUE, "parties must be > 0");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    action = conc__encode(L, 2, 1, names);
  }
  b = conc__barrier_new((unsigned)parties, timeout, action, free_msg,
                        lua_toboolean(L, 4) ? CONC_SHARED : CONC_PRIVATE);
  if (b == NULL) conc__msg_free(action);
  return conc__pushnew(L, (conc_Obj *)b);
}

static int run_action_p(lua_State *L) {
  conc_Msg *m = lua_touserdata(L, 1);
  lua_settop(L, 0);
  conc__decode(L, m);
  lua_call(L, 0, 0);
  return 0;
}

/* b:wait(timeout=nil) -> this thread's index in its cycle */
static int barrier_wait(lua_State *L) {
  conc_Barrier *b = check_barrier(L);
  double timeout = lua_isnoneornil(L, 2)
                       ? conc__barrier_timeout(b)
                       : conc__opt_timeout(L, 2, CONC_NEG_NOWAIT, NULL);
  unsigned index, cycle;
  int last, rc;
  conc__check_interrupt(L);
  rc = conc__barrier_arrive(b, &index, &cycle, &last);
  if (rc != CONC_OK) return conc__raise(L, rc, NULL);
  if (last) {
    conc_Msg *action = conc__barrier_action(b);
    if (action) {
      lua_pushcfunction(L, run_action_p);
      lua_pushlightuserdata(L, action);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        conc__barrier_release(b, 1);  /* the others see it broken */
        return lua_error(L);
      }
    }
    conc__barrier_release(b, 0);
  } else {
    rc = conc__barrier_wait(b, cycle, conc__deadline(timeout));
    if (rc != CONC_OK) return conc__raise(L, rc, NULL);
  }
  lua_pushinteger(L, index);
  return 1;
}

static int barrier_reset(lua_State *L) {
  conc__barrier_reset(check_barrier(L));
  return 0;
}

static int barrier_abort(lua_State *L) {
  conc__barrier_abort(check_barrier(L));
  return 0;
}

/* the methods, then b.parties, b.n_waiting, b.broken */
static int barrier_index(lua_State *L) {
  conc_Barrier *b;
  size_t len = 0;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len)
                                                : NULL;
  b = check_barrier(L);
  if (conc__getmethod(L, &barrier_binding, k, len)) return 1;
  if (k && strcmp(k, "parties") == 0) {
    lua_pushinteger(L, conc__barrier_parties(b));
  } else if (k && strcmp(k, "n_waiting") == 0) {
    lua_pushinteger(L, conc__barrier_n_waiting(b));
  } else if (k && strcmp(k, "broken") == 0) {
    lua_pushboolean(L, conc__barrier_broken(b));
  } else {
    lua_pushnil(L);
  }
  return 1;
}

/* Python's properties: b.parties = 1 raises, it does not shadow the C
** state. */
static int barrier_newindex(lua_State *L) {
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  check_barrier(L);
  if (k && (strcmp(k, "parties") == 0 || strcmp(k, "n_waiting") == 0 ||
            strcmp(k, "broken") == 0))
    return conc__raise(L, CONC_EATTRIBUTE, "attribute '%s' is read-only", k);
  return conc__set_own_field(L);
}

/* ---- Event --------------------------------------------------------------- */

static int l_event_new(lua_State *L) {
  return conc__pushnew(L, (conc_Obj *)conc__event_new(shared_arg(L)));
}

static int event_set(lua_State *L) {
  conc__event_set(check_event(L));
  return 0;
}

static int event_clear(lua_State *L) {
  conc__event_clear(check_event(L));
  return 0;
}

static int event_is_set(lua_State *L) {
  lua_pushboolean(L, conc__event_is_set(check_event(L)));
  return 1;
}

/* event:wait(timeout=nil) -> boolean: nil waits for good; a negative
** timeout does not wait, as in Python */
static int event_wait(lua_State *L) {
  conc_Event *e = check_event(L);
  double deadline = conc__opt_deadline(L, 2, CONC_NEG_NOWAIT, NULL);
  conc__check_interrupt(L);
  lua_pushboolean(L, conc__check_wait(L, conc__event_wait(e, deadline)));
  return 1;
}

/* The metatables, each made the first time a state meets the kind (see
** proxy.c): a thread's state that never sees a Barrier does not
** build its metatable. */
static int meta_lock(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"acquire", lock_acquire}, {"release", lock_release},
    {"locked", lock_locked}, {"enter", lock_enter}, {"__close", lock_close},
    {NULL, NULL}};
  conc__newmeta(L, &lock_binding, methods);
  return 0;
}

static int meta_rlock(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"acquire", rlock_acquire}, {"release", rlock_release},
    {"enter", rlock_enter}, {"__close", rlock_release}, {NULL, NULL}};
  conc__newmeta(L, &rlock_binding, methods);
  return 0;
}

static int meta_sem(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"acquire", sem_acquire}, {"release", sem_release},
    {"enter", sem_enter}, {"__close", sem_close}, {NULL, NULL}};
  conc__newmeta(L, &sem_binding, methods);
  return 0;
}

static int meta_cond(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"acquire", cond_acquire}, {"release", cond_release},
    {"enter", cond_enter}, {"wait", cond_wait}, {"wait_for", cond_wait_for},
    {"notify", cond_notify}, {"notify_all", cond_notify_all},
    {"notifyAll", cond_notify_all}, {"__close", cond_close}, {NULL, NULL}};
  conc__newmeta(L, &cond_binding, methods);
  return 0;
}

static int meta_barrier(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__index", barrier_index}, {"__newindex", barrier_newindex},
    {"wait", barrier_wait},
    {"reset", barrier_reset}, {"abort", barrier_abort}, {NULL, NULL}};
  conc__newmeta(L, &barrier_binding, meta);
  return 0;
}

static int meta_event(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"set", event_set}, {"clear", event_clear}, {"is_set", event_is_set},
    {"isSet", event_is_set}, {"wait", event_wait}, {NULL, NULL}};
  conc__newmeta(L, &event_binding, methods);
  return 0;
}

void conc__open_sync(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"Lock", l_lock_new}, {"RLock", l_rlock_new}, {"Condition", l_cond_new},
    {"Barrier", l_barrier_new}, {"Semaphore", l_sem_new},
    {"BoundedSemaphore", l_bsem_new}, {"Event", l_event_new}, {NULL, NULL}};
  conc__bind(&lock_binding);
  conc__bind(&rlock_binding);
  conc__bind(&sem_binding);
  conc__bind(&cond_binding);
  conc__bind(&barrier_binding);
  conc__bind(&event_binding);
  luaL_setfuncs(L, fns, 0);
}
