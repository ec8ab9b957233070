/*
** sync_test.c -- tests of the primitives and the wait protocol: the mutex
** in threads and in memory shared by two processes, flags and counts, a
** wait list's readiness events and coalesced wakes, Condition's exact
** notify counts, an interrupt waking a sleep at once, and a fork while
** threads hammer conc.
*/
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"
#include "core_test.h"

#define WAIT 20.0  /* seconds: every wait here is bounded by this */

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  check(pthread_create(&t, NULL, fn, arg) == 0, "pthread_create failed");
  return t;
}

static void join(pthread_t t) {
  check(pthread_join(t, NULL) == 0, "pthread_join failed");
}

/* An item holding a small value inline (its bytes are not a real message:
** the core never reads them). */
static conc_Item item(uint32_t n) {
  conc_Item it;
  memset(&it, 0, sizeof it);
  memcpy(it.v.inl, &n, sizeof n);
  it.v.len = sizeof n;
  return it;
}

static uint32_t item_value(const conc_Item *it) {
  uint32_t n;
  memcpy(&n, it->v.inl, sizeof n);
  return n;
}

/* ======================================================================
** The mutex
** ====================================================================== */

#define ROUNDS 100000

typedef struct Counter {
  conc_Mutex mu;
  long n;
} Counter;

static void *count_up(void *p) {
  Counter *c = p;
  for (int i = 0; i < ROUNDS; i++) {
    conc__mutex_lock(&c->mu);
    c->n++;
    conc__mutex_unlock(&c->mu);
  }
  return NULL;
}

void test_mutex_contended(void) {
  Counter c;
  pthread_t t[4];
  conc__mutex_init(&c.mu, CONC_PRIVATE);
  c.n = 0;
  check_rc(conc__mutex_release(&c.mu), CONC_EUNLOCKED);
  for (int i = 0; i < 4; i++) t[i] = spawn(count_up, &c);
  for (int i = 0; i < 4; i++) join(t[i]);
  check(c.n == 4L * ROUNDS, "counted %ld, expected %ld", c.n, 4L * ROUNDS);
  check(atomic_load(&c.mu.state) == 0, "the mutex is left held");
  /* a timed acquire of a held mutex times out, and leaves it held */
  conc__mutex_lock(&c.mu);
  check_rc(conc__mutex_acquire(&c.mu, conc__monotonic() + 0.01),
           CONC_ETIMEDOUT);
  check_rc(conc__mutex_release(&c.mu), CONC_OK);
}

/* A mutex, a count and a counter in memory two processes share, their
** futex words CONC_SHARED: each process adds ROUNDS under the mutex, then
** they pass a token back and forth through two counts. */
typedef struct Shared {
  conc_Mutex mu;
  conc_Count ping, pong;
  long n;
} Shared;

static void shared_work(Shared *s, int child) {
  for (int i = 0; i < ROUNDS; i++) {
    conc__mutex_lock(&s->mu);
    s->n++;
    conc__mutex_unlock(&s->mu);
  }
  for (int i = 0; i < 1000; i++) {
    double deadline = conc__monotonic() + WAIT;
    if (child) {
      check_rc(conc__count_take(&s->ping, 1, deadline), CONC_OK);
      check_rc(conc__count_give(&s->pong, 1), CONC_OK);
    } else {
      check_rc(conc__count_give(&s->ping, 1), CONC_OK);
      check_rc(conc__count_take(&s->pong, 1, deadline), CONC_OK);
    }
  }
}

void test_mutex_shared(void) {
  Shared *s = conc__shm_map(sizeof *s);
  int status = -100;
  check(s != NULL, "conc__shm_map failed");
  conc__mutex_init(&s->mu, CONC_SHARED);
  conc__count_init(&s->ping, 0, 0, CONC_SHARED);
  conc__count_init(&s->pong, 0, 0, CONC_SHARED);
  s->n = 0;
  child_pid = conc__proc_fork();
  check(child_pid >= 0, "fork failed");
  if (child_pid == 0) {
    in_child = 1;
    shared_work(s, 1);
    conc__proc_exit(0);
  }
  shared_work(s, 0);
  check_rc(conc__proc_wait(child_pid, conc__monotonic() + WAIT, &status),
           CONC_OK);
  child_pid = 0;
  check(status == 0, "child exited with %d", status);
  check(s->n == 2L * ROUNDS, "counted %ld, expected %ld", s->n, 2L * ROUNDS);
  conc__shm_unmap(s, sizeof *s);
}

