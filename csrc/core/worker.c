/*
** worker.c -- the OS threads under conc threads, kept for reuse.
**
** Creating an OS thread costs tens of microseconds here (pthread_create and
** its join measure 35 us on a 2-vCPU VM), and building a Lua state with the
** standard libraries and conc's modules costs as much again. So an OS thread
** whose conc thread has finished is not ended: it builds the state its next
** conc thread will need (off the critical path: the finished thread has
** already been joined) and parks, at most MAX_IDLE of them, each for at most
** IDLE_SECONDS; past those, up to MAX_BARE park without a state for
** BARE_SECONDS. Starting a thread hands it to a parked worker when there is
** one. A thread's ident and native_id can therefore repeat after it ends,
** which Python allows ("may be recycled when a thread exits").
**
** Lock order: pool_mu is a leaf. In a forked child no worker exists: the
** fork hook empties the pool (what the parked workers had prepared is left
** in the child's memory, unreachable, as Python leaves other threads'
** frames).
*/
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "core.h"

#define MAX_IDLE 4
#define MIN_WORKERS 4
#define IDLE_SECONDS 5.0
/* Workers past MAX_IDLE park "bare", with no state built, for a short
** while: in a burst of starts, threads end while others are still being
** started, and handing a start to one of them saves a pthread_create and
** the thread's exit (in W1, starting 1000 threads at once, half the starts
** made a new OS thread, which cost main a third of its time). Parked, a
** worker costs its stack's few touched pages and nothing else. */
#define MAX_BARE 256
#define BARE_SECONDS 0.5
/* Default stack of a worker: Lua itself needs little C stack (LUAI_MAXCCALLS
** bounds its C recursion to 200 levels), and glibc keeps 40 MiB of freed
** stacks for reuse, so 1 MiB stacks are recycled where 8 MiB ones (the
** pthread default) would be unmapped and mapped again for every thread:
** starting 1000 threads at once costs ~15% less. threading.stack_size()
** changes it, as in Python. */
#define STACK_SIZE (1024 * 1024)

typedef struct Worker {
  struct Worker *next;  /* in the idle or the warming list, under pool_mu */
  int parked;           /* in the idle list, under pool_mu */
  int warming;          /* in the warming list, under pool_mu */
  int has_next;         /* next_fn/next_arg are set, under pool_mu */
  void (*next_fn)(void *);
  void *next_arg;
  conc_Flag assigned;   /* fn/arg are set */
  void (*fn)(void *);
  void *arg;
  void *warm;           /* what warmup() prepared, for the next fn */
  size_t stack;         /* its stack size: reused only for the same */
} Worker;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static Worker *idle;
static int nidle;     /* parked */
static Worker *bare;  /* parked with no state built: see worker_main */
static int nbare;
static Worker *warming;
static int nwarming;  /* holding a pool slot while building a state */
static int nworkers;  /* OS threads alive */
static size_t stack_size;  /* 0: STACK_SIZE */
static conc_WorkerWarmup warmup;
static void (*discard)(void *);

static _Thread_local Worker *self_worker;

void conc__worker_set_warmup(conc_WorkerWarmup prepare, void (*drop)(void *)) {
  pthread_mutex_lock(&pool_mu);
  warmup = prepare;
  discard = drop;
  pthread_mutex_unlock(&pool_mu);
}

void *conc__worker_take_warm(void) {
  Worker *w = self_worker;
  void *p;
  if (w == NULL) return NULL;
  p = w->warm;
  w->warm = NULL;
  return p;
}

static void list_unlink(Worker **list, Worker *w) {
  while (*list != w) list = &(*list)->next;
  *list = w->next;
}

/* Parks w on list (idle or bare) until it is given work (1) or has idled
** secs (0). Called with pool_mu held; returns without it. */
static int park(Worker *w, Worker **list, int *count, double secs) {
  double deadline = conc__monotonic() + secs;
  conc__flag_clear(&w->assigned);
  w->parked = 1;
  w->next = *list;
  *list = w;
  (*count)++;
  pthread_mutex_unlock(&pool_mu);
  for (;;) {
    if (conc__flag_wait(&w->assigned, deadline,
                        CONC_WAIT_NOINTR | CONC_WAIT_NOSPIN) == CONC_OK)
      return 1;
    {
      int leave = 0;
      pthread_mutex_lock(&pool_mu);
      if (w->parked) {  /* nobody took it: leave the pool */
        list_unlink(list, w);
        (*count)--;
        w->parked = 0;
        leave = 1;
      }
      pthread_mutex_unlock(&pool_mu);
      if (leave) return 0;
      deadline = CONC_FOREVER;  /* taken just now: the work is coming */
    }
  }
}

