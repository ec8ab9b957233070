/*
** core.h -- the Lua-free core: objects, primitives, queues, threads,
** containers and the wait protocol (prefix conc__).
**
** The layers, each a folder of csrc/, arrows pointing down only:
**   host/   main.c, the conc interpreter, over include/conc.h alone
**   lua/    the wire format, proxies, states, errors, the l*.c bindings
**   core/   this header: no lua.h here (the build gives core/ no Lua
**           include path, so including it fails to compile)
**   os/     futex, clocks, interrupts, fork hooks (os.h): nothing above
*/
#ifndef CONC_INTERNAL_H
#define CONC_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h"

/* ======================================================================
** Refcounted objects (obj.c)
** Every conc object shared between states starts with a conc_Obj. Each state
** that sees the object holds one proxy userdata per object (a weak cache keeps
** identity), and each proxy owns one reference; so does each message in flight
** that names the object. The object is freed when the last reference goes.
** ====================================================================== */

typedef struct conc_Obj conc_Obj;
typedef struct conc_WaitList conc_WaitList;
typedef struct conc_Msg conc_Msg;

typedef struct conc_ObjType {
  const char *name;             /* metatable name, e.g. "conc.Thread" */
  void (*destroy)(conc_Obj *o); /* frees the object; called once, at refs 0 */
  atomic_long live;             /* objects of this kind alive, for tests */
  /* Kinds conc.select can wait on set both (waiter.c): would a wait end
  ** now, and the list of waiters to wake when that may have changed. */
  int (*ready)(conc_Obj *o);
  conc_WaitList *(*waitlist)(conc_Obj *o);
  /* Kinds whose proxies are tables holding their methods bound to the
  ** object (state.c): set for kinds whose fields are all methods and
  ** attributes, never the user's keys. `hides` (may be NULL) names the
  ** methods one object lacks (a SimpleQueue's task_done). */
  int bound;
  int (*hides)(conc_Obj *o, const char *method);
  /* A bit for each method name's conc__method_bit, set when a state makes
  ** the kind's metatable (every state sets the same bits) or a script adds
  ** a method to it: an __index function tells most keys that name no
  ** method by it, not by a lookup. */
  atomic_ullong method_bits;
} conc_ObjType;

struct conc_Obj {
  atomic_long refs;
  conc_ObjType *type;
};

void conc__obj_init(conc_Obj *o, conc_ObjType *type);
void conc__obj_incref(conc_Obj *o);
void conc__obj_decref(conc_Obj *o);
void conc__obj_free(conc_Obj *o);  /* a destroy for plain blocks */

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
/* Starts t running body(t, arg). Returns 0, or an errno from pthread_create.
** Fails with EINVAL if t was started already. */
int conc__thread_start(conc_Thread *t, conc_ThreadBody body, void *arg);
/* Waits for t to finish: CONC_OK (finished), CONC_ETIMEDOUT or CONC_EINTR. */
int conc__thread_join(conc_Thread *t, double deadline);
int conc__thread_status(conc_Thread *t);
int conc__thread_daemon(conc_Thread *t);
int conc__thread_set_daemon(conc_Thread *t, int daemon); /* -1 if started */
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
uint64_t conc__thread_self_ident(void);
long conc__thread_self_native_id(void);
long conc__thread_next_number(void);  /* Thread-N numbering */

/* ======================================================================
** Lock (lock.c) and Event (event.c)
** ====================================================================== */

/* The mutex word under Lock, RLock and every internal lock: 0 free, 1 held,
** 2 held + waiters. Taking a free one and giving back one nobody waits for
** are inline here: an uncontended Lock pair is two atomic instructions and
** no call beyond the binding's. */
static inline int conc__mutex_try(atomic_uint *m) {
  unsigned c = 0;
  return atomic_compare_exchange_strong_explicit(
      m, &c, 1, memory_order_acquire, memory_order_relaxed);
}
int conc__mutex_acquire(atomic_uint *m, double deadline);
void conc__mutex_lock_slow(atomic_uint *m);
/* Takes it, waiting for good (no KeyboardInterrupt): the internal locks'
** take, a compare-and-swap inline when the word is free. */
static inline void conc__mutex_acquire_nointr(atomic_uint *m) {
  if (!conc__mutex_try(m)) conc__mutex_lock_slow(m);
}
/* -1 if it was not held (then it still is not: 0 was written over 0) */
static inline int conc__mutex_release(atomic_uint *m) {
  unsigned c = atomic_exchange_explicit(m, 0, memory_order_release);
  if (c == 0) return -1;
  if (c == 2) conc__futex_wake(m, 1);
  return 0;
}

