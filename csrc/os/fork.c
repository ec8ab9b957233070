/*
** fork.c -- one registry of fork handlers (libuv's pattern: whoever owns
** process-wide state resets it). pthread_atfork is called once, with three
** handlers that run every registered hook: prepare in rising rank (the
** lock order, os.h), parent and child in falling rank. A fork in one
** thread while others hold conc's internal locks therefore finds them all
** taken by prepare, and the child starts with every lock free and every
** table describing the one thread it has.
*/
#include <pthread.h>
#include <stdlib.h>

#include "os.h"

extern conc_ForkHook conc__intr_fork;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t installed = PTHREAD_ONCE_INIT;
static conc_ForkHook *hooks;     /* in rising rank */
static atomic_ulong generation;  /* conc__fork_generation */

/* Under reg_mu. */
static void add(conc_ForkHook *h) {
  conc_ForkHook **p = &hooks;
  if (h->registered) return;
  while (*p && (*p)->rank <= h->rank) p = &(*p)->next;
  h->next = *p;
  *p = h;
  h->registered = 1;
}

/* The falling order is walked as an array, made under reg_mu: the child
** handler may not allocate. */
#define MAX_HOOKS 32
static conc_ForkHook *falling[MAX_HOOKS];
static int nhooks;

static void relist(void) {
  int n = 0;
  for (conc_ForkHook *h = hooks; h; h = h->next) n++;
  if (n > MAX_HOOKS) abort();  /* conc has a handful: only a bug gets here */
  nhooks = n;
  for (conc_ForkHook *h = hooks; h && n > 0; h = h->next) falling[--n] = h;
}

static void prepare(void) {
  atomic_fetch_add(&generation, 1);
  pthread_mutex_lock(&reg_mu);
  for (conc_ForkHook *h = hooks; h; h = h->next) {
    if (h->mutex) pthread_mutex_lock(h->mutex);
    if (h->prepare) h->prepare();
  }
}

/* After the fork, in either process: each hook's own handler, then its
** mutex (in the child too: this thread's prepare took it). */
static void after(int in_child) {
  for (int i = 0; i < nhooks; i++) {
    conc_ForkHook *h = falling[i];
    void (*fn)(void) = in_child ? h->child : h->parent;
    if (fn) fn();
    if (h->mutex) pthread_mutex_unlock(h->mutex);
  }
  pthread_mutex_unlock(&reg_mu);
}

static void parent(void) {
  after(0);
  atomic_fetch_add(&generation, 1);
}

static void child(void) {
  after(1);
}

static void install(void) {
  if (pthread_atfork(prepare, parent, child) != 0) abort();
  pthread_mutex_lock(&reg_mu);
  add(&conc__intr_fork);
  relist();
  pthread_mutex_unlock(&reg_mu);
}

void conc__fork_register(conc_ForkHook *h) {
  pthread_once(&installed, install);
  pthread_mutex_lock(&reg_mu);
  add(h);
  relist();
  pthread_mutex_unlock(&reg_mu);
}

unsigned long conc__fork_generation(void) {
  pthread_once(&installed, install);  /* or no fork would be counted */
  return atomic_load(&generation);
}
