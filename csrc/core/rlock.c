/*
** rlock.c -- threading.RLock: a lock its owner may take again, released for
** others after as many releases as acquires. The owner is the OS thread's
** kernel id (conc__thread_self_tid), unique among the live threads of all
** processes, so the same layout serves a lock in shared memory.
*/
#include <stdlib.h>

#include "core.h"

struct conc_RLock {
  conc_Obj hdr;
  conc_Mutex mu;
  atomic_uint owner;      /* tid of the holder, 0 when free */
  unsigned long count;    /* recursion depth; only the owner touches it */
};

conc_ObjType conc__rlock_type = {.name = "conc.RLock",
                                 .destroy = conc__obj_free};

conc_RLock *conc__rlock_new(void) {
  conc_RLock *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  conc__obj_init(&r->hdr, &conc__rlock_type);
  conc__mutex_init(&r->mu, CONC_PRIVATE);
  atomic_init(&r->owner, 0);
  r->count = 0;
  return r;
}

/* Only the holder can read its own id here: another thread may see a
** stale owner, but never one equal to itself. */
static int owned(conc_RLock *r) {
  return conc__thread_is_self(
      atomic_load_explicit(&r->owner, memory_order_relaxed));
}

static void own(conc_RLock *r, unsigned long count) {
  atomic_store_explicit(&r->owner, conc__thread_self_tid(),
                        memory_order_relaxed);
  r->count = count;
}

int conc__rlock_acquire(conc_RLock *r, int blocking, double deadline) {
  if (owned(r)) {
    r->count++;
    return CONC_OK;
  }
  if (!conc__mutex_try(&r->mu)) {
    int rc;
    if (!blocking) return CONC_ETIMEDOUT;
    rc = conc__mutex_acquire(&r->mu, deadline);
    if (rc != CONC_OK) return rc;
  }
  own(r, 1);
  return CONC_OK;
}

int conc__rlock_release(conc_RLock *r) {
  if (!owned(r)) return CONC_ENOTOWNER;
  if (--r->count == 0) {
    atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
    conc__mutex_unlock(&r->mu);
  }
  return CONC_OK;
}

int conc__rlock_owned(conc_RLock *r) {
  return owned(r);
}

unsigned long conc__rlock_release_save(conc_RLock *r) {
  unsigned long count = r->count;
  r->count = 0;
  atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
  conc__mutex_unlock(&r->mu);
  return count;
}

void conc__rlock_acquire_restore(conc_RLock *r, unsigned long count) {
  conc__mutex_lock(&r->mu);
  own(r, count);
}
