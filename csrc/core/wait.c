/*
** wait.c -- the wait protocol (see core.h for its rules): sequence words
** for the calls that block on one object, wait lists for the waiters that
** watch objects from outside, and conc.select over them.
*/
#include <limits.h>

#include "core.h"

/* ======================================================================
** Sequence words
** ====================================================================== */

void conc__seq_init(conc_Seq *s, int shared) {
  atomic_init(&s->seq, 0);
  atomic_init(&s->sleepers, 0);
  s->shared = (uint32_t)shared;
}

/*
** Under the mutex, sleepers are counted until a waker pays them off:
** seq_signal takes the woken one off the count at once, so a producer
** whose consumer was woken but has not run yet makes no more wake calls
** (before, it made one per put, each a system call). A sleeper that comes
** back finds the word moved (a waker paid someone off -- maybe it; counts
** are anonymous) or unmoved (nobody did: it takes itself off). A word
** moved by an interrupt leaves one count too many, which costs one wake
** later; one too few could lose a wake, so the count errs that way only.
*/
int conc__seq_sleep(conc_Seq *s, conc_Mutex *mu, double deadline) {
  unsigned seen = atomic_load_explicit(&s->seq, memory_order_relaxed);
  int rc;
  atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_relaxed);
  conc__mutex_unlock(mu);
  rc = conc__wait_seq(&s->seq, seen, deadline, (int)s->shared);
  conc__mutex_lock(mu);
  if (atomic_load_explicit(&s->seq, memory_order_relaxed) == seen)
    atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_relaxed);
  return rc;
}

int conc__seq_signal(conc_Seq *s, int all) {
  unsigned n = atomic_load_explicit(&s->sleepers, memory_order_relaxed);
  if (n == 0) return 0;
  atomic_store_explicit(&s->sleepers, all ? 0 : n - 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed);
  return all ? INT_MAX : 1;
}

void conc__seq_wake(conc_Seq *s, int n) {
  if (n > 0) conc__futex_wake(&s->seq, n, (int)s->shared);
}

/* Lock-free: the count is only "someone may sleep", never paid off; the
** sleeper's increment and its look at the state, and the notifier's change
** and its look at the count, are seq_cst: one of the two sees the other. */
unsigned conc__seq_enter(conc_Seq *s) {
  unsigned seen = atomic_load_explicit(&s->seq, memory_order_seq_cst);
  atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
  return seen;
}

/* One sleep; *seen is updated for the next, so a caller loops:
** while (state says wait) if ((rc = seq_wait(...)) != CONC_OK) break; */
int conc__seq_wait(conc_Seq *s, unsigned *seen, double deadline, int flags) {
  int rc = conc__wait_seq(&s->seq, *seen, deadline, flags | (int)s->shared);
  *seen = atomic_load_explicit(&s->seq, memory_order_seq_cst);
  return rc;
}

void conc__seq_leave(conc_Seq *s) {
  atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_relaxed);
}

void conc__seq_notify(conc_Seq *s, int n) {
  if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst) == 0) return;
  atomic_fetch_add_explicit(&s->seq, 1, memory_order_seq_cst);
  conc__futex_wake(&s->seq, n, (int)s->shared);
}

/* ======================================================================
** Waiters and wait lists
** ====================================================================== */

void conc__waiter_init(conc_Waiter *w, void (*wake)(conc_Waiter *w),
                       void *ud) {
  atomic_init(&w->seq, 0);
  atomic_init(&w->pending, 0);
  w->wake = wake;
  w->ud = ud;
}

/* Only the 0 -> 1 edge of pending wakes (libuv's uv_async_send): a
** waiter signalled twice before it looks is woken once. */
void conc__waiter_signal(conc_Waiter *w) {
  if (atomic_load_explicit(&w->pending, memory_order_seq_cst) ||
      atomic_exchange_explicit(&w->pending, 1, memory_order_seq_cst))
    return;
  if (w->wake) {
    w->wake(w);
  } else {
    atomic_fetch_add_explicit(&w->seq, 1, memory_order_seq_cst);
    conc__futex_wake(&w->seq, INT_MAX, CONC_PRIVATE);
  }
}

int conc__waiter_take(conc_Waiter *w) {
  return atomic_exchange_explicit(&w->pending, 0, memory_order_seq_cst);
}

int conc__waiter_wait(conc_Waiter *w, double deadline) {
  for (;;) {
    unsigned seen = atomic_load_explicit(&w->seq, memory_order_seq_cst);
    int rc;
    if (conc__waiter_take(w)) return CONC_OK;
    rc = conc__wait_seq(&w->seq, seen, deadline, 0);
    if (rc != CONC_OK) return conc__waiter_take(w) ? CONC_OK : rc;
  }
}

void conc__waitlist_init(conc_WaitList *wl) {
  conc__mutex_init(&wl->mu, CONC_PRIVATE);
  atomic_init(&wl->n, 0);
  wl->head = wl->tail = NULL;
}

