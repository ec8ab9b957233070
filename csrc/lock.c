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

#include "internal.h"

conc_ObjType conc__lock_type = {.name = "conc.Lock", .destroy = conc__obj_free};

conc_Lock *conc__lock_new(void) {
  conc_Lock *l = malloc(sizeof *l);
  if (l == NULL) return NULL;
  conc__obj_init(&l->hdr, &conc__lock_type);
  atomic_init(&l->state, 0);
  return l;
}

/* A holder usually lets go within a few hundred nanoseconds (a queue's
** mutex is held for a copy of one item): trying again for a moment before
** sleeping saves two system calls and a context switch each way. */
#define MUTEX_SPINS 100

static int spin_try(atomic_uint *m) {
  if (!conc__can_spin()) return 0;
  for (int i = 0; i < MUTEX_SPINS; i++) {
    if (atomic_load_explicit(m, memory_order_relaxed) == 0 &&
        conc__mutex_try(m))
      return 1;
    conc__spin_pause();
  }
  return 0;
}

int conc__mutex_acquire(atomic_uint *m, double deadline) {
  if (conc__mutex_try(m) || spin_try(m)) return CONC_OK;
  /* mark it contended; whoever releases will wake one of us */
  while (atomic_exchange_explicit(m, 2, memory_order_acquire) != 0) {
    int rc = conc__futex_wait(m, 2, deadline);
    if (rc == CONC_ETIMEDOUT || rc == CONC_EINTR) return rc;
  }
  return CONC_OK;
}

void conc__mutex_acquire_nointr(atomic_uint *m) {
  if (conc__mutex_try(m) || spin_try(m)) return;
  while (atomic_exchange_explicit(m, 2, memory_order_acquire) != 0)
    conc__futex_wait_intr(m, 2, CONC_FOREVER, 0);
}

int conc__lock_acquire(conc_Lock *l, double deadline) {
  return conc__mutex_acquire(&l->state, deadline);
}

atomic_uint *conc__lock_word(conc_Lock *l) {
  return &l->state;
}

int conc__lock_locked(conc_Lock *l) {
  return atomic_load_explicit(&l->state, memory_order_relaxed) != 0;
}
