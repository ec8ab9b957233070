/*
** core.h -- the Lua-free core: objects, primitives, the wait protocol,
** queues, threads, messages and containers (prefix conc__).
**
** The layers, each a folder of csrc/, arrows pointing down only:
**   host/   main.c, the conc interpreter, over include/conc.h alone
**   lua/    the wire format, proxies, states, errors, the l*.c bindings
**   core/   this header: no lua.h here (the build gives core/ no Lua
**           include path, so including it fails to compile)
**   os/     futex, clocks, interrupts, fork hooks, shared memory (os.h)
**
** Results are codes of os/errors.h: CONC_OK or a negative CONC_E*.
**
** Primitives that a process may share (the mutex, the sequence word, the
** semaphore, the event, the byte ring of ring.h) are plain data: integers
** and atomics, no pointers, each told at init whether its futex words are
** CONC_PRIVATE or CONC_SHARED. The objects threads see (conc_Lock, ...)
** wrap them with a conc_Obj header and a wait list, which are this
** process's own.
*/
#ifndef CONC_CORE_H
#define CONC_CORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h"

/* ======================================================================
** Refcounted objects (obj.c)
** Every conc object shared between states starts with a conc_Obj. Each state
** that sees the object holds one proxy per object (a weak cache keeps
** identity), and each proxy owns one reference; so does each message in
** flight that names the object. The object is freed when the last
** reference goes.
** ====================================================================== */

typedef struct conc_Obj conc_Obj;
typedef struct conc_WaitList conc_WaitList;
typedef struct conc_Export conc_Export;
typedef struct conc_Msg conc_Msg;
struct conc_Binding;  /* the Lua layer's details of a kind (lua/lconc.h) */

/* What a wait can wait for (conc_WaitLink, conc_ObjType.ready). */
#define CONC_READABLE 1u  /* an item to get, an event set, a future done */
#define CONC_WRITABLE 2u  /* room to put, a lock free, a semaphore slot */

typedef struct conc_ObjType {
  const char *name;             /* "conc.Lock": the metatable's name too */
  void (*destroy)(conc_Obj *o); /* frees the object; called once, at refs 0 */
  atomic_long live;             /* objects of this kind alive, for tests */
  /* Kinds one can wait on with others (conc.select, an event loop) set
  ** both: which of `events` a wait would find now, and the list whose
  ** links hear of changes (see the wait protocol below). Looking may arm
  ** the object to notify (a held Lock marks itself contended). */
  unsigned (*ready)(conc_Obj *o, unsigned events);
  conc_WaitList *(*waitlist)(conc_Obj *o);
  /* 1 when other processes may change o (its state is in shared memory):
  ** its wait list hears only this process, so a watcher also looks again
  ** now and then. NULL: never. */
  int (*remote)(conc_Obj *o);
  /* Kinds a spawned process can be given (multiprocessing's) set both:
  ** export describes o (CONC_EVALUE: this one is the process's own, as
  ** threading's are), attach makes this process's object over the same
  ** shared memory (spawn.c). */
  int (*export)(conc_Obj *o, conc_Export *x);
  conc_Obj *(*attach)(const conc_Export *x);
  /* Set by the Lua layer the first time a state opens the kind. */
  _Atomic(struct conc_Binding *) binding;
} conc_ObjType;

struct conc_Obj {
  atomic_long refs;
  conc_ObjType *type;
};

void conc__obj_init(conc_Obj *o, conc_ObjType *type);
void conc__obj_incref(conc_Obj *o);
void conc__obj_decref(conc_Obj *o);
void conc__obj_free(conc_Obj *o);  /* a destroy for plain blocks */

/*
** The state of a kind that processes may share (Lock, RLock, Event,
** Semaphore): the object points at it, and it is either `own`, inside the
** object, or (CONC_SHARED) a mapping of its own that the children forked
** later share. The header, the pointer and any wait list stay this
** process's. NULL when a mapping cannot be made.
*/
void *conc__obj_state(void *own, size_t size, int shared);
void conc__obj_state_free(void *state, const void *own, size_t size);

/*
** What a spawned process is given of a shared object: its mappings (made
** by conc__shm_map or conc__shm_reserve; in attach, this process's own
** mappings of the same memory, which the new object then owns), a
** descriptor of its own, a few numbers, and one object it holds (in
** attach: this process's, to take a reference of).
*/
#define CONC_EXPORT_MAPS 2
struct conc_Export {
  void *map[CONC_EXPORT_MAPS];  /* NULL: unused */
  size_t size[CONC_EXPORT_MAPS];  /* attach: the mapping's size */
  int fd;                       /* -1: none */
  int64_t num[4];
  conc_Obj *ref;                /* NULL: none */
};

/* export for a kind whose shared state is one conc__obj_state block. */
int conc__obj_export_state(void *state, const void *own, conc_Export *x);

/* Every kind of object, NULL-terminated: what live_objects counts. */
extern conc_ObjType *const conc__obj_types[];

/* threading.local: an object with no state of its own (the Lua layer
** keeps each state's fields). */
extern conc_ObjType conc__local_type;
conc_Obj *conc__local_new(void);

/* ======================================================================
** Mutex (mutex.c): the lock under Lock, RLock and every internal lock
** ====================================================================== */

/*
** state is 0 (free), or held: bit CONC_MUTEX_HELD, and CONC_MUTEX_WAITERS
** too when someone may wait, as in Drepper's "Futexes Are Tricky" (mutex
** 2, whose 1 and 2 are 1 and 3 here); the waiters sleep on seq, a
** sequence word a contended release bumps, so that a KeyboardInterrupt can
** wake them (os.h). Taking a free one and giving back one nobody waits for
** are inline: an uncontended pair is two atomic instructions and no call.
**
** A CONC_SHARED one is robust: its holder's thread id is in the state word
** above those two bits, taken and let go in the same atomic instruction,
** so a process killed at any moment leaves the mutex free or naming it;
** and the holder then writes its thread and process ids in owner and
** owner_pid. A waiter that has slept a while looks whether the holder
** still lives. If its process died holding the mutex (killed in a
** critical section), the waiter takes the mutex over, and `recovered` says
** so to whoever wants to put the guarded state right (a queue's ring).
*/
typedef struct conc_Mutex {
  atomic_uint state;
  atomic_uint seq;
  uint32_t shared;     /* CONC_PRIVATE or CONC_SHARED */
  atomic_uint owner;   /* CONC_SHARED: the holder's tid; 0 free or taking */
  atomic_uint owner_pid;  /* and its process, written before owner */
  atomic_uint recovered;  /* set by a takeover from a dead holder */
} conc_Mutex;

