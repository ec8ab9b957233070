/*
** sync.c -- clocks, futex waits and the KeyboardInterrupt flag.
**
** Every blocking wait in conc ends up in conc__futex_wait or
** conc__sleep_until, so this is the one place that knows how a wait is cut
** short by Ctrl-C. A signal handler cannot touch a lua_State or a condition
** variable; it only sets a flag (and lua.c's style hook, see state.c). A
** blocked futex or nanosleep returns EINTR when the signal lands in the
** waiting thread; conc's own threads block SIGINT, so it lands in the main one.
** A signal that arrives between our check of the flag and the system call
** would be missed, so waits in the interruptible thread are cut into slices of
** at most INTERRUPT_SLICE seconds and re-check the flag between them.
*/
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

#define INTERRUPT_SLICE 0.05

/* Set by conc_interrupt (async-signal-safe): the flag, and the OS thread it
** targets (the one the signal landed in). */
static atomic_int interrupt_flag;  /* lock-free: safe in a handler */
static atomic_ulong interrupt_thread;

/* Workers block every signal, so their waits need no slicing. */
static _Thread_local int signals_blocked;

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

/* ---------------------------------------------------------------------- */

/* Called from a signal handler in the thread to interrupt: the thread id and
** the flag are the only things written. */
void conc__interrupt_set(void) {
  atomic_store(&interrupt_thread, (unsigned long)pthread_self());
  atomic_store(&interrupt_flag, 1);
}

void conc__sync_signals_blocked(void) {
  signals_blocked = 1;
}

static int interruptible_here(void) {
  return !signals_blocked;
}

int conc__interrupt_pending(void) {
  return !signals_blocked && atomic_load(&interrupt_flag) &&
         atomic_load(&interrupt_thread) == (unsigned long)pthread_self();
}

void conc__interrupt_clear(void) {
  atomic_store(&interrupt_flag, 0);
}

/* ---------------------------------------------------------------------- */

/* One futex wait of at most `secs` (negative: unbounded). */
static int futex_wait_for(atomic_uint *word, unsigned expected, double secs) {
  struct timespec ts, *tsp = NULL;
  if (secs >= 0) {
    ts = to_timespec(secs);
    tsp = &ts;
  }
  if (syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, expected, tsp,
              NULL, 0) == 0)
    return CONC_OK;
  switch (errno) {
    case ETIMEDOUT: return CONC_ETIMEDOUT;
    case EINTR: return CONC_EINTR;
    default: return CONC_OK;  /* EAGAIN: the word changed already */
  }
}

int conc__futex_wait(atomic_uint *word, unsigned expected, double deadline) {
  return conc__futex_wait_intr(word, expected, deadline, interruptible_here());
}

int conc__futex_wait_intr(atomic_uint *word, unsigned expected,
                          double deadline, int interruptible) {
  for (;;) {
    double secs = -1;
    int rc;
    if (interruptible && conc__interrupt_pending()) return CONC_EINTR;
    if (atomic_load_explicit(word, memory_order_acquire) != expected)
      return CONC_OK;
    if (deadline != CONC_FOREVER) {
      secs = deadline - conc__monotonic();
      if (secs <= 0) return CONC_ETIMEDOUT;
    }
    if (interruptible && (secs < 0 || secs > INTERRUPT_SLICE))
      secs = INTERRUPT_SLICE;
    rc = futex_wait_for(word, expected, secs);
    if (rc == CONC_OK) return CONC_OK;
    /* a slice ran out, or a signal came: loop to look at flag and deadline */
  }
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

void conc__futex_wake(atomic_uint *word, int nwaiters) {
  syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, nwaiters, NULL,
          NULL, 0);
}

int conc__sleep_until(double deadline) {
  int interruptible = interruptible_here();
  for (;;) {
    double secs;
    struct timespec ts;
    if (interruptible && conc__interrupt_pending()) return CONC_EINTR;
    secs = deadline - conc__monotonic();
    if (secs <= 0) return CONC_OK;
    if (interruptible && secs > INTERRUPT_SLICE) secs = INTERRUPT_SLICE;
    ts = to_timespec(secs);
    nanosleep(&ts, NULL);
  }
}
