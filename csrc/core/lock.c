/*
** lock.c -- threading.Lock: a conc_Mutex owned by nobody (Python lets any
** thread release it), and a wait list, so that a waiter outside (an event
** loop) hears when it is let go.
**
** A link on the list hears of a release only if the release is
** contended: the lock's `ready` hook marks a held lock contended (waiters)
** when it finds it held, so an uncontended pair stays two atomic
** instructions whether or not anybody could be watching.
*/
#include <stdlib.h>

#include "core.h"

static unsigned lock_ready(conc_Obj *o, unsigned events) {
  conc_Lock *l = (conc_Lock *)o;
  unsigned s = atomic_load_explicit(&l->mu->state, memory_order_seq_cst);
  if (!(events & CONC_WRITABLE)) return 0;
  /* held: make its release the contended kind, which notifies */
  while (s != 0 && !(s & CONC_MUTEX_WAITERS) &&
         !atomic_compare_exchange_weak_explicit(
             &l->mu->state, &s, s | CONC_MUTEX_WAITERS, memory_order_seq_cst,
             memory_order_seq_cst)) {
  }
  return s == 0 ? CONC_WRITABLE : 0;
}

static conc_WaitList *lock_waitlist(conc_Obj *o) {
  return &((conc_Lock *)o)->watchers;
}

static int lock_remote(conc_Obj *o) {
  conc_Lock *l = (conc_Lock *)o;
  return l->mu != &l->own;
}

static void lock_destroy(conc_Obj *o) {
  conc_Lock *l = (conc_Lock *)o;
  conc__obj_state_free(l->mu, &l->own, sizeof *l->mu);
  free(l);
}

static int lock_export(conc_Obj *o, conc_Export *x) {
  conc_Lock *l = (conc_Lock *)o;
  return conc__obj_export_state(l->mu, &l->own, x);
}

static void lock_wrap(conc_Lock *l, conc_Mutex *mu);

static conc_Obj *lock_attach(const conc_Export *x) {
  conc_Lock *l = malloc(sizeof *l);
  if (l != NULL) lock_wrap(l, x->map[0]);
  return (conc_Obj *)l;
}

conc_ObjType conc__lock_type = {
  .name = "conc.Lock", .destroy = lock_destroy, .ready = lock_ready,
  .waitlist = lock_waitlist, .remote = lock_remote, .export = lock_export,
  .attach = lock_attach};

static void lock_wrap(conc_Lock *l, conc_Mutex *mu) {
  l->mu = mu;
  conc__obj_init(&l->hdr, &conc__lock_type);
  conc__waitlist_init(&l->watchers);
}

conc_Lock *conc__lock_new(int shared) {
  conc_Lock *l = malloc(sizeof *l);
  conc_Mutex *mu;
  if (l == NULL) return NULL;
  if ((mu = conc__obj_state(&l->own, sizeof l->own, shared)) == NULL) {
    free(l);
    return NULL;
  }
  conc__mutex_init(mu, shared);
  lock_wrap(l, mu);
  return l;
}

int conc__lock_shared(conc_Lock *l) {
  return l->mu != &l->own;
}

static void pauses(int n) {
  for (int i = 0; i < n; i++) conc__spin_pause();
}

/*
** threading.Lock waits differently from an internal lock: user code often
** holds it in a loop (`for ... do local _ <close> = lock:enter() ... end`),
** letting go for only the ~60 ns until the next pass takes it again. A
** waiter that takes it in that gap hands it back and forth every pass, and
** with it the cache lines of the lock and of all the data it guards: two
** threads adding to a shared.dict under one Lock (bench W4) did 2.5 M
** increments a second that way, one thread alone 5. And a waiter that polls
** the word often costs the holder a cache miss on each take and release. So
** the waiter looks rarely (the gap between looks doubles from LOCK_PROBE
** pauses to LOCK_PROBE_MAX, about 2 us), takes a free lock only if it is
** still free LOCK_CONFIRM pauses later (the holder is not coming straight
** back), and sleeps after LOCK_SPINS pauses (about 50 us; a pause is 10-40
** ns, by CPU). The holder then runs on alone, as Python's GIL lets one
** thread run for 5 ms; the sleeper is woken by a release and takes the
** lock if free (conc__mutex_sleep), so it gets its turn. W4: ~5.1 M a
** second. A lock held briefly and let go for good is still taken within a
** probe or two.
*/
#define LOCK_PROBE 4
#define LOCK_PROBE_MAX 200
#define LOCK_CONFIRM 16
#define LOCK_SPINS 5000

static int lock_spin_try(conc_Mutex *m) {
  int wait = LOCK_PROBE;
  if (!conc__can_spin()) return 0;
  for (int i = 0; i < LOCK_SPINS; i += wait) {
    if (wait < LOCK_PROBE_MAX) wait *= 2;
    pauses(wait);
    if (atomic_load_explicit(&m->state, memory_order_relaxed) != 0) continue;
    pauses(LOCK_CONFIRM);
    i += LOCK_CONFIRM;
    if (atomic_load_explicit(&m->state, memory_order_relaxed) == 0 &&
        conc__mutex_try(m))
      return 1;
  }
  return 0;
}

int conc__lock_acquire(conc_Lock *l, double deadline) {
  if (conc__mutex_try(l->mu) || lock_spin_try(l->mu)) return CONC_OK;
  return conc__mutex_sleep(l->mu, deadline, 0);
}

/* The contended half of conc__lock_release: a sleeper, and the links. */
void conc__lock_contended(conc_Lock *l) {
  conc__mutex_wake(l->mu);
  conc__waitlist_notify(&l->watchers, CONC_WRITABLE);
}

int conc__lock_locked(conc_Lock *l) {
  return atomic_load_explicit(&l->mu->state, memory_order_relaxed) != 0;
}
