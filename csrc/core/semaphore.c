/*
** semaphore.c -- threading.Semaphore and BoundedSemaphore: a counter in a
** futex word. Taking with a count above zero is one compare-and-swap; a
** release wakes sleepers only when some are counted (seq_cst between the
** waiter's count and its look at the value, and the releaser's add and its
** look at the waiters: one of the two sees the other).
*/
#include <limits.h>
#include <stdlib.h>

#include "core.h"

struct conc_Semaphore {
  conc_Obj hdr;
  atomic_uint value;
  atomic_uint waiters;
  int bounded;            /* a BoundedSemaphore: value never passes bound */
  unsigned bound;
};

conc_ObjType conc__sem_type = {
  .name = "conc.Semaphore", .destroy = conc__obj_free, .bound = 1};

conc_Semaphore *conc__sem_new(unsigned value, int bounded) {
  conc_Semaphore *s = malloc(sizeof *s);
  if (s == NULL) return NULL;
  conc__obj_init(&s->hdr, &conc__sem_type);
  atomic_init(&s->value, value);
  atomic_init(&s->waiters, 0);
  s->bounded = bounded;
  s->bound = value;
  return s;
}

static int take(conc_Semaphore *s) {
  unsigned v = atomic_load_explicit(&s->value, memory_order_seq_cst);
  while (v > 0) {
    if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return 1;
  }
  return 0;
}

int conc__sem_acquire(conc_Semaphore *s, int blocking, double deadline) {
  int rc = CONC_OK;
  if (take(s)) return CONC_OK;
  if (!blocking) return CONC_ETIMEDOUT;
  atomic_fetch_add_explicit(&s->waiters, 1, memory_order_seq_cst);
  while (!take(s)) {
    rc = conc__futex_wait(&s->value, 0, deadline);
    if (rc == CONC_ETIMEDOUT || rc == CONC_EINTR) {
      if (take(s)) rc = CONC_OK;  /* a release came with the timeout */
      break;
    }
    rc = CONC_OK;
  }
  atomic_fetch_sub_explicit(&s->waiters, 1, memory_order_relaxed);
  return rc;
}

int conc__sem_release(conc_Semaphore *s, unsigned n) {
  unsigned v = atomic_load_explicit(&s->value, memory_order_relaxed);
  do {
    if (s->bounded && (v > s->bound || n > s->bound - v)) return -1;
    if (n > UINT_MAX - v) return -1;
  } while (!atomic_compare_exchange_weak_explicit(
      &s->value, &v, v + n, memory_order_seq_cst, memory_order_relaxed));
  if (atomic_load_explicit(&s->waiters, memory_order_seq_cst) > 0)
    conc__futex_wake(&s->value, n > INT_MAX ? INT_MAX : (int)n);
  return 0;
}

unsigned conc__sem_value(conc_Semaphore *s) {
  return atomic_load_explicit(&s->value, memory_order_relaxed);
}