#define CONC_MUTEX_HELD 1u
#define CONC_MUTEX_WAITERS 2u

void conc__mutex_init(conc_Mutex *m, int shared);
/* A shared mutex was just taken: records the holder. */
void conc__mutex_owned(conc_Mutex *m);
uint32_t conc__thread_self_tid(void);  /* thread.c */

/* The state word of a mutex this thread holds (waiters aside). */
static inline unsigned conc__mutex_mine(const conc_Mutex *m) {
  return m->shared ? conc__thread_self_tid() << 2 | CONC_MUTEX_HELD
                   : CONC_MUTEX_HELD;
}

static inline int conc__mutex_try(conc_Mutex *m) {
  unsigned c = 0;
  if (!atomic_compare_exchange_strong_explicit(
          &m->state, &c, conc__mutex_mine(m), memory_order_acquire,
          memory_order_relaxed))
    return 0;
  if (m->shared) conc__mutex_owned(m);
  return 1;
}
/* Before the state of a shared one goes to 0. */
static inline void conc__mutex_disown(conc_Mutex *m) {
  if (m->shared) atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
}
/* Takes it, spinning a moment first: CONC_OK, ETIMEDOUT or EINTR. */
int conc__mutex_acquire(conc_Mutex *m, double deadline);
/* The contended halves, out of line. */
void conc__mutex_lock_slow(conc_Mutex *m);
void conc__mutex_wake(conc_Mutex *m);
/* Sleeps until it is taken (marked contended), or deadline or an interrupt
** (unless CONC_WAIT_NOINTR in flags): CONC_OK, ETIMEDOUT, EINTR. */
int conc__mutex_sleep(conc_Mutex *m, double deadline, int flags);
/* Takes it for good, with no KeyboardInterrupt: the internal locks'
** take, one compare-and-swap when it is free. */
static inline void conc__mutex_lock(conc_Mutex *m) {
  if (!conc__mutex_try(m)) conc__mutex_lock_slow(m);
}
/* Gives it back: CONC_EUNLOCKED if it was not held (then it still is not:
** 0 was written over 0). A contended one wakes one sleeper. */
static inline int conc__mutex_release(conc_Mutex *m) {
  unsigned c;
  conc__mutex_disown(m);
  c = atomic_exchange_explicit(&m->state, 0, memory_order_release);
  if (c == 0) return CONC_EUNLOCKED;
  if (c & CONC_MUTEX_WAITERS) conc__mutex_wake(m);
  return CONC_OK;
}
static inline void conc__mutex_unlock(conc_Mutex *m) {
  (void)conc__mutex_release(m);
}

/* ======================================================================
** The wait protocol (wait.c): how every wait of conc sleeps and is woken
**
** Two halves, one set of rules:
**  - A sequence word (conc_Seq) for the calls that block on one object
**    (a get, an acquire, a wait): sleepers read the word, look at the
**    object, and sleep while the word is unchanged; a change bumps the
**    word and wakes as many as it should. Under the object's mutex, a
**    wake takes its sleeper off the count at once, so that a burst of
**    puts wakes a sleeper once (seq_sleep/seq_signal/seq_wake); objects
**    with no mutex count their sleepers atomically (seq_enter/seq_wait/
**    seq_leave/seq_notify).
**  - A wait list (conc_WaitList) for waiters that watch objects from
**    outside: conc.select, an event loop, a Condition's waits. A waiter
**    (conc_Waiter) links itself (conc_WaitLink) to each object it
**    watches, once, for CONC_READABLE and/or CONC_WRITABLE, and the link
**    stays until removed: a loop registers once, not once per wait. A
**    change notifies the list with its events; each matching link gets
**    those events in `ready` and its waiter one signal -- coalesced: a
**    waiter signalled and not yet woken is not signalled again, so an
**    eventfd behind it is written once per batch. An exclusive link
**    (CONC_EXCLUSIVE) is a wait one notify ends (Condition.notify(n)
**    ends n, in arrival order); it is unlinked by the notify.
** No wakeup is lost: a notifier changes the state, then looks for
** sleepers or links; a waiter counts or links itself, then looks at the
** state (all seq_cst). Every sleep is conc__wait_seq, which a
** KeyboardInterrupt ends at once.
** ====================================================================== */

typedef struct conc_Seq {
  atomic_uint seq;       /* the futex word: bumped by every wake */
  atomic_uint sleepers;  /* asleep, or about to be */
  uint32_t shared;       /* CONC_PRIVATE or CONC_SHARED */
} conc_Seq;

void conc__seq_init(conc_Seq *s, int shared);

/* Under mutex mu: sleeps on s, mu dropped meanwhile and held again on
** return; the result is conc__wait_seq's. */
int conc__seq_sleep(conc_Seq *s, conc_Mutex *mu, double deadline);
/* Under the same mutex: how many sleepers to wake (0, 1, or all for
** `all`), taken off the count now; pass it to seq_wake once mu is
** released. */
int conc__seq_signal(conc_Seq *s, int all);
void conc__seq_wake(conc_Seq *s, int n);

/* With no mutex: count yourself in (returns the word to sleep on), look
** at the state, sleep while it says wait, then leave. A notifier changes
** the state, then calls seq_notify, which is a load when nobody sleeps. */
unsigned conc__seq_enter(conc_Seq *s);
int conc__seq_wait(conc_Seq *s, unsigned *seen, double deadline, int flags);
void conc__seq_leave(conc_Seq *s);
void conc__seq_notify(conc_Seq *s, int n);

#define CONC_EXCLUSIVE 0x100u  /* a link one notify ends (wakes one) */

typedef struct conc_Waiter conc_Waiter;
struct conc_Waiter {
  atomic_uint seq;       /* what it sleeps on: bumped by each signal */
  atomic_uint pending;   /* 1 from a signal until the waiter takes it */
  void (*wake)(conc_Waiter *w);  /* NULL: a futex wake of seq */
  void *ud;
};

typedef struct conc_WaitLink {
  struct conc_WaitLink *next, *prev;
  conc_Waiter *waiter;
  unsigned events;       /* CONC_READABLE, CONC_WRITABLE, CONC_EXCLUSIVE */
  atomic_uint ready;     /* the events notified since the waiter looked */
  int linked;            /* under the list's mutex */
  void *ud;              /* the waiter's: which object this link watches */
} conc_WaitLink;

