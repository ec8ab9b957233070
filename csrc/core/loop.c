/*
** loop.c -- the core of asyncio's event loop: an epoll set, an eventfd
** that wakes it, a heap of timers, and watches of conc objects.
**
** A loop belongs to the thread that runs it. Other threads reach it in
** two ways, both through its eventfd: conc__loop_wakeup, and the wait
** protocol -- a watch is a conc_WaitLink of the loop's one conc_Waiter in
** the watched object's wait list, and the waiter's wake writes the
** eventfd (once per batch: signals coalesce until the loop takes them).
** So a thread's put into a conc.queue.Queue that a task awaits costs the
** putter one write at most, and the loop one read.
**
** Timers live in a binary heap of ids ordered by (when, arrival); each id
** knows its place in the heap, so cancelling one (wait_for's timeout,
** when the inner work ends first) takes it out in O(log n) instead of
** leaving it to go off for nothing.
*/
#include <stdlib.h>

#include "core.h"

typedef struct Timer {
  double when;
  unsigned long long seq;  /* arrival: ties go in order */
  long long pos;           /* in the heap; -1 when free */
} Timer;

typedef struct Watch {
  conc_WaitLink link;
  conc_Obj *obj;
  long long key;
} Watch;

struct conc_Loop {
  int ep, efd;
  conc_Waiter waiter;
  Timer *timers;          /* by id */
  long long *heap;        /* ids */
  long long *free_ids;
  size_t ntimers, nheap, nfree, cap;
  unsigned long long seq;
  Watch **watches;
  size_t nwatches, capwatches;
};

/* The eventfd's own key: fd keys are the caller's, but never this one. */
#define WAKE_KEY (-1LL)

static void loop_wake(conc_Waiter *w) {
  conc__poll_notify(((conc_Loop *)w->ud)->efd);
}

conc_Loop *conc__loop_new(int *rc) {
  conc_Loop *l = calloc(1, sizeof *l);
  if (l == NULL) {
    *rc = CONC_ENOMEM;
    return NULL;
  }
  l->ep = l->efd = -1;
  if ((*rc = conc__poll_open()) < 0) goto fail;
  l->ep = *rc;
  if ((*rc = conc__poll_eventfd()) < 0) goto fail;
  l->efd = *rc;
  if ((*rc = conc__poll_add(l->ep, l->efd, CONC_POLL_IN,
                            (unsigned long long)WAKE_KEY)) < 0)
    goto fail;
  conc__waiter_init(&l->waiter, loop_wake, l);
  *rc = CONC_OK;
  return l;
fail:
  conc__loop_free(l);
  return NULL;
}

void conc__loop_free(conc_Loop *l) {
  if (l == NULL) return;
  while (l->nwatches > 0) conc__loop_unwatch(l, l->watches[0]->key);
  if (l->ep >= 0) conc__proc_close_fd(l->ep);
  if (l->efd >= 0) conc__proc_close_fd(l->efd);
  free(l->watches);
  free(l->timers);
  free(l->heap);
  free(l->free_ids);
  free(l);
}

void conc__loop_wakeup(conc_Loop *l) { conc__poll_notify(l->efd); }

int conc__loop_wakefd(conc_Loop *l) { return l->efd; }

int conc__loop_fd_add(conc_Loop *l, int fd, unsigned events, long long key) {
  return conc__poll_add(l->ep, fd, events, (unsigned long long)key);
}

int conc__loop_fd_mod(conc_Loop *l, int fd, unsigned events, long long key) {
  return conc__poll_mod(l->ep, fd, events, (unsigned long long)key);
}

int conc__loop_fd_del(conc_Loop *l, int fd) { return conc__poll_del(l->ep, fd); }

/* ---- the timer heap ---------------------------------------------------- */

static int earlier(const conc_Loop *l, long long a, long long b) {
  const Timer *x = &l->timers[a], *y = &l->timers[b];
  return x->when < y->when || (x->when == y->when && x->seq < y->seq);
}

static void place(conc_Loop *l, size_t i, long long id) {
  l->heap[i] = id;
  l->timers[id].pos = (long long)i;
}

static void sift_up(conc_Loop *l, size_t i) {
  long long id = l->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(l, id, l->heap[parent])) break;
    place(l, i, l->heap[parent]);
    i = parent;
  }
  place(l, i, id);
}

static void sift_down(conc_Loop *l, size_t i) {
  long long id = l->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= l->nheap) break;
    if (c + 1 < l->nheap && earlier(l, l->heap[c + 1], l->heap[c])) c++;
    if (!earlier(l, l->heap[c], id)) break;
    place(l, i, l->heap[c]);
    i = c;
  }
  place(l, i, id);
}

static int grow_timers(conc_Loop *l) {
  size_t cap = l->cap ? l->cap * 2 : 64;
  Timer *t = realloc(l->timers, cap * sizeof *t);
  long long *h, *f;
  if (t == NULL) return CONC_ENOMEM;
  l->timers = t;
  if ((h = realloc(l->heap, cap * sizeof *h)) == NULL) return CONC_ENOMEM;
  l->heap = h;
  if ((f = realloc(l->free_ids, cap * sizeof *f)) == NULL) return CONC_ENOMEM;
  l->free_ids = f;
  l->cap = cap;
  return CONC_OK;
}

