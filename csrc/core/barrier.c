/*
** barrier.c -- threading.Barrier: `parties` threads meet, then all go on.
**
** State sits under a small mutex (`guard`); waiters sleep on `seq`, a
** sequence word (wait.c) signalled by every change they must look at (a
** release, a break, a reset). Cycles are numbered: a waiter of cycle g returns its index once
** the barrier has moved past g by a release, and BrokenBarrierError if it
** moved past g by a reset or is broken (abort, a timeout, a failed action).
** The action is run by the binding (it is Lua) between conc__barrier_arrive
** saying "you are last" and conc__barrier_release.
*/
#include <limits.h>
#include <stdlib.h>

#include "core.h"

/* What processes share of a multiprocessing.Barrier: all but the action,
** which each process keeps a copy of (conc__obj_state). */
typedef struct BState {
  conc_Mutex guard;
  conc_Seq seq;            /* the waiters' */
  int wake;                /* under guard: a change to tell the sleepers of */
  unsigned parties;
  unsigned count;          /* arrived in this cycle */
  unsigned cycle;
  unsigned released;       /* the last cycle that ended by a release */
  int broken;
  double timeout;          /* default for wait; < 0: none */
} BState;

struct conc_Barrier {
  conc_Obj hdr;
  BState *s;               /* &own, or shared */
  void *action;            /* the binding's (a message), freed by it */
  void (*free_action)(void *);
  BState own;
};

static void barrier_destroy(conc_Obj *o) {
  conc_Barrier *b = (conc_Barrier *)o;
  if (b->action && b->free_action) b->free_action(b->action);
  conc__obj_state_free(b->s, &b->own, sizeof *b->s);
  free(b);
}

/* The action is a message of this process's: a spawned process cannot be
** given a Barrier that has one. */
static int barrier_export(conc_Obj *o, conc_Export *x) {
  conc_Barrier *b = (conc_Barrier *)o;
  if (b->action != NULL) return CONC_ETYPE;
  return conc__obj_export_state(b->s, &b->own, x);
}

static conc_Obj *barrier_attach(const conc_Export *x);

conc_ObjType conc__barrier_type = {
  .name = "conc.Barrier", .destroy = barrier_destroy,
  .export = barrier_export, .attach = barrier_attach};

static conc_Obj *barrier_attach(const conc_Export *x) {
  conc_Barrier *b = malloc(sizeof *b);
  if (b == NULL) return NULL;
  b->s = x->map[0];
  b->action = NULL;
  b->free_action = NULL;
  conc__obj_init(&b->hdr, &conc__barrier_type);
  return &b->hdr;
}

conc_Barrier *conc__barrier_new(unsigned parties, double timeout, void *action,
                                void (*free_action)(void *), int shared) {
  conc_Barrier *b = malloc(sizeof *b);
  if (b == NULL) return NULL;
  if ((b->s = conc__obj_state(&b->own, sizeof b->own, shared)) == NULL) {
    free(b);
    return NULL;
  }
  conc__obj_init(&b->hdr, &conc__barrier_type);
  conc__mutex_init(&b->s->guard, shared);
  conc__seq_init(&b->s->seq, shared);
  b->s->wake = 0;
  b->s->parties = parties;
  b->s->count = 0;
  b->s->cycle = 0;
  b->s->released = UINT_MAX;
  b->s->broken = 0;
  b->s->timeout = timeout;
  b->action = action;
  b->free_action = free_action;
  return b;
}

static void lock(conc_Barrier *b) {
  conc__mutex_lock(&b->s->guard);
}

/* Releases the guard, then wakes the sleepers a change under it called
** for: they find the guard free. */
static void unlock(conc_Barrier *b) {
  int n = b->s->wake;
  b->s->wake = 0;
  conc__mutex_unlock(&b->s->guard);
  conc__seq_wake(&b->s->seq, n);
}

/* With the guard held: everyone looks again. */
static void changed(conc_Barrier *b) {
  b->s->wake = conc__seq_signal(&b->s->seq, 1);
}

static void break_locked(conc_Barrier *b) {
  b->s->broken = 1;
  changed(b);
}

int conc__barrier_arrive(conc_Barrier *b, unsigned *index, unsigned *cycle,
                         int *last) {
  int rc = CONC_OK;
  lock(b);
  if (b->s->broken) {
    rc = CONC_EBROKEN;
  } else {
    *index = b->s->count++;
    *cycle = b->s->cycle;
    *last = b->s->count == b->s->parties;
  }
  unlock(b);
  return rc;
}

void conc__barrier_release(conc_Barrier *b, int action_failed) {
  lock(b);
  if (action_failed) {
    break_locked(b);
  } else {
    b->s->released = b->s->cycle;
    b->s->cycle++;
    b->s->count = 0;
    changed(b);
  }
  unlock(b);
}

int conc__barrier_wait(conc_Barrier *b, unsigned cycle, double deadline) {
  int rc = CONC_OK;
  lock(b);
  for (;;) {
    if (b->s->cycle != cycle) {  /* released, or reset: that wins */
      rc = b->s->released == cycle ? CONC_OK : CONC_EBROKEN;
      break;
    }
    if (b->s->broken) {
      if (b->s->count > 0) b->s->count--;
      rc = CONC_EBROKEN;
      break;
    }
    if (rc != CONC_OK) {
      /* a timeout or a Ctrl-C breaks the barrier for everyone, as in
      ** Python */
      if (b->s->count > 0) b->s->count--;
      b->s->broken = 1;
      changed(b);
      if (rc != CONC_EINTR) rc = CONC_EBROKEN;
      break;
    }
    rc = conc__seq_sleep(&b->s->seq, &b->s->guard, deadline);
  }
  unlock(b);
  return rc;
}

void conc__barrier_reset(conc_Barrier *b) {
  lock(b);
  if (b->s->count > 0 || b->s->broken) {
    b->s->cycle++;  /* the waiters of the old cycle see it end unreleased */
    b->s->count = 0;
  }
  b->s->broken = 0;
  changed(b);
  unlock(b);
}

void conc__barrier_abort(conc_Barrier *b) {
  lock(b);
  break_locked(b);
  unlock(b);
}

unsigned conc__barrier_parties(conc_Barrier *b) {
  return b->s->parties;
}

unsigned conc__barrier_n_waiting(conc_Barrier *b) {
  unsigned n;
  lock(b);
  n = b->s->broken ? 0 : b->s->count;
  unlock(b);
  return n;
}

int conc__barrier_broken(conc_Barrier *b) {
  int broken;
  lock(b);
  broken = b->s->broken;
  unlock(b);
  return broken;
}

double conc__barrier_timeout(conc_Barrier *b) {
  return b->s->timeout;
}

void *conc__barrier_action(conc_Barrier *b) {
  return b->action;
}
