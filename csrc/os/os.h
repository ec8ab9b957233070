/*
** os.h -- what conc needs from the operating system, in one place: clocks,
** futex waits and wakes, the KeyboardInterrupt flag (prefix conc__).
** Nothing here knows about conc's objects or about Lua.
*/
#ifndef CONC_OS_H
#define CONC_OS_H

#include <stdatomic.h>

/* ======================================================================
** Time and waiting (futex.c)
** ====================================================================== */

#define CONC_FOREVER (-1.0)

double conc__monotonic(void);
double conc__walltime(void);

/* Results of a wait, as negative errno in the libuv manner. */
#define CONC_OK 0
#define CONC_ETIMEDOUT (-110)
#define CONC_EINTR (-4)
#define CONC_ENOMEM (-12)

/*
** Blocks while *word == expected, until woken, until `deadline`
** (conc__monotonic() seconds; CONC_FOREVER for none) or, in the OS thread that
** owns a pending KeyboardInterrupt, until interrupted. Returns CONC_OK (woken
** or the word changed: callers re-check their condition), CONC_ETIMEDOUT or
** CONC_EINTR.
*/
int conc__futex_wait(atomic_uint *word, unsigned expected, double deadline);
/* The same, saying whether a pending KeyboardInterrupt may cut it short
** (waits that must finish, such as retaking a lock, say no). */
int conc__futex_wait_intr(atomic_uint *word, unsigned expected,
                          double deadline, int interruptible);
void conc__futex_wake(atomic_uint *word, int nwaiters);

/* Sleeps until deadline; CONC_OK or CONC_EINTR. */
int conc__sleep_until(double deadline);

/* Deadline for a Python-style timeout: <0 or FOREVER means no deadline. */
double conc__deadline(double timeout);

/* Flags a KeyboardInterrupt for the calling OS thread (signal-safe). */
void conc__interrupt_set(void);
/* Called by threads that block all signals: their waits need no slicing. */
void conc__sync_signals_blocked(void);
/* Pending KeyboardInterrupt for the calling OS thread? */
int conc__interrupt_pending(void);
/* Consumes the pending interrupt (and the hook set on its state). */
void conc__interrupt_clear(void);

/* One step of a busy wait: a pause instruction where there is one. */
void conc__spin_pause(void);
/* May a waiter spin before sleeping? Not when this process runs on one CPU. */
int conc__can_spin(void);

#endif
