/*
** thread.c -- OS threads and the table of live ones (Python's _active).
**
** list_mu guards the table and every thread's name; a thread's status,
** daemon flag and ids are atomics, and its start and end are flags
** (event.c) that readers and joiners wait on. A thread leaves the table and
** is marked done in one step under list_mu, so that a fork (whose prepare
** handler holds list_mu) finds every thread either in the table or done.
**
** Lock order: list_mu is a leaf (nothing is taken while it is held).
*/
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core.h"

struct conc_Thread {
  conc_Obj hdr;
  atomic_int status;
  atomic_int daemon;
  int is_main;              /* under list_mu */
  char *name;               /* under list_mu */
  atomic_ullong ident;
  atomic_long native_id;
  conc_Flag started;        /* the ids are known */
  conc_Flag done;           /* the body returned */
  conc_ThreadBody body;
  void *arg;
  conc_Thread *prev, *next; /* the live list, under list_mu */
};

static void thread_destroy(conc_Obj *o);

conc_ObjType conc__thread_type = {
  .name = "conc.Thread", .destroy = thread_destroy};

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static conc_Thread *live_head;
static int live_count;
static atomic_long thread_counter;

static pthread_once_t main_once = PTHREAD_ONCE_INIT;
static conc_Thread *main_thread;
static pthread_t main_tid;   /* under list_mu after a fork; else fixed */

static _Thread_local conc_Thread *self_thread;
static _Thread_local uint32_t self_tid;  /* 0 until asked */
static _Thread_local uint32_t forked_tid;  /* in a forked child: its id
                                              in the parent (0: none) */

static void lock(void) {
  if (pthread_mutex_lock(&list_mu) != 0) abort();  /* only a bug */
}