/* ======================================================================
** Flags and counts
** ====================================================================== */

typedef struct FlagCase {
  conc_Flag go, done;
} FlagCase;

static void *wait_then_set(void *p) {
  FlagCase *f = p;
  check_rc(conc__flag_wait(&f->go, conc__monotonic() + WAIT, 0), CONC_OK);
  conc__flag_set(&f->done);
  return NULL;
}

void test_flag_count(void) {
  FlagCase f;
  conc_Count c;
  pthread_t t;
  conc__flag_init(&f.go, CONC_PRIVATE);
  conc__flag_init(&f.done, CONC_PRIVATE);
  /* a poll of a clear flag times out at once; a set one returns */
  check_rc(conc__flag_wait(&f.go, conc__monotonic(), 0), CONC_ETIMEDOUT);
  t = spawn(wait_then_set, &f);
  check(conc__flag_set(&f.go) == 1, "set of a clear flag says it was set");
  check(conc__flag_set(&f.go) == 0, "set of a set flag says it was clear");
  check_rc(conc__flag_wait(&f.done, conc__monotonic() + WAIT,
                           CONC_WAIT_NOSPIN), CONC_OK);
  join(t);
  /* a set then a clear while nobody looked still ends a wait begun
  ** before them: the count moved (Python's Event.wait) */
  conc__flag_clear(&f.go);
  check(!conc__flag_is_set(&f.go), "clear did not clear");
  conc__count_init(&c, 2, 1, CONC_PRIVATE);
  check(conc__count_try(&c) && conc__count_try(&c), "two takes of 2");
  check(!conc__count_try(&c), "a third take of 2");
  check_rc(conc__count_take(&c, 0, CONC_FOREVER), CONC_ETIMEDOUT);
  check_rc(conc__count_take(&c, 1, conc__monotonic() + 0.01),
           CONC_ETIMEDOUT);
  check_rc(conc__count_give(&c, 2), CONC_OK);
  check_rc(conc__count_give(&c, 1), CONC_EOVERRELEASE);  /* bounded at 2 */
  check(conc__count_value(&c) == 2, "value %u", conc__count_value(&c));
}

/* ======================================================================
** The wait protocol
** ====================================================================== */

typedef struct Getter {
  conc_Queue *q;
  int n;
} Getter;

static void *get_n(void *p) {
  Getter *g = p;
  for (int i = 0; i < g->n; i++) {
    conc_Item it;
    check_rc(conc__queue_get(g->q, &it, 1, conc__monotonic() + WAIT),
             CONC_OK);
    conc__item_free(&it);
  }
  return NULL;
}

