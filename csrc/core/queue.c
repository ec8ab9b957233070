/*
** queue.c -- queue.Queue, LifoQueue, PriorityQueue and SimpleQueue: items
** (values already in the wire format) in one array under one mutex word.
**
** Items are copied into and out of the array by value, so a put or get of a
** small value allocates nothing; the array grows by doubling and is kept.
** FIFO queues use it as a ring, LIFO as a stack, priority queues as a binary
** heap ordered by each item's sort key, ties broken by arrival.
**
** Sleeping: not_empty, not_full and all_done are sequence words of the
** wait protocol (wait.c), used under the queue's mutex: a change signals
** under the mutex and wakes after dropping it, only if someone is
** counted. Links on `watchers` (conc.select, an event loop) hear of each
** put (CONC_READABLE), each get that makes room in a bounded queue
** (CONC_WRITABLE) and a shutdown (both). Before sleeping, get and put spin for a moment on a lock-free
** mirror of the size: a consumer that keeps up with its producer on another
** core then never enters the kernel, on either side. On one CPU they yield
** once instead (see spin_while_size).
**
** Shutdown is Python 3.13's: put raises ShutDown at once, get once the queue
** is empty; shutdown(immediate) also drops the items, counting each as a
** task done so that join returns.
*/
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SPINS 2000       /* pause steps before a get or put goes to sleep */
#define MIN_CAP 16

/* The fields fall on three cache lines, so that a consumer spinning on the
** size does not pull the mutex's line away from the producer (a put and a
** get on two cores each moved it several times over). */
struct conc_Queue {
  conc_Obj hdr;
  int kind, simple;           /* fixed at birth */
  atomic_size_t maxsize;      /* 0: unbounded; read-mostly, set under mu */
  double maxsize_arg;         /* as given (Queue(-3).maxsize is -3), under mu */
  conc_WaitList watchers;
  _Alignas(64) conc_Mutex mu;
  conc_Item *items;
  size_t cap, head, count;    /* a ring for FIFO; from 0 otherwise */
  uint64_t seq;               /* arrivals, for the heap's ties */
  unsigned long unfinished;
  conc_Seq not_empty, not_full, all_done;
  _Alignas(64) atomic_size_t size;  /* count, readable without the mutex */
  atomic_int shutdown;        /* written under mu, read also without */
};

/* ---- items --------------------------------------------------------------- */

const char *conc__item_key(const conc_Item *it) {
  if (it->key) return it->key;
  return it->v.msg ? it->v.inl : it->v.inl + it->v.len;
}

void conc__item_free(conc_Item *it) {
  conc__val_free(&it->v);
  free(it->key);
  it->key = NULL;
}

/* ---- sort keys ------------------------------------------------------------
** A PriorityQueue key is a token stream made by the binding (lqueue.c):
**   'i' int64 | 'f' double | 's' u32 length, bytes | '(' tokens ')' |
**   'o' c  (a value < cannot order: c is b(oolean), n(il), t(able that is no
**           sequence), f(unction), u(serdata), c(oroutine))
** A table that is a sequence becomes a tuple, compared as Python compares
** tuples: element by element, a prefix first. Numbers compare with numbers
** across int and float; anything else of different kinds does not compare. */

static const char *kind_name(const char *p) {
  switch (p[0]) {
    case 'i': case 'f': return "number";
    case 's': return "string";
    case '(': return "table";
    default: break;
  }
  switch (p[1]) {
    case 'b': return "boolean";
    case 'n': return "nil";
    case 't': return "table";
    case 'f': return "function";
    case 'u': return "userdata";
    default: return "thread";
  }
}

static size_t token_len(const char *p) {
  uint32_t n;
  switch (*p) {
    case 'i': case 'f': return 9;
    case 's': memcpy(&n, p + 1, 4); return 5 + (size_t)n;
    case 'o': return 2;
    default: return 1;
  }
}

/* int i against float f, exactly (as Lua's own comparison does) */
static int cmp_int_float(int64_t i, double f) {
  if (f != f) return 0;  /* NaN orders with nothing: leave it where it is */
  if (f >= 9223372036854775808.0) return -1;
  if (f < -9223372036854775808.0) return 1;
  {
    int64_t fi = (int64_t)f;  /* truncated toward zero */
    if (i != fi) return i < fi ? -1 : 1;
    double frac = f - (double)fi;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
  }
}

static int cmp_num(const char *a, const char *b) {
  int64_t ia, ib;
  double fa, fb;
  if (a[0] == 'i' && b[0] == 'i') {
    memcpy(&ia, a + 1, 8);
    memcpy(&ib, b + 1, 8);
    return ia < ib ? -1 : ia > ib;
  }
  if (a[0] == 'f' && b[0] == 'f') {
    memcpy(&fa, a + 1, 8);
    memcpy(&fb, b + 1, 8);
    return fa < fb ? -1 : fa > fb;
  }
  if (a[0] == 'i') {
    memcpy(&ia, a + 1, 8);
    memcpy(&fb, b + 1, 8);
    return cmp_int_float(ia, fb);
  }
  return -cmp_num(b, a);
}