static void unlock(void) {
  if (pthread_mutex_unlock(&list_mu) != 0) abort();
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Under list_mu. */
static void list_add(conc_Thread *t) {
  t->prev = NULL;
  t->next = live_head;
  if (live_head) live_head->prev = t;
  live_head = t;
  live_count++;
}

static void list_remove(conc_Thread *t) {
  if (t->prev) t->prev->next = t->next;
  else live_head = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  live_count--;
}

uint64_t conc__thread_self_ident(void) {
  return (uint64_t)pthread_self();
}

uint32_t conc__thread_self_tid(void) {
  if (self_tid == 0) self_tid = (uint32_t)syscall(SYS_gettid);
  return self_tid;
}

int conc__thread_is_self(uint32_t owner) {
  return owner == conc__thread_self_tid() ||
         (forked_tid != 0 && owner == forked_tid);
}

long conc__thread_next_number(void) {
  return atomic_fetch_add(&thread_counter, 1) + 1;
}

conc_Thread *conc__thread_new(const char *name, int daemon) {
  conc_Thread *t = calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  t->name = dupstr(name);
  if (t->name == NULL) {
    free(t);
    return NULL;
  }
  conc__obj_init(&t->hdr, &conc__thread_type);
  atomic_init(&t->daemon, daemon);
  atomic_init(&t->status, CONC_THREAD_NEW);
  atomic_init(&t->native_id, -1);
  conc__flag_init(&t->started, CONC_PRIVATE);
  conc__flag_init(&t->done, CONC_PRIVATE);
  return t;
}

static void thread_destroy(conc_Obj *o) {
  conc_Thread *t = (conc_Thread *)o;
  free(t->name);
  free(t);
}

/* The ids of the calling OS thread, as t's. */
static void take_ids(conc_Thread *t) {
  atomic_store(&t->ident, conc__thread_self_ident());
  atomic_store(&t->native_id, (long)conc__thread_self_tid());
}

/*
** In a forked child only the forking thread exists. The table keeps it
** alone; every other thread is marked done (a join returns, as Python's
** does after fork) and loses the reference its running body held. A conc
** thread that forks becomes the child's main thread, as in Python; so does
** a thread conc did not make, under the old main thread's object. The
** threads' objects, still named by proxies in copied states, stay valid.
*/
static void fork_child(void) {
  conc_Thread *gone = NULL, *me = self_thread;
  forked_tid = conc__thread_self_tid();
  self_tid = 0;  /* the kernel gave this thread a new id */
  if (me == NULL) me = main_thread;
  for (conc_Thread *t = live_head, *next; t != NULL; t = next) {
    next = t->next;
    if (t == me) continue;
    list_remove(t);
    atomic_store(&t->status, CONC_THREAD_DONE);
    conc__flag_mark(&t->started);
    conc__flag_mark(&t->done);
    t->next = gone;
    gone = t;
  }
  if (me != NULL) {
    if (me != main_thread && main_thread != NULL) main_thread->is_main = 0;
    me->is_main = 1;
    main_thread = me;
    take_ids(me);
  }
  main_tid = pthread_self();
  while (gone != NULL) {
    conc_Thread *t = gone;
    gone = t->next;
    t->next = NULL;
    conc__obj_decref(&t->hdr);  /* its body's, or the table's for main */
  }
}

static conc_ForkHook fork_hook = {.rank = CONC_FORK_THREADS,
                                  .mutex = &list_mu, .child = fork_child};

/* The thread that first loads conc is Python's MainThread. It is never freed
** (the live list holds it), which is what Python does too. */
static void make_main(void) {
  conc_Thread *t = conc__thread_new("MainThread", 0);
  if (t == NULL) abort();
  t->is_main = 1;
  atomic_store(&t->status, CONC_THREAD_RUNNING);
  take_ids(t);
  conc__flag_set(&t->started);
  lock();
  main_tid = pthread_self();
  main_thread = t;
  list_add(t);
  unlock();
  conc__fork_register(&fork_hook);
}

conc_Thread *conc__thread_main(void) {
  pthread_once(&main_once, make_main);
  return main_thread;
}

conc_Thread *conc__thread_current(void) {
  if (self_thread) return self_thread;
  conc__thread_main();
  return pthread_equal(main_tid, pthread_self()) ? main_thread : NULL;
}

static void trampoline(void *p) {
  conc_Thread *t = p;
  self_thread = t;
  take_ids(t);
  conc__flag_set(&t->started);
  t->body(t, t->arg);
  lock();
  list_remove(t);
  atomic_store(&t->status, CONC_THREAD_DONE);
  conc__flag_mark(&t->done);
  unlock();
  self_thread = NULL;
  conc__flag_wake(&t->done);
  conc__obj_decref(&t->hdr);  /* the reference the running thread held */
}

int conc__thread_start(conc_Thread *t, conc_ThreadBody body, void *arg) {
  int rc, old = CONC_THREAD_NEW;
  conc__thread_main();
  if (!atomic_compare_exchange_strong(&t->status, &old, CONC_THREAD_RUNNING))
    return CONC_ESTARTED;
  t->body = body;
  t->arg = arg;
  conc__obj_incref(&t->hdr);
  lock();
  list_add(t);  /* before it runs: enumerate() sees a started thread at once */
  unlock();
  rc = conc__worker_run(trampoline, t);
  if (rc != 0) {
    lock();
    list_remove(t);
    unlock();
    atomic_store(&t->status, CONC_THREAD_NEW);
    conc__obj_decref(&t->hdr);
    return -rc;
  }
  return CONC_OK;
}

int conc__thread_join(conc_Thread *t, double deadline) {
  return conc__flag_wait(&t->done, deadline, CONC_WAIT_NOSPIN);
}

int conc__thread_status(conc_Thread *t) {
  return atomic_load(&t->status);
}

int conc__thread_daemon(conc_Thread *t) {
  return atomic_load(&t->daemon);
}

int conc__thread_set_daemon(conc_Thread *t, int daemon) {
  if (atomic_load(&t->status) != CONC_THREAD_NEW) return CONC_ERUNTIME;
  atomic_store(&t->daemon, daemon);
  return CONC_OK;
}

char *conc__thread_name(conc_Thread *t, char *buf, size_t size) {
  lock();
  strncpy(buf, t->name, size - 1);
  unlock();
  buf[size - 1] = '\0';
  return buf;
}

void conc__thread_set_name(conc_Thread *t, const char *name) {
  char *n = dupstr(name), *old;
  if (n == NULL) return;
  lock();
  old = t->name;
  t->name = n;
  unlock();
  free(old);
}

/* The ids are written by the thread itself as it comes up, so start() need
** not wait for it (Python's does; that costs a hand-off per thread). A reader
** that comes earlier waits here instead. */
static void wait_started(conc_Thread *t) {
  conc__flag_wait(&t->started, CONC_FOREVER,
                  CONC_WAIT_NOINTR | CONC_WAIT_NOSPIN);
}

uint64_t conc__thread_ident(conc_Thread *t) {
  if (conc__thread_status(t) == CONC_THREAD_NEW) return 0;
  wait_started(t);
  return atomic_load(&t->ident);
}

long conc__thread_native_id(conc_Thread *t) {
  if (conc__thread_status(t) == CONC_THREAD_NEW) return -1;
  wait_started(t);
  return atomic_load(&t->native_id);
}

int conc__thread_each(void (*fn)(conc_Thread *t, void *ud), void *ud) {
  int n;
  conc__thread_main();
  lock();
  for (conc_Thread *t = live_head; t; t = t->next) fn(t, ud);
  n = live_count;
  unlock();
  return n;
}

conc_Thread *conc__thread_next_nondaemon(void) {
  conc_Thread *found = NULL;
  conc__thread_main();
  lock();
  for (conc_Thread *t = live_head; t && !found; t = t->next) {
    if (t->is_main || t == self_thread) continue;
    if (!atomic_load(&t->daemon)) found = t;
  }
  if (found) conc__obj_incref(&found->hdr);
  unlock();
  return found;
}
