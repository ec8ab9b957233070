/*
** os.h -- what conc needs from the operating system, in one place: clocks,
** futexes, the KeyboardInterrupt flag and the one sleep that honours it,
** fork hooks, shared memory and processes (prefix conc__). Nothing here
** knows about conc's objects or about Lua; every failure is a code of
** errors.h.
*/
#ifndef CONC_OS_H
#define CONC_OS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "errors.h"

/* ======================================================================
** Clocks and futexes (futex.c)
** ====================================================================== */

#define CONC_FOREVER (-1.0)

double conc__monotonic(void);
double conc__walltime(void);
/* Deadline for a timeout in seconds: CONC_FOREVER (or any negative) for
** none, else conc__monotonic() + timeout. */
double conc__deadline(double timeout);

/*
** Where a futex word lives: CONC_PRIVATE words are seen by this process
** only (the kernel's cheaper private futexes), CONC_SHARED ones may sit in
** memory shared with other processes. A word's waiters and wakers must
** agree on it: every primitive records it at init.
*/
#define CONC_PRIVATE 0
#define CONC_SHARED 1

/* The raw wait: blocks while *word == expected, until woken, a signal, or
** `deadline` (monotonic seconds, absolute; CONC_FOREVER for none). CONC_OK
** (woken, changed, or a signal: look again) or CONC_ETIMEDOUT. Knows
** nothing of KeyboardInterrupt: sleeps that honour it go through
** conc__wait_seq. */
int conc__futex_wait(atomic_uint *word, unsigned expected, double deadline,
                     int shared);
void conc__futex_wake(atomic_uint *word, int n, int shared);

/* sched_yield: lets another thread or process on this CPU run. */
void conc__yield(void);
/* One step of a busy wait: a pause instruction where there is one. */
void conc__spin_pause(void);
/* May a waiter spin before sleeping? Not when this process runs on one CPU. */
int conc__can_spin(void);

/* ======================================================================
** KeyboardInterrupt and sleeping (intr.c)
**
** Every blocking wait of conc sleeps on a sequence word: a futex word whose
** only meaning is "something changed, look again" (the state it guards
** lives elsewhere). So an interrupt can wake a wait at once, with no
** polling: the signal handler, which runs in the thread it interrupts,
** bumps the word that thread is sleeping on (see conc__wait_seq).
** ====================================================================== */

/* Flags a KeyboardInterrupt for the calling OS thread and wakes the wait
** it is in (async-signal-safe: meant for a SIGINT handler). Also writes a
** byte to the wakeup fd, if one is set. */
void conc__interrupt_set(void);
/* Pending KeyboardInterrupt for the calling OS thread? One load when
** none is pending anywhere. */
extern atomic_int conc__interrupt_flag;
int conc__interrupt_mine(void);
static inline int conc__interrupt_pending(void) {
  return atomic_load_explicit(&conc__interrupt_flag, memory_order_relaxed) &&
         conc__interrupt_mine();
}
/* Consumes the pending interrupt. */
void conc__interrupt_clear(void);
/* Called by threads that block every signal (conc's workers): their waits
** are never interrupted. */
void conc__interrupt_blocked(void);
/* Python's signal.set_wakeup_fd: an fd (an event loop's) that gets one
** byte per interrupt, or -1 for none. Returns the previous one. */
int conc__interrupt_wakeup_fd(int fd);

/* Flags of conc__wait_seq. */
#define CONC_WAIT_SHARED CONC_SHARED  /* the word is CONC_SHARED */
#define CONC_WAIT_NOINTR 2            /* a wait that must finish (a retake) */

/*
** The one sleep of conc: blocks while *seq == seen, until woken, until
** `deadline` (CONC_FOREVER for none) or, unless CONC_WAIT_NOINTR, until a
** KeyboardInterrupt for this OS thread. Returns CONC_OK (woken or the word
** moved: callers look at their state again), CONC_ETIMEDOUT or CONC_EINTR.
** seq must be a sequence word: an interrupt may bump it.
*/
int conc__wait_seq(atomic_uint *seq, unsigned seen, double deadline,
                   int flags);