/* A worker whose conc thread is done takes a pool slot, if one is free,
** before building the next state: with many threads ending at once, only
** MAX_IDLE of them do that work, and the rest park bare (a start handed to
** one builds its state there) or, past MAX_BARE, end. While it builds, a
** worker is on the warming list, where a start may leave it its next
** thread. */
static void *worker_main(void *p) {
  Worker *w = p;
  conc_WorkerWarmup prepare;
  void (*drop)(void *);
  self_worker = w;
  conc__interrupt_blocked();
  for (;;) {
    int slot;
    w->fn(w->arg);
    w->fn = NULL;
    w->arg = NULL;
    pthread_mutex_lock(&pool_mu);
    slot = nidle + nwarming < MAX_IDLE;
    if (slot) {
      nwarming++;
      w->warming = 1;
      w->has_next = 0;
      w->next = warming;
      warming = w;
    }
    prepare = warmup;
    if (!slot) {
      if (nbare < MAX_BARE) {
        if (park(w, &bare, &nbare, BARE_SECONDS)) continue;
        break;
      }
      pthread_mutex_unlock(&pool_mu);
      break;
    }
    pthread_mutex_unlock(&pool_mu);
    if (prepare && w->warm == NULL) w->warm = prepare();
    pthread_mutex_lock(&pool_mu);
    list_unlink(&warming, w);
    w->warming = 0;
    nwarming--;
    if (w->has_next) {  /* a start left us a thread while we built */
      w->fn = w->next_fn;
      w->arg = w->next_arg;
      w->has_next = 0;
      pthread_mutex_unlock(&pool_mu);
      continue;
    }
    if (!park(w, &idle, &nidle, IDLE_SECONDS)) break;
  }
  pthread_mutex_lock(&pool_mu);
  drop = discard;
  nworkers--;
  pthread_mutex_unlock(&pool_mu);
  if (w->warm && drop) drop(w->warm);
  free(w);
  return NULL;
}

/* Takes a worker with the given stack size off a parked list, or NULL.
** Called with pool_mu held. */
static Worker *take_parked(Worker **list, int *count, size_t stack) {
  Worker *w;
  while (*list && (*list)->stack != stack) list = &(*list)->next;
  w = *list;
  if (w) {
    *list = w->next;
    (*count)--;
    w->parked = 0;
  }
  return w;
}

size_t conc__worker_stack_size(size_t size) {
  size_t old;
  pthread_mutex_lock(&pool_mu);
  old = stack_size;
  stack_size = size;
  pthread_mutex_unlock(&pool_mu);
  return old;
}

conc_PoolStats conc__worker_stats(void) {
  conc_PoolStats s;
  pthread_mutex_lock(&pool_mu);
  s.workers = nworkers;
  s.idle = nidle;
  s.bare = nbare;
  s.warming = nwarming;
  pthread_mutex_unlock(&pool_mu);
  return s;
}

/* The child has no parked, bare or warming worker: only the forking thread,
** which is a worker itself if a conc thread forked. */
static void fork_child(void) {
  idle = bare = warming = NULL;
  nidle = nbare = nwarming = 0;
  nworkers = self_worker != NULL;
}

static conc_ForkHook fork_hook = {.rank = CONC_FORK_WORKERS,
                                  .mutex = &pool_mu, .child = fork_child};
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static void register_hook(void) {
  conc__fork_register(&fork_hook);
}

int conc__worker_run(void (*fn)(void *), void *arg) {
  Worker *w;
  pthread_attr_t attr;
  pthread_t tid;
  sigset_t all, old;
  size_t stack;
  int rc;
  pthread_once(&hook_once, register_hook);
  pthread_mutex_lock(&pool_mu);
  stack = stack_size ? stack_size : STACK_SIZE;
  w = take_parked(&idle, &nidle, stack);
  if (w == NULL && nworkers >= MIN_WORKERS) {
    /* enough workers to alternate (one runs while another builds): a state
    ** in the making is ready sooner than a new OS thread could build one */
    for (Worker *b = warming; b; b = b->next) {
      if (!b->has_next && b->stack == stack) {
        b->next_fn = fn;
        b->next_arg = arg;
        b->has_next = 1;
        pthread_mutex_unlock(&pool_mu);
        return 0;
      }
    }
  }
  if (w == NULL) w = take_parked(&bare, &nbare, stack);  /* builds its own */
  pthread_mutex_unlock(&pool_mu);
  if (w) {
    w->fn = fn;
    w->arg = arg;
    conc__flag_set(&w->assigned);
    return 0;
  }
  w = calloc(1, sizeof *w);
  if (w == NULL) return ENOMEM;
  conc__flag_init(&w->assigned, CONC_PRIVATE);
  w->fn = fn;
  w->arg = arg;
  w->stack = stack;
  /* Detached: a conc thread's join waits on its own futex word, which a
  ** timeout can bound. Every signal blocked, so that SIGINT reaches the main
  ** thread, where KeyboardInterrupt belongs. */
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, stack);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_mutex_lock(&pool_mu);
  nworkers++;
  pthread_mutex_unlock(&pool_mu);
  rc = pthread_create(&tid, &attr, worker_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    pthread_mutex_lock(&pool_mu);
    nworkers--;
    pthread_mutex_unlock(&pool_mu);
    free(w);
  }
  return rc;
}
