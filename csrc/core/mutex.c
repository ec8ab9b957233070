/*
** mutex.c -- conc_Mutex, the lock under every internal lock and under
** threading.Lock and RLock (core.h has its inline halves).
**
** Waiters sleep on `seq`, not on the state word, and a contended release
** bumps seq before waking one: the state keeps Drepper's free/held/
** contended meaning (0, HELD, HELD | WAITERS, and a shared one's holder),
** and a sleep can be cut short by a KeyboardInterrupt, which may bump any
** sequence word but never a state (os/intr.c). A sleeper reads seq before
** marking the state contended; a release that comes after the mark bumps
** seq, so the sleep ends at once; one that came before left the state 0,
** which the mark's exchange finds free. Ordering: acquire on taking,
** release on giving back, so what one holder wrote is seen by the next.
*/
#include <limits.h>

#include "core.h"

void conc__mutex_init(conc_Mutex *m, int shared) {
  atomic_init(&m->state, 0);
  atomic_init(&m->seq, 0);
  m->shared = (uint32_t)shared;
  atomic_init(&m->owner, 0);
  atomic_init(&m->owner_pid, 0);
  atomic_init(&m->recovered, 0);
}

/* This process's pid, cached per thread and keyed by the thread's id: a
** forked child's thread has a new id, so it reads its pid again. */
static _Thread_local uint32_t cached_tid;
static _Thread_local int cached_pid;

static int self_pid(void) {
  uint32_t tid = conc__thread_self_tid();
  if (tid != cached_tid) {
    cached_pid = conc__proc_self();
    cached_tid = tid;
  }
  return cached_pid;
}

void conc__mutex_owned(conc_Mutex *m) {
  atomic_store_explicit(&m->owner_pid, (unsigned)self_pid(),
                        memory_order_relaxed);
  atomic_store_explicit(&m->owner, conc__thread_self_tid(),
                        memory_order_release);
}

/* How long a waiter on a shared mutex sleeps before it looks whether the
** holder still lives: the bound on how long a dead holder blocks others. */
#define ROBUST_SLICE 0.1

/* After a slice: if the holder's process died, take the mutex over (1).
** The state names the holding thread. Once that thread has recorded
** itself (owner is its id), owner_pid is its process: the process, not the
** thread, decides, since a thread that ended holding a Lock leaves it
** held, as in Python. A holder that has not recorded itself, or has
** unrecorded itself to let go, is within a few instructions of the state's
** change: if its thread is gone, its process was killed there. Of several
** waiters, the one whose exchange of the state wins takes it. */
static int take_over(conc_Mutex *m) {
  unsigned s = atomic_load_explicit(&m->state, memory_order_acquire);
  unsigned tid = s >> 2;
  unsigned owner = atomic_load_explicit(&m->owner, memory_order_acquire);
  unsigned pid = atomic_load_explicit(&m->owner_pid, memory_order_relaxed);
  if (s == 0 || tid == 0) return 0;
  if (owner == tid) {
    if ((int)pid == self_pid() || conc__proc_tid_alive((int)pid)) return 0;
  } else if (conc__proc_tid_alive((int)tid)) {
    return 0;
  }
  if (!atomic_compare_exchange_strong_explicit(
          &m->state, &s, conc__mutex_mine(m) | CONC_MUTEX_WAITERS,
          memory_order_acq_rel, memory_order_relaxed))
    return 0;
  conc__mutex_owned(m);
  atomic_store_explicit(&m->recovered, 1, memory_order_relaxed);
  return 1;
}

/* Marks it contended, taking it if it is free (1). A private one keeps
** Drepper's exchange; a shared one keeps its holder in the word. */
static int mark_contended(conc_Mutex *m) {
  unsigned s, mine = conc__mutex_mine(m) | CONC_MUTEX_WAITERS;
  if (!m->shared)
    return atomic_exchange_explicit(&m->state, mine, memory_order_acquire) == 0;
  s = atomic_load_explicit(&m->state, memory_order_relaxed);
  for (;;) {
    unsigned want = s == 0 ? mine : s | CONC_MUTEX_WAITERS;
    if (s != 0 && (s & CONC_MUTEX_WAITERS)) return 0;
    if (atomic_compare_exchange_weak_explicit(&m->state, &s, want,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return s == 0;
  }
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

static int spin_try(conc_Mutex *m) {
  if (!conc__can_spin()) return 0;
  for (int i = 0, gap = 1; i < MUTEX_TRIES; i++, gap *= 2) {
    pauses(gap);  /* the caller has just tried */
    if (atomic_load_explicit(&m->state, memory_order_relaxed) == 0 &&
        conc__mutex_try(m))
      return 1;
  }
  return 0;
}

/* A woken sleeper takes the lock if it is free, even for a moment: that
** is how a sleeper gets in while the holder takes the lock in a loop. */
int conc__mutex_sleep(conc_Mutex *m, double deadline, int flags) {
  for (;;) {
    unsigned seen = atomic_load_explicit(&m->seq, memory_order_seq_cst);
    double until = deadline;
    int rc;
    if (mark_contended(m)) {
      if (m->shared) conc__mutex_owned(m);
      return CONC_OK;
    }
    if (m->shared) {
      double slice = conc__monotonic() + ROBUST_SLICE;
      if (deadline == CONC_FOREVER || slice < deadline) until = slice;
    }
    rc = conc__wait_seq(&m->seq, seen, until, flags | (int)m->shared);
    if (rc == CONC_ETIMEDOUT && until != deadline) {
      if (take_over(m)) return CONC_OK;
      continue;
    }
    if (rc != CONC_OK) return rc;
  }
}

int conc__mutex_acquire(conc_Mutex *m, double deadline) {
  if (conc__mutex_try(m) || spin_try(m)) return CONC_OK;
  return conc__mutex_sleep(m, deadline, 0);
}

void conc__mutex_lock_slow(conc_Mutex *m) {
  if (spin_try(m)) return;
  conc__mutex_sleep(m, CONC_FOREVER, CONC_WAIT_NOINTR);
}

void conc__mutex_wake(conc_Mutex *m) {
  atomic_fetch_add_explicit(&m->seq, 1, memory_order_seq_cst);
  conc__futex_wake(&m->seq, 1, (int)m->shared);
}
