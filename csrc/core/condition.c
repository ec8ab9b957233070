/*
** condition.c -- threading.Condition over a Lock or an RLock.
**
** Each wait is an exclusive link of the condition's wait list (wait.c),
** with a waiter of its own on the waiting thread's stack; notify(n) ends
** the first n in arrival order, which is what makes Python's notify counts
** exact. A waiter unlinks itself under the list's mutex before it leaves,
** so a notify never touches a link whose owner is gone; the link's ready
** events say whether it was notified.
**
** Lock order: the user's lock, then the list's mutex.
*/
#include <stdlib.h>

#include "core.h"

struct conc_Condition {
  conc_Obj hdr;
  conc_Obj *lock;      /* conc_Lock or conc_RLock, one reference */
  conc_WaitList waiters;
};

static void cond_destroy(conc_Obj *o) {
  conc_Condition *c = (conc_Condition *)o;
  conc__obj_decref(c->lock);
  free(c);
}

conc_ObjType conc__cond_type = {.name = "conc.Condition",
                                .destroy = cond_destroy};

conc_Condition *conc__cond_new(conc_Obj *lock) {
  conc_Condition *c = malloc(sizeof *c);
  if (c == NULL) return NULL;
  conc__obj_init(&c->hdr, &conc__cond_type);
  conc__obj_incref(lock);
  c->lock = lock;
  conc__waitlist_init(&c->waiters);
  return c;
}

conc_Obj *conc__cond_lock(conc_Condition *c) {
  return c->lock;
}

static int is_rlock(conc_Condition *c) {
  return c->lock->type == &conc__rlock_type;
}

/* Python's _is_owned: an RLock knows its owner; a Lock only that someone
** holds it. */
static int owned(conc_Condition *c) {
  if (is_rlock(c)) return conc__rlock_owned((conc_RLock *)c->lock);
  return conc__lock_locked((conc_Lock *)c->lock);
}

int conc__cond_wait(conc_Condition *c, double deadline) {
  conc_Waiter w;
  conc_WaitLink link;
  unsigned long saved = 0;
  int rc, notified;
  if (!owned(c)) return CONC_EWAITUNOWNED;
  conc__waiter_init(&w, NULL, NULL);
  conc__waitlist_add(&c->waiters, &link, &w, CONC_READABLE | CONC_EXCLUSIVE,
                     NULL);
  if (is_rlock(c)) saved = conc__rlock_release_save((conc_RLock *)c->lock);
  else conc__lock_release((conc_Lock *)c->lock);
  rc = conc__waiter_wait(&w, deadline);
  notified = conc__waitlist_remove(&c->waiters, &link) != 0;
  /* the lock is taken back whatever happened, as Python's finally does */
  if (is_rlock(c)) conc__rlock_acquire_restore((conc_RLock *)c->lock, saved);
  else conc__mutex_lock(((conc_Lock *)c->lock)->mu);
  if (notified) return CONC_OK;
  return rc == CONC_EINTR ? CONC_EINTR : CONC_ETIMEDOUT;
}

int conc__cond_notify(conc_Condition *c, unsigned long n) {
  if (!owned(c)) return CONC_ENOTIFYUNOWNED;
  if (n > 0) conc__waitlist_wake(&c->waiters, CONC_READABLE, n);
  return CONC_OK;
}
