/*
** condition.c -- threading.Condition over a Lock or an RLock.
**
** Each waiter links a node of its own (on its C stack) into the condition's
** FIFO list and sleeps on the node's futex word; notify(n) unlinks up to n
** nodes from the front and wakes exactly those, which is what makes Python's
** notify counts exact. The list has a small mutex of its own (`guard`, held
** only for list surgery). A waiter looks at its node under the guard before
** it leaves, so a notifier never touches a node whose owner is gone.
**
** Lock order: the user's lock, then guard.
*/
#include <stdlib.h>

#include "core.h"

typedef struct Waiter {
  struct Waiter *next, *prev;
  atomic_uint signaled;
  int linked;
} Waiter;

struct conc_Condition {
  conc_Obj hdr;
  conc_Obj *lock;      /* conc_Lock or conc_RLock, one reference */
  atomic_uint guard;   /* mutex word for the list */
  Waiter *head, *tail;
};

static void cond_destroy(conc_Obj *o) {
  conc_Condition *c = (conc_Condition *)o;
  conc__obj_decref(c->lock);
  free(c);
}

conc_ObjType conc__cond_type = {
  .name = "conc.Condition", .destroy = cond_destroy, .bound = 1};

conc_Condition *conc__cond_new(conc_Obj *lock) {
  conc_Condition *c = malloc(sizeof *c);
  if (c == NULL) return NULL;
  conc__obj_init(&c->hdr, &conc__cond_type);
  conc__obj_incref(lock);
  c->lock = lock;
  atomic_init(&c->guard, 0);
  c->head = c->tail = NULL;
  return c;
}

conc_Obj *conc__cond_lock(conc_Condition *c) {
  return c->lock;
}

/* Python's _is_owned: an RLock knows its owner; a Lock only that someone
** holds it. */
static int owned(conc_Condition *c) {
  if (c->lock->type == &conc__rlock_type)
    return conc__rlock_owned((conc_RLock *)c->lock);
  return conc__lock_locked((conc_Lock *)c->lock);
}

static void unlink_waiter(conc_Condition *c, Waiter *w) {
  if (w->prev) w->prev->next = w->next;
  else c->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else c->tail = w->prev;
  w->linked = 0;
}

int conc__cond_wait(conc_Condition *c, double deadline) {
  Waiter w;
  unsigned long saved = 0;
  int rc = CONC_OK, notified;
  if (!owned(c)) return -1;
  atomic_init(&w.signaled, 0);
  w.next = NULL;
  conc__mutex_acquire_nointr(&c->guard);
  w.prev = c->tail;
  if (c->tail) c->tail->next = &w;
  else c->head = &w;
  c->tail = &w;
  w.linked = 1;
  conc__mutex_release(&c->guard);
  if (c->lock->type == &conc__rlock_type)
    saved = conc__rlock_release_save((conc_RLock *)c->lock);
  else
    conc__lock_release((conc_Lock *)c->lock);
  while (atomic_load_explicit(&w.signaled, memory_order_acquire) == 0) {
    rc = conc__futex_wait(&w.signaled, 0, deadline);
    if (rc == CONC_ETIMEDOUT || rc == CONC_EINTR) break;
  }
  conc__mutex_acquire_nointr(&c->guard);
  notified = atomic_load_explicit(&w.signaled, memory_order_acquire) != 0;
  if (w.linked) unlink_waiter(c, &w);
  conc__mutex_release(&c->guard);
  /* the lock is taken back whatever happened, as Python's finally does */
  if (c->lock->type == &conc__rlock_type)
    conc__rlock_acquire_restore((conc_RLock *)c->lock, saved);
  else
    conc__mutex_acquire_nointr(conc__lock_word((conc_Lock *)c->lock));
  if (notified) return CONC_OK;
  return rc == CONC_EINTR ? CONC_EINTR : CONC_ETIMEDOUT;
}

int conc__cond_notify(conc_Condition *c, unsigned long n) {
  if (!owned(c)) return -1;
  conc__mutex_acquire_nointr(&c->guard);
  while (n > 0 && c->head) {
    Waiter *w = c->head;
    unlink_waiter(c, w);
    atomic_store_explicit(&w->signaled, 1, memory_order_release);
    /* under the guard: the waiter cannot have left yet (it takes the guard
    ** before it returns), so its node is still there to wake */
    conc__futex_wake(&w->signaled, 1);
    n--;
  }
  conc__mutex_release(&c->guard);
  return 0;
}