/* A full bounded queue: a link watching it for CONC_WRITABLE is not ready,
** is signalled by the get that makes room, and a blocked put wakes on that
** room too. A link for CONC_READABLE on the same queue hears of puts only. */
void test_wait_writable(void) {
  conc_Queue *q = conc__queue_new(CONC_FIFO, 1, 0);
  conc_Obj *o = (conc_Obj *)q;
  conc_Waiter w;
  conc_WaitLink wl, rl;
  conc_Item it = item(1);
  Getter g = {q, 1};
  pthread_t t;
  check(q != NULL, "queue");
  check_rc(conc__queue_put(q, &it, 0, CONC_FOREVER, NULL, NULL), CONC_OK);
  check(o->type->ready(o, CONC_WRITABLE) == 0, "a full queue is writable");
  check(o->type->ready(o, CONC_READABLE) == CONC_READABLE,
        "a queue with an item is not readable");
  conc__waiter_init(&w, NULL, NULL);
  conc__waitlist_add(o->type->waitlist(o), &wl, &w, CONC_WRITABLE, NULL);
  t = spawn(get_n, &g);
  check_rc(conc__waiter_wait(&w, conc__monotonic() + WAIT), CONC_OK);
  join(t);
  check(atomic_load(&wl.ready) == CONC_WRITABLE, "ready events %u",
        atomic_load(&wl.ready));
  check(o->type->ready(o, CONC_WRITABLE) == CONC_WRITABLE,
        "room, but not writable");
  /* a put notifies readers, not this writer */
  atomic_store(&wl.ready, 0);
  conc__waitlist_add(o->type->waitlist(o), &rl, &w, CONC_READABLE, NULL);
  it = item(2);
  check_rc(conc__queue_put(q, &it, 0, CONC_FOREVER, NULL, NULL), CONC_OK);
  check(atomic_load(&rl.ready) == CONC_READABLE, "the reader was not told");
  check(atomic_load(&wl.ready) == 0, "the writer was told of a put");
  check(conc__waitlist_remove(o->type->waitlist(o), &wl) == 0, "remove");
  conc__waitlist_remove(o->type->waitlist(o), &rl);
  /* a put blocked on the full queue wakes on the room a get makes */
  t = spawn(get_n, &g);
  it = item(3);
  check_rc(conc__queue_put(q, &it, 1, conc__monotonic() + WAIT, NULL, NULL),
           CONC_OK);
  join(t);
  check_size(conc__queue_qsize(q), 1);
  conc__obj_decref(o);
}

static atomic_int wakes;

static void count_wake(conc_Waiter *w) {
  (void)w;
  atomic_fetch_add(&wakes, 1);  /* an event loop would write its eventfd */
}

/* A waiter signalled twice before it looks is woken once; once it has
** taken the signal, the next one wakes it again. */
void test_wait_coalesce(void) {
  conc_Queue *q = conc__queue_new(CONC_FIFO, 0, 0);
  conc_Event *e = conc__event_new(CONC_PRIVATE);
  conc_Obj *qo = (conc_Obj *)q, *eo = (conc_Obj *)e;
  conc_Waiter w;
  conc_WaitLink ql, el;
  conc_Item it;
  conc__waiter_init(&w, count_wake, NULL);
  /* registered once, for good: the loop's way */
  conc__waitlist_add(qo->type->waitlist(qo), &ql, &w, CONC_READABLE, NULL);
  conc__waitlist_add(eo->type->waitlist(eo), &el, &w, CONC_READABLE, NULL);
  for (uint32_t i = 0; i < 3; i++) {
    it = item(i);
    check_rc(conc__queue_put(q, &it, 0, CONC_FOREVER, NULL, NULL), CONC_OK);
  }
  conc__event_set(e);
  check(atomic_load(&wakes) == 1, "3 puts and a set woke %d times",
        atomic_load(&wakes));
  check(atomic_load(&ql.ready) == CONC_READABLE &&
            atomic_load(&el.ready) == CONC_READABLE,
        "both links say readable");
  check(conc__waiter_take(&w) == 1, "the signal is there to take");
  check(conc__waiter_take(&w) == 0, "taken twice");
  atomic_store(&ql.ready, 0);
  it = item(9);
  check_rc(conc__queue_put(q, &it, 0, CONC_FOREVER, NULL, NULL), CONC_OK);
  check(atomic_load(&wakes) == 2, "a put after the take woke %d in all",
        atomic_load(&wakes));
  conc__waitlist_remove(qo->type->waitlist(qo), &ql);
  conc__waitlist_remove(eo->type->waitlist(eo), &el);
  /* unlinked: no more wakes */
  conc__waiter_take(&w);
  it = item(10);
  check_rc(conc__queue_put(q, &it, 0, CONC_FOREVER, NULL, NULL), CONC_OK);
  check(atomic_load(&wakes) == 2, "an unlinked waiter was woken");
  for (int i = 0; i < 5; i++) {
    check_rc(conc__queue_get(q, &it, 0, CONC_FOREVER), CONC_OK);
    conc__item_free(&it);
  }
  conc__obj_decref(qo);
  conc__obj_decref(eo);
}