typedef struct conc_Lock {
  conc_Obj hdr;
  atomic_uint state;
} conc_Lock;
extern conc_ObjType conc__lock_type;
conc_Lock *conc__lock_new(void);
static inline int conc__lock_try(conc_Lock *l) {      /* 1 if taken */
  return conc__mutex_try(&l->state);
}
int conc__lock_acquire(conc_Lock *l, double deadline); /* CONC_OK/ETIMEDOUT/EINTR */
static inline int conc__lock_release(conc_Lock *l) {  /* -1 if it was not held */
  return conc__mutex_release(&l->state);
}
int conc__lock_locked(conc_Lock *l);
atomic_uint *conc__lock_word(conc_Lock *l);  /* its mutex word (condition.c) */

typedef struct conc_RLock conc_RLock;
extern conc_ObjType conc__rlock_type;
conc_RLock *conc__rlock_new(void);
/* CONC_OK, or CONC_ETIMEDOUT (also for a failed non-blocking try), EINTR */
int conc__rlock_acquire(conc_RLock *r, int blocking, double deadline);
int conc__rlock_release(conc_RLock *r);             /* -1 if not the owner */
int conc__rlock_owned(conc_RLock *r);
/* Condition.wait's full release of an owned RLock, and its return. */
unsigned long conc__rlock_release_save(conc_RLock *r);
void conc__rlock_acquire_restore(conc_RLock *r, unsigned long count);

typedef struct conc_Condition conc_Condition;
extern conc_ObjType conc__cond_type;
/* lock: a conc_Lock or conc_RLock, of which the condition takes a ref */
conc_Condition *conc__cond_new(conc_Obj *lock);
conc_Obj *conc__cond_lock(conc_Condition *c);
/* -1 when the lock is not held; else CONC_OK (notified), ETIMEDOUT, EINTR;
** the lock is held again on return in every case */
int conc__cond_wait(conc_Condition *c, double deadline);
int conc__cond_notify(conc_Condition *c, unsigned long n);  /* -1: not held */

typedef struct conc_Semaphore conc_Semaphore;
extern conc_ObjType conc__sem_type;
conc_Semaphore *conc__sem_new(unsigned value, int bounded);
int conc__sem_acquire(conc_Semaphore *s, int blocking, double deadline);
/* -1 past a BoundedSemaphore's initial value (or the counter's range) */
int conc__sem_release(conc_Semaphore *s, unsigned n);
unsigned conc__sem_value(conc_Semaphore *s);

typedef struct conc_Barrier conc_Barrier;
extern conc_ObjType conc__barrier_type;
#define CONC_BARRIER_BROKEN 1
#define CONC_BARRIER_LAST 2
/* action: the binding's own (a message); free_action frees it with b */
conc_Barrier *conc__barrier_new(unsigned parties, double timeout, void *action,
                                void (*free_action)(void *));
/* Arrives: CONC_OK (wait next), CONC_BARRIER_LAST (run the action, then
** release) or CONC_BARRIER_BROKEN; index and cycle are set on the first two. */
int conc__barrier_arrive(conc_Barrier *b, unsigned *index, unsigned *cycle);
void conc__barrier_release(conc_Barrier *b, int action_failed);
/* CONC_OK (released), CONC_BARRIER_BROKEN, or CONC_EINTR (and broken). */
int conc__barrier_wait(conc_Barrier *b, unsigned cycle, double deadline);
void conc__barrier_reset(conc_Barrier *b);
void conc__barrier_abort(conc_Barrier *b);
unsigned conc__barrier_parties(conc_Barrier *b);
unsigned conc__barrier_n_waiting(conc_Barrier *b);
int conc__barrier_broken(conc_Barrier *b);
double conc__barrier_timeout(conc_Barrier *b);
void *conc__barrier_action(conc_Barrier *b);

typedef struct conc_Event conc_Event;
extern conc_ObjType conc__event_type;
conc_Event *conc__event_new(void);
void conc__event_set(conc_Event *e);
void conc__event_clear(conc_Event *e);
int conc__event_is_set(conc_Event *e);
/* CONC_OK once set (or set and cleared) while waiting, else ETIMEDOUT/EINTR */
int conc__event_wait(conc_Event *e, double deadline);

/* ======================================================================
** Waiting on several objects (waiter.c)
** ====================================================================== */

typedef struct conc_Waiter conc_Waiter;
struct conc_Waiter {
  atomic_uint word;                 /* bumped by every wake */
  void (*wake)(conc_Waiter *w);     /* NULL: a futex wake of word */
};

