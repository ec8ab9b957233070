/*
** pingpong_pthread.c -- the C baseline for W11: the same shape as
** bench/w11.lua and bench/w11.py, a token handed back and forth between two
** threads, here with one pthread_mutex and one pthread_cond.
**
**   the main thread (A) and one pthread (B) share `turn` (0: A's, 1: B's);
**   each side, per hand-off: lock; while turn != mine: wait; turn = other;
**   signal; unlock.   n round trips = 2n hand-offs.
**
** As in the scripts, B is started and one round trip is made before the
** clock starts. Usage: pingpong_pthread [repeats] [n]  (defaults 3, 100000).
** Prints the median of `repeats` runs, after one warm-up run of n/10:
**   W11 c <us> us/handoff
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn; /* whose move it is: 0 = A, 1 = B; under mu */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* wait for my turn, then give the token to the other side */
static void handoff(int mine) {
  pthread_mutex_lock(&mu);
  while (turn != mine) pthread_cond_wait(&cv, &mu);
  turn = !mine;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

static void *pong(void *arg) {
  long n = *(long *)arg;
  for (long i = 0; i < n; i++) handoff(1);
  return NULL;
}

/* wait until the token is back with `mine` */
static void wait_turn(int mine) {
  pthread_mutex_lock(&mu);
  while (turn != mine) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static double round_trip_run(long n) {
  pthread_t b;
  long nb = n + 1;
  turn = 0;
  if (pthread_create(&b, NULL, pong, &nb)) {
    perror("pthread_create");
    exit(1);
  }
  handoff(0); /* the untimed first round trip: there ... */
  wait_turn(0); /* ... and back */
  double t0 = now();
  /* each handoff(0) first waits for the previous round trip's return (the
  ** first one finds the token here already), so after the loop one return
  ** is left to wait for: 2n hand-offs in all, as in the scripts */
  for (long i = 0; i < n; i++) handoff(0);
  wait_turn(0);
  double dt = now() - t0;
  pthread_join(b, NULL);
  return dt / (2.0 * (double)n) * 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 3;
  long n = argc > 2 ? atol(argv[2]) : 100000;
  double v[100];
  if (reps < 1 || reps > 100) reps = 3;
  if (n < 10) n = 100000;
  round_trip_run(n / 10); /* warm-up */
  for (int r = 0; r < reps; r++) v[r] = round_trip_run(n);
  qsort(v, (size_t)reps, sizeof *v, cmp);
  double m = reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2;
  printf("W11 c %.3f us/handoff\n", m);
  return 0;
}