void conc__waitlist_add(conc_WaitList *wl, conc_WaitLink *l, conc_Waiter *w,
                        unsigned events, void *ud) {
  l->waiter = w;
  l->events = events;
  l->ud = ud;
  atomic_init(&l->ready, 0);
  conc__mutex_lock(&wl->mu);
  l->next = NULL;
  l->prev = wl->tail;
  if (wl->tail) wl->tail->next = l;
  else wl->head = l;
  wl->tail = l;
  l->linked = 1;
  atomic_fetch_add_explicit(&wl->n, 1, memory_order_seq_cst);
  conc__mutex_unlock(&wl->mu);
}

/* Under the list's mutex. */
static void unlink_link(conc_WaitList *wl, conc_WaitLink *l) {
  if (l->prev) l->prev->next = l->next;
  else wl->head = l->next;
  if (l->next) l->next->prev = l->prev;
  else wl->tail = l->prev;
  l->linked = 0;
  atomic_fetch_sub_explicit(&wl->n, 1, memory_order_relaxed);
}

unsigned conc__waitlist_remove(conc_WaitList *wl, conc_WaitLink *l) {
  unsigned ready;
  conc__mutex_lock(&wl->mu);
  if (l->linked) unlink_link(wl, l);
  ready = atomic_load_explicit(&l->ready, memory_order_relaxed);
  conc__mutex_unlock(&wl->mu);
  return ready;
}

/* The signal is sent under the list's mutex: a waiter takes it before it
** leaves (conc__waitlist_remove), so a notify never touches a link or a
** waiter whose owner is gone. */
unsigned long conc__waitlist_wake(conc_WaitList *wl, unsigned events,
                                  unsigned long nexcl) {
  unsigned long woken = 0;
  conc__mutex_lock(&wl->mu);
  for (conc_WaitLink *l = wl->head, *next; l != NULL; l = next) {
    unsigned hit = l->events & events;
    next = l->next;
    if (hit == 0) continue;
    if (l->events & CONC_EXCLUSIVE) {
      if (woken == nexcl) continue;
      woken++;
      unlink_link(wl, l);
    }
    atomic_fetch_or_explicit(&l->ready, hit, memory_order_relaxed);
    conc__waiter_signal(l->waiter);
  }
  conc__mutex_unlock(&wl->mu);
  return woken;
}

/* ======================================================================
** conc.select
** ====================================================================== */

static int ready_index(conc_Obj *const *objs, int n, unsigned events) {
  for (int i = 0; i < n; i++)
    if (objs[i]->type->ready(objs[i], events)) return i;
  return -1;
}

/* How often a select over objects other processes change looks again:
** after 1 ms, then twice as long each time up to 20 ms, the longest it
** takes to hear of another process's put or set. */
#define SELECT_SLICE_MIN 0.001
#define SELECT_SLICE_MAX 0.020

static int any_remote(conc_Obj *const *objs, int n) {
  for (int i = 0; i < n; i++)
    if (objs[i]->type->remote && objs[i]->type->remote(objs[i])) return 1;
  return 0;
}

int conc__select(conc_Obj *const *objs, conc_WaitLink *links, int n,
                 unsigned events, double deadline, int *index) {
  conc_Waiter w;
  int rc = CONC_OK, remote;
  double slice = SELECT_SLICE_MIN;
  /* the common cases need no linking: something is ready, or a poll */
  *index = ready_index(objs, n, events);
  if (*index >= 0) return CONC_OK;
  if (deadline != CONC_FOREVER && deadline <= conc__monotonic())
    return CONC_ETIMEDOUT;
  remote = any_remote(objs, n);
  conc__waiter_init(&w, NULL, NULL);
  for (int i = 0; i < n; i++)
    conc__waitlist_add(objs[i]->type->waitlist(objs[i]), &links[i], &w,
                       events, NULL);
  for (;;) {
    double until = deadline;
    *index = ready_index(objs, n, events);
    if (*index >= 0) break;
    if (remote) {
      until = conc__monotonic() + slice;
      if (deadline != CONC_FOREVER && until > deadline) until = deadline;
      slice = slice * 2 < SELECT_SLICE_MAX ? slice * 2 : SELECT_SLICE_MAX;
    }
    rc = conc__waiter_wait(&w, until);
    if (rc == CONC_EINTR) break;
    if (rc == CONC_ETIMEDOUT && until != deadline) {  /* look again */
      rc = CONC_OK;
      continue;
    }
    if (rc == CONC_ETIMEDOUT) {
      *index = ready_index(objs, n, events);  /* a last look, as a get has */
      if (*index >= 0) rc = CONC_OK;
      break;
    }
  }
  for (int i = 0; i < n; i++)
    conc__waitlist_remove(objs[i]->type->waitlist(objs[i]), &links[i]);
  return rc;
}