long long conc__loop_timer_add(conc_Loop *l, double when) {
  long long id;
  if (l->nfree > 0) {
    id = l->free_ids[--l->nfree];
  } else {
    if (l->ntimers == l->cap && grow_timers(l) != CONC_OK) return CONC_ENOMEM;
    id = (long long)l->ntimers++;
  }
  l->timers[id].when = when;
  l->timers[id].seq = l->seq++;
  place(l, l->nheap++, id);
  sift_up(l, l->nheap - 1);
  return id;
}

/* Takes the timer at heap place i out, and frees its id. */
static void remove_at(conc_Loop *l, size_t i) {
  long long id = l->heap[i];
  long long last = l->heap[--l->nheap];
  l->timers[id].pos = -1;
  l->free_ids[l->nfree++] = id;
  if ((size_t)i == l->nheap) return;
  place(l, i, last);
  if (i > 0 && earlier(l, last, l->heap[(i - 1) / 2])) sift_up(l, i);
  else sift_down(l, i);
}

void conc__loop_timer_cancel(conc_Loop *l, long long id) {
  if (id < 0 || (size_t)id >= l->ntimers || l->timers[id].pos < 0) return;
  remove_at(l, (size_t)l->timers[id].pos);
}

size_t conc__loop_timers(conc_Loop *l) { return l->nheap; }

/* ---- watches of conc objects ------------------------------------------- */

int conc__loop_watch(conc_Loop *l, conc_Obj *o, unsigned events,
                     long long key) {
  Watch *w;
  if (o->type->ready == NULL || o->type->waitlist == NULL ||
      (o->type->remote && o->type->remote(o)))
    return CONC_ETYPE;
  if (l->nwatches == l->capwatches) {
    size_t cap = l->capwatches ? l->capwatches * 2 : 8;
    Watch **ws = realloc(l->watches, cap * sizeof *ws);
    if (ws == NULL) return CONC_ENOMEM;
    l->watches = ws;
    l->capwatches = cap;
  }
  if ((w = malloc(sizeof *w)) == NULL) return CONC_ENOMEM;
  conc__obj_incref(o);
  w->obj = o;
  w->key = key;
  l->watches[l->nwatches++] = w;
  conc__waitlist_add(o->type->waitlist(o), &w->link, &l->waiter, events, w);
  /* linked, then look: a change made before the link is not lost */
  if (o->type->ready(o, events)) {
    atomic_fetch_or_explicit(&w->link.ready, events, memory_order_relaxed);
    conc__waiter_signal(&l->waiter);
  }
  return CONC_OK;
}

void conc__loop_unwatch(conc_Loop *l, long long key) {
  for (size_t i = 0; i < l->nwatches; i++) {
    Watch *w = l->watches[i];
    if (w->key != key) continue;
    conc__waitlist_remove(w->obj->type->waitlist(w->obj), &w->link);
    conc__obj_decref(w->obj);
    l->watches[i] = l->watches[--l->nwatches];
    free(w);
    return;
  }
}

/* ---- the wait ---------------------------------------------------------- */

int conc__loop_poll(conc_Loop *l, double timeout, conc_LoopEvent *out,
                    int max) {
  conc_PollEvent evs[256];
  int n, k = 0, woken = 0;
  if (l->nheap > 0) {
    double left = l->timers[l->heap[0]].when - conc__monotonic();
    if (left < 0) left = 0;
    if (timeout < 0 || left < timeout) timeout = left;
  }
  n = conc__poll_wait(l->ep, evs, max < 256 ? max : 256, timeout);
  if (n < 0) return n;
  for (int i = 0; i < n; i++) {
    if ((long long)evs[i].data == WAKE_KEY) {
      conc__poll_drain(l->efd);
      woken = 1;
      continue;
    }
    out[k].kind = CONC_LOOP_FD;
    out[k].events = evs[i].events;
    out[k].key = (long long)evs[i].data;
    k++;
  }
  if (woken && conc__waiter_take(&l->waiter)) {
    for (size_t i = 0; i < l->nwatches; i++) {
      Watch *w = l->watches[i];
      unsigned r;
      if (k == max) {  /* no room: the next poll looks again */
        conc__waiter_signal(&l->waiter);
        break;
      }
      r = atomic_exchange_explicit(&w->link.ready, 0, memory_order_relaxed);
      if (r == 0) continue;
      out[k].kind = CONC_LOOP_WATCH;
      out[k].events = r;
      out[k].key = w->key;
      k++;
    }
  }
  if (l->nheap > 0) {
    double now = conc__monotonic();
    while (l->nheap > 0 && k < max) {
      long long id = l->heap[0];
      if (l->timers[id].when > now) break;
      out[k].kind = CONC_LOOP_TIMER;
      out[k].events = 0;
      out[k].key = id;
      k++;
      remove_at(l, 0);
    }
  }
  return k;
}