struct conc_WaitList {
  conc_Mutex mu;         /* guards the links */
  atomic_uint n;         /* links: a notify with none is one load */
  conc_WaitLink *head, *tail;
};

/* wake: what a signal does (NULL: wake the futex the waiter sleeps on). */
void conc__waiter_init(conc_Waiter *w, void (*wake)(conc_Waiter *w),
                       void *ud);
/* Coalesced: nothing if w was signalled and has not taken it yet. */
void conc__waiter_signal(conc_Waiter *w);
/* Takes a signal: 1 if there was one (the waiter then looks at its links'
** ready events or objects), 0 if not. An event loop calls it after its
** eventfd fires. */
int conc__waiter_take(conc_Waiter *w);
/* Sleeps until signalled (the signal taken), deadline or interrupt:
** CONC_OK, ETIMEDOUT, EINTR. */
int conc__waiter_wait(conc_Waiter *w, double deadline);

void conc__waitlist_init(conc_WaitList *wl);
/* Links l (the caller's memory, until removed) for events, FIFO. */
void conc__waitlist_add(conc_WaitList *wl, conc_WaitLink *l, conc_Waiter *w,
                        unsigned events, void *ud);
/* Unlinks l if it still is: returns its ready events (under the list's
** mutex, so that a notify cannot be half-way through it). */
unsigned conc__waitlist_remove(conc_WaitList *wl, conc_WaitLink *l);
/* Signals every link watching any of `events` and up to nexcl exclusive
** ones (unlinked as they are woken); returns how many of those it woke.
** Call after the change it should see, with no lock held that a waiter's
** wake function could need. */
unsigned long conc__waitlist_wake(conc_WaitList *wl, unsigned events,
                                  unsigned long nexcl);
/* The common call: a change that links may care about. One load when
** nobody is linked. */
static inline void conc__waitlist_notify(conc_WaitList *wl,
                                         unsigned events) {
  if (atomic_load_explicit(&wl->n, memory_order_seq_cst) > 0)
    conc__waitlist_wake(wl, events, 0);
}

/* Waits for the first of n objects (each of a kind with `ready` and
** `waitlist`) to be ready for `events`, using links[n] as scratch: CONC_OK
** with *index set, CONC_ETIMEDOUT or CONC_EINTR. */
int conc__select(conc_Obj *const *objs, conc_WaitLink *links, int n,
                 unsigned events, double deadline, int *index);

/* ======================================================================
** Primitives as plain data: the event flag (event.c), the semaphore
** counter (semaphore.c)
** ====================================================================== */

/* A flag threads wait for: the flag in bit 0 of word and a count of sets
** above it, so a waiter knows a set() came even if a clear() followed. */
typedef struct conc_Flag {
  atomic_uint word;
  conc_Seq seq;
} conc_Flag;

void conc__flag_init(conc_Flag *f, int shared);
int conc__flag_set(conc_Flag *f);       /* 1 if it was clear */
/* set's two halves, for a caller that must mark it under a lock of its
** own and wake the sleepers after: mark (1 if it was clear), then wake. */
int conc__flag_mark(conc_Flag *f);
void conc__flag_wake(conc_Flag *f);
void conc__flag_clear(conc_Flag *f);
int conc__flag_is_set(conc_Flag *f);
/* CONC_OK once set (or set and cleared) while waiting, else ETIMEDOUT or
** EINTR; spins a moment first unless flags has CONC_WAIT_NOSPIN (and
** CONC_WAIT_NOINTR, os.h, makes it wait for good). */
#define CONC_WAIT_NOSPIN 4
int conc__flag_wait(conc_Flag *f, double deadline, int flags);

typedef struct conc_Count {
  atomic_uint value;
  conc_Seq seq;
  unsigned bound;       /* BoundedSemaphore: value never passes it */
  int bounded;
} conc_Count;

void conc__count_init(conc_Count *c, unsigned value, int bounded,
                      int shared);
int conc__count_try(conc_Count *c);     /* 1 if it took one */
/* Takes one: CONC_OK, ETIMEDOUT (also for a failed non-blocking try),
** EINTR. */
int conc__count_take(conc_Count *c, int blocking, double deadline);
/* Adds n: CONC_OK, or CONC_EOVERRELEASE past the bound (or the range). */
int conc__count_give(conc_Count *c, unsigned n);
unsigned conc__count_value(conc_Count *c);

/* ======================================================================
** Lock (lock.c), RLock (rlock.c), Semaphore (semaphore.c), Event
** (event.c), Condition (condition.c), Barrier (barrier.c)
** ====================================================================== */

/*
** A Lock's mutex is `own`, or, for a lock processes share
** (multiprocessing.Lock), a conc_Mutex in a shared mapping of its own that
** forked children inherit: the header, the wait list and the pointer stay
** this process's (see the architecture's "plain data" rule).
*/
typedef struct conc_Lock {
  conc_Obj hdr;
  conc_Mutex *mu;          /* &own, or in the shared mapping */
  conc_WaitList watchers;  /* links waiting for it to be free */
  conc_Mutex own;
} conc_Lock;
extern conc_ObjType conc__lock_type;
/* shared: CONC_SHARED for a lock processes share, else CONC_PRIVATE */
conc_Lock *conc__lock_new(int shared);
int conc__lock_shared(conc_Lock *l);
static inline int conc__lock_try(conc_Lock *l) {      /* 1 if taken */
  return conc__mutex_try(l->mu);
}
int conc__lock_acquire(conc_Lock *l, double deadline); /* OK/ETIMEDOUT/EINTR */
void conc__lock_contended(conc_Lock *l);
/* CONC_OK, or CONC_EUNLOCKED (it was not held) */
static inline int conc__lock_release(conc_Lock *l) {
  unsigned c;
  conc__mutex_disown(l->mu);
  c = atomic_exchange_explicit(&l->mu->state, 0, memory_order_release);
  if (c == 0) return CONC_EUNLOCKED;
  if (c & CONC_MUTEX_WAITERS) conc__lock_contended(l);
  return CONC_OK;
}
int conc__lock_locked(conc_Lock *l);

typedef struct conc_RLock conc_RLock;
extern conc_ObjType conc__rlock_type;
conc_RLock *conc__rlock_new(int shared);  /* as conc__lock_new */
int conc__rlock_shared(conc_RLock *r);
/* CONC_OK, or CONC_ETIMEDOUT (also for a failed non-blocking try), EINTR */
int conc__rlock_acquire(conc_RLock *r, int blocking, double deadline);
int conc__rlock_release(conc_RLock *r);             /* or ENOTOWNER */
int conc__rlock_owned(conc_RLock *r);
/* Condition.wait's full release of an owned RLock, and its return. */
unsigned long conc__rlock_release_save(conc_RLock *r);
void conc__rlock_acquire_restore(conc_RLock *r, unsigned long count);