typedef struct CondCase {
  conc_Lock *lock;
  conc_Condition *cond;
  atomic_int woken, waiting;
} CondCase;

static void *cond_waiter(void *p) {
  CondCase *c = p;
  check_rc(conc__lock_acquire(c->lock, conc__monotonic() + WAIT), CONC_OK);
  atomic_fetch_add(&c->waiting, 1);
  if (conc__cond_wait(c->cond, conc__monotonic() + WAIT) == CONC_OK)
    atomic_fetch_add(&c->woken, 1);
  check_rc(conc__lock_release(c->lock), CONC_OK);
  return NULL;
}

/* Condition's waits are exclusive links: notify(2) ends exactly two of
** five, and notify(n) with none waiting is harmless. */
void test_wait_condition(void) {
  CondCase c;
  pthread_t t[5];
  c.lock = conc__lock_new(CONC_PRIVATE);
  c.cond = conc__cond_new((conc_Obj *)c.lock, CONC_PRIVATE);
  atomic_init(&c.woken, 0);
  atomic_init(&c.waiting, 0);
  check_rc(conc__cond_notify(c.cond, 1), CONC_ENOTIFYUNOWNED);
  check_rc(conc__cond_wait(c.cond, CONC_FOREVER), CONC_EWAITUNOWNED);
  for (int i = 0; i < 5; i++) t[i] = spawn(cond_waiter, &c);
  /* all five are waiting once each has let the lock go in its wait */
  for (double end = conc__monotonic() + WAIT;;) {
    int n;
    check_rc(conc__lock_acquire(c.lock, end), CONC_OK);
    n = atomic_load(&c.waiting);
    if (n == 5) break;
    check_rc(conc__lock_release(c.lock), CONC_OK);
    check(conc__monotonic() < end, "only %d waiters came", n);
    sched_yield();
  }
  check_rc(conc__cond_notify(c.cond, 2), CONC_OK);
  check_rc(conc__lock_release(c.lock), CONC_OK);
  for (double end = conc__monotonic() + WAIT; atomic_load(&c.woken) < 2;) {
    check(conc__monotonic() < end, "notify(2) woke %d",
          atomic_load(&c.woken));
    sched_yield();
  }
  check_rc(conc__lock_acquire(c.lock, conc__monotonic() + WAIT), CONC_OK);
  check(atomic_load(&c.woken) == 2, "notify(2) woke %d", atomic_load(&c.woken));
  check_rc(conc__cond_notify(c.cond, ULONG_MAX), CONC_OK);
  check_rc(conc__lock_release(c.lock), CONC_OK);
  for (int i = 0; i < 5; i++) join(t[i]);
  check(atomic_load(&c.woken) == 5, "notify_all left %d",
        5 - atomic_load(&c.woken));
  conc__obj_decref((conc_Obj *)c.cond);
  conc__obj_decref((conc_Obj *)c.lock);
}

/* ======================================================================
** Interrupts
** ====================================================================== */

static void on_sigint(int sig) {
  (void)sig;
  conc__interrupt_set();
}

typedef struct Kicker {
  pthread_t target;
  conc_Flag asleep;
} Kicker;

static void *kick(void *p) {
  Kicker *k = p;
  check_rc(conc__flag_wait(&k->asleep, conc__monotonic() + WAIT, 0),
           CONC_OK);
  /* give the sleeper time to get into the kernel; a signal that comes
  ** earlier must end the wait just as well */
  usleep(20000);
  pthread_kill(k->target, SIGINT);
  return NULL;
}