/* Sleeps until deadline: CONC_OK, or CONC_EINTR. */
int conc__sleep_until(double deadline);

/* ======================================================================
** Fork (fork.c): whoever owns process-wide state resets it in a child.
** ====================================================================== */

/*
** A subsystem's fork handlers, libuv's pattern: prepare runs before fork
** and takes the subsystem's internal locks, parent and child run after it
** (child in the new process, in its only thread) and release them or put
** the state right. Handlers run in rising `rank` for prepare and falling
** rank after, so ranks are the lock order (see docs/architecture.md):
*/
enum {
  CONC_FORK_STATE = 10,   /* lua/state.c: the state-init hook */
  CONC_FORK_THREADS = 20, /* core/thread.c: the table of live threads */
  CONC_FORK_PROCS = 25,   /* core/process.c: the table of children */
  CONC_FORK_CONNS = 27,   /* core/conn.c: the table of Connection ends */
  CONC_FORK_WORKERS = 30, /* core/worker.c: the pool of parked workers */
  CONC_FORK_REGIONS = 40, /* lua/alloc.c: cached startup regions */
  CONC_FORK_SHM = 50,     /* os/shm.c: the registry of shared mappings */
  CONC_FORK_INTR = 90     /* os/intr.c: the pending interrupt */
};

typedef struct conc_ForkHook {
  int rank;
  /* The subsystem's internal mutex, if it has one: the registry takes it
  ** before prepare runs and releases it after parent or child did (in the
  ** child, this thread holds it: an unlock is all it needs). */
  pthread_mutex_t *mutex;
  void (*prepare)(void);   /* any of the three may be NULL */
  void (*parent)(void);
  void (*child)(void);
  struct conc_ForkHook *next;  /* the registry's */
  int registered;
} conc_ForkHook;

/* Adds a hook, once (again is a no-op); from then on every fork of the
** process runs it. The hook must live for good (a static). */
void conc__fork_register(conc_ForkHook *h);
/* Counts up once as a fork begins and once as it ends in the parent: an
** object made at one count and freed at the same count was never
** inherited by a child (a count read while a fork is under way differs
** from the one after it). */
unsigned long conc__fork_generation(void);

/* ======================================================================
** Shared memory and processes (shm.c, proc.c)
** ====================================================================== */

/* size bytes of zeroed memory shared with the children this process forks
** from now on, and with those it spawns and gives the mapping's descriptor
** (conc__shm_fd); NULL when out of memory. */
void *conc__shm_map(size_t size);
void conc__shm_unmap(void *p, size_t size);
/* The descriptor behind the mapping that starts at p (and its size), or -1
** when it has none (a plain anonymous one: no descriptor was to be had). */
int conc__shm_fd(const void *p, size_t *size);
/* Maps size bytes of a descriptor a spawned process was given, over a
** close-on-exec duplicate of it that conc__shm_unmap closes (the caller
** still owns fd). NULL on failure. */
void *conc__shm_attach(int fd, size_t size);
/* A shared mapping of size bytes backed only where written (and never
** charged up front): for a queue that may grow to the machine's memory.
** NULL on failure. */
void *conc__shm_reserve(size_t size);
/* Gives the pages of [p, p + len) back (both page-aligned): they read as
** zeros afterwards, in every process. */
void conc__shm_discard(void *p, size_t len);
/* Backs the pages of [p, p + len) (page-aligned) now, in one call, where
** touching them would take a fault each: for a block about to be filled. */
void conc__shm_populate(void *p, size_t len);
size_t conc__shm_page(void);      /* the page size */
size_t conc__shm_physical(void);  /* bytes of RAM */
/* The most one reservation should take when reservations are charged
** (strict overcommit) or bounded (RLIMIT_AS); SIZE_MAX when neither. */
size_t conc__shm_room(void);

/* fork(): the child's pid in the parent, 0 in the child, or a negative
** errno. The fork hooks run around it. */
int conc__proc_fork(void);
/* Starts path with argv and envp (posix_spawn: no fork hooks, nothing of
** this process runs in the child): the child inherits fds[0 .. n) at the
** numbers at[0 .. n) (at NULL: the same numbers; close-on-exec or not
** here) and no other descriptor conc made, and starts with no signal
** blocked. CONC_SPAWN_SEARCH looks path up in PATH when it has no slash.
** Its pid, or a negative errno. */
#define CONC_SPAWN_SEARCH 1
int conc__proc_spawn(const char *path, char *const argv[], char *const envp[],
                     const int *fds, const int *at, unsigned n, int flags);