#define UNORDERED 2

/* -1, 0, 1, or UNORDERED with the two kinds named in *ta, *tb */
static int key_cmp(const char *a, const char *b, const char **ta,
                   const char **tb) {
  int depth = 0;
  do {
    int num_a = a[0] == 'i' || a[0] == 'f', num_b = b[0] == 'i' || b[0] == 'f';
    int c = 0;
    if (a[0] == ')' || b[0] == ')') {
      if (a[0] != b[0]) return a[0] == ')' ? -1 : 1;  /* a prefix is less */
      depth--;
    } else if (num_a && num_b) {
      c = cmp_num(a, b);
    } else if (a[0] == 's' && b[0] == 's') {
      uint32_t na, nb;
      memcpy(&na, a + 1, 4);
      memcpy(&nb, b + 1, 4);
      c = memcmp(a + 5, b + 5, na < nb ? na : nb);
      if (c == 0) c = na < nb ? -1 : na > nb;
    } else if (a[0] == '(' && b[0] == '(') {
      depth++;
    } else {
      *ta = kind_name(a);
      *tb = kind_name(b);
      return UNORDERED;
    }
    if (c != 0) return c < 0 ? -1 : 1;
    a += token_len(a);
    b += token_len(b);
  } while (depth > 0);
  return 0;
}

/* Heap order: the key, then arrival. */
static int item_less(const conc_Item *x, const conc_Item *y, int *unordered,
                     const char **ta, const char **tb) {
  int c = key_cmp(conc__item_key(x), conc__item_key(y), ta, tb);
  if (c == UNORDERED) {
    *unordered = 1;
    return 0;
  }
  return c < 0 || (c == 0 && x->seq < y->seq);
}

/* ---- storage ------------------------------------------------------------- */

static int grow(conc_Queue *q) {
  size_t cap = q->cap ? q->cap * 2 : MIN_CAP;
  conc_Item *n = malloc(cap * sizeof *n);
  if (n == NULL) return -1;
  /* unwrap the ring: the items in order from 0 */
  for (size_t i = 0; i < q->count; i++)
    n[i] = q->items[(q->head + i) & (q->cap - 1)];
  free(q->items);
  q->items = n;
  q->cap = cap;
  q->head = 0;
  return 0;
}

/* Finds where a new heap item would rise to, comparing before moving
** anything: a key that does not compare leaves the heap as it was. */
static int heap_push(conc_Queue *q, conc_Item *it, const char **ta,
                     const char **tb) {
  size_t i = q->count;
  int unordered = 0;
  size_t stop = i;
  while (stop > 0) {
    size_t parent = (stop - 1) / 2;
    if (!item_less(it, &q->items[parent], &unordered, ta, tb)) break;
    stop = parent;
  }
  if (unordered) return CONC_EUNORDERED;
  while (i > stop) {
    size_t parent = (i - 1) / 2;
    q->items[i] = q->items[parent];
    i = parent;
  }
  q->items[i] = *it;
  return CONC_OK;
}

/* Removes the heap's least item into out. Keys met here were each compared
** when put, but not all with each other: a pair that does not compare is
** taken as in order (the item stays), as no error can be raised by a get. */
static void heap_pop(conc_Queue *q, conc_Item *out) {
  conc_Item last;
  size_t i = 0, n;
  int unordered = 0;
  const char *ta, *tb;
  *out = q->items[0];
  n = --q->count;
  if (n == 0) return;
  last = q->items[n];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n &&
        item_less(&q->items[c + 1], &q->items[c], &unordered, &ta, &tb))
      c++;
    if (!item_less(&q->items[c], &last, &unordered, &ta, &tb)) break;
    q->items[i] = q->items[c];
    i = c;
  }
  q->items[i] = last;
}

static int store(conc_Queue *q, conc_Item *it, const char **ta,
                 const char **tb) {
  if (q->count == q->cap && grow(q) != 0) return CONC_ENOMEM;
  if (q->kind == CONC_PRIORITY) {
    it->seq = q->seq++;
    int rc = heap_push(q, it, ta, tb);
    if (rc != CONC_OK) return rc;
  } else {
    q->items[(q->head + q->count) & (q->cap - 1)] = *it;
  }
  q->count++;
  atomic_store_explicit(&q->size, q->count, memory_order_seq_cst);
  return CONC_OK;
}