/* SIGINT ends a sleep on a sequence word at once (not at a poll), in the
** thread it lands in; one that came before the sleep ends it before it
** starts; the wakeup fd gets a byte for each. */
void test_interrupt_wakes(void) {
  struct sigaction sa;
  Kicker k;
  atomic_uint seq = 0;
  int fds[2];
  char byte;
  double t0;
  pthread_t t;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  check(pipe(fds) == 0, "pipe");
  conc__interrupt_wakeup_fd(fds[1]);
  k.target = pthread_self();
  conc__flag_init(&k.asleep, CONC_PRIVATE);
  t = spawn(kick, &k);
  conc__flag_set(&k.asleep);
  t0 = conc__monotonic();
  check_rc(conc__wait_seq(&seq, 0, conc__monotonic() + WAIT, 0), CONC_EINTR);
  check(conc__monotonic() - t0 < WAIT / 2, "the wait ran to its deadline");
  join(t);
  check(read(fds[0], &byte, 1) == 1, "no byte on the wakeup fd");
  check(conc__interrupt_pending(), "the interrupt is not pending");
  check(atomic_load(&seq) == 1, "the handler bumped the word %u times",
        atomic_load(&seq));
  /* a wait that must finish is not cut short */
  check_rc(conc__wait_seq(&seq, 1, conc__monotonic() + 0.01,
                          CONC_WAIT_NOINTR), CONC_ETIMEDOUT);
  conc__interrupt_clear();
  check(!conc__interrupt_pending(), "clear left it pending");
  /* pending before the sleep: it never starts */
  raise(SIGINT);
  check_rc(conc__sleep_until(conc__monotonic() + WAIT), CONC_EINTR);
  conc__interrupt_clear();
  check(read(fds[0], &byte, 1) == 1, "no byte for the second interrupt");
  conc__interrupt_wakeup_fd(-1);
  close(fds[0]);
  close(fds[1]);
  signal(SIGINT, SIG_DFL);
}

/* ======================================================================
** Fork while threads hammer conc
** ====================================================================== */

/* gcc 12's AddressSanitizer runtime cannot fork a thread that is inside
** its allocator (fixed upstream in LLVM 18): under it, the thread starts,
** which allocate, pause while each fork is made. The hammers' queue and
** lock work allocates nothing and runs on through every fork. */
#if defined(__SANITIZE_ADDRESS__)
#define PAUSE_STARTS 1
#else
#define PAUSE_STARTS 0
#endif

typedef struct Hammer {
  conc_Queue *q;
  conc_Lock *lock;
  atomic_int stop;
  atomic_int pause, paused;  /* PAUSE_STARTS: the starter's handshake */
  atomic_long rounds;
} Hammer;

static void *hammer(void *p) {
  Hammer *h = p;
  while (!atomic_load(&h->stop)) {
    conc_Item it = item(7);
    check_rc(conc__queue_put(h->q, &it, 1, conc__monotonic() + WAIT, NULL,
                             NULL), CONC_OK);
    check_rc(conc__queue_get(h->q, &it, 1, conc__monotonic() + WAIT),
             CONC_OK);
    check(item_value(&it) == 7, "a queue item changed");
    check_rc(conc__lock_acquire(h->lock, conc__monotonic() + WAIT), CONC_OK);
    check_rc(conc__lock_release(h->lock), CONC_OK);
    atomic_fetch_add(&h->rounds, 1);
  }
  return NULL;
}

static void nothing(conc_Thread *t, void *arg) {
  (void)t;
  (void)arg;
}

static void start_join(void) {
  conc_Thread *t = conc__thread_new("hammered", 0);
  check(t != NULL, "conc__thread_new");
  check_rc(conc__thread_start(t, nothing, NULL), CONC_OK);
  check_rc(conc__thread_join(t, conc__monotonic() + WAIT), CONC_OK);
  conc__obj_decref((conc_Obj *)t);
}

static void *starter(void *p) {
  Hammer *h = p;
  while (!atomic_load(&h->stop)) {
    if (atomic_load(&h->pause)) {
      atomic_store(&h->paused, 1);
      while (atomic_load(&h->pause) && !atomic_load(&h->stop)) sched_yield();
      atomic_store(&h->paused, 0);
    }
    start_join();
  }
  return NULL;
}

/* The OS threads of this process, as the kernel counts them: a worker
** that ended is gone from it only once it has finished ending. */
static int os_threads(void) {
  char line[256];
  int n = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  fclose(f);
  return n;
}

