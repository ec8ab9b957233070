/*
** conn.c -- multiprocessing.Connection: one end of a socket pair, carrying
** framed messages (Python's framing: a 4-byte big-endian length, or
** 0xffffffff and an 8-byte one for 2 GB and more, then the bytes).
**
** One reader and one writer at a time (a mutex each), so threads sharing
** an end cannot interleave frames. A frame is all or nothing for the
** stream: once its first byte has moved, a Ctrl-C no longer ends the read
** or write (it is seen at the next call), or the stream would go out of
** step. Reads take exactly a frame's bytes, never more, so an end that a
** forked child inherited holds nothing the parent's copy will also read.
**
** A thread blocked in recv holds its end's read mutex for as long as it
** waits. A process forked meanwhile would inherit it held by a thread it
** does not have, so every end is in a table whose fork hook gives the
** child both mutexes free again.
**
** The bytes go through the socket, so fileno() works with any poll loop.
** But the other side often answers within microseconds, and waking from
** ppoll takes tens of them on a VM; and a read retried in a loop makes
** the kernel's socket lock a tug of war. So the pair also shares a page
** with a counter per direction, bumped after each send: a reader that
** finds nothing watches its counter (memory, no system call) for a moment
** before it sleeps in ppoll.
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* The page the two ends share, held by both (this process's count). */
typedef struct Page {
  atomic_long refs;
  atomic_uint *sent;    /* the mapping: sent[0] to end a, sent[1] to b */
} Page;

struct conc_Conn {
  conc_Obj hdr;
  conc_Mutex rmu, wmu;
  conc_Conn *next, *prev;  /* the table of ends, under table_mu */
  atomic_int fd;        /* -1 once closed */
  atomic_int users;     /* recv, send and poll calls using the descriptor */
  atomic_int parked;    /* closed while in use: the last user closes it */
  atomic_int readable;  /* cleared after a bad message length */
  int writable;
  Page *page;
  atomic_uint *rx, *tx; /* what this end watches, what it bumps */
};

#define READ_SPINS 50   /* yields */

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static conc_Conn *ends;

/* In the child, only the forking thread is left: no reader or writer
** holds or uses an end, whatever the parent's threads were doing. */
static void fork_child(void) {
  for (conc_Conn *c = ends; c != NULL; c = c->next) {
    conc__mutex_init(&c->rmu, CONC_PRIVATE);
    conc__mutex_init(&c->wmu, CONC_PRIVATE);
    atomic_store(&c->users, 0);
    conc__proc_close_fd(atomic_exchange(&c->parked, -1));
  }
}

static conc_ForkHook fork_hook = {.rank = CONC_FORK_CONNS,
                                  .mutex = &table_mu, .child = fork_child};

static void table_add(conc_Conn *c) {
  conc__fork_register(&fork_hook);
  pthread_mutex_lock(&table_mu);
  c->prev = NULL;
  c->next = ends;
  if (ends != NULL) ends->prev = c;
  ends = c;
  pthread_mutex_unlock(&table_mu);
}

static void table_remove(conc_Conn *c) {
  pthread_mutex_lock(&table_mu);
  if (c->prev != NULL) c->prev->next = c->next;
  else ends = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  pthread_mutex_unlock(&table_mu);
}

static void page_drop(Page *pg) {
  if (atomic_fetch_sub(&pg->refs, 1) != 1) return;
  conc__shm_unmap(pg->sent, 2 * sizeof *pg->sent);
  free(pg);
}

static void conn_destroy(conc_Obj *o) {
  conc_Conn *c = (conc_Conn *)o;
  table_remove(c);
  conc__proc_close_fd(atomic_load(&c->fd));
  conc__proc_close_fd(atomic_load(&c->parked));
  page_drop(c->page);
  free(c);
}

static int conn_export(conc_Obj *o, conc_Export *x) {
  conc_Conn *c = (conc_Conn *)o;
  int fd = atomic_load(&c->fd);
  if (fd < 0) return CONC_ECONNCLOSED;
  x->fd = fd;
  x->map[0] = c->page->sent;
  x->num[0] = c->rx == &c->page->sent[1];  /* its side */
  x->num[1] = atomic_load(&c->readable);
  x->num[2] = c->writable;
  return CONC_OK;
}

static conc_Conn *conn_new(int fd, int readable, int writable, Page *pg,
                           int side);

/* A spawned process's end: its own page of the counters (its own mapping
** of the same memory) and the descriptor it inherited. */
static conc_Obj *conn_attach(const conc_Export *x) {
  conc_Conn *c;
  Page *pg;
  if (x->fd < 0 || (pg = malloc(sizeof *pg)) == NULL) return NULL;
  atomic_init(&pg->refs, 0);
  pg->sent = x->map[0];
  c = conn_new(x->fd, x->num[1] != 0, x->num[2] != 0, pg, x->num[0] != 0);
  if (c == NULL) free(pg);
  return (conc_Obj *)c;
}