typedef struct conc_Semaphore conc_Semaphore;
extern conc_ObjType conc__sem_type;
conc_Semaphore *conc__sem_new(unsigned value, int bounded, int shared);
int conc__sem_acquire(conc_Semaphore *s, int blocking, double deadline);
/* CONC_EOVERRELEASE past a BoundedSemaphore's initial value (or the
** counter's range) */
int conc__sem_release(conc_Semaphore *s, unsigned n);

typedef struct conc_Event conc_Event;
extern conc_ObjType conc__event_type;
conc_Event *conc__event_new(int shared);
void conc__event_set(conc_Event *e);
void conc__event_clear(conc_Event *e);
int conc__event_is_set(conc_Event *e);
/* CONC_OK once set (or set and cleared) while waiting, else ETIMEDOUT/EINTR */
int conc__event_wait(conc_Event *e, double deadline);

typedef struct conc_Condition conc_Condition;
extern conc_ObjType conc__cond_type;
/* lock: a conc_Lock or conc_RLock, of which the condition takes a ref;
** CONC_SHARED (the lock must be shared too) for multiprocessing's */
conc_Condition *conc__cond_new(conc_Obj *lock, int shared);
conc_Obj *conc__cond_lock(conc_Condition *c);
/* CONC_EWAITUNOWNED when the lock is not held; else CONC_OK (notified),
** ETIMEDOUT, EINTR; the lock is held again on return in every case */
int conc__cond_wait(conc_Condition *c, double deadline);
int conc__cond_notify(conc_Condition *c, unsigned long n);  /* or ENOTIFYUNOWNED */

typedef struct conc_Barrier conc_Barrier;
extern conc_ObjType conc__barrier_type;
/* action: the binding's own (a message); free_action frees it with b */
conc_Barrier *conc__barrier_new(unsigned parties, double timeout, void *action,
                                void (*free_action)(void *), int shared);
/* Arrives: CONC_OK, with index and cycle set and *last true when the
** caller is the last to come (it runs the action, then releases; the
** others wait), or CONC_EBROKEN. */
int conc__barrier_arrive(conc_Barrier *b, unsigned *index, unsigned *cycle,
                         int *last);
void conc__barrier_release(conc_Barrier *b, int action_failed);
/* CONC_OK (released), CONC_EBROKEN, or CONC_EINTR (and broken). */
int conc__barrier_wait(conc_Barrier *b, unsigned cycle, double deadline);
void conc__barrier_reset(conc_Barrier *b);
void conc__barrier_abort(conc_Barrier *b);
unsigned conc__barrier_parties(conc_Barrier *b);
unsigned conc__barrier_n_waiting(conc_Barrier *b);
int conc__barrier_broken(conc_Barrier *b);
double conc__barrier_timeout(conc_Barrier *b);
void *conc__barrier_action(conc_Barrier *b);

/* ======================================================================
** Processes (process.c): forked children, their pidfds and exit codes,
** and the table of this process's live ones.
** ====================================================================== */

typedef struct conc_Process conc_Process;
extern conc_ObjType conc__process_type;
conc_Process *conc__process_new(int daemon);
/* Forks: the child's pid in the parent, 0 in the child (whose copy of p
** is then itself, running), CONC_ESTARTED, CONC_ECLOSED, or fork's
** negative errno. */
int conc__process_fork(conc_Process *p);
/* Starts path as p (conc__proc_spawn's arguments): its pid, or the codes
** of conc__process_fork. */
int conc__process_spawn(conc_Process *p, const char *path, char *const argv[],
                        char *const envp[], const int *fds, unsigned nfds);
/* In a spawned child: its object for itself, running, its ident the one
** its parent gave (its children are named after it); NULL: no memory. */
conc_Process *conc__process_adopt(const char *ident, int parent, int daemon);
/* 1 with *exitcode set (may be NULL) once it ended (reaping it), 0 while
** it runs, CONC_EASSERT if not started or not this process's child,
** CONC_ECLOSED. */
int conc__process_poll(conc_Process *p, int *exitcode);
/* CONC_OK once it ended, ETIMEDOUT, EINTR, or poll's codes. */
int conc__process_join(conc_Process *p, double deadline);
/* Sends sig if it runs (nothing if not started or ended): CONC_OK,
** CONC_ECLOSED, or kill's negative errno. */
int conc__process_signal(conc_Process *p, int sig);
/* Frees the pidfd: CONC_OK, or CONC_EVALUE while it runs. */
int conc__process_close(conc_Process *p);
/* Python's default name, Process-N (N from this process's count, with
** the parent's prefix in a child: Process-1:2), which a script may change;
** the name lives here so every thread's state sees the same one. */
char *conc__process_name(conc_Process *p, char *buf, size_t size);
void conc__process_set_name(conc_Process *p, const char *name);
const char *conc__process_ident(conc_Process *p);  /* "1:2" */
int conc__process_pid(conc_Process *p);       /* 0 before start */
int conc__process_sentinel(conc_Process *p);  /* the pidfd, -1, ECLOSED */
int conc__process_started(conc_Process *p);
int conc__process_closed(conc_Process *p);
int conc__process_daemon(conc_Process *p);
int conc__process_set_daemon(conc_Process *p, int daemon); /* or EASSERT */
/* The live children, oldest first, each with a reference for the caller,
** in a malloc'd array (*out; free it): their number, or CONC_ENOMEM. */
int conc__process_children(conc_Process ***out);
/* At the end of the script: terminates the daemonic children, then waits
** for every child. CONC_OK, or CONC_EINTR. */
int conc__process_shutdown(void);

/* ======================================================================
** What a spawned process is given of the objects it starts with (spawn.c)
** ====================================================================== */

typedef struct conc_SpawnObjs {
  char *data;        /* the description of the objects */
  size_t len, cap;
  int *fds;          /* the descriptors the child must inherit */
  unsigned nfds;
} conc_SpawnObjs;

/* Describes objs[0 .. n) into r (free it with conc__spawn_objs_free):
** CONC_OK; or, objs[*bad] failing, its kind's export code (EVALUE: the
** process's own object, as threading's are), ERUNTIME (its memory has no
** descriptor to give), ENOMEM. */
int conc__spawn_export(conc_Obj *const *objs, unsigned n, conc_SpawnObjs *r,
                       unsigned *bad);