typedef struct conc_WaitLink {
  struct conc_WaitLink *next, *prev;
  conc_Waiter *waiter;
} conc_WaitLink;

struct conc_WaitList {
  atomic_uint mu;        /* a conc mutex word guarding head */
  atomic_uint n;         /* links in the list: notify skips the lock at 0 */
  conc_WaitLink *head;
};

void conc__waitlist_init(conc_WaitList *wl);
void conc__waitlist_add(conc_WaitList *wl, conc_WaitLink *link,
                        conc_Waiter *w);
void conc__waitlist_remove(conc_WaitList *wl, conc_WaitLink *link);
void conc__waitlist_wake_all(conc_WaitList *wl);
void conc__waiter_wake(conc_Waiter *w);
/* Wakes every waiter linked to wl; call after the change it should see
** (seq_cst), with no lock held that a waiter's wake function could need. */
static inline void conc__waitlist_notify(conc_WaitList *wl) {
  if (atomic_load_explicit(&wl->n, memory_order_seq_cst) > 0)
    conc__waitlist_wake_all(wl);
}
/* Waits for the first ready one of n objects (each of a kind with `ready`
** and `waitlist`), using links[n] as scratch: CONC_OK with *index set,
** CONC_ETIMEDOUT or CONC_EINTR. */
int conc__select(conc_Obj *const *objs, conc_WaitLink *links, int n,
                 double deadline, int *index);

/* ======================================================================
** Queues (queue.c)
** ====================================================================== */

/*
** An item in a queue: a value in the wire format, inline when the message
** is small and names no conc object (the common case allocates nothing),
** else in its own conc_Msg. A PriorityQueue item also carries its sort key
** (see queue.c), inline after the bytes when it fits, else in `key`.
*/
#define CONC_ITEM_INLINE 40

typedef struct conc_Item {
  conc_Msg *msg;          /* NULL: the message is inl[0 .. len) */
  char *key;              /* NULL: the key is inline, after the message */
  uint32_t len, keylen;
  uint64_t seq;           /* PriorityQueue: arrival order, for ties */
  char inl[CONC_ITEM_INLINE];
} conc_Item;

const char *conc__item_data(const conc_Item *it);
const char *conc__item_key(const conc_Item *it);
void conc__item_free(conc_Item *it);

enum { CONC_FIFO, CONC_LIFO, CONC_PRIORITY };

/* Results beyond CONC_OK, ETIMEDOUT and EINTR */
#define CONC_QEMPTY (-1001)     /* get found nothing (also after a timeout) */
#define CONC_QFULL (-1002)      /* put found no room */
#define CONC_QSHUTDOWN (-1003)
#define CONC_QUNORDERED (-1004) /* a PriorityQueue key did not compare */

typedef struct conc_Queue conc_Queue;
extern conc_ObjType conc__queue_type;
/* maxsize <= 0: unbounded; simple: a SimpleQueue (no tasks, no shutdown) */
conc_Queue *conc__queue_new(int kind, double maxsize, int simple);
/* Takes the item on CONC_OK, else leaves it the caller's. On QUNORDERED,
** *ta and *tb name the kinds that did not compare. */
int conc__queue_put(conc_Queue *q, conc_Item *it, int block, double deadline,
                    const char **ta, const char **tb);
int conc__queue_get(conc_Queue *q, conc_Item *out, int block, double deadline);
int conc__queue_task_done(conc_Queue *q);       /* -1: called too often */
int conc__queue_join(conc_Queue *q);            /* CONC_OK or CONC_EINTR */
void conc__queue_shutdown(conc_Queue *q, int immediate);
size_t conc__queue_qsize(conc_Queue *q);
size_t conc__queue_maxsize(conc_Queue *q);        /* the bound; 0: none */
double conc__queue_maxsize_arg(conc_Queue *q);    /* as given */
unsigned long conc__queue_unfinished(conc_Queue *q);
int conc__queue_kind(conc_Queue *q);
/* Is name a method or field this queue lacks (a SimpleQueue's task_done)? */
int conc__queue_lacks(conc_Queue *q, const char *name);
int conc__queue_is_shutdown(conc_Queue *q);

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

/* ======================================================================
** Messages (msg.c): values in the wire format, as queues, containers and
** threads hold them. Only lua/ reads and writes the bytes.
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

/* ======================================================================
** Shared containers (shared.c): conc.shared.list and conc.shared.dict.
** Each holds its items as one-value messages of the wire format, each call
** atomic under the container's mutex word. A call that takes values takes
** them all on success and none on failure; what a call replaces or removes
** is freed after the lock is released (the last reference to another conc
** object may go with it).
** ====================================================================== */

