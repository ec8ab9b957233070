/*
** waiter.c -- waiting for the first of several objects: conc.select.
**
** An object that can be waited on together with others (a Queue, an Event)
** keeps a conc_WaitList and says, through its type's `ready` hook, whether a
** wait for it would end now. A select links one conc_Waiter into the list of
** each object, looks at every object, and sleeps on the waiter's own futex
** word only if none was ready. A change that may make an object ready (a put,
** a set, a shutdown) bumps and wakes every linked waiter.
**
** No wakeup is lost: the notifier changes the object's state, then reads
** the list's count (both seq_cst); the selector adds itself to the count, then
** reads the word and the objects' states (also seq_cst). Either the selector
** sees the new state or the notifier sees the selector and bumps its word,
** which the futex wait compares against.
**
** A waiter carries a `wake` function so that something other than a futex
** can be woken (an event loop will write to its eventfd); NULL means a futex
** wake of `word`. The list is guarded by its own small mutex word, so objects
** without a lock of their own (Event) can have one too.
*/
#include <limits.h>

#include "core.h"

void conc__waitlist_init(conc_WaitList *wl) {
  atomic_init(&wl->mu, 0);
  atomic_init(&wl->n, 0);
  wl->head = NULL;
}

void conc__waitlist_add(conc_WaitList *wl, conc_WaitLink *link,
                        conc_Waiter *w) {
  link->waiter = w;
  conc__mutex_acquire_nointr(&wl->mu);
  link->prev = NULL;
  link->next = wl->head;
  if (wl->head) wl->head->prev = link;
  wl->head = link;
  atomic_fetch_add_explicit(&wl->n, 1, memory_order_seq_cst);
  conc__mutex_release(&wl->mu);
}

void conc__waitlist_remove(conc_WaitList *wl, conc_WaitLink *link) {
  conc__mutex_acquire_nointr(&wl->mu);
  if (link->prev) link->prev->next = link->next;
  else wl->head = link->next;
  if (link->next) link->next->prev = link->prev;
  atomic_fetch_sub_explicit(&wl->n, 1, memory_order_relaxed);
  conc__mutex_release(&wl->mu);
}

void conc__waiter_wake(conc_Waiter *w) {
  atomic_fetch_add_explicit(&w->word, 1, memory_order_seq_cst);
  if (w->wake) w->wake(w);
  else conc__futex_wake(&w->word, INT_MAX);
}

/* The slow half of conc__waitlist_notify: someone is linked. */
void conc__waitlist_wake_all(conc_WaitList *wl) {
  conc__mutex_acquire_nointr(&wl->mu);
  for (conc_WaitLink *l = wl->head; l != NULL; l = l->next)
    conc__waiter_wake(l->waiter);
  conc__mutex_release(&wl->mu);
}

static int ready_index(conc_Obj *const *objs, int n) {
  for (int i = 0; i < n; i++)
    if (objs[i]->type->ready(objs[i])) return i;
  return -1;
}

int conc__select(conc_Obj *const *objs, conc_WaitLink *links, int n,
                 double deadline, int *index) {
  conc_Waiter w;
  int rc = CONC_OK;
  /* the common cases need no linking: something is ready, or a poll */
  *index = ready_index(objs, n);
  if (*index >= 0) return CONC_OK;
  if (deadline != CONC_FOREVER && deadline <= conc__monotonic())
    return CONC_ETIMEDOUT;
  atomic_init(&w.word, 0);
  w.wake = NULL;
  for (int i = 0; i < n; i++)
    conc__waitlist_add(objs[i]->type->waitlist(objs[i]), &links[i], &w);
  for (;;) {
    unsigned seen = atomic_load_explicit(&w.word, memory_order_seq_cst);
    *index = ready_index(objs, n);
    if (*index >= 0) break;
    rc = conc__futex_wait(&w.word, seen, deadline);
    if (rc == CONC_EINTR) break;
    if (rc == CONC_ETIMEDOUT) {
      *index = ready_index(objs, n);  /* a last look, as a timed get has */
      if (*index >= 0) rc = CONC_OK;
      break;
    }
  }
  for (int i = 0; i < n; i++)
    conc__waitlist_remove(objs[i]->type->waitlist(objs[i]), &links[i]);
  return rc;
}