void conc__spawn_objs_free(conc_SpawnObjs *r);
/* In the child: the objects the bytes describe, each with a reference for
** the caller, in a malloc'd array: CONC_OK, EVALUE (bad bytes), ENOMEM. */
int conc__spawn_attach(const char *data, size_t len, conc_Obj ***objs,
                       unsigned *n);

/* ======================================================================
** multiprocessing.Value and Array (array.c): typed elements in a shared
** mapping, and the shared Lock or RLock that guards them
** ====================================================================== */

typedef struct conc_Array conc_Array;
extern conc_ObjType conc__array_type;
/* Bytes of an element of typecode (b B h H i I l L q Q f d c), 0 if none. */
int conc__array_elsize(int typecode);
/* length zeroed elements; lock (a shared Lock or RLock, or NULL) gets a
** reference. NULL for an unknown typecode or out of memory. */
conc_Array *conc__array_new(int typecode, size_t length, conc_Obj *lock,
                            int is_value);
int conc__array_typecode(conc_Array *a);
size_t conc__array_len(conc_Array *a);
int conc__array_is_value(conc_Array *a);
int conc__array_is_float(conc_Array *a);
conc_Obj *conc__array_lock(conc_Array *a);
/* Element i (0-based, in range), wrapped to the element's width. */
int64_t conc__array_get_int(conc_Array *a, size_t i);
void conc__array_set_int(conc_Array *a, size_t i, int64_t v);
double conc__array_get_float(conc_Array *a, size_t i);
void conc__array_set_float(conc_Array *a, size_t i, double v);
/* The lock around an access, if there is one: CONC_OK or CONC_EINTR. */
int conc__array_acquire(conc_Array *a);
void conc__array_release(conc_Array *a);

/* ======================================================================
** multiprocessing.Queue, JoinableQueue, SimpleQueue (mpqueue.c): encoded
** items in a byte ring that forked children share
** ====================================================================== */

struct conc_RingPart;
typedef struct conc_MPQueue conc_MPQueue;
extern conc_ObjType conc__mpq_type;
enum { CONC_MPQ_QUEUE, CONC_MPQ_JOINABLE, CONC_MPQ_SIMPLE };
/* maxsize: items, 0 for unbounded. NULL when out of memory. */
conc_MPQueue *conc__mpq_new(uint64_t maxsize, int kind);
int conc__mpq_kind(conc_MPQueue *q);
/* close() is this process's: its later puts and gets fail. */
int conc__mpq_closed(conc_MPQueue *q);
void conc__mpq_close(conc_MPQueue *q);
/* Appends one item made of n parts: CONC_OK, EFULL (bounded and full, no
** block or the deadline passed), EINTR, ENOMEM, E2BIG (past 4 GB). */
int conc__mpq_put(conc_MPQueue *q, const struct conc_RingPart *parts,
                  size_t n, int block, double deadline);
/* Removes the next item: its bytes in buf when they fit in bufcap, else in
** a malloc'd block; *out says which (free it if it is not buf), *len how
** many. CONC_OK, EEMPTY (none, no block or the deadline passed), EINTR,
** ENOMEM, EVALUE (the ring is corrupt). */
int conc__mpq_get(conc_MPQueue *q, char *buf, size_t bufcap, char **out,
                  size_t *len, int block, double deadline);
size_t conc__mpq_qsize(conc_MPQueue *q);
int conc__mpq_full(conc_MPQueue *q);
uint64_t conc__mpq_maxsize(conc_MPQueue *q);
/* JoinableQueue: CONC_OK or CONC_ETASKDONE (more than were put) */
int conc__mpq_task_done(conc_MPQueue *q);
int conc__mpq_join(conc_MPQueue *q, double deadline); /* OK/ETIMEDOUT/EINTR */

/* ======================================================================
** multiprocessing.Connection (conn.c): framed messages over a socket pair
** ====================================================================== */

typedef struct conc_Conn conc_Conn;
extern conc_ObjType conc__conn_type;
/* Pipe(duplex): a reads (and writes when duplex), b writes (and reads).
** CONC_OK, ENOMEM or an errno. */
int conc__conn_pair(conc_Conn **a, conc_Conn **b, int duplex);
int conc__conn_fileno(conc_Conn *c);   /* -1 once closed */
int conc__conn_readable(conc_Conn *c);
int conc__conn_writable(conc_Conn *c);
void conc__conn_close(conc_Conn *c);
/* Sends one frame: CONC_OK, EVALUE (a read-only end), ECONNCLOSED, EPIPE,
** ECONNRESET, ... */
int conc__conn_send(conc_Conn *c, const void *data, size_t len);
/* Receives one frame into buf when it fits in cap, else a malloc'd block
** (*out says which; free it if not buf): CONC_OK, EEOF (the other end
** closed), EINTR (before the frame began), EMSGSIZE (past maxlen),
** EVALUE (a write-only end), ECONNCLOSED, ENOMEM. */
int conc__conn_recv(conc_Conn *c, char *buf, size_t cap, char **out,
                    size_t *len, size_t maxlen);
/* 1 when there is something to read (or the end came), 0 when the deadline
** passed, EINTR, ECONNCLOSED, EVALUE. */
int conc__conn_poll(conc_Conn *c, double deadline);

/* ======================================================================
** Threads (thread.c): OS threads and the table of live ones.
** ====================================================================== */

typedef struct conc_Thread conc_Thread;
typedef void (*conc_ThreadBody)(conc_Thread *t, void *arg);

enum { CONC_THREAD_NEW, CONC_THREAD_RUNNING, CONC_THREAD_DONE };

extern conc_ObjType conc__thread_type;

