/*
** future.c -- concurrent.futures.Future: a result that some thread sets
** once, and that any number of threads wait for, look at or cancel.
**
** The state moves PENDING -> RUNNING -> FINISHED, or PENDING -> CANCELLED
** (-> CANCELLED_NOTIFIED once an executor saw it): Python's machine. The
** outcome is a message of the wire format (the task's return values, or
** its error), written once under the mutex and then only read, so a
** result() after done() needs no lock. Callbacks are messages too: the
** thread that finishes the future is handed them, and runs them, which is
** Python's rule ("called in the thread that completed the future").
**
** Waiters sleep on the done flag; watchers (conc.select, futures.wait)
** link themselves to the wait list, notified once, when it is set.
*/
#include <stdlib.h>

#include "core.h"

struct conc_Future {
  conc_Obj hdr;
  conc_Mutex mu;
  atomic_int state;
  int failed;              /* the outcome is an error */
  conc_Msg *outcome;       /* NULL until FINISHED (and for no values) */
  conc_Msg **callbacks;    /* added while not done; handed out at the end */
  size_t ncallbacks, capcallbacks;
  conc_Flag done;          /* set at FINISHED or CANCELLED */
  conc_WaitList watchers;  /* ready once done */
};

static void free_msgs(conc_Msg **v, size_t n) {
  for (size_t i = 0; i < n; i++) conc__msg_free(v[i]);
  free(v);
}

static void future_destroy(conc_Obj *o) {
  conc_Future *f = (conc_Future *)o;
  conc__msg_free(f->outcome);
  free_msgs(f->callbacks, f->ncallbacks);
  free(f);
}

static unsigned future_ready(conc_Obj *o, unsigned events) {
  return (events & CONC_READABLE) &&
                 conc__flag_is_set(&((conc_Future *)o)->done)
             ? CONC_READABLE
             : 0;
}

static conc_WaitList *future_waitlist(conc_Obj *o) {
  return &((conc_Future *)o)->watchers;
}

conc_ObjType conc__future_type = {.name = "conc.Future",
                                  .destroy = future_destroy,
                                  .ready = future_ready,
                                  .waitlist = future_waitlist};

conc_Future *conc__future_new(void) {
  conc_Future *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  conc__obj_init(&f->hdr, &conc__future_type);
  conc__mutex_init(&f->mu, CONC_PRIVATE);
  atomic_init(&f->state, CONC_FUTURE_PENDING);
  conc__flag_init(&f->done, CONC_PRIVATE);
  conc__waitlist_init(&f->watchers);
  return f;
}

int conc__future_state(conc_Future *f) {
  return atomic_load_explicit(&f->state, memory_order_acquire);
}

/* Under the mutex: the state becomes s (CANCELLED or FINISHED) and the
** callbacks are the caller's to run; the waiters are woken after. */
static void settle(conc_Future *f, int s, conc_Msg ***cbs, size_t *ncbs) {
  atomic_store_explicit(&f->state, s, memory_order_release);
  *cbs = f->callbacks;
  *ncbs = f->ncallbacks;
  f->callbacks = NULL;
  f->ncallbacks = f->capcallbacks = 0;
  conc__flag_mark(&f->done);
}

static void wake(conc_Future *f) {
  conc__flag_wake(&f->done);
  conc__waitlist_notify(&f->watchers, CONC_READABLE);
}

int conc__future_cancel(conc_Future *f, conc_Msg ***cbs, size_t *ncbs) {
  int s, cancelled = 0;
  *cbs = NULL;
  *ncbs = 0;
  conc__mutex_lock(&f->mu);
  s = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (s == CONC_FUTURE_PENDING) {
    settle(f, CONC_FUTURE_CANCELLED, cbs, ncbs);
    cancelled = 2;
  } else if (s == CONC_FUTURE_CANCELLED || s == CONC_FUTURE_NOTIFIED) {
    cancelled = 1;
  }
  conc__mutex_unlock(&f->mu);
  if (cancelled == 2) wake(f);
  return cancelled != 0;
}

int conc__future_start(conc_Future *f) {
  int s, rc;
  conc__mutex_lock(&f->mu);
  s = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (s == CONC_FUTURE_PENDING) {
    atomic_store_explicit(&f->state, CONC_FUTURE_RUNNING,
                          memory_order_release);
    rc = 1;
  } else if (s == CONC_FUTURE_CANCELLED) {
    atomic_store_explicit(&f->state, CONC_FUTURE_NOTIFIED,
                          memory_order_release);
    rc = 0;
  } else {
    rc = CONC_EFUTURESTATE;
  }
  conc__mutex_unlock(&f->mu);
  return rc;
}

int conc__future_finish(conc_Future *f, int failed, conc_Msg *outcome,
                        conc_Msg ***cbs, size_t *ncbs) {
  int s;
  *cbs = NULL;
  *ncbs = 0;
  conc__mutex_lock(&f->mu);
  s = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (s != CONC_FUTURE_PENDING && s != CONC_FUTURE_RUNNING) {
    conc__mutex_unlock(&f->mu);
    return CONC_EINVALSTATE;
  }
  f->failed = failed;
  f->outcome = outcome;
  settle(f, CONC_FUTURE_FINISHED, cbs, ncbs);
  conc__mutex_unlock(&f->mu);
  wake(f);
  return CONC_OK;
}

int conc__future_wait(conc_Future *f, double deadline) {
  return conc__flag_wait(&f->done, deadline, 0);
}

const conc_Msg *conc__future_outcome(conc_Future *f, int *failed) {
  /* FINISHED was stored (release) after the outcome: it is all there */
  *failed = f->failed;
  return f->outcome;
}

int conc__future_add_callback(conc_Future *f, conc_Msg *cb) {
  int s, rc = 0;
  conc__mutex_lock(&f->mu);
  s = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (s == CONC_FUTURE_PENDING || s == CONC_FUTURE_RUNNING) {
    if (f->ncallbacks == f->capcallbacks) {
      size_t cap = f->capcallbacks ? f->capcallbacks * 2 : 2;
      conc_Msg **v = realloc(f->callbacks, cap * sizeof *v);
      if (v == NULL) {
        rc = CONC_ENOMEM;
      } else {
        f->callbacks = v;
        f->capcallbacks = cap;
      }
    }
    if (rc == 0) f->callbacks[f->ncallbacks++] = cb;
  } else {
    rc = 1;  /* done: the caller runs it now */
  }
  conc__mutex_unlock(&f->mu);
  return rc;
}

void conc__future_free_callbacks(conc_Msg **cbs, size_t n) {
  free_msgs(cbs, n);
}
