/*
** barrier.c -- threading.Barrier: `parties` threads meet, then all go on.
**
** State sits under a small mutex (`guard`); waiters sleep on `seq`, a futex
** word bumped by every change they must look at (a release, a break, a
** reset). Cycles are numbered: a waiter of cycle g returns its index once
** the barrier has moved past g by a release, and BrokenBarrierError if it
** moved past g by a reset or is broken (abort, a timeout, a failed action).
** The action is run by the binding (it is Lua) between conc__barrier_arrive
** saying "you are last" and conc__barrier_release.
*/
#include <limits.h>
#include <stdlib.h>

#include "core.h"

struct conc_Barrier {
  conc_Obj hdr;
  atomic_uint guard;       /* mutex word */
  atomic_uint seq;         /* futex word for waiters */
  unsigned parties;
  unsigned count;          /* arrived in this cycle */
  unsigned cycle;
  unsigned released;       /* the last cycle that ended by a release */
  int broken;
  double timeout;          /* default for wait; < 0: none */
  void *action;            /* the binding's (a message), freed by it */
  void (*free_action)(void *);
};

static void barrier_destroy(conc_Obj *o) {
  conc_Barrier *b = (conc_Barrier *)o;
  if (b->action && b->free_action) b->free_action(b->action);
  free(b);
}

conc_ObjType conc__barrier_type = {
  .name = "conc.Barrier", .destroy = barrier_destroy, .bound = 1};

conc_Barrier *conc__barrier_new(unsigned parties, double timeout, void *action,
                                void (*free_action)(void *)) {
  conc_Barrier *b = malloc(sizeof *b);
  if (b == NULL) return NULL;
  conc__obj_init(&b->hdr, &conc__barrier_type);
  atomic_init(&b->guard, 0);
  atomic_init(&b->seq, 0);
  b->parties = parties;
  b->count = 0;
  b->cycle = 0;
  b->released = UINT_MAX;
  b->broken = 0;
  b->timeout = timeout;
  b->action = action;
  b->free_action = free_action;
  return b;
}

static void lock(conc_Barrier *b) {
  conc__mutex_acquire_nointr(&b->guard);
}

static void unlock(conc_Barrier *b) {
  conc__mutex_release(&b->guard);
}

/* With the guard held: wake everyone to look again. */
static void changed(conc_Barrier *b) {
  atomic_fetch_add_explicit(&b->seq, 1, memory_order_release);
  conc__futex_wake(&b->seq, INT_MAX);
}

static void break_locked(conc_Barrier *b) {
  b->broken = 1;
  changed(b);
}

int conc__barrier_arrive(conc_Barrier *b, unsigned *index, unsigned *cycle) {
  int rc;
  lock(b);
  if (b->broken) {
    rc = CONC_BARRIER_BROKEN;
  } else {
    *index = b->count++;
    *cycle = b->cycle;
    rc = b->count == b->parties ? CONC_BARRIER_LAST : CONC_OK;
  }
  unlock(b);
  return rc;
}

void conc__barrier_release(conc_Barrier *b, int action_failed) {
  lock(b);
  if (action_failed) {
    break_locked(b);
  } else {
    b->released = b->cycle;
    b->cycle++;
    b->count = 0;
    changed(b);
  }
  unlock(b);
}

int conc__barrier_wait(conc_Barrier *b, unsigned cycle, double deadline) {
  for (;;) {
    unsigned seen = atomic_load_explicit(&b->seq, memory_order_acquire);
    int rc;
    lock(b);
    if (b->cycle != cycle) {
      rc = b->released == cycle ? CONC_OK : CONC_BARRIER_BROKEN;
      unlock(b);
      return rc;
    }
    if (b->broken) {
      if (b->count > 0) b->count--;
      unlock(b);
      return CONC_BARRIER_BROKEN;
    }
    unlock(b);
    rc = conc__futex_wait(&b->seq, seen, deadline);
    if (rc == CONC_ETIMEDOUT || rc == CONC_EINTR) {
      lock(b);
      if (b->cycle != cycle) {  /* released just now: that wins */
        rc = b->released == cycle ? CONC_OK : CONC_BARRIER_BROKEN;
        unlock(b);
        return rc;
      }
      /* a timeout or a Ctrl-C breaks the barrier for everyone, as in
      ** Python */
      if (b->count > 0) b->count--;
      break_locked(b);
      unlock(b);
      return rc == CONC_EINTR ? CONC_EINTR : CONC_BARRIER_BROKEN;
    }
  }
}

void conc__barrier_reset(conc_Barrier *b) {
  lock(b);
  if (b->count > 0 || b->broken) {
    b->cycle++;  /* the waiters of the old cycle see it end unreleased */
    b->count = 0;
  }
  b->broken = 0;
  changed(b);
  unlock(b);
}

void conc__barrier_abort(conc_Barrier *b) {
  lock(b);
  break_locked(b);
  unlock(b);
}

unsigned conc__barrier_parties(conc_Barrier *b) {
  return b->parties;
}

unsigned conc__barrier_n_waiting(conc_Barrier *b) {
  unsigned n;
  lock(b);
  n = b->broken ? 0 : b->count;
  unlock(b);
  return n;
}

int conc__barrier_broken(conc_Barrier *b) {
  int broken;
  lock(b);
  broken = b->broken;
  unlock(b);
  return broken;
}

double conc__barrier_timeout(conc_Barrier *b) {
  return b->timeout;
}

void *conc__barrier_action(conc_Barrier *b) {
  return b->action;
}