conc_Thread *conc__thread_new(const char *name, int daemon);
conc_Thread *conc__thread_main(void);
conc_Thread *conc__thread_current(void);   /* NULL in threads conc did not make */
/* Starts t running body(t, arg). Returns 0, CONC_ESTARTED if t was started
** already, or pthread_create's errno, negated. */
int conc__thread_start(conc_Thread *t, conc_ThreadBody body, void *arg);
/* Waits for t to finish: CONC_OK (finished), CONC_ETIMEDOUT or CONC_EINTR. */
int conc__thread_join(conc_Thread *t, double deadline);
int conc__thread_status(conc_Thread *t);
int conc__thread_daemon(conc_Thread *t);
/* CONC_ERUNTIME once started */
int conc__thread_set_daemon(conc_Thread *t, int daemon);
/* Copies the name into buf (truncated to size) and returns buf. */
char *conc__thread_name(conc_Thread *t, char *buf, size_t size);
void conc__thread_set_name(conc_Thread *t, const char *name);
uint64_t conc__thread_ident(conc_Thread *t);  /* 0 until started */
long conc__thread_native_id(conc_Thread *t);  /* -1 until started */
/* Calls fn for every live thread (main included) under the table's lock; fn
** must not block. Returns the number of live threads. */
int conc__thread_each(void (*fn)(conc_Thread *t, void *ud), void *ud);
/* Takes a reference to a live non-daemon thread other than the caller, or
** returns NULL when there is none: what shutdown waits for. */
conc_Thread *conc__thread_next_nondaemon(void);
uint64_t conc__thread_self_ident(void);  /* Python's get_ident() */
/* The calling OS thread's kernel id: unique among the live threads of
** every process (an RLock's owner, even in shared memory). Cached; a fork
** hook refreshes it in the child. */
uint32_t conc__thread_self_tid(void);
/* Is owner (a tid) the calling thread? Also its id before a fork: in a
** forked child the thread that forked keeps what it held, as a thread
** keeps its ident across fork in Python. */
int conc__thread_is_self(uint32_t owner);
long conc__thread_next_number(void);  /* Thread-N numbering */

/* ======================================================================
** Workers (worker.c): reusable OS threads.
** ====================================================================== */

/* Runs fn(arg) on a parked worker or a new OS thread (signals blocked).
** Returns 0 or an errno from pthread_create. */
int conc__worker_run(void (*fn)(void *), void *arg);
/* Sets the stack size of workers made from now on (0: conc's default) and
** returns the previous setting. */
size_t conc__worker_stack_size(size_t size);
/* What a worker prepares before parking, for the next fn to take. */
typedef void *(*conc_WorkerWarmup)(void);
void conc__worker_set_warmup(conc_WorkerWarmup prepare, void (*drop)(void *));
/* In fn: what this worker prepared (NULL if nothing); the caller owns it. */
void *conc__worker_take_warm(void);
/* The pool as it stands, for tests: OS threads alive, parked with a state
** built, parked bare, building a state. */
typedef struct conc_PoolStats {
  int workers, idle, bare, warming;
} conc_PoolStats;
conc_PoolStats conc__worker_stats(void);

/* ======================================================================
** Messages and values (msg.c): the wire format's bytes, as queues,
** containers and threads hold them. Only lua/ reads and writes the bytes.
** ====================================================================== */

/*
** A message: the bytes of the wire format plus the conc objects it names,
** each holding one reference until the message is freed. Objects are referred
** to by index into objs, never by a pointer in the bytes, so corrupt bytes
** can't name memory.
*/
struct conc_Msg {
  size_t len;
  unsigned nobjs;
  conc_Obj **objs;   /* points into this same allocation */
  char *data;        /* likewise */
};

/* A new message holding a copy of the bytes and a reference to each
** object; NULL when out of memory. */
conc_Msg *conc__msg_new(const char *data, size_t len, conc_Obj *const *objs,
                        unsigned nobjs);
void conc__msg_free(conc_Msg *m);  /* NULL is fine */
/* A copy with its own references to the objects; NULL when out of memory. */
conc_Msg *conc__msg_dup(const conc_Msg *m);

/*
** A value: a one-value message, its bytes inline when they fit and name no
** conc object (a small scalar or record: holding it allocates nothing),
** else a conc_Msg the value owns. The empty value (msg NULL, len 0) owns
** nothing. What a queue item and a shared container's entry hold.
*/
#define CONC_VAL_INLINE 44
typedef struct conc_Val {
  conc_Msg *msg;    /* NULL: the bytes are inl[0 .. len) */
  uint32_t len;
  char inl[CONC_VAL_INLINE];
} conc_Val;

extern const conc_Val conc__val_empty;
const char *conc__val_data(const conc_Val *v, size_t *len);
void conc__val_free(conc_Val *v);  /* leaves it empty */
void conc__vals_free(conc_Val *v, size_t n);  /* each, then the array */
/* A copy with its own message: 0 or ENOMEM. */
int conc__val_copy(conc_Val *dst, const conc_Val *src);
/* The same bytes, naming the same objects. */
int conc__val_equal(const conc_Val *a, const conc_Val *b);

/* ======================================================================
** Queues (queue.c)
** ====================================================================== */

/*
** An item in a queue: its value, and for a PriorityQueue its sort key (see
** queue.c), inline after an inline value's bytes when it fits, else in
** `key`.
*/
typedef struct conc_Item {
  conc_Val v;
  char *key;              /* NULL: the key is inline, after the bytes */
  uint32_t keylen;
  uint64_t seq;           /* PriorityQueue: arrival order, for ties */
} conc_Item;

const char *conc__item_key(const conc_Item *it);
void conc__item_free(conc_Item *it);

enum { CONC_FIFO, CONC_LIFO, CONC_PRIORITY };

/* Results beyond CONC_OK, ETIMEDOUT and EINTR: EEMPTY (a get found
** nothing, also after a timeout), EFULL (a put found no room), ESHUTDOWN,
** EUNORDERED (a PriorityQueue key did not compare), ENOMEM. */

typedef struct conc_Queue conc_Queue;
extern conc_ObjType conc__queue_type;
/* maxsize <= 0: unbounded; simple: a SimpleQueue (no tasks, no shutdown) */
conc_Queue *conc__queue_new(int kind, double maxsize, int simple);
/* Takes the item on CONC_OK, else leaves it the caller's. On EUNORDERED,
** *ta and *tb name the kinds that did not compare. */
int conc__queue_put(conc_Queue *q, conc_Item *it, int block, double deadline,
                    const char **ta, const char **tb);
int conc__queue_get(conc_Queue *q, conc_Item *out, int block, double deadline);
int conc__queue_task_done(conc_Queue *q);       /* or ETASKDONE */
int conc__queue_join(conc_Queue *q);            /* CONC_OK or CONC_EINTR */
void conc__queue_shutdown(conc_Queue *q, int immediate);
size_t conc__queue_qsize(conc_Queue *q);
size_t conc__queue_maxsize(conc_Queue *q);        /* the bound; 0: none */
double conc__queue_maxsize_arg(conc_Queue *q);    /* as given */
/* Changes the bound, as Python's `q.maxsize = n` does for the puts after
** it (putters waiting for room look again). */
void conc__queue_set_maxsize(conc_Queue *q, double maxsize);
unsigned long conc__queue_unfinished(conc_Queue *q);
int conc__queue_kind(conc_Queue *q);
int conc__queue_is_simple(conc_Queue *q);
int conc__queue_is_shutdown(conc_Queue *q);

