/*
** fork_wait.c -- the C baseline for W8: the same shape as bench/w8.lua and
** bench/w8.py, 200 children that do nothing, here fork() + _exit(0) +
** waitpid(), with none of a Process object's bookkeeping: this machine's
** floor for starting and reaping a process.
**
**   W8     fork all 200, then waitpid all 200
**   W8seq  fork one, waitpid it, then the next
**
** Usage: fork_wait [repeats]  (default 5). Prints the medians of `repeats`
** rounds, after one warm-up round:
**   W8 c <us> us/process
**   W8seq c <us> us/process
*/
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 200

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static pid_t spawn(void) {
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); exit(1); }
  if (pid == 0) _exit(0);
  return pid;
}

static void reap(pid_t pid) {
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "fork_wait: child %d did not exit with 0\n", (int)pid);
    exit(1);
  }
}

static double batch(void) {
  pid_t pids[N];
  double t0 = now();
  for (int i = 0; i < N; i++) pids[i] = spawn();
  for (int i = 0; i < N; i++) reap(pids[i]);
  return (now() - t0) / N * 1e6;
}

static double sequential(void) {
  double t0 = now();
  for (int i = 0; i < N; i++) reap(spawn());
  return (now() - t0) / N * 1e6;
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
  int repeats = argc > 1 ? atoi(argv[1]) : 5;
  if (repeats < 1) repeats = 1;
  double *b = malloc(sizeof(double) * (size_t)repeats);
  double *s = malloc(sizeof(double) * (size_t)repeats);
  if (!b || !s) return 1;
  batch(); /* warm-up */
  for (int r = 0; r < repeats; r++) {
    b[r] = batch();
    s[r] = sequential();
  }
  printf("W8 c %.2f us/process\n", median(b, repeats));
  printf("W8seq c %.2f us/process\n", median(s, repeats));
  free(b);
  free(s);
  return 0;
}
