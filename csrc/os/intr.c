/*
** intr.c -- the KeyboardInterrupt flag, and conc__wait_seq, the one sleep
** that honours it.
**
** A signal handler may only set flags and make async-signal-safe calls. It
** cannot reach a lua_State or wake a condition variable; so a SIGINT sets
** the flag, naming the OS thread it landed in (conc's own threads block
** every signal, so in the host that is the main thread), and bumps the
** sequence word that thread has published as the one it sleeps on. A wait
** checks the flag after publishing its word and before sleeping: a signal
** that comes before the check is seen by it, one that comes between the
** check and the sleep has changed the word the kernel compares (the wait
** returns at once), one that comes during the sleep ends it (EINTR, or a
** restarted wait that finds the word changed). No wait polls.
**
** The published words sit in a few slots, one per interruptible OS thread
** (claimed on its first wait, and kept: a slot is only ever written by its
** owner and by a handler running in that same thread, so it needs no
** lock). A thread that finds none free waits in slices of INTERRUPT_SLICE
** seconds, looking at the flag between them: that takes more than NSLOTS
** threads of an embedder's, all taking signals and all waiting.
*/
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "os.h"

#define NSLOTS 8
#define INTERRUPT_SLICE 0.05

atomic_int conc__interrupt_flag;       /* lock-free: safe in a handler */
static atomic_ulong interrupt_thread;  /* the OS thread it targets */
static atomic_int wakeup_fd = -1;

typedef struct Slot {
  atomic_ulong owner;             /* a pthread_t, 0 while free */
  _Atomic(atomic_uint *) word;    /* what the owner sleeps on, or NULL */
} Slot;

static Slot slots[NSLOTS];

/* Workers block every signal: their waits are never interrupted. */
static _Thread_local int signals_blocked;

static unsigned long self(void) {
  return (unsigned long)pthread_self();
}

void conc__interrupt_set(void) {
  unsigned long me = self();
  int fd, saved = errno;
  atomic_store(&interrupt_thread, me);
  atomic_store(&conc__interrupt_flag, 1);
  for (int i = 0; i < NSLOTS; i++) {
    if (atomic_load(&slots[i].owner) != me) continue;
    atomic_uint *w = atomic_load(&slots[i].word);
    if (w != NULL) atomic_fetch_add(w, 1);  /* a sequence word: any bump is
                                               only "look again" */
  }
  fd = atomic_load(&wakeup_fd);
  if (fd >= 0 && write(fd, "", 1) < 0) {
    /* a full pipe already says "interrupted" */
  }
  errno = saved;
}

int conc__interrupt_mine(void) {
  return !signals_blocked && atomic_load(&conc__interrupt_flag) &&
         atomic_load(&interrupt_thread) == self();
}

void conc__interrupt_clear(void) {
  atomic_store(&conc__interrupt_flag, 0);
}

void conc__interrupt_blocked(void) {
  signals_blocked = 1;
}

int conc__interrupt_wakeup_fd(int fd) {
  return atomic_exchange(&wakeup_fd, fd);
}

/* This thread's slot, claimed on its first wait; NULL when all are taken.
** A pthread_t is reused once its thread ends: the new thread inherits the
** slot, whose word the old one left NULL. */
static Slot *my_slot(void) {
  unsigned long me = self();
  for (int i = 0; i < NSLOTS; i++)
    if (atomic_load_explicit(&slots[i].owner, memory_order_relaxed) == me)
      return &slots[i];
  for (int i = 0; i < NSLOTS; i++) {
    unsigned long none = 0;
    if (atomic_compare_exchange_strong(&slots[i].owner, &none, me))
      return &slots[i];
  }
  return NULL;
}

int conc__wait_seq(atomic_uint *seq, unsigned seen, double deadline,
                   int flags) {
  int shared = flags & CONC_WAIT_SHARED, rc = CONC_OK;
  int interruptible = !(flags & CONC_WAIT_NOINTR) && !signals_blocked;
  Slot *slot = NULL;
  if (interruptible) {
    if (conc__interrupt_pending()) return CONC_EINTR;
    slot = my_slot();
    if (slot) atomic_store(&slot->word, seq);  /* seq_cst: before the look */
  }
  for (;;) {
    double until = deadline;
    if (interruptible && conc__interrupt_pending()) {
      rc = CONC_EINTR;
      break;
    }
    if (atomic_load_explicit(seq, memory_order_acquire) != seen) break;
    if (interruptible && slot == NULL) {  /* no slot: look now and then */
      double next = conc__monotonic() + INTERRUPT_SLICE;
      if (deadline == CONC_FOREVER || next < deadline) until = next;
    }
    rc = conc__futex_wait(seq, seen, until, shared);
    if (rc == CONC_ETIMEDOUT && until == deadline) break;
    rc = CONC_OK;  /* woken, a signal, or a slice: look again */
  }
  if (slot) atomic_store(&slot->word, NULL);
  return rc;
}

int conc__sleep_until(double deadline) {
  atomic_uint never = 0;  /* nobody wakes it: only the deadline or Ctrl-C */
  int rc;
  do {
    rc = conc__wait_seq(&never, atomic_load(&never), deadline, 0);
  } while (rc == CONC_OK);  /* an interrupt for another thread moved it */
  return rc == CONC_ETIMEDOUT ? CONC_OK : rc;
}

/* In a forked child the pending interrupt was the parent's, and the slots
** name threads that are gone (the caller keeps its pthread_t, and will
** claim a slot again). */
static void intr_child(void) {
  atomic_store(&conc__interrupt_flag, 0);
  atomic_store(&interrupt_thread, 0);
  for (int i = 0; i < NSLOTS; i++) {
    atomic_store(&slots[i].owner, 0);
    atomic_store(&slots[i].word, NULL);
  }
}

conc_ForkHook conc__intr_fork = {.rank = CONC_FORK_INTR, .child = intr_child};