/* ======================================================================
** Heaps (heap.c): where the shared containers keep their state. The
** private heap is malloc's, for the containers threads share; a shared
** heap (a Manager's) is an arena in one MAP_SHARED reservation as large as
** the machine's memory, backed only where written, that the processes
** forked after it share and those spawned with it map (the heap and its
** containers export and attach, spawn.c).
**
** Inside a heap, places are offsets (conc_Off), never pointers: the
** shared one's state holds nothing but offsets, so a process that maps
** the arena at another address needs only that address (`base`). The
** private heap's base is 0, so its offsets are plain addresses and one
** piece of code serves both. An offset of 0 is no block.
** ====================================================================== */

typedef uint64_t conc_Off;
typedef struct conc_HeapHead conc_HeapHead;

typedef struct conc_Heap {
  conc_Obj hdr;            /* a shared heap is an object: a Manager's */
  uintptr_t base;          /* where the arena is mapped; 0: private */
  conc_HeapHead *head;     /* the arena's header, at base; NULL: private */
  const atomic_uint *down; /* nonzero once the Manager is shut down */
  size_t size;             /* the reservation's bytes */
  int pid;                 /* the process that made it */
} conc_Heap;

extern conc_Heap conc__heap_private;
extern conc_ObjType conc__heap_type;
/* A new shared heap (one reference, the caller's); NULL when the
** reservation cannot be made. */
conc_Heap *conc__heap_new(void);

static inline void *conc__heap_at(const conc_Heap *h, conc_Off off) {
  return (void *)(h->base + (uintptr_t)off);
}
static inline conc_Off conc__heap_off(const conc_Heap *h, const void *p) {
  return (conc_Off)((uintptr_t)p - h->base);
}
/* Can a process die holding the locks of what lives here (a shared heap)? */
static inline int conc__heap_shared(const conc_Heap *h) {
  return h->head != NULL;
}
static inline int conc__heap_down(const conc_Heap *h) {
  return atomic_load_explicit(h->down, memory_order_relaxed) != 0;
}
/* A block of at least size bytes (its contents undefined), or 0. */
conc_Off conc__heap_alloc(conc_Heap *h, size_t size);
void conc__heap_free(conc_Heap *h, conc_Off off);  /* 0 is fine */
/* Is off a block of at least size bytes that is handed out? A check on
** what a dead process left (the private heap trusts every offset). */
int conc__heap_valid(const conc_Heap *h, conc_Off off, size_t size);
/* References for a container living in h (none for the private heap). */
void conc__heap_hold(conc_Heap *h);
void conc__heap_drop(conc_Heap *h);
/* Python's Manager.shutdown(): from the process that made the heap, marks
** it down for every process (1); elsewhere does nothing (0), as Python's
** finalizer ignores a call from a child. */
int conc__heap_shutdown(conc_Heap *h);

/* ======================================================================
** Shared containers (shared.c): conc.shared.list and conc.shared.dict on
** the private heap, a Manager's list, dict and Namespace on its shared one.
** Each holds its items as one-value messages, each call atomic under the
** container's mutex. A call that takes values may leave what it did not
** keep in them: the caller frees them afterwards (conc__val_free), success
** or not. What a call replaces or removes is freed after the lock is
** released (the last reference to another conc object may go with it).
** On a shared heap a value naming a conc object is refused (CONC_EVALUE),
** and the mutex is robust: the next holder after a dead one repairs the
** container (docs/multiprocessing.md).
** ====================================================================== */

/* What a list and a dict start with, which the Lua layer reads inline. */
typedef struct conc_ShHead {
  conc_Obj hdr;
  conc_Heap *heap;
  const atomic_uint *down;  /* the heap's: set once its Manager shut down */
  int shared;               /* the heap is shared: values name no object */
  atomic_ulong born;        /* conc__fork_generation() when made; changed
                            ** once a spawned process is given it */
} conc_ShHead;

static inline int conc__sh_shared(const void *c) {
  return ((const conc_ShHead *)c)->shared;
}
static inline int conc__sh_down(const void *c) {
  return atomic_load_explicit(((const conc_ShHead *)c)->down,
                              memory_order_relaxed) != 0;
}

/* Lists: indices are 1-based, a negative one counts from the end (-1 is
** the last item), as conc.shared.list's are. */
typedef struct conc_ShList conc_ShList;
extern conc_ObjType conc__shlist_type;
/* A new list in heap h (of which it holds a reference); NULL when out of
** memory. */
conc_ShList *conc__shlist_new(conc_Heap *h);
size_t conc__shlist_len(conc_ShList *l);
/* A copy of item i into out, which the caller frees: 0, ERANGE, ENOMEM. */
int conc__shlist_get(conc_ShList *l, int64_t i, conc_Val *out);
/* Replaces item i, or appends at len + 1: 0, ERANGE, ENOMEM. */
int conc__shlist_set(conc_ShList *l, int64_t i, conc_Val *v);
/* Inserts the n values before item i, clamped as Python's insert clamps
** (INT64_MAX appends): 0 or ENOMEM. */
int conc__shlist_insert(conc_ShList *l, int64_t i, conc_Val *v, size_t n);
/* Removes item i into out: 0, ERANGE, or EEMPTYLIST. */
int conc__shlist_pop(conc_ShList *l, int64_t i, conc_Val *out);
/* Items equal to any of the nneedle values (the same bytes and objects):
** the first one's position (0 for none), how many, or removing the first
** (0 or ENOTFOUND). */
int64_t conc__shlist_index(conc_ShList *l, const conc_Val *needle,
                           int nneedle);
size_t conc__shlist_count(conc_ShList *l, const conc_Val *needle,
                          int nneedle);
int conc__shlist_remove(conc_ShList *l, const conc_Val *needle, int nneedle);
void conc__shlist_clear(conc_ShList *l);
/* Copies of all items into a new array (*out, *n; free it with
** conc__vals_free): 0 or ENOMEM. */
int conc__shlist_snapshot(conc_ShList *l, conc_Val **out, size_t *n);

