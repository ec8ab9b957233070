/*
** loop_test.c -- the event loop's core (core/loop.c): the timer heap
** against a model, and watches woken from another thread.
*/
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "core.h"
#include "core_test.h"

/* Random adds and cancels; every poll must hand back exactly the model's
** due timers, in (when, arrival) order. Catches a sift that loses an id
** or a cancel that leaves one in the heap. */
void test_loop_timer_model(void) {
  enum { N = 2000 };
  static double when[N];
  static long long id[N];
  static int live[N];
  int rc, nlive = 0;
  conc_Loop *l = conc__loop_new(&rc);
  double base;
  check(l != NULL, "loop_new: %d", rc);
  base = conc__monotonic() - 1000;  /* every timer is due at once */
  for (int i = 0; i < N; i++) {
    when[i] = base + (double)rnd_below(50);
    id[i] = conc__loop_timer_add(l, when[i]);
    check(id[i] >= 0, "timer_add");
    live[i] = 1;
    nlive++;
    if (rnd_below(3) == 0) {  /* cancel a random live one */
      int j = (int)rnd_below((size_t)i + 1);
      if (live[j]) {
        conc__loop_timer_cancel(l, id[j]);
        live[j] = 0;
        nlive--;
      }
    }
  }
  check_size(conc__loop_timers(l), (size_t)nlive);
  {
    conc_LoopEvent ev[512];
    double last = -1;
    int got = 0;
    while (got < nlive) {
      int n = conc__loop_poll(l, 0, ev, 512);
      check(n > 0, "poll gave %d with %d due", n, nlive - got);
      for (int k = 0; k < n; k++) {
        long long t = ev[k].key;
        int idx = -1;
        check(ev[k].kind == CONC_LOOP_TIMER, "a timer event");
        /* ids are reused after a cancel: find the live one with it */
        for (int i = 0; i < N; i++)
          if (live[i] && id[i] == t) { idx = i; break; }
        check(idx >= 0, "timer %lld was cancelled or unknown", t);
        check(when[idx] >= last, "timers out of order");
        last = when[idx];
        live[idx] = 0;
        got++;
      }
    }
  }
  check_size(conc__loop_timers(l), 0);
  conc__loop_free(l);
}

static void *set_later(void *arg) {
  conc__event_set(arg);
  return NULL;
}

/* A watched Event set by another thread wakes a poll that would sleep
** for good, and reports the watch's key once. */
void test_loop_watch_thread(void) {
  int rc;
  conc_Loop *l = conc__loop_new(&rc);
  conc_Event *e = conc__event_new(CONC_PRIVATE);
  conc_LoopEvent ev[8];
  pthread_t t;
  int n;
  check(l != NULL && e != NULL, "new");
  check_rc(conc__loop_watch(l, (conc_Obj *)e, CONC_READABLE, 77), CONC_OK);
  check_rc(conc__loop_poll(l, 0, ev, 8), 0);  /* nothing yet */
  pthread_create(&t, NULL, set_later, e);
  n = conc__loop_poll(l, 10, ev, 8);
  pthread_join(t, NULL);
  check(n == 1, "poll gave %d", n);
  check(ev[0].kind == CONC_LOOP_WATCH && ev[0].key == 77 &&
            (ev[0].events & CONC_READABLE), "the watch's event");
  conc__loop_unwatch(l, 77);
  conc__obj_decref((conc_Obj *)e);  /* the loop held its own reference */
  conc__loop_free(l);
}
