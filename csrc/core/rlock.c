/*
** rlock.c -- threading.RLock: a lock its owner may take again, released for
** others after as many releases as acquires. The owner is the OS thread's
** ident (conc threads each run on one OS thread at a time).
*/
#include <stdlib.h>

#include "core.h"

struct conc_RLock {
  conc_Obj hdr;
  atomic_uint mutex;      /* lock.c's mutex word */
  atomic_ullong owner;    /* ident of the holder, 0 when free */
  unsigned long count;    /* recursion depth; only the owner touches it */
};

conc_ObjType conc__rlock_type = {
  .name = "conc.RLock", .destroy = conc__obj_free, .bound = 1};

conc_RLock *conc__rlock_new(void) {
  conc_RLock *r = malloc(sizeof *r);
  if (r == NULL) return NULL;
  conc__obj_init(&r->hdr, &conc__rlock_type);
  atomic_init(&r->mutex, 0);
  atomic_init(&r->owner, 0);
  r->count = 0;
  return r;
}

/* Only the holder can read its own ident here: another thread may see a
** stale owner, but never one equal to itself. */
static int owned(conc_RLock *r) {
  return atomic_load_explicit(&r->owner, memory_order_relaxed) ==
         conc__thread_self_ident();
}

int conc__rlock_acquire(conc_RLock *r, int blocking, double deadline) {
  int rc;
  if (owned(r)) {
    r->count++;
    return CONC_OK;
  }
  if (conc__mutex_try(&r->mutex)) {
    rc = CONC_OK;
  } else if (!blocking) {
    return CONC_ETIMEDOUT;
  } else {
    rc = conc__mutex_acquire(&r->mutex, deadline);
    if (rc != CONC_OK) return rc;
  }
  atomic_store_explicit(&r->owner, conc__thread_self_ident(),
                        memory_order_relaxed);
  r->count = 1;
  return rc;
}

int conc__rlock_release(conc_RLock *r) {
  if (!owned(r)) return -1;
  if (--r->count == 0) {
    atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
    conc__mutex_release(&r->mutex);
  }
  return 0;
}

int conc__rlock_owned(conc_RLock *r) {
  return owned(r);
}

unsigned long conc__rlock_release_save(conc_RLock *r) {
  unsigned long count = r->count;
  r->count = 0;
  atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
  conc__mutex_release(&r->mutex);
  return count;
}

void conc__rlock_acquire_restore(conc_RLock *r, unsigned long count) {
  conc__mutex_acquire_nointr(&r->mutex);
  atomic_store_explicit(&r->owner, conc__thread_self_ident(),
                        memory_order_relaxed);
  r->count = count;
}