/* Dicts: keys are messages of plain values (no objects), equal when their
** bytes are; insertion order is kept, as Python's dict keeps it. */
typedef struct conc_ShDict conc_ShDict;
extern conc_ObjType conc__shdict_type;
/* A Manager's Namespace: a dict whose keys are its attributes. */
extern conc_ObjType conc__namespace_type;
/* A new dict of the given kind (one of the two) in heap h. */
conc_ShDict *conc__shdict_new(conc_Heap *h, conc_ObjType *type);
size_t conc__shdict_len(conc_ShDict *d);
/* A copy of the value under key into out: 0, EKEY, ENOMEM. */
int conc__shdict_get(conc_ShDict *d, const conc_Val *key, conc_Val *out);
/* Sets key to v: 0, ENOMEM or EVALUE. */
int conc__shdict_set(conc_ShDict *d, conc_Val *key, conc_Val *v);
/* Removes key, its value into out: 0 or EKEY. */
int conc__shdict_pop(conc_ShDict *d, const conc_Val *key, conc_Val *out);
/* A copy of the value under key into out, after setting it to v when
** absent: 0, ENOMEM or EVALUE. */
int conc__shdict_setdefault(conc_ShDict *d, conc_Val *key, conc_Val *v,
                            conc_Val *out);
/* Sets n keys from kv (key, value, key, value, ...): 0, ENOMEM or
** EVALUE. */
int conc__shdict_update(conc_ShDict *d, conc_Val *kv, size_t n);
void conc__shdict_clear(conc_ShDict *d);
/* Takes a list's or dict's lock and keeps it: a test's stand-in for a
** process killed inside a call (core._shared_hold). */
void conc__sh_hold(void *container);

/* Copies of the keys (CONC_SH_KEYS), values (CONC_SH_VALUES) or both,
** alternating, in insertion order: *n items in the new array *out. */
#define CONC_SH_KEYS 1
#define CONC_SH_VALUES 2
int conc__shdict_snapshot(conc_ShDict *d, int which, conc_Val **out,
                          size_t *n);

/* ======================================================================
** Futures (future.c)
** ====================================================================== */

typedef struct conc_Future conc_Future;
extern conc_ObjType conc__future_type;

/* Python's states; NOTIFIED is CANCELLED_AND_NOTIFIED, which scripts see
** as cancelled. */
enum {
  CONC_FUTURE_PENDING,
  CONC_FUTURE_RUNNING,
  CONC_FUTURE_CANCELLED,
  CONC_FUTURE_NOTIFIED,
  CONC_FUTURE_FINISHED
};

conc_Future *conc__future_new(void);  /* NULL when out of memory */
int conc__future_state(conc_Future *f);
/* cancel(): 1 if the future is cancelled now or was already, 0 if it runs
** or is finished. A cancel that settled it hands out the callbacks (*cbs,
** *ncbs; free with conc__future_free_callbacks), for the caller to run. */
int conc__future_cancel(conc_Future *f, conc_Msg ***cbs, size_t *ncbs);
/* set_running_or_notify_cancel(): 1 running now, 0 cancelled (it is
** NOTIFIED then), or CONC_EFUTURESTATE when it was not pending. */
int conc__future_start(conc_Future *f);
/* set_result / set_exception: the future takes outcome (the values, or
** the error when failed) and is FINISHED, handing out its callbacks as
** cancel does; CONC_EINVALSTATE (outcome stays the caller's) when it was
** cancelled or finished already. */
int conc__future_finish(conc_Future *f, int failed, conc_Msg *outcome,
                        conc_Msg ***cbs, size_t *ncbs);
/* CONC_OK once done (finished or cancelled), else ETIMEDOUT or EINTR. */
int conc__future_wait(conc_Future *f, double deadline);
/* A FINISHED future's outcome (the future keeps it; it never changes). */
const conc_Msg *conc__future_outcome(conc_Future *f, int *failed);
/* Keeps cb to be handed out when the future is settled, and returns 0;
** returns 1, cb still the caller's, when it is done already (run it now);
** CONC_ENOMEM. */
int conc__future_add_callback(conc_Future *f, conc_Msg *cb);
void conc__future_free_callbacks(conc_Msg **cbs, size_t n);

/* ======================================================================
** The event loop's core (loop.c): an epoll set, the eventfd that wakes
** it, a heap of timers, and watches of conc objects through the wait
** protocol -- what asyncio's loop runs on. One thread owns a loop;
** conc__loop_wakeup and the watched objects' notifies come from any.
** ====================================================================== */

typedef struct conc_Loop conc_Loop;

/* What a poll hands back: an fd's events, a due timer, or a watched
** object found ready. */
enum { CONC_LOOP_FD, CONC_LOOP_TIMER, CONC_LOOP_WATCH };
typedef struct conc_LoopEvent {
  int kind;
  unsigned events;   /* CONC_POLL_* for an fd, CONC_READABLE... for a watch */
  long long key;     /* the fd's or watch's key, the timer's id */
} conc_LoopEvent;

/* NULL with *rc set (ENOMEM, or the errno of epoll or eventfd). */
conc_Loop *conc__loop_new(int *rc);
/* Unlinks every watch (dropping its references) and closes the fds. */
void conc__loop_free(conc_Loop *l);
/* From any thread: the next or current poll returns at once. */
void conc__loop_wakeup(conc_Loop *l);
int conc__loop_wakefd(conc_Loop *l);

/* Watching fds: key comes back with the events. */
int conc__loop_fd_add(conc_Loop *l, int fd, unsigned events, long long key);
int conc__loop_fd_mod(conc_Loop *l, int fd, unsigned events, long long key);
int conc__loop_fd_del(conc_Loop *l, int fd);

/* A timer due at `when` (monotonic seconds): its id (>= 0), which a due
** poll hands back, or CONC_ENOMEM. Timers due at the same time come back
** in the order they were added. */
long long conc__loop_timer_add(conc_Loop *l, double when);
/* Takes a timer out before it is due (an id not pending: nothing). */
void conc__loop_timer_cancel(conc_Loop *l, long long id);
size_t conc__loop_timers(conc_Loop *l);

/* Watches object o (a kind with `ready` and `waitlist`) for events,
** taking a reference until unwatched: a change of o wakes the poll,
** which hands back key with the events found. A watch reports once per
** change it hears of; the caller looks at the object itself. CONC_OK,
** CONC_ENOMEM, or CONC_ETYPE (a kind that cannot be watched). */
int conc__loop_watch(conc_Loop *l, conc_Obj *o, unsigned events,
                     long long key);
void conc__loop_unwatch(conc_Loop *l, long long key);

/* Waits up to timeout seconds (negative: until something happens; the
** next timer shortens it) and hands back at most max events into out:
** how many (0: the time passed), CONC_EINTR, or a negative errno. Due
** timers come last, in order. */
int conc__loop_poll(conc_Loop *l, double timeout, conc_LoopEvent *out,
                    int max);

#endif
