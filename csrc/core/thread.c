/*
** thread.c -- OS threads and the table of live ones (Python's _active).
**
** Lock order: list_mu, then a thread's mu.
*/
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core.h"

struct conc_Thread {
  conc_Obj hdr;
  pthread_mutex_t mu;       /* guards name, daemon, status, ids */
  int status;
  int daemon;
  int is_main;
  char *name;
  uint64_t ident;
  long native_id;
  atomic_uint started;      /* futex word: native_id is known */
  atomic_uint done;         /* futex word: the body returned */
  conc_ThreadBody body;
  void *arg;
  conc_Thread *prev, *next; /* the live list, guarded by list_mu */
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
static pthread_t main_tid;

static _Thread_local conc_Thread *self_thread;

static void lock(pthread_mutex_t *mu) {
  if (pthread_mutex_lock(mu) != 0) abort();  /* only a bug can get here */
}

static void unlock(pthread_mutex_t *mu) {
  if (pthread_mutex_unlock(mu) != 0) abort();
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static void list_add(conc_Thread *t) {
  lock(&list_mu);
  t->prev = NULL;
  t->next = live_head;
  if (live_head) live_head->prev = t;
  live_head = t;
  live_count++;
  unlock(&list_mu);
}

static void list_remove(conc_Thread *t) {
  lock(&list_mu);
  if (t->prev) t->prev->next = t->next;
  else live_head = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  live_count--;
  unlock(&list_mu);
}

uint64_t conc__thread_self_ident(void) {
  return (uint64_t)pthread_self();
}

long conc__thread_self_native_id(void) {
  return (long)syscall(SYS_gettid);
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
  pthread_mutex_init(&t->mu, NULL);
  t->daemon = daemon;
  t->status = CONC_THREAD_NEW;
  t->native_id = -1;
  return t;
}

static void thread_destroy(conc_Obj *o) {
  conc_Thread *t = (conc_Thread *)o;
  pthread_mutex_destroy(&t->mu);
  free(t->name);
  free(t);
}

/* The thread that first loads conc is Python's MainThread. It is never freed
** (the live list holds it), which is what Python does too. */
static void make_main(void) {
  main_thread = conc__thread_new("MainThread", 0);
  if (main_thread == NULL) abort();
  main_tid = pthread_self();
  main_thread->is_main = 1;
  main_thread->status = CONC_THREAD_RUNNING;
  main_thread->ident = conc__thread_self_ident();
  main_thread->native_id = conc__thread_self_native_id();
  atomic_store(&main_thread->started, 1);
  list_add(main_thread);
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
  lock(&t->mu);
  t->native_id = conc__thread_self_native_id();
  t->ident = conc__thread_self_ident();
  unlock(&t->mu);
  atomic_store_explicit(&t->started, 1, memory_order_release);
  conc__futex_wake(&t->started, INT_MAX);
  t->body(t, t->arg);
  list_remove(t);
  lock(&t->mu);
  t->status = CONC_THREAD_DONE;
  unlock(&t->mu);
  self_thread = NULL;
  atomic_store_explicit(&t->done, 1, memory_order_release);
  conc__futex_wake(&t->done, INT_MAX);
  conc__obj_decref(&t->hdr);  /* the reference the running thread held */
}

int conc__thread_start(conc_Thread *t, conc_ThreadBody body, void *arg) {
  int rc;
  conc__thread_main();
  lock(&t->mu);
  if (t->status != CONC_THREAD_NEW) {
    unlock(&t->mu);
    return EINVAL;
  }
  t->status = CONC_THREAD_RUNNING;
  unlock(&t->mu);
  t->body = body;
  t->arg = arg;
  conc__obj_incref(&t->hdr);
  list_add(t);  /* before it runs: enumerate() sees a started thread at once */
  rc = conc__worker_run(trampoline, t);
  if (rc != 0) {
    list_remove(t);
    lock(&t->mu);
    t->status = CONC_THREAD_NEW;
    unlock(&t->mu);
    conc__obj_decref(&t->hdr);
  }
  return rc;
}

int conc__thread_join(conc_Thread *t, double deadline) {
  while (atomic_load_explicit(&t->done, memory_order_acquire) == 0) {
    int rc = conc__futex_wait(&t->done, 0, deadline);
    if (rc != CONC_OK) return rc;
  }
  return CONC_OK;
}

int conc__thread_status(conc_Thread *t) {
  int s;
  lock(&t->mu);
  s = t->status;
  unlock(&t->mu);
  return s;
}

int conc__thread_daemon(conc_Thread *t) {
  int d;
  lock(&t->mu);
  d = t->daemon;
  unlock(&t->mu);
  return d;
}

int conc__thread_set_daemon(conc_Thread *t, int daemon) {
  int rc = 0;
  lock(&t->mu);
  if (t->status != CONC_THREAD_NEW) rc = -1;
  else t->daemon = daemon;
  unlock(&t->mu);
  return rc;
}

char *conc__thread_name(conc_Thread *t, char *buf, size_t size) {
  lock(&t->mu);
  strncpy(buf, t->name, size - 1);
  buf[size - 1] = '\0';
  unlock(&t->mu);
  return buf;
}

void conc__thread_set_name(conc_Thread *t, const char *name) {
  char *n = dupstr(name);
  if (n == NULL) return;
  lock(&t->mu);
  free(t->name);
  t->name = n;
  unlock(&t->mu);
}

/* The ids are written by the thread itself as it comes up, so start() need
** not wait for it (Python's does; that costs a hand-off per thread). A reader
** that comes earlier waits here instead. */
static void wait_started(conc_Thread *t) {
  while (atomic_load_explicit(&t->started, memory_order_acquire) == 0)
    conc__futex_wait(&t->started, 0, CONC_FOREVER);
}

uint64_t conc__thread_ident(conc_Thread *t) {
  uint64_t id;
  if (conc__thread_status(t) == CONC_THREAD_NEW) return 0;
  wait_started(t);
  lock(&t->mu);
  id = t->ident;
  unlock(&t->mu);
  return id;
}

long conc__thread_native_id(conc_Thread *t) {
  long id;
  if (conc__thread_status(t) == CONC_THREAD_NEW) return -1;
  wait_started(t);
  lock(&t->mu);
  id = t->native_id;
  unlock(&t->mu);
  return id;
}

int conc__thread_each(void (*fn)(conc_Thread *t, void *ud), void *ud) {
  int n;
  conc__thread_main();
  lock(&list_mu);
  for (conc_Thread *t = live_head; t; t = t->next) fn(t, ud);
  n = live_count;
  unlock(&list_mu);
  return n;
}

conc_Thread *conc__thread_next_nondaemon(void) {
  conc_Thread *found = NULL;
  conc__thread_main();
  lock(&list_mu);
  for (conc_Thread *t = live_head; t && !found; t = t->next) {
    if (t->is_main || t == self_thread) continue;
    lock(&t->mu);
    if (!t->daemon) found = t;
    unlock(&t->mu);
  }
  if (found) conc__obj_incref(&found->hdr);
  unlock(&list_mu);
  return found;
}
