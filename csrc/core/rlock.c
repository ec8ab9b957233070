/*
** rlock.c -- threading.RLock: a lock its owner may take again, released for
** others after as many releases as acquires. The owner is the OS thread's
** kernel id (conc__thread_self_tid), unique among the live threads of all
** processes, so the same layout serves a lock in shared memory.
*/
#include <stdlib.h>

#include "core.h"

/* What a shared RLock keeps in its mapping: all of its state. */
typedef struct RState {
  conc_Mutex mu;
  atomic_uint owner;      /* tid of the holder, 0 when free */
  unsigned long count;    /* recursion depth; only the owner touches it */
} RState;

struct conc_RLock {
  conc_Obj hdr;
  RState *s;              /* &own, or a shared mapping (see conc_Lock) */
  RState own;
};

static void rlock_destroy(conc_Obj *o) {
  conc_RLock *r = (conc_RLock *)o;
  conc__obj_state_free(r->s, &r->own, sizeof *r->s);
  free(r);
}

static int rlock_export(conc_Obj *o, conc_Export *x) {
  conc_RLock *r = (conc_RLock *)o;
  return conc__obj_export_state(r->s, &r->own, x);
}

static conc_Obj *rlock_attach(const conc_Export *x);

conc_ObjType conc__rlock_type = {.name = "conc.RLock",
                                 .destroy = rlock_destroy,
                                 .export = rlock_export,
                                 .attach = rlock_attach};

static conc_Obj *rlock_attach(const conc_Export *x) {
  conc_RLock *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  r->s = x->map[0];
  conc__obj_init(&r->hdr, &conc__rlock_type);
  return &r->hdr;
}

conc_RLock *conc__rlock_new(int shared) {
  conc_RLock *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  if ((r->s = conc__obj_state(&r->own, sizeof r->own, shared)) == NULL) {
    free(r);
    return NULL;
  }
  conc__obj_init(&r->hdr, &conc__rlock_type);
  conc__mutex_init(&r->s->mu, shared);
  atomic_init(&r->s->owner, 0);
  r->s->count = 0;
  return r;
}

int conc__rlock_shared(conc_RLock *r) {
  return r->s != &r->own;
}

/* Only the holder can read its own id here: another thread may see a
** stale owner, but never one equal to itself. A forked child's thread
** still owns the private RLocks its parent thread held (its copies), but
** not a shared one: that is still held by the parent. */
static int owned(conc_RLock *r) {
  uint32_t owner = atomic_load_explicit(&r->s->owner, memory_order_relaxed);
  if (r->s != &r->own) return owner == conc__thread_self_tid();
  return conc__thread_is_self(owner);
}

static void own(conc_RLock *r, unsigned long count) {
  atomic_store_explicit(&r->s->owner, conc__thread_self_tid(),
                        memory_order_relaxed);
  r->s->count = count;
}

int conc__rlock_acquire(conc_RLock *r, int blocking, double deadline) {
  if (owned(r)) {
    r->s->count++;
    return CONC_OK;
  }
  if (!conc__mutex_try(&r->s->mu)) {
    int rc;
    if (!blocking) return CONC_ETIMEDOUT;
    rc = conc__mutex_acquire(&r->s->mu, deadline);
    if (rc != CONC_OK) return rc;
  }
  own(r, 1);
  return CONC_OK;
}

int conc__rlock_release(conc_RLock *r) {
  if (!owned(r)) return CONC_ENOTOWNER;
  if (--r->s->count == 0) {
    atomic_store_explicit(&r->s->owner, 0, memory_order_relaxed);
    conc__mutex_unlock(&r->s->mu);
  }
  return CONC_OK;
}

int conc__rlock_owned(conc_RLock *r) {
  return owned(r);
}

unsigned long conc__rlock_release_save(conc_RLock *r) {
  unsigned long count = r->s->count;
  r->s->count = 0;
  atomic_store_explicit(&r->s->owner, 0, memory_order_relaxed);
  conc__mutex_unlock(&r->s->mu);
  return count;
}

void conc__rlock_acquire_restore(conc_RLock *r, unsigned long count) {
  conc__mutex_lock(&r->s->mu);
  own(r, count);
}
