/*
** mpqueue.c -- multiprocessing.Queue, JoinableQueue and SimpleQueue: a
** queue of encoded items in memory that forked children share. No pipe
** and no feeder thread: a put copies the item into a byte ring (ring.h)
** under a process-shared mutex, a get copies it out, and sleepers wait on
** process-shared sequence words (the wait protocol's seq_sleep).
**
** Unbounded means unbounded: the ring sits in a mapping as large as the
** machine's memory, backed only where written (conc__shm_reserve). The
** ring itself starts at START_CAP and doubles when a put finds it full;
** a get that empties a ring grown past KEEP_CAP makes it small again and
** gives the pages back, so a queue that once held a 100 MB item does not
** keep 100 MB. A small ring goes round over the same pages: before, the
** ring was the whole mapping, every put wrote fresh memory and every
** page took a fault (a 4 KiB item's put and get cost 19 us, against
** 0.8 us through a thread's queue). maxsize counts items, as Python's
** does.
**
** The mapping: the shared header in the first page, the ring's own header
** at the end of that page, its data area from the second page on (so the
** pages given back are whole ones of data).
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "ring.h"

/* The ring's first capacity, and the most it keeps once empty. */
#define START_CAP ((size_t)1 << 18)
#define KEEP_CAP ((size_t)4 << 20)
/* The mapping's size bounds: the machine's memory, within these. */
#define MIN_CAP ((size_t)1 << 24)
#define MAX_CAP ((size_t)1 << 40)

typedef struct Shared {
  conc_Mutex mu;
  conc_Seq not_empty;   /* getters sleep here */
  conc_Seq not_full;    /* putters of a bounded queue */
  conc_Seq all_done;    /* JoinableQueue.join */
  uint64_t maxsize;     /* items; 0 for none */
  uint64_t unfinished;  /* JoinableQueue: puts not yet task_done */
} Shared;

struct conc_MPQueue {
  conc_Obj hdr;
  Shared *sh;
  conc_Ring *ring;
  size_t mapsize, page;
  int kind;             /* CONC_MPQ_QUEUE, _JOINABLE, _SIMPLE */
  int closed;           /* this process's close() */
  conc_WaitList watchers;  /* this process's selects: readable with items */
};

static void mpq_destroy(conc_Obj *o) {
  conc_MPQueue *q = (conc_MPQueue *)o;
  conc__shm_unmap(q->sh, q->mapsize);
  free(q);
}

static void lock(conc_MPQueue *q);

static unsigned mpq_ready(conc_Obj *o, unsigned events) {
  conc_MPQueue *q = (conc_MPQueue *)o;
  size_t n;
  lock(q);
  n = conc__ring_count(q->ring);
  conc__mutex_unlock(&q->sh->mu);
  return (events & CONC_READABLE) && n > 0 ? CONC_READABLE : 0;
}

static conc_WaitList *mpq_waitlist(conc_Obj *o) {
  return &((conc_MPQueue *)o)->watchers;
}

/* Another process's put is heard only by looking (conc__select's slices). */
static int mpq_remote(conc_Obj *o) {
  (void)o;
  return 1;
}

static int mpq_export(conc_Obj *o, conc_Export *x) {
  conc_MPQueue *q = (conc_MPQueue *)o;
  x->map[0] = q->sh;
  x->num[0] = q->kind;
  return CONC_OK;
}

static conc_Obj *mpq_attach(const conc_Export *x);

conc_ObjType conc__mpq_type = {.name = "conc.MPQueue",
                               .destroy = mpq_destroy, .ready = mpq_ready,
                               .waitlist = mpq_waitlist, .remote = mpq_remote,
                               .export = mpq_export,
                               .attach = mpq_attach};

/* The machine's memory, rounded up to a power of two, but no more than a
** reservation may take here (rounded down; MIN_CAP at least). */
static size_t ring_capacity(void) {
  size_t want = conc__shm_physical(), room = conc__shm_room(), cap = MIN_CAP;
  while (cap < want && cap < MAX_CAP) cap <<= 1;
  while (cap > MIN_CAP && cap > room) cap >>= 1;
  return cap;
}

