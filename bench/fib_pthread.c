/*
** fib_pthread.c -- the C baseline for W5: the same shape as bench/w5.lua and
** bench/w5.py, in C with pthreads, to measure what 2 threads can give on this
** machine at all (shared vCPUs often give well under 2.0x even here).
**
**   serial:   fib(n) four times in the main thread
**   threaded: two pthreads, each running fib(n) twice; start both, join both
**   forked:   the same split over two fork()ed children, reaped by waitpid:
**             what processes can give on this machine at all (W5p's floor:
**             a VM where a page fault is dear makes fork and the child's
**             first writes cost milliseconds)
**
** Usage: fib_pthread [n] [repeats]   (defaults 34, 11)
** n is larger than the Lua/Python fib(27) because C is far faster: fib(27)
** takes ~0.5 ms in C, too short to time two threads against. fib(34) takes
** about 7 ms, close to what fib(27) takes in conc, so the thread start cost
** and scheduler noise weigh about the same in both. The median of `repeats` runs of
** each shape is reported, as bench/run expects:
**   W5 c serial <s> s / W5 c threaded <s> s / W5 c speedup <x> x
**   W5 c processes <s> s / W5 c pspeedup <x> x
** The results go through a volatile sink and are printed, so the calls
** cannot be folded or dropped.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile long sink;
static volatile int fib_n = 34; /* volatile: no constant folding of fib(n) */

static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
  long *out = arg;
  long r = 0;
  for (int i = 0; i < 2; i++) r += fib(fib_n);
  *out = r;
  return NULL;
}

/* A child that runs fib(n) twice and exits with the low bits of the sum,
** so the parent can check that the work was done. */
static pid_t fork_worker(void) {
  pid_t pid = fork();
  if (pid == 0) {
    long r = 0;
    worker(&r);
    _exit((int)(r & 0x7f));
  }
  return pid;
}

static int reap(pid_t pid) {
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  int reps = 11;
  if (argc > 1) fib_n = atoi(argv[1]);
  if (argc > 2) reps = atoi(argv[2]);
  if (reps < 1 || reps > 100) reps = 11;
  double ser[100], thr[100], prc[100];
  long check = 0;

  sink = fib(fib_n); /* warm up */
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    long s = 0;
    for (int i = 0; i < 4; i++) s += fib(fib_n);
    sink = s;
    double t1 = now();
    pthread_t a, b;
    long ra = 0, rb = 0;
    if (pthread_create(&a, NULL, worker, &ra) ||
        pthread_create(&b, NULL, worker, &rb)) {
      perror("pthread_create");
      return 1;
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    sink = ra + rb;
    double t2 = now();
    if (ra + rb != s) {
      fprintf(stderr, "fib mismatch: %ld vs %ld\n", ra + rb, s);
      return 1;
    }
    pid_t pa = fork_worker(), pb = fork_worker();
    int ca = reap(pa), cb = reap(pb);
    double t3 = now();
    if (ca != (int)((s / 2) & 0x7f) || cb != ca) {
      fprintf(stderr, "forked workers failed: %d %d\n", ca, cb);
      return 1;
    }
    check = s;
    ser[r] = t1 - t0;
    thr[r] = t2 - t1;
    prc[r] = t3 - t2;
  }
  double ms = median(ser, reps), mt = median(thr, reps);
  double mp = median(prc, reps);
  fprintf(stderr, "C fib(%d) x4 = %ld\n", fib_n, check);
  printf("W5 c n %d\n", fib_n);
  printf("W5 c serial %.6f s\n", ms);
  printf("W5 c threaded %.6f s\n", mt);
  printf("W5 c speedup %.4f x\n", ms / mt);
  printf("W5 c processes %.6f s\n", mp);
  printf("W5 c pspeedup %.4f x\n", ms / mp);
  return 0;
}
