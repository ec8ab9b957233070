/*
** futex.c -- clocks, and the futex wait and wake every conc wait ends in.
**
** Waits take an absolute deadline on the monotonic clock (FUTEX_WAIT_BITSET
** measures it there), so a wait woken early and resumed never has to work
** out how long it has left. A word is private or shared (os.h): private
** futexes skip the kernel's lookup of the page's owner, so threads pay
** nothing for memory that processes could share.
*/
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

double conc__monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double conc__walltime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double conc__deadline(double timeout) {
  if (timeout < 0) return CONC_FOREVER;
  return conc__monotonic() + timeout;
}

static struct timespec to_timespec(double secs) {
  struct timespec ts;
  if (secs < 0) secs = 0;
  if (secs > (double)INT_MAX) secs = (double)INT_MAX;
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  return ts;
}

static int op(int base, int shared) {
  return shared ? base : base | FUTEX_PRIVATE_FLAG;
}

int conc__futex_wait(atomic_uint *word, unsigned expected, double deadline,
                     int shared) {
  struct timespec ts, *tsp = NULL;
  if (deadline != CONC_FOREVER) {
    ts = to_timespec(deadline);
    tsp = &ts;
  }
  if (syscall(SYS_futex, (unsigned *)word, op(FUTEX_WAIT_BITSET, shared),
              expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY) == 0)
    return CONC_OK;
  /* EAGAIN: the word changed already; EINTR: a signal, look again */
  return errno == ETIMEDOUT ? CONC_ETIMEDOUT : CONC_OK;
}

void conc__futex_wake(atomic_uint *word, int n, int shared) {
  syscall(SYS_futex, (unsigned *)word, op(FUTEX_WAKE, shared), n, NULL, NULL,
          0);
}

/* Spinning helps only when the thread we wait for can run meanwhile: with
** one CPU to run on (a container's quota, taskset -c 0) it only delays it.
** Read once; 0 until known, then 1 (one CPU) or 2 (more). */
static atomic_int spin_cpus;

int conc__can_spin(void) {
  int n = atomic_load_explicit(&spin_cpus, memory_order_relaxed);
  if (n == 0) {
    cpu_set_t set;
    n = 2;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < 2)
      n = 1;
    atomic_store_explicit(&spin_cpus, n, memory_order_relaxed);
  }
  return n > 1;
}

void conc__spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void conc__yield(void) {
  sched_yield();
}
