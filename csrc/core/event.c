/*
** event.c -- conc_Flag, the flag threads wait for, and threading.Event
** over it.
**
** The flag's word holds the flag in bit 0 and a count of set() calls above
** it. A waiter that saw the word w waits while the word is still w; it
** returns True once the count moved, even if clear() came right after, as
** Python's wait does ("return True if the flag was set"). set() on an
** already-set flag and clear() change nothing a waiter watches for.
** Waiters sleep on the flag's sequence word (wait.c), not on the word.
*/
#include <limits.h>
#include <stdlib.h>

#include "core.h"

#define FLAG_SPINS 1000  /* pause steps (~10 us here) before sleeping */

void conc__flag_init(conc_Flag *f, int shared) {
  atomic_init(&f->word, 0);
  conc__seq_init(&f->seq, shared);
}

int conc__flag_mark(conc_Flag *f) {
  unsigned w = atomic_load_explicit(&f->word, memory_order_relaxed);
  do {
    if (w & 1) return 0;  /* set already */
  } while (!atomic_compare_exchange_weak_explicit(
      &f->word, &w, (w + 2) | 1, memory_order_seq_cst, memory_order_relaxed));
  return 1;
}

void conc__flag_wake(conc_Flag *f) {
  conc__seq_notify(&f->seq, INT_MAX);
}

int conc__flag_set(conc_Flag *f) {
  if (!conc__flag_mark(f)) return 0;
  conc__flag_wake(f);
  return 1;
}

void conc__flag_clear(conc_Flag *f) {
  atomic_fetch_and_explicit(&f->word, ~1u, memory_order_relaxed);
}

int conc__flag_is_set(conc_Flag *f) {
  return atomic_load_explicit(&f->word, memory_order_seq_cst) & 1;
}

int conc__flag_wait(conc_Flag *f, double deadline, int flags) {
  unsigned w = atomic_load_explicit(&f->word, memory_order_acquire), seen;
  int rc = CONC_OK;
  if (w & 1) return CONC_OK;
  /* a set() from a thread on another core often comes within microseconds;
  ** waking from a futex takes longer than that here (tens of us in a VM).
  ** A poll (timeout 0) does not spin. */
  if (!(flags & CONC_WAIT_NOSPIN) && conc__can_spin() &&
      (deadline == CONC_FOREVER || deadline > conc__monotonic())) {
    for (int i = 0; i < FLAG_SPINS; i++) {
      if (atomic_load_explicit(&f->word, memory_order_acquire) != w)
        return CONC_OK;  /* the count moved: a set() came */
      conc__spin_pause();
    }
  }
  seen = conc__seq_enter(&f->seq);
  /* the count in the word, not the flag, says whether a set() came */
  while (atomic_load_explicit(&f->word, memory_order_seq_cst) == w) {
    rc = conc__seq_wait(&f->seq, &seen, deadline, flags & CONC_WAIT_NOINTR);
    if (rc != CONC_OK) break;
  }
  conc__seq_leave(&f->seq);
  if ((atomic_load_explicit(&f->word, memory_order_acquire) >> 1) != (w >> 1))
    return CONC_OK;  /* a set() came, whatever else did */
  return rc == CONC_OK ? CONC_ETIMEDOUT : rc;
}

/* ---- threading.Event ----------------------------------------------------- */

struct conc_Event {
  conc_Obj hdr;
  conc_Flag *flag;         /* &own, or shared (conc__obj_state) */
  conc_WaitList watchers;  /* ready while set */
  conc_Flag own;
};

static unsigned event_ready(conc_Obj *o, unsigned events) {
  return (events & CONC_READABLE) &&
                 conc__flag_is_set(((conc_Event *)o)->flag)
             ? CONC_READABLE
             : 0;
}

static conc_WaitList *event_waitlist(conc_Obj *o) {
  return &((conc_Event *)o)->watchers;
}

static int event_remote(conc_Obj *o) {
  conc_Event *e = (conc_Event *)o;
  return e->flag != &e->own;
}

static void event_destroy(conc_Obj *o) {
  conc_Event *e = (conc_Event *)o;
  conc__obj_state_free(e->flag, &e->own, sizeof *e->flag);
  free(e);
}

static int event_export(conc_Obj *o, conc_Export *x) {
  conc_Event *e = (conc_Event *)o;
  return conc__obj_export_state(e->flag, &e->own, x);
}

static conc_Obj *event_attach(const conc_Export *x);

conc_ObjType conc__event_type = {
  .name = "conc.Event", .destroy = event_destroy, .ready = event_ready,
  .waitlist = event_waitlist, .remote = event_remote, .export = event_export,
  .attach = event_attach};

static conc_Event *event_wrap(conc_Event *e, conc_Flag *flag) {
  e->flag = flag;
  conc__obj_init(&e->hdr, &conc__event_type);
  conc__waitlist_init(&e->watchers);
  return e;
}

static conc_Obj *event_attach(const conc_Export *x) {
  conc_Event *e = malloc(sizeof *e);
  return e ? &event_wrap(e, x->map[0])->hdr : NULL;
}

conc_Event *conc__event_new(int shared) {
  conc_Event *e = malloc(sizeof *e);
  conc_Flag *flag;
  if (e == NULL) return NULL;
  if ((flag = conc__obj_state(&e->own, sizeof e->own, shared)) == NULL) {
    free(e);
    return NULL;
  }
  conc__flag_init(flag, shared);
  return event_wrap(e, flag);
}

void conc__event_set(conc_Event *e) {
  if (conc__flag_set(e->flag))
    conc__waitlist_notify(&e->watchers, CONC_READABLE);
}

void conc__event_clear(conc_Event *e) {
  conc__flag_clear(e->flag);
}

int conc__event_is_set(conc_Event *e) {
  return conc__flag_is_set(e->flag);
}

int conc__event_wait(conc_Event *e, double deadline) {
  return conc__flag_wait(e->flag, deadline, 0);
}