/* This process's object over the mapping at map, whose first page holds
** the shared header and the ring's. */
static conc_MPQueue *mpq_wrap(conc_MPQueue *q, char *map, size_t mapsize,
                              int kind) {
  q->page = conc__shm_page();
  q->mapsize = mapsize;
  q->sh = (Shared *)map;
  q->ring = (conc_Ring *)(map + q->page - sizeof(conc_Ring));
  q->kind = kind;
  q->closed = 0;
  conc__waitlist_init(&q->watchers);
  conc__obj_init(&q->hdr, &conc__mpq_type);
  return q;
}

static conc_Obj *mpq_attach(const conc_Export *x) {
  conc_MPQueue *q;
  if (x->size[0] <= conc__shm_page() || x->num[0] < CONC_MPQ_QUEUE ||
      x->num[0] > CONC_MPQ_SIMPLE || (q = malloc(sizeof *q)) == NULL)
    return NULL;
  return &mpq_wrap(q, x->map[0], x->size[0], (int)x->num[0])->hdr;
}

conc_MPQueue *conc__mpq_new(uint64_t maxsize, int kind) {
  conc_MPQueue *q = malloc(sizeof *q);
  size_t page = conc__shm_page(), cap = ring_capacity();
  char *map;
  if (q == NULL) return NULL;
  map = conc__shm_reserve(page + cap);
  if (map == NULL) {
    free(q);
    return NULL;
  }
  mpq_wrap(q, map, page + cap, kind);
  /* cannot fail: aligned */
  if (conc__ring_init(q->ring, START_CAP < cap ? START_CAP : cap) != CONC_OK) {
    conc__obj_decref(&q->hdr);
    return NULL;
  }
  conc__mutex_init(&q->sh->mu, CONC_SHARED);
  conc__seq_init(&q->sh->not_empty, CONC_SHARED);
  conc__seq_init(&q->sh->not_full, CONC_SHARED);
  conc__seq_init(&q->sh->all_done, CONC_SHARED);
  q->sh->maxsize = maxsize;
  q->sh->unfinished = 0;
  return q;
}

int conc__mpq_kind(conc_MPQueue *q) { return q->kind; }
int conc__mpq_closed(conc_MPQueue *q) { return q->closed; }
void conc__mpq_close(conc_MPQueue *q) { q->closed = 1; }

/* The queue's mutex. A process killed holding it (in a put or a get) left
** the ring as its last store did: the next holder puts the header right,
** and the dead process's item is lost, nobody else's. */
static void recover(conc_MPQueue *q) {
  if (atomic_load_explicit(&q->sh->mu.recovered, memory_order_relaxed)) {
    atomic_store_explicit(&q->sh->mu.recovered, 0, memory_order_relaxed);
    conc__ring_repair(q->ring);
  }
}

static void lock(conc_MPQueue *q) {
  conc__mutex_lock(&q->sh->mu);
  recover(q);
}

/* seq_sleep, and the mutex it took again may have been a dead one's. */
static int sleep_on(conc_MPQueue *q, conc_Seq *s, double deadline) {
  int rc = conc__seq_sleep(s, &q->sh->mu, deadline);
  recover(q);
  return rc;
}

static int full(conc_MPQueue *q) {
  return q->sh->maxsize > 0 &&
         (uint64_t)conc__ring_count(q->ring) >= q->sh->maxsize;
}

/* Under the mutex, after a put found the ring full: the ring doubles until
** the record fits, within the mapping (the machine's memory: past that, out
** of memory), and the put is made again. */
static int put_grown(conc_MPQueue *q, const conc_RingPart *parts, size_t n) {
  size_t len = 0, need, maxcap = q->mapsize - q->page;
  size_t cap = conc__ring_capacity(q->ring), used = conc__ring_used(q->ring);
  int rc;
  for (size_t i = 0; i < n; i++) {
    if (parts[i].len > SIZE_MAX - len) return CONC_E2BIG;
    len += parts[i].len;
  }
  need = conc__ring_recsize(len);
  if (cap == 0 || need > maxcap) return cap == 0 ? CONC_EVALUE : CONC_E2BIG;
  while (cap - used < need) {
    if (cap >= maxcap) return CONC_ENOMEM;
    cap *= 2;
  }
  rc = conc__ring_grow(q->ring, cap);
  return rc == CONC_OK ? conc__ring_putv(q->ring, parts, n) : rc;
}