/* This process's environment with the n "NAME=value" strings of set in
** place of the variables they name: a malloc'd array (free it; the strings
** are environ's and set's), or NULL. */
char **conc__proc_env(const char *const *set, unsigned n);
/* Waits for the child pid to end, until deadline: CONC_OK with *status set
** to its exit code (or -N when killed by signal N), CONC_ETIMEDOUT,
** CONC_EINTR, or a negative errno. */
int conc__proc_wait(int pid, double deadline, int *status);
/* Ends the process at once, running no atexit handler: how a forked child
** finishes. */
void conc__proc_exit(int code);
/* A pidfd for the child pid (Linux 5.3): readable once the child has
** ended, pollable by an event loop; or a negative errno. Close-on-exec. */
int conc__proc_pidfd(int pid);
/* Has child pid ended? 1 with *status set as conc__proc_wait sets it (the
** child is reaped), 0 while it runs, or a negative errno. Never blocks. */
int conc__proc_poll(int pid, int *status);
/* Does thread (or process) tid run? 0 once it ended, also as a zombie
** that its parent has not reaped yet. */
int conc__proc_tid_alive(int tid);
/* kill(2): CONC_OK or a negative errno. */
int conc__proc_kill(int pid, int sig);
int conc__proc_self(void);    /* getpid() */
/* Is the calling thread its process's main thread? */
int conc__proc_main_thread(void);
/* In a child forked by the main thread of `parent`: it gets SIGTERM when
** that process dies (at once, if it already has). */
void conc__proc_orphan_rule(int parent);
int conc__proc_parent(void);  /* getppid() */
/* This process's executable (the link /proc/self/exe names) into buf:
** its length, or -errno (-ENAMETOOLONG when size is too small). */
int conc__proc_executable(char *buf, size_t size);
/* Points this process's stdin (fd 0 and the FILE) at /dev/null, as
** Python's children have it: 0 or -errno. */
int conc__proc_stdin_null(void);
void conc__proc_close_fd(int fd);
void conc__proc_cloexec(int fd);  /* sets close-on-exec */

/* ======================================================================
** File descriptors (fd.c): pipes, socket pairs, and waiting on them
** ====================================================================== */

#define CONC_FD_READ 1
#define CONC_FD_WRITE 2
/* Waits until fd is readable (CONC_FD_READ) or writable, until deadline
** or (unless flags has CONC_WAIT_NOINTR) a KeyboardInterrupt for this OS
** thread: CONC_OK, CONC_ETIMEDOUT,
** CONC_EINTR (no signal slips in between the look at the flag and the
** sleep: the sleep is a ppoll that unblocks signals only while it
** sleeps). A hang-up or error counts as ready: the read or write says
** what happened. */
int conc__fd_wait(int fd, int events, double deadline, int flags);
/* Reads or writes up to n bytes, never blocking (the fds conc makes are
** non-blocking): the count, 0 at end of file (read), CONC_EAGAIN when
** nothing can move now, or a negative errno. */
long conc__fd_read(int fd, void *buf, size_t n);
long conc__fd_write(int fd, const void *buf, size_t n);
/* fds[0] reads, fds[1] writes; duplex: a socket pair, both ways.
** Non-blocking, close-on-exec. CONC_OK or a negative errno. */
int conc__fd_pair(int fds[2], int duplex);
/* A close-on-exec descriptor of an unnamed file holding the len bytes at
** data (what a spawned process reads its start from), or a negative errno. */
int conc__fd_memfile(const void *data, size_t len);
/* The whole content of such a file, read from its start into a malloc'd
** block: CONC_OK, ENOMEM or a negative errno. */
int conc__fd_slurp(int fd, char **data, size_t *len);
/* /dev/null opened for reading and writing, close-on-exec: an fd or a
** negative errno (a child's DEVNULL). */
int conc__fd_devnull(void);
/* Makes fd's open file blocking (a child's end of a pair): CONC_OK or a
** negative errno. */
int conc__fd_blocking(int fd);
/* CPUs this process may run on (at least 1). */
int conc__cpu_count(void);

