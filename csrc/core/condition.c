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
** A multiprocessing.Condition cannot use links (they are one process's):
** its waiters count themselves in a shared block, and notify(n) hands out
** up to n tokens and wakes them all to take one each. Exactly as many
** waits end as were notified, though not in arrival order.
**
** Lock order: the user's lock, then the list's (or the shared block's)
** mutex.
*/
#include <stdlib.h>

#include "core.h"

typedef struct Shared {
  conc_Mutex mu;
  conc_Seq seq;            /* the waiters sleep here */
  uint64_t waiting;        /* waits under way */
  uint64_t tokens;         /* notified, not yet taken */
} Shared;

struct conc_Condition {
  conc_Obj hdr;
  conc_Obj *lock;      /* conc_Lock or conc_RLock, one reference */
  conc_WaitList waiters;
  Shared *sh;          /* multiprocessing's, else NULL */
};

static void cond_destroy(conc_Obj *o) {
  conc_Condition *c = (conc_Condition *)o;
  conc__obj_decref(c->lock);
  if (c->sh) conc__shm_unmap(c->sh, sizeof *c->sh);
  free(c);
}

static int cond_export(conc_Obj *o, conc_Export *x) {
  conc_Condition *c = (conc_Condition *)o;
  if (c->sh == NULL) return CONC_EVALUE;
  x->map[0] = c->sh;
  x->ref = c->lock;
  return CONC_OK;
}

static conc_Condition *cond_wrap(conc_Condition *c, Shared *sh,
                                 conc_Obj *lock);

static conc_Obj *cond_attach(const conc_Export *x) {
  conc_Condition *c;
  if (x->ref == NULL || (c = malloc(sizeof *c)) == NULL) return NULL;
  return &cond_wrap(c, x->map[0], x->ref)->hdr;
}

conc_ObjType conc__cond_type = {.name = "conc.Condition",
                                .destroy = cond_destroy,
                                .export = cond_export,
                                .attach = cond_attach};

static conc_Condition *cond_wrap(conc_Condition *c, Shared *sh,
                                 conc_Obj *lock) {
  c->sh = sh;
  conc__obj_init(&c->hdr, &conc__cond_type);
  conc__obj_incref(lock);
  c->lock = lock;
  conc__waitlist_init(&c->waiters);
  return c;
}

conc_Condition *conc__cond_new(conc_Obj *lock, int shared) {
  conc_Condition *c = malloc(sizeof *c);
  Shared *sh = NULL;
  if (c == NULL) return NULL;
  if (shared == CONC_SHARED) {
    if ((sh = conc__shm_map(sizeof *sh)) == NULL) {
      free(c);
      return NULL;
    }
    conc__mutex_init(&sh->mu, CONC_SHARED);
    conc__seq_init(&sh->seq, CONC_SHARED);
    sh->waiting = sh->tokens = 0;
  }
  return cond_wrap(c, sh, lock);
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

static unsigned long release_lock(conc_Condition *c) {
  if (is_rlock(c)) return conc__rlock_release_save((conc_RLock *)c->lock);
  conc__lock_release((conc_Lock *)c->lock);
  return 0;
}

/* the lock is taken back whatever happened, as Python's finally does */
static void retake_lock(conc_Condition *c, unsigned long saved) {
  if (is_rlock(c)) conc__rlock_acquire_restore((conc_RLock *)c->lock, saved);
  else conc__mutex_lock(((conc_Lock *)c->lock)->mu);
}

static int shared_wait(conc_Condition *c, double deadline) {
  Shared *sh = c->sh;
  unsigned long saved;
  int rc = CONC_OK, notified = 0;
  conc__mutex_lock(&sh->mu);
  sh->waiting++;  /* counted before the lock goes: a notify then sees us */
  saved = release_lock(c);
  for (;;) {
    if (sh->tokens > 0) {
      sh->tokens--;
      notified = 1;
      break;
    }
    if (rc != CONC_OK) break;
    rc = conc__seq_sleep(&sh->seq, &sh->mu, deadline);
  }
  sh->waiting--;
  conc__mutex_unlock(&sh->mu);
  retake_lock(c, saved);
  if (notified) return CONC_OK;
  return rc == CONC_EINTR ? CONC_EINTR : CONC_ETIMEDOUT;
}

static void shared_notify(conc_Condition *c, unsigned long n) {
  Shared *sh = c->sh;
  uint64_t idle;
  int wake = 0;
  conc__mutex_lock(&sh->mu);
  idle = sh->waiting - sh->tokens;
  if (n > idle) n = (unsigned long)idle;
  if (n > 0) {
    sh->tokens += n;
    wake = conc__seq_signal(&sh->seq, 1);
  }
  conc__mutex_unlock(&sh->mu);
  conc__seq_wake(&sh->seq, wake);
}

int conc__cond_wait(conc_Condition *c, double deadline) {
  conc_Waiter w;
  conc_WaitLink link;
  unsigned long saved = 0;
  int rc, notified;
  if (!owned(c)) return CONC_EWAITUNOWNED;
  if (c->sh) return shared_wait(c, deadline);
  conc__waiter_init(&w, NULL, NULL);
  conc__waitlist_add(&c->waiters, &link, &w, CONC_READABLE | CONC_EXCLUSIVE,
                     NULL);
  saved = release_lock(c);
  rc = conc__waiter_wait(&w, deadline);
  notified = conc__waitlist_remove(&c->waiters, &link) != 0;
  retake_lock(c, saved);
  if (notified) return CONC_OK;
  return rc == CONC_EINTR ? CONC_EINTR : CONC_ETIMEDOUT;
}

int conc__cond_notify(conc_Condition *c, unsigned long n) {
  if (!owned(c)) return CONC_ENOTIFYUNOWNED;
  if (c->sh) shared_notify(c, n);
  else if (n > 0) conc__waitlist_wake(&c->waiters, CONC_READABLE, n);
  return CONC_OK;
}