static void count_thread(conc_Thread *t, void *ud) {
  (void)t;
  (*(int *)ud)++;
}

/* The child: one thread in the table, no worker but perhaps itself, and
** conc at work: threads started and joined, a queue, the hammered lock. */
static void child_uses_conc(Hammer *h) {
  conc_PoolStats s = conc__worker_stats();
  conc_Queue *q;
  int n = 0;
  check(conc__thread_each(count_thread, &n) == 1 && n == 1,
        "%d threads in the child's table", n);
  check(conc__thread_next_nondaemon() == NULL, "shutdown would wait");
  check(s.idle == 0 && s.bare == 0 && s.warming == 0 && s.workers == 0,
        "pool in the child: %d workers, %d idle, %d bare, %d warming",
        s.workers, s.idle, s.bare, s.warming);
  for (int i = 0; i < 3; i++) start_join();
  q = conc__queue_new(CONC_FIFO, 2, 0);
  for (uint32_t i = 0; i < 2; i++) {
    conc_Item it = item(i);
    check_rc(conc__queue_put(q, &it, 0, CONC_FOREVER, NULL, NULL), CONC_OK);
  }
  for (uint32_t i = 0; i < 2; i++) {
    conc_Item it;
    check_rc(conc__queue_get(q, &it, 0, CONC_FOREVER), CONC_OK);
    check(item_value(&it) == i, "queue order in the child");
  }
  conc__obj_decref((conc_Obj *)q);
  /* the hammered queue is a copy here, whose mutex a hammer may have held
  ** at the fork, as Python's would be: read only its lock-free size */
  check(conc__queue_qsize(h->q) <= 8, "the hammered queue's size");
}

void test_fork_threads(void) {
  Hammer h;
  pthread_t t[5];
  long before;
#if defined(__SANITIZE_THREAD__)
  /* TSan kills a child of a threaded fork that starts a thread
  ** (die_after_fork): reported as skipped (77), never as passed */
  printf("skip: TSan supports no fork of a threaded process\n");
  fflush(stdout);
  exit(77);
#endif
  h.q = conc__queue_new(CONC_FIFO, 8, 0);
  h.lock = conc__lock_new(CONC_PRIVATE);
  atomic_init(&h.stop, 0);
  atomic_init(&h.pause, 0);
  atomic_init(&h.paused, 0);
  atomic_init(&h.rounds, 0);
  conc__thread_main();
  for (int i = 0; i < 4; i++) t[i] = spawn(hammer, &h);
  t[4] = spawn(starter, &h);
  /* one worker takes the starter's threads, reused at once: no other may
  ** be there to time out and end mid-fork (see PAUSE_STARTS) */
  while (PAUSE_STARTS && conc__worker_stats().workers > 1) sched_yield();
  for (int k = 0; k < 200; k++) {
    int status = -100;
    if (PAUSE_STARTS) {  /* and every worker parked, none freeing */
      conc_PoolStats s;
      atomic_store(&h.pause, 1);
      while (!atomic_load(&h.paused)) sched_yield();
      do {
        sched_yield();
        s = conc__worker_stats();
      } while (s.warming > 0 || s.idle + s.bare < s.workers ||
               os_threads() != s.workers + 6);  /* main, 4 hammers, starter */
    }
    child_pid = conc__proc_fork();
    check(child_pid >= 0, "fork failed");
    if (child_pid == 0) {
      in_child = 1;
      child_uses_conc(&h);
      conc__proc_exit(0);
    }
    atomic_store(&h.pause, 0);
    check_rc(conc__proc_wait(child_pid, conc__monotonic() + WAIT, &status),
             CONC_OK);
    child_pid = 0;
    check(status == 0, "fork %d: child exited with %d", k, status);
  }
  before = atomic_load(&h.rounds);
  check(before > 0, "the hammers did not run");
  atomic_store(&h.stop, 1);
  for (int i = 0; i < 5; i++) join(t[i]);
  conc__obj_decref((conc_Obj *)h.q);
  conc__obj_decref((conc_Obj *)h.lock);
}

