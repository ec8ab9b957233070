/*
** lock.c -- threading.Lock: a mutex in one futex word, owned by nobody
** (Python lets any thread release it).
**
** The word is 0 (free), 1 (held) or 2 (held, and someone may be waiting),
** as in Drepper's "Futexes Are Tricky" (mutex 2). Taking a free lock is one
** compare-and-swap; releasing it with nobody waiting is one exchange: neither
** makes a system call. Ordering: acquire on taking, release on giving back,
** so what one holder wrote is seen by the next (and TSan sees it too).
*/
#include <stdlib.h>

#include "core.h"

conc_ObjType conc__lock_type = {
  .name = "conc.Lock", .destroy = conc__obj_free, .bound = 1};

conc_Lock *conc__lock_new(void) {
  conc_Lock *l = malloc(sizeof *l);
  if (l == NULL) return NULL;
  conc__obj_init(&l->hdr, &conc__lock_type);
  atomic_init(&l->state, 0);
  return l;
}

static void pauses(int n) {
  for (int i = 0; i < n; i++) conc__spin_pause();
}

/* A holder usually lets go within a few hundred nanoseconds (a queue's
** mutex is held for a copy of one item): trying again for a moment before
** sleeping saves two system calls and a context switch each way. The gap
** between tries doubles, 1 to 32 pauses (about 1-2 us in all): each try
** pulls the word's cache line away from the holder, who must win it back
** to let go. A producer and a consumer polling their queue's mutex every
** pause slowed each other down: W2 went from 2 to 6 M items a second when
** the gaps began to double, and was slower again with more tries. */
#define MUTEX_TRIES 6

static int spin_try(atomic_uint *m) {
  if (!conc__can_spin()) return 0;
  for (int i = 0, gap = 1; i < MUTEX_TRIES; i++, gap *= 2) {
    pauses(gap);  /* the caller has just tried */
    if (atomic_load_explicit(m, memory_order_relaxed) == 0 &&
        conc__mutex_try(m))
      return 1;
  }
  return 0;
}

/* The futex wait: the word marked contended, whoever releases wakes one of
** us. A woken waiter takes the lock if it is free, even for a moment: that
** is how a waiter gets in while the holder takes the lock in a loop. */
static int futex_acquire(atomic_uint *m, double deadline) {
  while (atomic_exchange_explicit(m, 2, memory_order_acquire) != 0) {
    int rc = conc__futex_wait(m, 2, deadline);
    if (rc == CONC_ETIMEDOUT || rc == CONC_EINTR) return rc;
  }
  return CONC_OK;
}

int conc__mutex_acquire(atomic_uint *m, double deadline) {
  if (conc__mutex_try(m) || spin_try(m)) return CONC_OK;
  return futex_acquire(m, deadline);
}

/*
** threading.Lock waits differently: user code often holds it in a loop
** (`for ... do local _ <close> = lock:enter() ... end`), letting go for
** only the ~60 ns until the next pass takes it again. A waiter that takes
** it in that gap hands it back and forth every pass, and with it the cache
** lines of the lock and of all the data it guards: two threads adding to a
** shared.dict under one Lock (bench W4) did 2.5 M increments a second that
** way, one thread alone 5. And a waiter that polls the word often costs the
** holder a cache miss on each take and release. So the waiter looks rarely
** (the gap between looks doubles from LOCK_PROBE pauses to LOCK_PROBE_MAX,
** about 2 us), takes a free lock only if it is still free LOCK_CONFIRM
** pauses later (the holder is not coming straight back), and sleeps after
** LOCK_SPINS pauses (about 50 us; a pause is 10-40 ns, by CPU). The holder
** then runs on alone, as Python's GIL lets one thread run for 5 ms; the
** sleeper is woken by a release and takes the lock if free (futex_acquire),
** so it gets its turn. W4: ~5.1 M a second. A lock held briefly and let go
** for good is still taken within a probe or two.
*/
#define LOCK_PROBE 4
#define LOCK_PROBE_MAX 200
#define LOCK_CONFIRM 16
#define LOCK_SPINS 5000

static int lock_spin_try(atomic_uint *m) {
  int wait = LOCK_PROBE;
  if (!conc__can_spin()) return 0;
  for (int i = 0; i < LOCK_SPINS; i += wait) {
    if (wait < LOCK_PROBE_MAX) wait *= 2;
    pauses(wait);
    if (atomic_load_explicit(m, memory_order_relaxed) != 0) continue;
    pauses(LOCK_CONFIRM);
    i += LOCK_CONFIRM;
    if (atomic_load_explicit(m, memory_order_relaxed) == 0 &&
        conc__mutex_try(m))
      return 1;
  }
  return 0;
}

/* conc__mutex_acquire_nointr's wait, once the inline try failed */
void conc__mutex_lock_slow(atomic_uint *m) {
  if (spin_try(m)) return;
  while (atomic_exchange_explicit(m, 2, memory_order_acquire) != 0)
    conc__futex_wait_intr(m, 2, CONC_FOREVER, 0);
}

int conc__lock_acquire(conc_Lock *l, double deadline) {
  if (conc__mutex_try(&l->state) || lock_spin_try(&l->state)) return CONC_OK;
  return futex_acquire(&l->state, deadline);
}

atomic_uint *conc__lock_word(conc_Lock *l) {
  return &l->state;
}

int conc__lock_locked(conc_Lock *l) {
  return atomic_load_explicit(&l->state, memory_order_relaxed) != 0;
}