static void take(conc_Queue *q, conc_Item *out) {
  if (q->kind == CONC_PRIORITY) {
    heap_pop(q, out);
  } else if (q->kind == CONC_LIFO) {
    *out = q->items[--q->count];
  } else {
    *out = q->items[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
  }
  atomic_store_explicit(&q->size, q->count, memory_order_relaxed);
}

/* ---- the object ---------------------------------------------------------- */

static void queue_destroy(conc_Obj *o) {
  conc_Queue *q = (conc_Queue *)o;
  conc_Item it;
  while (q->count > 0) {
    take(q, &it);
    conc__item_free(&it);
  }
  free(q->items);
  free(q);
}

static size_t bound(conc_Queue *q) {
  return atomic_load_explicit(&q->maxsize, memory_order_relaxed);
}

static unsigned queue_ready(conc_Obj *o, unsigned events) {
  conc_Queue *q = (conc_Queue *)o;
  size_t n = atomic_load_explicit(&q->size, memory_order_seq_cst), max;
  unsigned ready = 0;
  if (atomic_load_explicit(&q->shutdown, memory_order_seq_cst))
    return events & (CONC_READABLE | CONC_WRITABLE);  /* neither blocks */
  max = bound(q);
  if (n > 0) ready |= CONC_READABLE;
  if (max == 0 || n < max) ready |= CONC_WRITABLE;
  return ready & events;
}

static conc_WaitList *queue_waitlist(conc_Obj *o) {
  return &((conc_Queue *)o)->watchers;
}

conc_ObjType conc__queue_type = {
  .name = "conc.Queue", .destroy = queue_destroy, .ready = queue_ready,
  .waitlist = queue_waitlist};

/* Python compares qsize() >= maxsize: a bound of 1.5 is full at 2 */
static size_t bound_of(double maxsize) {
  if (!(maxsize > 0)) return 0;
  return maxsize >= (double)(SIZE_MAX / 2) ? SIZE_MAX / 2
                                           : (size_t)ceil(maxsize);
}

conc_Queue *conc__queue_new(int kind, double maxsize, int simple) {
  conc_Queue *q = aligned_alloc(64, sizeof *q);
  if (q == NULL) return NULL;
  memset(q, 0, sizeof *q);
  conc__obj_init(&q->hdr, &conc__queue_type);
  q->kind = kind;
  q->simple = simple;
  q->maxsize_arg = maxsize;
  atomic_init(&q->maxsize, bound_of(maxsize));
  conc__mutex_init(&q->mu, CONC_PRIVATE);
  conc__seq_init(&q->not_empty, CONC_PRIVATE);
  conc__seq_init(&q->not_full, CONC_PRIVATE);
  conc__seq_init(&q->all_done, CONC_PRIVATE);
  conc__waitlist_init(&q->watchers);
  if (grow(q) != 0) {
    free(q);
    return NULL;
  }
  return q;
}

static void lock(conc_Queue *q) {
  conc__mutex_lock(&q->mu);
}

static void unlock(conc_Queue *q) {
  conc__mutex_unlock(&q->mu);
}

/* Spins while the size is `bad`, for about SPINS pause steps. The gaps
** between looks grow: a look pulls the size's cache line over from the
** producer, who must then win it back to write the next item. */
static void spin_while_size(conc_Queue *q, size_t bad, double deadline) {
  if (deadline != CONC_FOREVER && deadline <= conc__monotonic())
    return;  /* a poll (timeout 0) does not spin */
  if (!conc__can_spin()) {
    /* One CPU: whoever would change the size cannot run while we spin, and
    ** sleeping makes its next put a wake-up that preempts it for one item.
    ** Yielding lets it run on; we see its items after its time slice. */
    sched_yield();
    return;
  }
  for (int i = 0, gap = 1; i < SPINS; i += gap) {
    if (atomic_load_explicit(&q->size, memory_order_relaxed) != bad) return;
    for (int k = 0; k < gap; k++) conc__spin_pause();
    if (gap < 16) gap *= 2;
  }
}

int conc__queue_put(conc_Queue *q, conc_Item *it, int block, double deadline,
                    const char **ta, const char **tb) {
  int rc = CONC_OK, wake = 0;
  size_t max = bound(q);
  if (block && max > 0 &&
      atomic_load_explicit(&q->size, memory_order_relaxed) >= max)
    spin_while_size(q, max, deadline);
  lock(q);
  for (;;) {
    if (atomic_load_explicit(&q->shutdown, memory_order_relaxed)) {
      rc = CONC_ESHUTDOWN;
      break;
    }
    max = bound(q);
    if (max == 0 || q->count < max) {
      rc = store(q, it, ta, tb);
      break;
    }
    if (!block) {
      rc = CONC_EFULL;
      break;
    }
    rc = conc__seq_sleep(&q->not_full, &q->mu, deadline);
    if (rc == CONC_EINTR) break;
    if (rc == CONC_ETIMEDOUT) block = 0;  /* one last look, then Full */
  }
  if (rc == CONC_OK) {
    q->unfinished++;
    wake = conc__seq_signal(&q->not_empty, 0);
  }
  unlock(q);
  conc__seq_wake(&q->not_empty, wake);
  if (rc == CONC_OK) conc__waitlist_notify(&q->watchers, CONC_READABLE);
  return rc;
}

int conc__queue_get(conc_Queue *q, conc_Item *out, int block,
                    double deadline) {
  int rc, wake = 0;
  if (block && atomic_load_explicit(&q->size, memory_order_relaxed) == 0)
    spin_while_size(q, 0, deadline);
  lock(q);
  for (;;) {
    if (q->count > 0) {
      take(q, out);
      wake = conc__seq_signal(&q->not_full, 0);
      rc = CONC_OK;
      break;
    }
    if (atomic_load_explicit(&q->shutdown, memory_order_relaxed)) {
      rc = CONC_ESHUTDOWN;
      break;
    }
    if (!block) {
      rc = CONC_EEMPTY;
      break;
    }
    rc = conc__seq_sleep(&q->not_empty, &q->mu, deadline);
    if (rc == CONC_EINTR) break;
    if (rc == CONC_ETIMEDOUT) block = 0;
  }
  unlock(q);
  conc__seq_wake(&q->not_full, wake);
  /* room in a bounded queue; an unbounded one always has it */
  if (rc == CONC_OK && bound(q) > 0)
    conc__waitlist_notify(&q->watchers, CONC_WRITABLE);
  return rc;
}

int conc__queue_task_done(conc_Queue *q) {
  int rc = CONC_OK, wake = 0;
  lock(q);
  if (q->unfinished == 0) {
    rc = CONC_ETASKDONE;
  } else if (--q->unfinished == 0) {
    wake = conc__seq_signal(&q->all_done, 1);
  }
  unlock(q);
  conc__seq_wake(&q->all_done, wake);
  return rc;
}

int conc__queue_join(conc_Queue *q) {
  int rc = CONC_OK;
  lock(q);
  while (q->unfinished > 0) {
    rc = conc__seq_sleep(&q->all_done, &q->mu, CONC_FOREVER);
    if (rc == CONC_EINTR) break;
  }
  unlock(q);
  return rc;
}

void conc__queue_shutdown(conc_Queue *q, int immediate) {
  conc_Item it;
  int wake_done = 0, wake_get, wake_put;
  lock(q);
  atomic_store_explicit(&q->shutdown, 1, memory_order_seq_cst);
  if (immediate) {
    while (q->count > 0) {
      take(q, &it);
      conc__item_free(&it);  /* frees no memory a waiter could touch */
      if (q->unfinished > 0) q->unfinished--;
    }
    wake_done = conc__seq_signal(&q->all_done, 1);
  }
  /* every sleeper looks again and finds the queue shut down */
  wake_get = conc__seq_signal(&q->not_empty, 1);
  wake_put = conc__seq_signal(&q->not_full, 1);
  unlock(q);
  conc__seq_wake(&q->not_empty, wake_get);
  conc__seq_wake(&q->not_full, wake_put);
  conc__seq_wake(&q->all_done, wake_done);
  conc__waitlist_notify(&q->watchers, CONC_READABLE | CONC_WRITABLE);
}

size_t conc__queue_qsize(conc_Queue *q) {
  return atomic_load_explicit(&q->size, memory_order_relaxed);
}

size_t conc__queue_maxsize(conc_Queue *q) {
  return bound(q);
}

double conc__queue_maxsize_arg(conc_Queue *q) {
  double m;
  lock(q);
  m = q->maxsize_arg;
  unlock(q);
  return m;
}

void conc__queue_set_maxsize(conc_Queue *q, double maxsize) {
  int wake;
  lock(q);
  q->maxsize_arg = maxsize;
  atomic_store_explicit(&q->maxsize, bound_of(maxsize), memory_order_relaxed);
  wake = conc__seq_signal(&q->not_full, 1);  /* the bound may have grown */
  unlock(q);
  conc__seq_wake(&q->not_full, wake);
  conc__waitlist_notify(&q->watchers, CONC_WRITABLE);
}

unsigned long conc__queue_unfinished(conc_Queue *q) {
  unsigned long n;
  lock(q);
  n = q->unfinished;
  unlock(q);
  return n;
}

int conc__queue_kind(conc_Queue *q) {
  return q->kind;
}

int conc__queue_is_simple(conc_Queue *q) {
  return q->simple;
}

int conc__queue_is_shutdown(conc_Queue *q) {
  return atomic_load_explicit(&q->shutdown, memory_order_relaxed);
}