/* A process that dies holding a shared mutex: the next taker gets it once
** it sees the holder gone (within a few of its 0.1 s slices), and
** `recovered` says so. */
void test_mutex_robust(void) {
  conc_Mutex *m = conc__shm_map(sizeof *m);
  int status = -100;
  double t0;
  check(m != NULL, "conc__shm_map failed");
  conc__mutex_init(m, CONC_SHARED);
  child_pid = conc__proc_fork();
  check(child_pid >= 0, "fork failed");
  if (child_pid == 0) {
    in_child = 1;
    conc__mutex_lock(m);
    conc__proc_exit(0);  /* dies holding it */
  }
  check_rc(conc__proc_wait(child_pid, conc__monotonic() + WAIT, &status),
           CONC_OK);
  child_pid = 0;
  check(atomic_load(&m->state) != 0, "the child's hold is gone");
  t0 = conc__monotonic();
  check_rc(conc__mutex_acquire(m, t0 + WAIT), CONC_OK);
  check(conc__monotonic() - t0 < 2.0, "took %.2f s", conc__monotonic() - t0);
  check(atomic_load(&m->recovered) == 1, "not marked recovered");
  check_rc(conc__mutex_release(m), CONC_OK);
  check(atomic_load(&m->owner) == 0, "owner left set");
  conc__shm_unmap(m, sizeof *m);
}

/* A process killed in the few instructions between taking a shared
** mutex's state and recording itself in owner (or between unrecording
** itself and letting go): the state names its thread, which is gone, so
** the mutex is taken over all the same. */
void test_mutex_robust_window(void) {
  conc_Mutex *m = conc__shm_map(sizeof *m);
  check(m != NULL, "conc__shm_map failed");
  conc__thread_main();  /* its fork hook gives a child its own thread id */
  for (int when = 0; when < 2; when++) {
    int status = -100;
    double t0;
    conc__mutex_init(m, CONC_SHARED);
    child_pid = conc__proc_fork();
    check(child_pid >= 0, "fork failed");
    if (child_pid == 0) {
      in_child = 1;
      if (when == 0) {  /* the state taken, owner not written yet */
        atomic_store(&m->state, conc__mutex_mine(m));
      } else {          /* owner cleared, the state not yet let go */
        conc__mutex_lock(m);
        conc__mutex_disown(m);
      }
      conc__proc_exit(0);
    }
    check_rc(conc__proc_wait(child_pid, conc__monotonic() + WAIT, &status),
             CONC_OK);
    child_pid = 0;
    check(atomic_load(&m->owner) == 0, "owner set (%d)", when);
    t0 = conc__monotonic();
    check_rc(conc__mutex_acquire(m, t0 + WAIT), CONC_OK);
    check(conc__monotonic() - t0 < 2.0, "took %.2f s", conc__monotonic() - t0);
    check(atomic_load(&m->recovered) == 1, "not marked recovered (%d)", when);
    check_rc(conc__mutex_release(m), CONC_OK);
  }
  conc__shm_unmap(m, sizeof *m);
}

static void *hold_and_end(void *arg) {
  conc__mutex_lock(arg);  /* and ends holding it */
  return NULL;
}

/* A thread that ended holding a shared mutex, in a process that lives on,
** leaves it held, as a Python Lock stays held: only a dead process's hold
** is taken over. */
void test_mutex_robust_thread(void) {
  conc_Mutex *m = conc__shm_map(sizeof *m);
  pthread_t t;
  check(m != NULL, "conc__shm_map failed");
  conc__mutex_init(m, CONC_SHARED);
  check(pthread_create(&t, NULL, hold_and_end, m) == 0, "pthread_create");
  pthread_join(t, NULL);
  check_rc(conc__mutex_acquire(m, conc__monotonic() + 0.5), CONC_ETIMEDOUT);
  check(atomic_load(&m->recovered) == 0, "marked recovered");
  conc__shm_unmap(m, sizeof *m);
}