/* ======================================================================
** Polling (poll.c): the event loop's epoll set and its wakeup eventfd
** ====================================================================== */

/* Event bits of a polled fd (conc__poll_add's and a result's). */
#define CONC_POLL_IN 1u
#define CONC_POLL_OUT 2u
#define CONC_POLL_ERR 4u    /* results only: an error or a hang-up */
#define CONC_POLL_EDGE 8u   /* add/mod only: edge-triggered */
/* results only (the same bit as EDGE): the peer shut its writing half, so
** a short read is not the end of what there is to read */
#define CONC_POLL_HUP 8u

typedef struct conc_PollEvent {
  unsigned events;
  unsigned long long data;
} conc_PollEvent;

/* A close-on-exec epoll set, or a negative errno. */
int conc__poll_open(void);
/* Watches fd for events, reported with data: CONC_OK or a negative errno
** (mod: the fd's events change; del: it is watched no more). */
int conc__poll_add(int ep, int fd, unsigned events, unsigned long long data);
int conc__poll_mod(int ep, int fd, unsigned events, unsigned long long data);
int conc__poll_del(int ep, int fd);
/* Waits up to timeout seconds (negative: forever) for events on ep, at
** most max of them into evs: how many came (0 when the time passed),
** CONC_EINTR for a KeyboardInterrupt of this OS thread (which no signal
** slips past: signals are unblocked only while it sleeps), or a negative
** errno. */
int conc__poll_wait(int ep, conc_PollEvent *evs, int max, double timeout);
/* A non-blocking close-on-exec eventfd, or a negative errno; notify adds
** one (async-signal-safe, from any thread), drain reads what was added. */
int conc__poll_eventfd(void);
void conc__poll_notify(int efd);
void conc__poll_drain(int efd);

/* ======================================================================
** Sockets (sock.c): TCP and Unix-domain stream sockets, non-blocking, and
** the name resolution that asyncio runs off the loop
** ====================================================================== */

#define CONC_AF_INET 4
#define CONC_AF_INET6 6
#define CONC_AF_UNIX 1

/* An address as the Lua layer gives it: a family, a numeric host (or a
** path for CONC_AF_UNIX) and a port. */
typedef struct conc_SockAddr {
  int family;
  char host[108];
  int port;
} conc_SockAddr;

/* A listening socket bound to a (port 0: any free one), SO_REUSEADDR for
** TCP: its fd or a negative errno (CONC_EVALUE: not a numeric address). */
int conc__sock_listen(const conc_SockAddr *a, int backlog);
/* Starts connecting to a: its fd, with *pending set when the connection is
** still under way (wait for it to be writable, then ask sock_error). */
int conc__sock_connect(const conc_SockAddr *a, int *pending);
/* The next connection on a listening socket: its fd with *peer set,
** CONC_EAGAIN when there is none now, or a negative errno. */
int conc__sock_accept(int fd, conc_SockAddr *peer);
/* The socket's pending error (SO_ERROR) as a negative errno, or CONC_OK. */
int conc__sock_error(int fd);
/* Where the socket is bound (peer 0) or connected to (peer 1). */
int conc__sock_name(int fd, int peer, conc_SockAddr *a);
/* Ends the writing half (a FIN for the peer): CONC_OK or a negative errno. */
int conc__sock_shutdown(int fd);
/* getaddrinfo for stream sockets: up to max addresses of host (NULL: the
** wildcard, for a server) into out: how many, or CONC_ENAME (the message
** from gai_strerror into msg). family 0: any. Blocks: run it off the loop
** unless host is numeric. */
int conc__sock_resolve(const char *host, int port, int family, int passive,
                       conc_SockAddr *out, int max, char *msg, size_t msgsize);
/* 1 if host is a numeric IPv4 or IPv6 address (no lookup needed). */
int conc__sock_numeric(const char *host);

#endif