conc_ObjType conc__conn_type = {.name = "conc.Connection",
                                .destroy = conn_destroy,
                                .export = conn_export,
                                .attach = conn_attach};

static conc_Conn *conn_new(int fd, int readable, int writable, Page *pg,
                           int side) {
  conc_Conn *c = malloc(sizeof *c);
  if (c == NULL) return NULL;
  atomic_fetch_add(&pg->refs, 1);
  c->page = pg;
  c->rx = &pg->sent[side];
  c->tx = &pg->sent[1 - side];
  conc__obj_init(&c->hdr, &conc__conn_type);
  conc__mutex_init(&c->rmu, CONC_PRIVATE);
  conc__mutex_init(&c->wmu, CONC_PRIVATE);
  atomic_init(&c->fd, fd);
  atomic_init(&c->users, 0);
  atomic_init(&c->parked, -1);
  atomic_init(&c->readable, readable);
  c->writable = writable;
  table_add(c);
  return c;
}

int conc__conn_pair(conc_Conn **a, conc_Conn **b, int duplex) {
  int fds[2], rc;
  Page *pg = malloc(sizeof *pg);
  if (pg == NULL) return CONC_ENOMEM;
  atomic_init(&pg->refs, 1);  /* this call's, dropped below */
  if ((pg->sent = conc__shm_map(2 * sizeof *pg->sent)) == NULL) {
    free(pg);
    return CONC_ENOMEM;
  }
  rc = conc__fd_pair(fds, duplex);
  if (rc != CONC_OK) {
    page_drop(pg);
    return rc;
  }
  *a = conn_new(fds[0], 1, duplex, pg, 0);
  *b = conn_new(fds[1], duplex, 1, pg, 1);
  page_drop(pg);
  if (*a == NULL || *b == NULL) {
    if (*a) conc__obj_decref(&(*a)->hdr);
    else conc__proc_close_fd(fds[0]);
    if (*b) conc__obj_decref(&(*b)->hdr);
    else conc__proc_close_fd(fds[1]);
    return CONC_ENOMEM;
  }
  return CONC_OK;
}

int conc__conn_fileno(conc_Conn *c) { return atomic_load(&c->fd); }
int conc__conn_readable(conc_Conn *c) { return atomic_load(&c->readable); }
int conc__conn_writable(conc_Conn *c) { return c->writable; }

/*
** close() in one thread while another is in recv, send or poll on the same
** end: the descriptor stays open until that call is done, or its number
** could be a newly opened file's by the time the call reads or writes it.
** A user counts itself before it loads fd; close() parks the descriptor
** and closes it only if nobody counts. All seq_cst: of a user's count and
** close()'s look at it, one sees the other, so exactly one of them closes.
*/
static int use(conc_Conn *c) {
  atomic_fetch_add(&c->users, 1);
  return atomic_load(&c->fd);
}

static void unuse(conc_Conn *c) {
  if (atomic_fetch_sub(&c->users, 1) == 1)
    conc__proc_close_fd(atomic_exchange(&c->parked, -1));
}

void conc__conn_close(conc_Conn *c) {
  int fd = atomic_exchange(&c->fd, -1);
  if (fd < 0) return;
  atomic_store(&c->parked, fd);
  if (atomic_load(&c->users) == 0)
    conc__proc_close_fd(atomic_exchange(&c->parked, -1));
}

/* Writes all n bytes; `started` says a frame is under way (no interrupt
** then). CONC_OK, EINTR (nothing of the frame written), EPIPE, ... */
static int write_all(int fd, const char *p, size_t n, int *started,
                     double deadline) {
  while (n > 0) {
    long w = conc__fd_write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      *started = 1;
    } else if (w == CONC_EAGAIN) {
      int rc = conc__fd_wait(fd, CONC_FD_WRITE,
                             *started ? CONC_FOREVER : deadline,
                             *started ? CONC_WAIT_NOINTR : 0);
      if (rc != CONC_OK) return rc;
    } else {
      return (int)w;
    }
  }
  return CONC_OK;
}