int conc__mpq_put(conc_MPQueue *q, const conc_RingPart *parts, size_t n,
                  int block, double deadline) {
  Shared *sh = q->sh;
  int rc, wake;
  lock(q);
  while (full(q)) {
    if (!block) {
      conc__mutex_unlock(&sh->mu);
      return CONC_EFULL;
    }
    rc = sleep_on(q, &sh->not_full, deadline);
    /* a last look, as queue.Queue takes: a get may have come as time ran out */
    if (rc == CONC_ETIMEDOUT && !full(q)) break;
    if (rc != CONC_OK) {
      conc__mutex_unlock(&sh->mu);
      return rc == CONC_ETIMEDOUT ? CONC_EFULL : rc;
    }
  }
  rc = conc__ring_putv(q->ring, parts, n);
  if (rc == CONC_EFULL || rc == CONC_E2BIG) rc = put_grown(q, parts, n);
  if (rc != CONC_OK) {
    conc__mutex_unlock(&sh->mu);
    return rc;
  }
  if (q->kind == CONC_MPQ_JOINABLE) sh->unfinished++;
  wake = conc__seq_signal(&sh->not_empty, 0);
  conc__mutex_unlock(&sh->mu);
  conc__seq_wake(&sh->not_empty, wake);
  conc__waitlist_notify(&q->watchers, CONC_READABLE);
  return CONC_OK;
}

/* Under the mutex, after a get: a ring emptied after it grew past
** KEEP_CAP starts small again, and the pages past START_CAP go back. */
static void shrink(conc_MPQueue *q) {
  size_t cap = conc__ring_capacity(q->ring);
  if (cap <= KEEP_CAP || conc__ring_count(q->ring) > 0) return;
  conc__ring_init(q->ring, START_CAP);
  conc__shm_discard(q->ring->data + START_CAP, cap - START_CAP);
}

int conc__mpq_get(conc_MPQueue *q, char *buf, size_t bufcap, char **out,
                  size_t *len, int block, double deadline) {
  Shared *sh = q->sh;
  int rc, wake = 0;
  size_t need;
  char *dst = buf;
  lock(q);
  for (;;) {
    rc = conc__ring_peek(q->ring, &need);
    if (rc != CONC_EEMPTY) break;
    if (!block) break;
    rc = sleep_on(q, &sh->not_empty, deadline);
    if (rc != CONC_OK) {
      if (rc == CONC_ETIMEDOUT) rc = conc__ring_peek(q->ring, &need);  /* last look */
      break;
    }
  }
  if (rc == CONC_OK && need > bufcap && (dst = malloc(need)) == NULL)
    rc = CONC_ENOMEM;
  if (rc == CONC_OK) rc = conc__ring_get(q->ring, dst, need, len);
  if (rc == CONC_OK) {
    shrink(q);
    if (sh->maxsize > 0) wake = conc__seq_signal(&sh->not_full, 0);
  }
  conc__mutex_unlock(&sh->mu);
  conc__seq_wake(&sh->not_full, wake);
  if (rc != CONC_OK && dst != buf) free(dst);
  if (rc == CONC_OK) *out = dst;
  return rc;
}

size_t conc__mpq_qsize(conc_MPQueue *q) {
  size_t n;
  lock(q);
  n = conc__ring_count(q->ring);
  conc__mutex_unlock(&q->sh->mu);
  return n;
}

int conc__mpq_full(conc_MPQueue *q) {
  int f;
  lock(q);
  f = full(q);
  conc__mutex_unlock(&q->sh->mu);
  return f;
}

uint64_t conc__mpq_maxsize(conc_MPQueue *q) {
  return q->sh->maxsize;
}

int conc__mpq_task_done(conc_MPQueue *q) {
  Shared *sh = q->sh;
  int wake = 0;
  lock(q);
  if (sh->unfinished == 0) {
    conc__mutex_unlock(&sh->mu);
    return CONC_ETASKDONE;
  }
  if (--sh->unfinished == 0) wake = conc__seq_signal(&sh->all_done, 1);
  conc__mutex_unlock(&sh->mu);
  conc__seq_wake(&sh->all_done, wake);
  return CONC_OK;
}

int conc__mpq_join(conc_MPQueue *q, double deadline) {
  Shared *sh = q->sh;
  int rc = CONC_OK;
  lock(q);
  while (sh->unfinished > 0 && rc == CONC_OK)
    rc = sleep_on(q, &sh->all_done, deadline);
  conc__mutex_unlock(&sh->mu);
  return rc;
}
