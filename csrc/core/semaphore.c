/*
** semaphore.c -- conc_Count, a counter threads take from and give to, and
** threading.Semaphore and BoundedSemaphore over it.
**
** Taking with a count above zero is one compare-and-swap; giving wakes
** sleepers only when some are counted (the protocol's lock-free half,
** wait.c). A Semaphore's wait list hears of every give: a slot may be free.
*/
#include <limits.h>
#include <stdlib.h>

#include "core.h"

void conc__count_init(conc_Count *c, unsigned value, int bounded,
                      int shared) {
  atomic_init(&c->value, value);
  conc__seq_init(&c->seq, shared);
  c->bounded = bounded;
  c->bound = value;
}

int conc__count_try(conc_Count *c) {
  unsigned v = atomic_load_explicit(&c->value, memory_order_seq_cst);
  while (v > 0) {
    if (atomic_compare_exchange_weak_explicit(&c->value, &v, v - 1,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return 1;
  }
  return 0;
}

int conc__count_take(conc_Count *c, int blocking, double deadline) {
  unsigned seen;
  int rc = CONC_OK;
  if (conc__count_try(c)) return CONC_OK;
  if (!blocking) return CONC_ETIMEDOUT;
  seen = conc__seq_enter(&c->seq);
  while (!conc__count_try(c)) {
    rc = conc__seq_wait(&c->seq, &seen, deadline, 0);
    if (rc != CONC_OK) {
      if (conc__count_try(c)) rc = CONC_OK;  /* a give came with it */
      break;
    }
  }
  conc__seq_leave(&c->seq);
  return rc;
}

int conc__count_give(conc_Count *c, unsigned n) {
  unsigned v = atomic_load_explicit(&c->value, memory_order_relaxed);
  do {
    if (c->bounded && (v > c->bound || n > c->bound - v))
      return CONC_EOVERRELEASE;
    if (n > UINT_MAX - v) return CONC_EOVERRELEASE;
  } while (!atomic_compare_exchange_weak_explicit(
      &c->value, &v, v + n, memory_order_seq_cst, memory_order_relaxed));
  conc__seq_notify(&c->seq, n > INT_MAX ? INT_MAX : (int)n);
  return CONC_OK;
}

unsigned conc__count_value(conc_Count *c) {
  return atomic_load_explicit(&c->value, memory_order_relaxed);
}

/* ---- threading.Semaphore -------------------------------------------------- */

struct conc_Semaphore {
  conc_Obj hdr;
  conc_Count *count;       /* &own, or shared (conc__obj_state) */
  conc_WaitList watchers;  /* ready while a slot is free */
  conc_Count own;
};

static unsigned sem_ready(conc_Obj *o, unsigned events) {
  return (events & CONC_WRITABLE) &&
                 conc__count_value(((conc_Semaphore *)o)->count) > 0
             ? CONC_WRITABLE
             : 0;
}

static conc_WaitList *sem_waitlist(conc_Obj *o) {
  return &((conc_Semaphore *)o)->watchers;
}

static int sem_remote(conc_Obj *o) {
  conc_Semaphore *s = (conc_Semaphore *)o;
  return s->count != &s->own;
}

static void sem_destroy(conc_Obj *o) {
  conc_Semaphore *s = (conc_Semaphore *)o;
  conc__obj_state_free(s->count, &s->own, sizeof *s->count);
  free(s);
}

static int sem_export(conc_Obj *o, conc_Export *x) {
  conc_Semaphore *s = (conc_Semaphore *)o;
  return conc__obj_export_state(s->count, &s->own, x);
}

static conc_Obj *sem_attach(const conc_Export *x);

conc_ObjType conc__sem_type = {
  .name = "conc.Semaphore", .destroy = sem_destroy, .ready = sem_ready,
  .waitlist = sem_waitlist, .remote = sem_remote, .export = sem_export,
  .attach = sem_attach};

static conc_Semaphore *sem_wrap(conc_Semaphore *s, conc_Count *count) {
  s->count = count;
  conc__obj_init(&s->hdr, &conc__sem_type);
  conc__waitlist_init(&s->watchers);
  return s;
}

static conc_Obj *sem_attach(const conc_Export *x) {
  conc_Semaphore *s = malloc(sizeof *s);
  return s ? &sem_wrap(s, x->map[0])->hdr : NULL;
}

conc_Semaphore *conc__sem_new(unsigned value, int bounded, int shared) {
  conc_Semaphore *s = malloc(sizeof *s);
  conc_Count *count;
  if (s == NULL) return NULL;
  if ((count = conc__obj_state(&s->own, sizeof s->own, shared)) == NULL) {
    free(s);
    return NULL;
  }
  conc__count_init(count, value, bounded, shared);
  return sem_wrap(s, count);
}

int conc__sem_acquire(conc_Semaphore *s, int blocking, double deadline) {
  return conc__count_take(s->count, blocking, deadline);
}

int conc__sem_release(conc_Semaphore *s, unsigned n) {
  int rc = conc__count_give(s->count, n);
  if (rc == CONC_OK) conc__waitlist_notify(&s->watchers, CONC_WRITABLE);
  return rc;
}