/* Reads exactly n bytes: CONC_OK, CONC_EEOF at the end of the stream (with
** *started as it was: 0 means a clean end between frames), EINTR or
** ETIMEDOUT before the frame's first byte, or an errno. */
static int read_all(conc_Conn *c, int fd, char *p, size_t n, int *started,
                    double deadline) {
  unsigned seen = atomic_load_explicit(c->rx, memory_order_acquire);
  int spun = !conc__can_spin();
  while (n > 0) {
    long r = conc__fd_read(fd, p, n);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
      *started = 1;
    } else if (r == 0) {
      return CONC_EEOF;
    } else if (r == CONC_EAGAIN && !spun) {
      spun = 1;
      for (int i = 0; i < READ_SPINS; i++) {
        if (atomic_load_explicit(c->rx, memory_order_acquire) != seen) break;
        conc__yield();
      }
    } else if (r == CONC_EAGAIN) {
      int rc = conc__fd_wait(fd, CONC_FD_READ,
                             *started ? CONC_FOREVER : deadline,
                             *started ? CONC_WAIT_NOINTR : 0);
      if (rc != CONC_OK) return rc;
      spun = !conc__can_spin();
      seen = atomic_load_explicit(c->rx, memory_order_acquire);
    } else {
      return (int)r;
    }
  }
  return CONC_OK;
}

int conc__conn_send(conc_Conn *c, const void *data, size_t len) {
  unsigned char hdr[12];
  size_t hlen;
  int fd, rc, started = 0;
  if (!c->writable) return CONC_EVALUE;
  conc__mutex_lock(&c->wmu);
  fd = use(c);
  if (fd < 0) {
    unuse(c);
    conc__mutex_unlock(&c->wmu);
    return CONC_ECONNCLOSED;
  }
  if (len < 0x7fffffff) {
    for (int i = 0; i < 4; i++) hdr[i] = (unsigned char)(len >> (24 - 8 * i));
    hlen = 4;
  } else {
    memset(hdr, 0xff, 4);
    for (int i = 0; i < 8; i++)
      hdr[4 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    hlen = 12;
  }
  /* a small frame goes in one write */
  if (len <= 256 - hlen) {
    char frame[256];
    memcpy(frame, hdr, hlen);
    if (len) memcpy(frame + hlen, data, len);
    rc = write_all(fd, frame, hlen + len, &started, CONC_FOREVER);
  } else {
    rc = write_all(fd, (const char *)hdr, hlen, &started, CONC_FOREVER);
    if (rc == CONC_OK) rc = write_all(fd, data, len, &started, CONC_FOREVER);
  }
  if (started) atomic_fetch_add_explicit(c->tx, 1, memory_order_release);
  unuse(c);
  conc__mutex_unlock(&c->wmu);
  return rc;
}

/* A frame's body is left in the stream: as Python does after a frame too
** long, this end reads no more (a duplex end still writes; a read-only one
** is closed), or the next recv would read from the middle of it. */
static void stop_reading(conc_Conn *c) {
  atomic_store(&c->readable, 0);
  if (!c->writable) conc__conn_close(c);
}

int conc__conn_recv(conc_Conn *c, char *buf, size_t cap, char **out,
                    size_t *len, size_t maxlen) {
  unsigned char hdr[8];
  uint64_t n = 0;
  int fd, rc, started = 0;
  char *dst = buf;
  if (!atomic_load(&c->readable)) return CONC_EVALUE;
  conc__mutex_lock(&c->rmu);
  fd = use(c);
  if (fd < 0) {
    unuse(c);
    conc__mutex_unlock(&c->rmu);
    return CONC_ECONNCLOSED;
  }
  rc = read_all(c, fd, (char *)hdr, 4, &started, CONC_FOREVER);
  if (rc == CONC_OK) {
    n = (uint64_t)hdr[0] << 24 | (uint64_t)hdr[1] << 16 |
        (uint64_t)hdr[2] << 8 | hdr[3];
    if (n == 0xffffffffu) {
      rc = read_all(c, fd, (char *)hdr, 8, &started, CONC_FOREVER);
      n = 0;
      for (int i = 0; i < 8 && rc == CONC_OK; i++) n = n << 8 | hdr[i];
    }
  }
  if (rc == CONC_OK && (n > maxlen || n > SIZE_MAX / 2)) {
    rc = CONC_EMSGSIZE;
    stop_reading(c);
  }
  if (rc == CONC_OK && n > cap && (dst = malloc((size_t)n)) == NULL) {
    rc = CONC_ENOMEM;
    stop_reading(c);
  }
  if (rc == CONC_OK) rc = read_all(c, fd, dst, (size_t)n, &started, CONC_FOREVER);
  unuse(c);
  conc__mutex_unlock(&c->rmu);
  if (rc != CONC_OK) {
    if (dst != buf) free(dst);
    return rc;
  }
  *out = dst;
  *len = (size_t)n;
  return CONC_OK;
}

int conc__conn_poll(conc_Conn *c, double deadline) {
  int fd = use(c), rc;
  if (fd < 0 || !atomic_load(&c->readable)) {
    unuse(c);
    return fd < 0 ? CONC_ECONNCLOSED : CONC_EVALUE;
  }
  rc = conc__fd_wait(fd, CONC_FD_READ, deadline, 0);
  unuse(c);
  if (rc == CONC_ETIMEDOUT) return 0;
  return rc == CONC_OK ? 1 : rc;
}
