/*
** event.c -- threading.Event: a flag threads can wait for.
**
** One futex word holds the flag in bit 0 and a count of set() calls above
** it. A waiter that saw the word w sleeps while the word is still w; it
** returns True once the count moved, even if clear() came right after, as
** Python's wait does ("return True if the flag was set"). set() on an
** already-set event and clear() change nothing a waiter watches for.
*/
#include <limits.h>
#include <stdlib.h>

#include "core.h"

#define EVENT_SPINS 1000  /* pause steps (~10 µs here) before sleeping */

struct conc_Event {
  conc_Obj hdr;
  atomic_uint word;      /* set count << 1 | flag */
  atomic_uint waiters;   /* sleeping in wait: set() skips the wake if 0 */
  conc_WaitList watchers;  /* conc.select: ready while set */
};

static int event_ready(conc_Obj *o) {
  return conc__event_is_set((conc_Event *)o);
}

static conc_WaitList *event_waitlist(conc_Obj *o) {
  return &((conc_Event *)o)->watchers;
}

conc_ObjType conc__event_type = {
  .name = "conc.Event", .destroy = conc__obj_free, .ready = event_ready,
  .waitlist = event_waitlist, .bound = 1};

conc_Event *conc__event_new(void) {
  conc_Event *e = malloc(sizeof *e);
  if (e == NULL) return NULL;
  conc__obj_init(&e->hdr, &conc__event_type);
  atomic_init(&e->word, 0);
  atomic_init(&e->waiters, 0);
  conc__waitlist_init(&e->watchers);
  return e;
}

void conc__event_set(conc_Event *e) {
  unsigned w = atomic_load_explicit(&e->word, memory_order_relaxed);
  do {
    if (w & 1) return;  /* set already */
  } while (!atomic_compare_exchange_weak_explicit(
      &e->word, &w, (w + 2) | 1, memory_order_seq_cst, memory_order_relaxed));
  /* seq_cst with the waiter's increment of waiters and its reload of the
  ** word: either it sees our word, or we see it waiting and wake it */
  if (atomic_load_explicit(&e->waiters, memory_order_seq_cst) > 0)
    conc__futex_wake(&e->word, INT_MAX);
  conc__waitlist_notify(&e->watchers);
}

void conc__event_clear(conc_Event *e) {
  atomic_fetch_and_explicit(&e->word, ~1u, memory_order_relaxed);
}

int conc__event_is_set(conc_Event *e) {
  return atomic_load_explicit(&e->word, memory_order_seq_cst) & 1;
}

int conc__event_wait(conc_Event *e, double deadline) {
  unsigned w = atomic_load_explicit(&e->word, memory_order_acquire);
  int rc = CONC_OK;
  if (w & 1) return CONC_OK;
  /* a set() from a thread on another core often comes within microseconds;
  ** waking from a futex takes longer than that here (tens of µs in a VM).
  ** A poll (timeout 0) does not spin. */
  if (conc__can_spin() &&
      (deadline == CONC_FOREVER || deadline > conc__monotonic())) {
    for (int i = 0; i < EVENT_SPINS; i++) {
      if (atomic_load_explicit(&e->word, memory_order_acquire) != w)
        return CONC_OK;  /* the count moved: a set() came */
      conc__spin_pause();
    }
  }
  atomic_fetch_add_explicit(&e->waiters, 1, memory_order_seq_cst);
  /* the count in the word, not the flag, says whether a set() came */
  while (atomic_load_explicit(&e->word, memory_order_seq_cst) == w) {
    rc = conc__futex_wait(&e->word, w, deadline);
    if (rc == CONC_ETIMEDOUT || rc == CONC_EINTR) break;
  }
  atomic_fetch_sub_explicit(&e->waiters, 1, memory_order_relaxed);
  if (rc == CONC_EINTR) return rc;
  return (atomic_load_explicit(&e->word, memory_order_acquire) >> 1) !=
                 (w >> 1)
             ? CONC_OK
             : CONC_ETIMEDOUT;
}