#define CONC_ENOENT (-2)    /* no such key, or no item equal to the value */
#define CONC_ENOMEM (-12)
#define CONC_ERANGE (-34)   /* index out of range */

/* A value: a one-value message, its bytes inline when they fit (small
** scalars: reading and writing them allocates nothing), else a conc_Msg
** the value owns. The empty value (msg NULL, len 0) owns nothing. */
#define CONC_SHVAL_INLINE 36
typedef struct conc_ShVal {
  conc_Msg *msg;    /* NULL: the bytes are inline */
  uint32_t len;     /* of the inline bytes */
  char bytes[CONC_SHVAL_INLINE];
} conc_ShVal;

const char *conc__shval_data(const conc_ShVal *v, size_t *len);
void conc__shval_free(conc_ShVal *v);  /* leaves it empty */
void conc__shvals_free(conc_ShVal *v, size_t n);  /* each, then the array */

/* Lists: indices are 1-based, a negative one counts from the end (-1 is
** the last item), as conc.shared.list's are. */
typedef struct conc_ShList conc_ShList;
extern conc_ObjType conc__shlist_type;
conc_ShList *conc__shlist_new(void);
size_t conc__shlist_len(conc_ShList *l);
/* A copy of item i into out, which the caller frees: 0, ERANGE, ENOMEM. */
int conc__shlist_get(conc_ShList *l, int64_t i, conc_ShVal *out);
/* Replaces item i, or appends at len + 1: 0, ERANGE, ENOMEM. */
int conc__shlist_set(conc_ShList *l, int64_t i, conc_ShVal *v);
/* Inserts the n values before item i, clamped as Python's insert clamps
** (INT64_MAX appends): 0 or ENOMEM. */
int conc__shlist_insert(conc_ShList *l, int64_t i, conc_ShVal *v, size_t n);
/* Removes item i into out: 0, ERANGE, or ENOENT when the list is empty. */
int conc__shlist_pop(conc_ShList *l, int64_t i, conc_ShVal *out);
/* Items equal to any of the nneedle values (the same bytes and objects):
** the first one's position (0 for none), how many, or removing the first
** (0 or ENOENT). */
int64_t conc__shlist_index(conc_ShList *l, const conc_ShVal *needle,
                           int nneedle);
size_t conc__shlist_count(conc_ShList *l, const conc_ShVal *needle,
                          int nneedle);
int conc__shlist_remove(conc_ShList *l, const conc_ShVal *needle, int nneedle);
void conc__shlist_clear(conc_ShList *l);
/* Copies of all items into a new array (*out, *n; free it with
** conc__shvals_free): 0 or ENOMEM. */
int conc__shlist_snapshot(conc_ShList *l, conc_ShVal **out, size_t *n);

/* Dicts: keys are messages of plain values (no objects), equal when their
** bytes are; insertion order is kept, as Python's dict keeps it. */
typedef struct conc_ShDict conc_ShDict;
extern conc_ObjType conc__shdict_type;
conc_ShDict *conc__shdict_new(void);
size_t conc__shdict_len(conc_ShDict *d);
/* A copy of the value under key into out: 0, ENOENT, ENOMEM. */
int conc__shdict_get(conc_ShDict *d, const conc_ShVal *key, conc_ShVal *out);
/* Sets key to v, taking both: 0 or ENOMEM. */
int conc__shdict_set(conc_ShDict *d, conc_ShVal *key, conc_ShVal *v);
/* Removes key, its value into out: 0 or ENOENT. */
int conc__shdict_pop(conc_ShDict *d, const conc_ShVal *key, conc_ShVal *out);
/* A copy of the value under key into out, after setting it to v (taken)
** when absent: 0 or ENOMEM. */
int conc__shdict_setdefault(conc_ShDict *d, conc_ShVal *key, conc_ShVal *v,
                            conc_ShVal *out);
/* Sets n keys from kv (key, value, key, value, ...), taking them all:
** 0 or ENOMEM. */
int conc__shdict_update(conc_ShDict *d, conc_ShVal *kv, size_t n);
void conc__shdict_clear(conc_ShDict *d);
/* Copies of the keys (CONC_SH_KEYS), values (CONC_SH_VALUES) or both,
** alternating, in insertion order: *n items in the new array *out. */
#define CONC_SH_KEYS 1
#define CONC_SH_VALUES 2
int conc__shdict_snapshot(conc_ShDict *d, int which, conc_ShVal **out,
                          size_t *n);

#endif
