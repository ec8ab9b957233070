/*
** shared.c -- conc.shared.list and conc.shared.dict, and a Manager's list,
** dict and Namespace: containers every thread, or every process, sees.
**
** One implementation for both: a container's state (its mutex, sizes,
** the offsets of its arrays) and its items live in a heap (heap.c), the
** private one for threads, a Manager's shared arena for processes, and
** refer to each other by offsets only, so the shared state means the same
** in every process that maps the arena. The object threads hold (the
** refcounted header, the pointers to the heap and to the state) is this
** process's, as every shared kind's is (core.h).
**
** An item is a one-value message of the wire format held in a Cell: what a
** reader gets is a fresh copy. Small messages live inline in the cell, so
** reading or writing a small scalar allocates nothing; a larger one is a
** block of the heap: on the private heap the message itself (conc objects
** inside cross by reference: the message holds one), on a shared heap a
** copy of its bytes (values naming conc objects are refused there). Each
** container is guarded by one mutex word (mutex.c), which costs two
** compare-and-swaps when nobody else holds it.
**
** Under the lock the core only copies bytes and moves cells: it never
** decodes, and never frees a value. Freeing a value may drop the last
** reference to another conc object and run its destroy, which may free a
** whole other container: that happens after the lock is released.
**
** The dict is CPython's compact dict: an array of entries in insertion order
** (a removed key leaves a hole until the next resize) and an index of slots
** into it, probed linearly from the key's hash. O(1) expected per lookup.
**
** A process killed holding a shared container's mutex (a robust one) leaves
** its change half made; the next holder repairs it (docs/multiprocessing.md,
** "Manager"). Every change is ordered so that a dead process's last step
** is all that can be half done: a new item is written before the count
** that shows it, a new array before the offset that publishes it; a change
** in place first saves what it overwrites in the container's journal, and a
** shift of list items records how far it got. Repair undoes what the
** journal names, checks every offset and cell against the heap (dropping
** what is not whole), and rebuilds the dict's index and count. Only shared
** heaps keep the journal: in one process nobody dies holding the lock.
*/
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Compiler barrier between two steps of a change that a killed process may
** leave half made: it has made every step before the one it died in. */
#define STEP() atomic_signal_fence(memory_order_seq_cst)

/* ======================================================================
** Cells: a value as a container holds it
** ====================================================================== */

/* Laid out as conc_Val is, so that on the private heap, where `big` is
** the address of the value's message, a cell and a value are the same
** bits and storing a value is moving it. */
typedef struct Cell {
  conc_Off big;       /* 0: the bytes are inl[0 .. len) */
  uint32_t len;
  char inl[CONC_VAL_INLINE];
} Cell;

_Static_assert(sizeof(Cell) == sizeof(conc_Val) &&
               offsetof(Cell, len) == offsetof(conc_Val, len) &&
               offsetof(Cell, inl) == offsetof(conc_Val, inl) &&
               sizeof(conc_Off) == 8 && sizeof(void *) <= 8,
               "a Cell is a conc_Val's bits");

/* A shared heap's block for a large value: a copy of its bytes. */
typedef struct Bytes {
  uint64_t len;
  char data[];
} Bytes;

static const Cell cell_empty = {0, 0, {0}};

static inline int live(const Cell *c) {
  return c->big != 0 || c->len != 0;
}

static conc_Msg *msg_of(const Cell *c) {
  return (conc_Msg *)(uintptr_t)c->big;
}

/* A shared heap's copy of a large value, for cell_make. */
static int cell_copy_in(conc_Heap *h, conc_Val *v, Cell *c) {
  conc_Off off;
  Bytes *b;
  if (v->msg->nobjs > 0) return CONC_EVALUE;
  off = conc__heap_alloc(h, sizeof *b + v->msg->len);
  if (off == 0) return CONC_ENOMEM;
  b = conc__heap_at(h, off);
  b->len = v->msg->len;
  memcpy(b->data, v->msg->data, v->msg->len);
  c->big = off;
  c->len = 0;
  conc__val_free(v);
  return 0;
}

/* Makes c hold v, before the lock is taken, and leaves v empty: the
** private heap takes v's message, a shared heap copies its bytes into a
** block of its own (a value naming a conc object cannot be there:
** CONC_EVALUE). 0, EVALUE or ENOMEM (then v is the caller's still). */
static inline int cell_make(conc_Heap *h, conc_Val *v, Cell *c) {
  if (v->msg == NULL || !conc__heap_shared(h)) {
    memcpy(c, v, sizeof *c);
    v->msg = NULL;
    v->len = 0;
    return 0;
  }
  return cell_copy_in(h, v, c);
}

/* Makes n cells from the values v[0], v[stride], ..., all or none: 0, or
** the first failure's code (the cells made are dropped, the values left
** are the caller's). */
static void cell_drop(conc_Heap *h, Cell *c);

static int cells_make(conc_Heap *h, conc_Val *v, size_t stride, Cell *c,
                      size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = cell_make(h, &v[i * stride], &c[i]);
    if (rc != 0) {
      while (i > 0) cell_drop(h, &c[--i]);
      return rc;
    }
  }
  return 0;
}

static void cell_free(conc_Heap *h, Cell *c) {
  if (conc__heap_shared(h)) conc__heap_free(h, c->big);
  else conc__msg_free(msg_of(c));
}

/* Frees what c holds and leaves it empty; after the lock is released. */
static inline void cell_drop(conc_Heap *h, Cell *c) {
  if (c->big != 0) cell_free(h, c);
  c->big = 0;
  c->len = 0;
}

static void cells_drop(conc_Heap *h, Cell *c, size_t n) {
  for (size_t i = 0; i < n; i++) cell_drop(h, &c[i]);
}

/* The bytes c holds. */
static const char *cell_data(const conc_Heap *h, const Cell *c, size_t *len) {
  const Bytes *b;
  if (c->big == 0) {
    *len = c->len;
    return c->inl;
  }
  if (!conc__heap_shared(h)) {
    *len = msg_of(c)->len;
    return msg_of(c)->data;
  }
  b = conc__heap_at(h, c->big);
  *len = (size_t)b->len;
  return b->data;
}

static int cell_copy_big(const conc_Heap *h, const Cell *c, conc_Val *out) {
  const char *data;
  size_t len;
  if (!conc__heap_shared(h)) {
    conc_Val v;
    memcpy(&v, c, sizeof v);
    return conc__val_copy(out, &v);
  }
  data = cell_data(h, c, &len);
  out->msg = conc__msg_new(data, len, NULL, 0);
  out->len = 0;
  return out->msg ? CONC_OK : CONC_ENOMEM;
}

/* A copy of what c holds, for the caller to free: 0 or ENOMEM. Under the
** lock (a shared block may be freed by another process once it is let go). */
static inline int cell_copy(const conc_Heap *h, const Cell *c, conc_Val *out) {
  if (c->big == 0) {
    memcpy(out, c, sizeof *out);
    return 0;
  }
  return cell_copy_big(h, c, out);
}

/* What a cell taken out of the container holds, as a value the caller
** owns; after the lock (the cell is this caller's alone by then). The
** private heap's is moved; a shared one is copied, then freed: 0 or
** ENOMEM (the value is lost then). */
static inline int cell_take(conc_Heap *h, Cell *c, conc_Val *out) {
  int rc = 0;
  if (c->big == 0 || !conc__heap_shared(h)) {
    memcpy(out, c, sizeof *out);
    c->big = 0;
    c->len = 0;
    return 0;
  }
  rc = cell_copy(h, c, out);
  cell_drop(h, c);
  return rc;
}

static int cell_equal_big(const conc_Heap *h, const Cell *c,
                          const conc_Val *v) {
  const char *a, *b;
  size_t alen, blen;
  if (!conc__heap_shared(h)) {
    conc_Val cv;
    memcpy(&cv, c, sizeof cv);
    return conc__val_equal(&cv, v);
  }
  if (v->msg && v->msg->nobjs > 0) return 0;  /* a shared cell names none */
  a = cell_data(h, c, &alen);
  b = conc__val_data(v, &blen);
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* The same bytes as v, naming the same objects. */
static inline int cell_equal(const conc_Heap *h, const Cell *c,
                             const conc_Val *v) {
  if (c->big == 0 && v->msg == NULL)  /* both inline: a dict's keys */
    return c->len == v->len && memcmp(c->inl, v->inl, v->len) == 0;
  return cell_equal_big(h, c, v);
}

static int matches(const conc_Heap *h, const Cell *c, const conc_Val *needle,
                   int n) {
  for (int i = 0; i < n; i++)
    if (cell_equal(h, c, &needle[i])) return 1;
  return 0;
}

/* Is c whole, as a dead process may have left it? */
static int cell_valid(const conc_Heap *h, const Cell *c) {
  const Bytes *b;
  if (c->big == 0) return c->len <= CONC_VAL_INLINE;
  if (!conc__heap_valid(h, c->big, sizeof *b)) return 0;
  b = conc__heap_at(h, c->big);
  return b->len < h->size && conc__heap_valid(h, c->big, sizeof *b + b->len);
}

/* A new array of n values (at least one slot, so NULL means no memory). */
static conc_Val *vals_new(size_t n) {
  if (n > SIZE_MAX / sizeof(conc_Val)) return NULL;
  return malloc((n ? n : 1) * sizeof(conc_Val));
}

/* Copies of n cells into a new array; under the caller's lock. */
static int copy_all(const conc_Heap *h, const Cell *src, size_t n,
                    conc_Val **out) {
  conc_Val *v = vals_new(n);
  if (v == NULL) return CONC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (cell_copy(h, &src[i], &v[i]) != 0) {
      conc__vals_free(v, i);
      return CONC_ENOMEM;
    }
  }
  *out = v;
  return 0;
}

/* ======================================================================
** The journal: what a change in place saves first
** ====================================================================== */

typedef struct Entry {
  uint64_t hash;
  Cell key, val;  /* key empty: removed */
} Entry;

enum { J_NONE, J_BYTES, J_SHIFT };

typedef struct Journal {
  uint32_t what;      /* J_NONE, or the change under way */
  uint32_t size;      /* J_BYTES: size bytes go back to `pos` in `block` */
  conc_Off block;
  uint64_t pos;
  /* J_SHIFT: list items from `from` on move by `by` (one to the left, a
  ** removal, or to the right, an insertion); n is the list's length
  ** before; the copy of item `mark` is under way (see shift_*) */
  uint64_t from, n, mark;
  int64_t by;
  Cell removed;       /* J_SHIFT left: the item taken out */
  char bytes[sizeof(Entry)];
} Journal;

/* Saves the size bytes at p, inside the heap's block `block`, before a
** change in place (a shared heap's containers only: `on`). */
static inline void journal_save(Journal *j, int on, const conc_Heap *h,
                         conc_Off block, const void *p, size_t size) {
  if (!on) return;
  memcpy(j->bytes, p, size);
  j->size = (uint32_t)size;
  j->block = block;
  j->pos = conc__heap_off(h, p) - block;
  STEP();
  j->what = J_BYTES;
  STEP();
}

static inline void journal_done(Journal *j, int on) {
  if (!on) return;
  STEP();
  j->what = J_NONE;
}

/* Puts back what a dead process's J_BYTES change overwrote. */
static void journal_undo_bytes(const conc_Heap *h, Journal *j) {
  if (j->what == J_BYTES && j->size <= sizeof j->bytes &&
      j->pos < h->size && conc__heap_valid(h, j->block, j->pos + j->size))
    memcpy((char *)conc__heap_at(h, j->block) + j->pos, j->bytes, j->size);
}

/* ======================================================================
** list
** ====================================================================== */

typedef struct ListState {
  conc_Mutex mu;
  uint64_t n, cap;
  conc_Off items;       /* cap cells */
  Journal j;
} ListState;

struct conc_ShList {
  conc_ShHead h;        /* h.shared: in a shared heap, keeps the journal */
  ListState *st;        /* &own, or in the shared heap */
  ListState own;
};

static inline Cell *items_of(conc_ShList *l) {
  return conc__heap_at(l->h.heap, l->st->items);
}

/* Frees the items and, for a shared heap, the state. */
static void list_free_all(conc_ShList *l) {
  cells_drop(l->h.heap, items_of(l), l->st->n);
  conc__heap_free(l->h.heap, l->st->items);
  if (l->st != &l->own) conc__heap_free(l->h.heap, conc__heap_off(l->h.heap, l->st));
}

/* born once a spawned process may hold the container: no fork count is
** ever this (container_export). */
#define GIVEN ULONG_MAX

/* A shared heap's container lives as long as the heap, unless no process
** but this one can have it: none forked since it was made (children
** inherit it, and nothing tells when they let go) and none spawned with
** it (GIVEN). */
static int owned_alone(const conc_ShHead *c) {
  return !c->shared || atomic_load_explicit(&c->born, memory_order_relaxed) ==
                           conc__fork_generation();
}

static void shlist_destroy(conc_Obj *o) {
  conc_ShList *l = (conc_ShList *)o;
  if (owned_alone(&l->h)) list_free_all(l);
  conc__heap_drop(l->h.heap);
  free(l);
}

/* The state, inside the object for the private heap, else in h. */
static void *state_new(conc_Heap *h, void *own, size_t size) {
  conc_Off off;
  if (!conc__heap_shared(h)) return own;
  off = conc__heap_alloc(h, size);
  return off ? conc__heap_at(h, off) : NULL;
}

/* Makes c an object of a kind in heap h (holding a reference of it),
** born at the fork count `born` (or GIVEN). */
static void *container_wrap(conc_ShHead *c, conc_Heap *h, conc_ObjType *type,
                            unsigned long born) {
  c->heap = h;
  c->down = h->down;
  c->shared = conc__heap_shared(h);
  atomic_init(&c->born, born);
  conc__heap_hold(h);
  conc__obj_init(&c->hdr, type);
  return c;
}

/* A new container of a kind: its object (size bytes, a conc_ShHead
** first, its own state at offset `own`) and its state (stsize bytes, a
** mutex first), inside the object for the private heap, else in h; *st
** gets the state. NULL when out of memory. */
static void *container_new(conc_Heap *h, conc_ObjType *type, size_t size,
                           size_t own, size_t stsize, void **st) {
  conc_ShHead *c = malloc(size);
  if (c == NULL) return NULL;
  *st = state_new(h, (char *)c + own, stsize);
  if (*st == NULL) {
    free(c);
    return NULL;
  }
  container_wrap(c, h, type, conc__fork_generation());
  memset(*st, 0, stsize);
  conc__mutex_init(*st, c->shared ? CONC_SHARED : CONC_PRIVATE);
  return c;
}

/* What a spawned process is given of a Manager's container (spawn.c): its
** heap, as the entry before it, and where its state is in the heap. From
** then on no process frees the state before the heap goes: the other one
** may hold it, and nothing tells when it lets go. A thread container is
** this process's own, as threading's objects are. */
static int container_export(conc_ShHead *c, const void *st, conc_Export *x) {
  if (!c->shared) return CONC_EVALUE;
  atomic_store_explicit(&c->born, GIVEN, memory_order_relaxed);
  x->num[0] = (int64_t)conc__heap_off(c->heap, st);
  x->ref = &c->heap->hdr;
  return CONC_OK;
}

/* In the spawned process: its object of a kind (size bytes) over the
** state (stsize bytes, into *st) that x names in the heap it holds; NULL
** unless that is a live block of the heap, or when out of memory. */
static void *container_attach(const conc_Export *x, conc_ObjType *type,
                              size_t size, size_t stsize, void **st) {
  conc_Heap *h = (conc_Heap *)x->ref;
  conc_ShHead *c;
  if (h == NULL || h->hdr.type != &conc__heap_type || x->num[0] <= 0 ||
      !conc__heap_valid(h, (conc_Off)x->num[0], stsize) ||
      (c = malloc(size)) == NULL)
    return NULL;
  *st = conc__heap_at(h, (conc_Off)x->num[0]);
  return container_wrap(c, h, type, GIVEN);
}

static int shlist_export(conc_Obj *o, conc_Export *x) {
  conc_ShList *l = (conc_ShList *)o;
  return container_export(&l->h, l->st, x);
}

static conc_Obj *shlist_attach(const conc_Export *x) {
  void *st;
  conc_ShList *l = container_attach(x, &conc__shlist_type, sizeof *l,
                                    sizeof l->own, &st);
  if (l != NULL) l->st = st;
  return (conc_Obj *)l;
}

conc_ObjType conc__shlist_type = {
  .name = "conc.shared.list", .destroy = shlist_destroy,
  .export = shlist_export, .attach = shlist_attach};

conc_ShList *conc__shlist_new(conc_Heap *h) {
  void *st;
  conc_ShList *l = container_new(h, &conc__shlist_type, sizeof *l,
                                 offsetof(conc_ShList, own), sizeof l->own,
                                 &st);
  if (l != NULL) l->st = st;
  return l;
}

/* Moves items [at, n) k places to the right (an insertion), a dead
** process's copy undoable: `mark` says the items from it on are copied. */
static void shift_right(conc_ShList *l, size_t at, size_t k) {
  ListState *st = l->st;
  Cell *it = items_of(l);
  size_t n = (size_t)st->n;
  if (!l->h.shared) {
    memmove(&it[at + k], &it[at], (n - at) * sizeof *it);
    return;
  }
  st->j.from = at;
  st->j.n = n;
  st->j.by = (int64_t)k;
  st->j.mark = n;
  STEP();
  st->j.what = J_SHIFT;
  for (size_t s = n; s-- > at;) {
    STEP();
    st->j.mark = s + 1;  /* item s is being copied */
    STEP();
    it[s + k] = it[s];
  }
  STEP();
  st->j.mark = at;
}

/* Moves items (at, n) one place to the left over item at (a removal),
** which the journal keeps until the move is done. */
static void shift_left(conc_ShList *l, size_t at) {
  ListState *st = l->st;
  Cell *it = items_of(l);
  size_t n = (size_t)st->n;
  if (!l->h.shared) {
    memmove(&it[at], &it[at + 1], (n - at - 1) * sizeof *it);
    return;
  }
  st->j.from = at;
  st->j.n = n;
  st->j.by = -1;
  st->j.removed = it[at];
  st->j.mark = at;
  STEP();
  st->j.what = J_SHIFT;
  for (size_t s = at; s + 1 < n; s++) {
    STEP();
    st->j.mark = s;  /* slot s is being written */
    STEP();
    it[s] = it[s + 1];
  }
  STEP();
  st->j.mark = n - 1;
}

/* Undoes a dead process's shift: the list as it was before it. */
static void shift_undo(conc_ShList *l) {
  Journal *j = &l->st->j;
  Cell *it = items_of(l);
  uint64_t n = j->n, at = j->from, mark = j->mark;
  if (j->by > 0) {
    uint64_t k = (uint64_t)j->by;
    if (n + k > l->st->cap || mark < at || mark > n) return;
    for (uint64_t t = mark; t < n; t++) it[t] = it[t + k];
  } else {
    if (n > l->st->cap || at >= n || mark < at || mark >= n) return;
    for (uint64_t t = mark; t > at; t--) it[t] = it[t - 1];
    it[at] = j->removed;
  }
  l->st->n = n;
}

/* After a takeover from a dead holder: undo its change, then keep only
** what is whole. */
__attribute__((noinline)) static void list_repair(conc_ShList *l) {
  ListState *st = l->st;
  Cell *it;
  uint64_t cap, keep = 0;
  atomic_store_explicit(&st->mu.recovered, 0, memory_order_relaxed);
  if (st->items == 0 || st->cap > l->h.heap->size / sizeof(Cell) ||
      !conc__heap_valid(l->h.heap, st->items, st->cap * sizeof(Cell))) {
    st->items = 0;
    st->n = st->cap = 0;
    st->j.what = J_NONE;
    return;
  }
  if (st->j.what == J_SHIFT) shift_undo(l);
  else journal_undo_bytes(l->h.heap, &st->j);
  st->j.what = J_NONE;
  cap = st->cap;
  if (st->n > cap) st->n = cap;
  it = items_of(l);
  for (uint64_t i = 0; i < st->n; i++)
    if (cell_valid(l->h.heap, &it[i])) it[keep++] = it[i];
  st->n = keep;
}

static inline void list_lock(conc_ShList *l) {
  conc__mutex_lock(&l->st->mu);
  if (atomic_load_explicit(&l->st->mu.recovered, memory_order_relaxed))
    list_repair(l);
}

static inline void list_unlock(conc_ShList *l) {
  conc__mutex_unlock(&l->st->mu);
}

/* The 0-based position of 1-based index i (negative: from the end), or 0
** when it is out of range. */
static int position(int64_t i, size_t n, size_t *at) {
  if (i > 0 && (uint64_t)i <= n) *at = (size_t)(i - 1);
  else if (i < 0 && (uint64_t)-(i + 1) < n) *at = n - (size_t)-(i + 1) - 1;
  else return 0;
  return 1;
}

/* Room for extra more items; under the lock. A larger array is written
** whole before its offset is published, and the old one freed after. */
static int list_reserve(conc_ShList *l, size_t extra) {
  ListState *st = l->st;
  size_t cap, n = (size_t)st->n;
  conc_Off items, old = st->items;
  if (extra <= st->cap - n) return 0;
  if (extra > SIZE_MAX / sizeof(Cell) / 2 - n) return CONC_ENOMEM;
  cap = st->cap * 2 > n + extra ? (size_t)st->cap * 2 : n + extra;
  if (cap < 4) cap = 4;
  items = conc__heap_alloc(l->h.heap, cap * sizeof(Cell));
  if (items == 0) return CONC_ENOMEM;
  if (n > 0)
    memcpy(conc__heap_at(l->h.heap, items), items_of(l), n * sizeof(Cell));
  STEP();
  st->items = items;
  STEP();
  st->cap = cap;
  conc__heap_free(l->h.heap, old);
  return 0;
}

/* The first item equal to a needle, or -1; under the lock. */
static int64_t list_find(conc_ShList *l, const conc_Val *needle, int nn) {
  Cell *it = items_of(l);
  for (size_t i = 0; i < l->st->n; i++)
    if (matches(l->h.heap, &it[i], needle, nn)) return (int64_t)i;
  return -1;
}

/* Takes item `at` out into *out, closing the gap; under the lock. */
static void list_take(conc_ShList *l, size_t at, Cell *out) {
  *out = items_of(l)[at];
  shift_left(l, at);
  l->st->n--;
  journal_done(&l->st->j, l->h.shared);
}

size_t conc__shlist_len(conc_ShList *l) {
  size_t n;
  list_lock(l);
  n = (size_t)l->st->n;
  list_unlock(l);
  return n;
}

int conc__shlist_get(conc_ShList *l, int64_t i, conc_Val *out) {
  size_t at;
  int rc = CONC_ERANGE;
  list_lock(l);
  if (position(i, (size_t)l->st->n, &at))
    rc = cell_copy(l->h.heap, &items_of(l)[at], out);
  list_unlock(l);
  return rc;
}

int conc__shlist_set(conc_ShList *l, int64_t i, conc_Val *v) {
  ListState *st = l->st;
  Cell c, old = cell_empty;
  size_t at;
  int rc = cell_make(l->h.heap, v, &c);
  if (rc != 0) return rc;
  list_lock(l);
  if (position(i, (size_t)st->n, &at)) {
    Cell *slot = &items_of(l)[at];
    old = *slot;
    journal_save(&st->j, l->h.shared, l->h.heap, st->items, slot, sizeof *slot);
    *slot = c;
    journal_done(&st->j, l->h.shared);
  } else if (i > 0 && (uint64_t)i == st->n + 1) {
    rc = list_reserve(l, 1);
    if (rc == 0) {
      items_of(l)[st->n] = c;
      STEP();
      st->n++;
    }
  } else {
    rc = CONC_ERANGE;
  }
  list_unlock(l);
  cell_drop(l->h.heap, rc == 0 ? &old : &c);
  return rc;
}

int conc__shlist_insert(conc_ShList *l, int64_t i, conc_Val *v, size_t n) {
  ListState *st = l->st;
  Cell one, *c = n == 1 ? &one : malloc((n ? n : 1) * sizeof *c);
  size_t at;
  int rc;
  if (c == NULL) return CONC_ENOMEM;
  rc = cells_make(l->h.heap, v, 1, c, n);
  if (rc == 0) {
    list_lock(l);
    rc = list_reserve(l, n);
    if (rc == 0 && n > 0) {
      Cell *it;
      /* Python's clamping: past the end appends, before the start prepends */
      if (i > 0) at = (uint64_t)i - 1 < st->n ? (size_t)(i - 1) : (size_t)st->n;
      else if (!position(i, (size_t)st->n, &at)) at = 0;
      if (at < st->n) shift_right(l, at, n);
      it = items_of(l);
      memcpy(&it[at], c, n * sizeof *c);
      STEP();
      st->n += n;
      journal_done(&st->j, l->h.shared);
    }
    list_unlock(l);
    if (rc != 0) cells_drop(l->h.heap, c, n);
  }
  if (c != &one) free(c);
  return rc;
}

int conc__shlist_pop(conc_ShList *l, int64_t i, conc_Val *out) {
  Cell c;
  size_t at;
  int rc = 0;
  list_lock(l);
  if (l->st->n == 0) rc = CONC_EEMPTYLIST;
  else if (!position(i, (size_t)l->st->n, &at)) rc = CONC_ERANGE;
  else list_take(l, at, &c);
  list_unlock(l);
  return rc == 0 ? cell_take(l->h.heap, &c, out) : rc;
}

int64_t conc__shlist_index(conc_ShList *l, const conc_Val *needle, int nn) {
  int64_t at;
  list_lock(l);
  at = list_find(l, needle, nn);
  list_unlock(l);
  return at + 1;
}

size_t conc__shlist_count(conc_ShList *l, const conc_Val *needle, int nn) {
  size_t count = 0;
  Cell *it;
  list_lock(l);
  it = items_of(l);
  for (size_t i = 0; i < l->st->n; i++)
    count += matches(l->h.heap, &it[i], needle, nn);
  list_unlock(l);
  return count;
}

int conc__shlist_remove(conc_ShList *l, const conc_Val *needle, int nn) {
  Cell old = cell_empty;
  int64_t at;
  list_lock(l);
  at = list_find(l, needle, nn);
  if (at >= 0) list_take(l, (size_t)at, &old);
  list_unlock(l);
  cell_drop(l->h.heap, &old);
  return at >= 0 ? 0 : CONC_ENOTFOUND;
}

void conc__shlist_clear(conc_ShList *l) {
  ListState *st = l->st;
  conc_Off items;
  size_t n;
  list_lock(l);
  items = st->items;
  n = (size_t)st->n;
  st->n = 0;
  STEP();
  st->items = 0;
  st->cap = 0;
  list_unlock(l);
  cells_drop(l->h.heap, conc__heap_at(l->h.heap, items), n);
  conc__heap_free(l->h.heap, items);
}

int conc__shlist_snapshot(conc_ShList *l, conc_Val **out, size_t *n) {
  int rc;
  list_lock(l);
  *n = (size_t)l->st->n;
  rc = copy_all(l->h.heap, items_of(l), *n, out);
  list_unlock(l);
  return rc;
}

/* ======================================================================
** dict
** ====================================================================== */

#define SLOT_EMPTY (-1)
#define SLOT_DUMMY (-2)  /* its entry was removed: probing goes on past it */

/* One block: this header, capentries entries, then the index. */
typedef struct Table {
  uint64_t nentries;    /* entries written, the removed ones included */
  uint64_t capentries;
  uint64_t nindex;      /* a power of two, more than capentries */
} Table;

typedef struct DictState {
  conc_Mutex mu;
  uint64_t used;        /* keys present */
  conc_Off table;       /* 0: none yet */
  Journal j;
} DictState;

struct conc_ShDict {
  conc_ShHead h;
  DictState *st;        /* &own, or in the shared heap */
  DictState own;
};

static Entry *entries_of(Table *t) {
  return (Entry *)(t + 1);
}

static int32_t *index_of(Table *t) {
  return (int32_t *)(entries_of(t) + t->capentries);
}

static inline Table *table_of(conc_ShDict *d) {
  return d->st->table ? conc__heap_at(d->h.heap, d->st->table) : NULL;
}

static size_t table_size(size_t cap, size_t nindex) {
  return sizeof(Table) + cap * sizeof(Entry) + nindex * sizeof(int32_t);
}

static int live_entry(const Entry *e) {
  return live(&e->key);
}

static void free_table(conc_Heap *h, conc_Off off) {
  Table *t;
  if (off == 0) return;
  t = conc__heap_at(h, off);
  for (size_t i = 0; i < t->nentries; i++) {
    cell_drop(h, &entries_of(t)[i].key);
    cell_drop(h, &entries_of(t)[i].val);
  }
  conc__heap_free(h, off);
}

static void dict_free_all(conc_ShDict *d) {
  free_table(d->h.heap, d->st->table);
  if (d->st != &d->own) conc__heap_free(d->h.heap, conc__heap_off(d->h.heap, d->st));
}

static void shdict_destroy(conc_Obj *o) {
  conc_ShDict *d = (conc_ShDict *)o;
  if (owned_alone(&d->h)) dict_free_all(d);
  conc__heap_drop(d->h.heap);
  free(d);
}

static int shdict_export(conc_Obj *o, conc_Export *x) {
  conc_ShDict *d = (conc_ShDict *)o;
  return container_export(&d->h, d->st, x);
}

static conc_Obj *dict_attach(const conc_Export *x, conc_ObjType *type) {
  void *st;
  conc_ShDict *d = container_attach(x, type, sizeof *d, sizeof d->own, &st);
  if (d != NULL) d->st = st;
  return (conc_Obj *)d;
}

static conc_Obj *shdict_attach(const conc_Export *x) {
  return dict_attach(x, &conc__shdict_type);
}

static conc_Obj *namespace_attach(const conc_Export *x) {
  return dict_attach(x, &conc__namespace_type);
}

conc_ObjType conc__shdict_type = {
  .name = "conc.shared.dict", .destroy = shdict_destroy,
  .export = shdict_export, .attach = shdict_attach};
conc_ObjType conc__namespace_type = {
  .name = "conc.Namespace", .destroy = shdict_destroy,
  .export = shdict_export, .attach = namespace_attach};

conc_ShDict *conc__shdict_new(conc_Heap *h, conc_ObjType *type) {
  void *st;
  conc_ShDict *d = container_new(h, type, sizeof *d,
                                 offsetof(conc_ShDict, own), sizeof d->own,
                                 &st);
  if (d != NULL) d->st = st;
  return d;
}

static uint64_t load32(const char *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
}

/* Keys are a few bytes: eight at a time, each mixed in by a multiply, and a
** final avalanche so the low bits the index uses depend on all of them. The
** last 1 to 7 bytes are read as wyhash reads them, by loads that may
** overlap (two 4-byte ones, or three single bytes): copying them byte by
** byte into a word and loading that word stalled on store forwarding. */
static uint64_t hash_key(const conc_Val *key) {
  size_t n;
  const char *p = conc__val_data(key, &n);
  uint64_t h = n * 0x9E3779B97F4A7C15ull, w;
  for (; n >= 8; p += 8, n -= 8) {
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  if (n >= 4) {
    w = load32(p) | load32(p + n - 4) << 32;
    h = (h ^ w) * 0xff51afd7ed558ccdull;
  } else if (n > 0) {
    w = (uint64_t)(unsigned char)p[0] | (uint64_t)(unsigned char)p[n / 2] << 8 |
        (uint64_t)(unsigned char)p[n - 1] << 16;
    h = (h ^ w) * 0xff51afd7ed558ccdull;
  }
  h ^= h >> 29;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 32);
}

/*
** The entry holding key, or -1. *slot gets the key's index slot: where it
** is, or where to put it (the first dummy passed, else the empty slot that
** ended the probe). The index always has an empty slot: every entry, removed
** or not, fills at most one, and there are fewer entries than slots.
*/
static int64_t dict_find(conc_ShDict *d, Table *t, const conc_Val *key,
                         uint64_t h, size_t *slot) {
  size_t mask, i, insert_at = SIZE_MAX;
  Entry *e;
  int32_t *index;
  *slot = 0;  /* no index yet: dict_add resizes, then finds the slot again */
  if (t == NULL) return -1;
  mask = (size_t)t->nindex - 1;
  e = entries_of(t);
  index = index_of(t);
  for (i = h & mask;; i = (i + 1) & mask) {
    int32_t ix = index[i];
    if (ix == SLOT_EMPTY) {
      *slot = insert_at != SIZE_MAX ? insert_at : i;
      return -1;
    }
    if (ix == SLOT_DUMMY) {
      if (insert_at == SIZE_MAX) insert_at = i;
    } else if (e[ix].hash == h && cell_equal(d->h.heap, &e[ix].key, key)) {
      *slot = i;
      return ix;
    }
  }
}

/* Fills t's index from its live entries, moving them down over the
** removed ones (in order); returns how many there are. */
static size_t reindex(Table *t) {
  Entry *e = entries_of(t);
  int32_t *index = index_of(t);
  size_t mask = (size_t)t->nindex - 1, j = 0;
  memset(index, 0xff, (size_t)t->nindex * sizeof *index);  /* all EMPTY */
  for (size_t k = 0; k < t->nentries; k++) {
    size_t i;
    if (!live_entry(&e[k])) continue;
    if (j != k) e[j] = e[k];
    for (i = e[j].hash & mask; index[i] != SLOT_EMPTY; i = (i + 1) & mask) {
    }
    index[i] = (int32_t)j++;
  }
  t->nentries = j;
  return j;
}

/* Rebuilds the table with room for `need` keys (and as many again, so that
** growth is geometric), leaving out removed entries. O(entries). The new
** table is whole before its offset is published. */
static int dict_resize(conc_ShDict *d, size_t need) {
  DictState *st = d->st;
  Table *old = table_of(d), *t;
  size_t want = need > 2 * st->used ? need : 2 * (size_t)st->used;
  size_t nindex = 8, cap;
  conc_Off off, oldoff = st->table;
  while (nindex / 3 * 2 < want) {
    if (nindex > (size_t)INT32_MAX / 2) return CONC_ENOMEM;
    nindex *= 2;
  }
  cap = nindex / 3 * 2;
  off = conc__heap_alloc(d->h.heap, table_size(cap, nindex));
  if (off == 0) return CONC_ENOMEM;
  t = conc__heap_at(d->h.heap, off);
  t->capentries = cap;
  t->nindex = nindex;
  t->nentries = 0;
  for (size_t k = 0; old != NULL && k < old->nentries; k++)
    if (live_entry(&entries_of(old)[k]))  /* fewer than cap: want >= used */
      entries_of(t)[t->nentries++] = entries_of(old)[k];
  reindex(t);
  STEP();
  st->table = off;
  conc__heap_free(d->h.heap, oldoff);  /* its cells moved to the new one */
  return 0;
}

/* Adds a key known to be absent, taking the cells key and v (into index
** slot `slot`, or, if the table has to grow, the first empty one of the new
** table: it has no dummies). Under the lock. The entry is written before
** the count that shows it. */
static int dict_add(conc_ShDict *d, Table *t, Cell *key, Cell *v, uint64_t h,
                    size_t slot) {
  Entry *e;
  if (t == NULL || t->nentries == t->capentries) {
    size_t mask;
    if (dict_resize(d, (size_t)d->st->used + 1) != 0) return CONC_ENOMEM;
    t = table_of(d);
    mask = (size_t)t->nindex - 1;
    for (slot = h & mask; index_of(t)[slot] != SLOT_EMPTY;
         slot = (slot + 1) & mask) {
    }
  }
  e = &entries_of(t)[t->nentries];
  e->hash = h;
  e->key = *key;
  e->val = *v;
  *key = *v = cell_empty;
  STEP();
  index_of(t)[slot] = (int32_t)t->nentries;
  STEP();
  t->nentries++;
  d->st->used++;
  return 0;
}

/* Sets the entry at ix to hold v (taken), its old value into *old. */
static inline void dict_replace(conc_ShDict *d, Table *t, int64_t ix, Cell *v,
                         Cell *old) {
  Cell *slot = &entries_of(t)[ix].val;
  *old = *slot;
  journal_save(&d->st->j, d->h.shared, d->h.heap, d->st->table, slot,
               sizeof *slot);
  *slot = *v;
  *v = cell_empty;
  journal_done(&d->st->j, d->h.shared);
}

/* After a takeover from a dead holder: undo its change in place, drop what
** is not whole, and rebuild the index and the count (a half-made add is
** then either there, whole, or not). */
__attribute__((noinline)) static void dict_repair(conc_ShDict *d) {
  DictState *st = d->st;
  Table *t;
  atomic_store_explicit(&st->mu.recovered, 0, memory_order_relaxed);
  journal_undo_bytes(d->h.heap, &st->j);
  st->j.what = J_NONE;
  t = table_of(d);
  if (t == NULL || !conc__heap_valid(d->h.heap, st->table, sizeof *t) ||
      t->nindex == 0 || (t->nindex & (t->nindex - 1)) != 0 ||
      t->capentries >= t->nindex ||
      !conc__heap_valid(d->h.heap, st->table,
                        table_size((size_t)t->capentries, (size_t)t->nindex))) {
    st->table = 0;
    st->used = 0;
    return;
  }
  if (t->nentries > t->capentries) t->nentries = t->capentries;
  for (size_t k = 0; k < t->nentries; k++) {
    Entry *e = &entries_of(t)[k];
    if (!cell_valid(d->h.heap, &e->key) || !cell_valid(d->h.heap, &e->val) ||
        !live(&e->val))
      e->key = e->val = cell_empty;
  }
  st->used = reindex(t);
}

static inline void dict_lock(conc_ShDict *d) {
  conc__mutex_lock(&d->st->mu);
  if (atomic_load_explicit(&d->st->mu.recovered, memory_order_relaxed))
    dict_repair(d);
}

static inline void dict_unlock(conc_ShDict *d) {
  conc__mutex_unlock(&d->st->mu);
}

size_t conc__shdict_len(conc_ShDict *d) {
  size_t n;
  dict_lock(d);
  n = (size_t)d->st->used;
  dict_unlock(d);
  return n;
}

int conc__shdict_get(conc_ShDict *d, const conc_Val *key, conc_Val *out) {
  uint64_t h = hash_key(key);
  Table *t;
  size_t slot;
  int64_t ix;
  int rc = CONC_EKEY;
  dict_lock(d);
  t = table_of(d);
  ix = dict_find(d, t, key, h, &slot);
  if (ix >= 0) rc = cell_copy(d->h.heap, &entries_of(t)[ix].val, out);
  dict_unlock(d);
  return rc;
}

int conc__shdict_set(conc_ShDict *d, conc_Val *key, conc_Val *v) {
  uint64_t h = hash_key(key);
  Cell kc = cell_empty, vc, old = cell_empty;
  Table *t;
  size_t slot;
  int64_t ix;
  int rc = cell_make(d->h.heap, v, &vc);
  if (rc != 0) return rc;
  dict_lock(d);
  t = table_of(d);
  ix = dict_find(d, t, key, h, &slot);
  if (ix >= 0) {
    dict_replace(d, t, ix, &vc, &old);
  } else {
    /* the key's cell is made under the lock, only when it is new: a
    ** key is small, and inline (no allocation) but for long strings */
    rc = cell_make(d->h.heap, key, &kc);
    if (rc == 0) rc = dict_add(d, t, &kc, &vc, h, slot);
  }
  dict_unlock(d);
  cell_drop(d->h.heap, &kc);  /* each empty unless the call failed */
  cell_drop(d->h.heap, &vc);
  cell_drop(d->h.heap, &old);
  return rc;
}

/* Removes the entry at ix (in its index slot `slot`) into the cells key
** and v. */
static void dict_remove(conc_ShDict *d, Table *t, int64_t ix, size_t slot,
                        Cell *key, Cell *v) {
  DictState *st = d->st;
  Entry *e = &entries_of(t)[ix];
  *key = e->key;
  *v = e->val;
  journal_save(&st->j, d->h.shared, d->h.heap, st->table, e, sizeof *e);
  e->key = e->val = cell_empty;
  index_of(t)[slot] = SLOT_DUMMY;
  if (--st->used == 0) {  /* start over: no dummies to probe past */
    t->nentries = 0;
    memset(index_of(t), 0xff, (size_t)t->nindex * sizeof(int32_t));
  }
  journal_done(&st->j, d->h.shared);
}

int conc__shdict_pop(conc_ShDict *d, const conc_Val *key, conc_Val *out) {
  uint64_t h = hash_key(key);
  Cell oldkey = cell_empty, v;
  Table *t;
  size_t slot;
  int64_t ix;
  dict_lock(d);
  t = table_of(d);
  ix = dict_find(d, t, key, h, &slot);
  if (ix >= 0) dict_remove(d, t, ix, slot, &oldkey, &v);
  dict_unlock(d);
  cell_drop(d->h.heap, &oldkey);
  return ix >= 0 ? cell_take(d->h.heap, &v, out) : CONC_EKEY;
}

int conc__shdict_setdefault(conc_ShDict *d, conc_Val *key, conc_Val *v,
                            conc_Val *out) {
  uint64_t h = hash_key(key);
  Cell kc = cell_empty, vc = cell_empty;
  Table *t;
  size_t slot;
  int64_t ix;
  int rc;
  dict_lock(d);
  t = table_of(d);
  ix = dict_find(d, t, key, h, &slot);
  if (ix >= 0) {
    rc = cell_copy(d->h.heap, &entries_of(t)[ix].val, out);
  } else {
    rc = conc__val_copy(out, v);
    if (rc == 0) rc = cell_make(d->h.heap, key, &kc);
    if (rc == 0) rc = cell_make(d->h.heap, v, &vc);
    if (rc == 0) rc = dict_add(d, t, &kc, &vc, h, slot);
    if (rc != 0) conc__val_free(out);
  }
  dict_unlock(d);
  cell_drop(d->h.heap, &kc);
  cell_drop(d->h.heap, &vc);
  conc__val_free(key);  /* what is left of them: taken either way */
  conc__val_free(v);
  return rc;
}

/* The values become cells before the lock; a key's only when it is new,
** under the lock, as in set (a long key's allocation may fail there: then
** the keys before it are set and the rest are not). */
int conc__shdict_update(conc_ShDict *d, conc_Val *kv, size_t n) {
  Cell *c = malloc((n ? n : 1) * sizeof *c);
  int rc;
  if (c == NULL) return CONC_ENOMEM;
  rc = cells_make(d->h.heap, kv + 1, 2, c, n);
  if (rc == 0) {
    Table *t;
    dict_lock(d);
    t = table_of(d);
    if (t == NULL || n > t->capentries - t->nentries)
      rc = dict_resize(d, (size_t)d->st->used + n);
    t = table_of(d);
    for (size_t i = 0; rc == 0 && i < n; i++) {
      conc_Val *key = &kv[2 * i];
      uint64_t h = hash_key(key);
      size_t slot;
      int64_t ix = dict_find(d, t, key, h, &slot);
      if (ix >= 0) {
        Cell old;
        dict_replace(d, t, ix, &c[i], &old);
        c[i] = old;  /* dropped below, unlocked */
      } else {
        Cell kc;
        rc = cell_make(d->h.heap, key, &kc);
        if (rc == 0) dict_add(d, t, &kc, &c[i], h, slot);  /* room was made */
      }
    }
    dict_unlock(d);
    cells_drop(d->h.heap, c, n);
  }
  free(c);
  return rc;
}

void conc__shdict_clear(conc_ShDict *d) {
  conc_Off table;
  dict_lock(d);
  table = d->st->table;
  d->st->table = 0;
  d->st->used = 0;
  dict_unlock(d);
  free_table(d->h.heap, table);
}

int conc__shdict_snapshot(conc_ShDict *d, int which, conc_Val **out,
                          size_t *n) {
  int per = (which & CONC_SH_KEYS ? 1 : 0) + (which & CONC_SH_VALUES ? 1 : 0);
  size_t j = 0;
  conc_Val *v;
  Table *t;
  dict_lock(d);
  t = table_of(d);
  v = vals_new((size_t)d->st->used * (size_t)per);
  for (size_t i = 0; v != NULL && t != NULL && i < t->nentries; i++) {
    const Entry *e = &entries_of(t)[i];
    int failed = 0;
    if (!live_entry(e)) continue;
    if (which & CONC_SH_KEYS) failed = cell_copy(d->h.heap, &e->key, &v[j++]) != 0;
    if (!failed && (which & CONC_SH_VALUES))
      failed = cell_copy(d->h.heap, &e->val, &v[j++]) != 0;
    if (failed) {
      conc__vals_free(v, j - 1);
      v = NULL;
    }
  }
  dict_unlock(d);
  if (v == NULL) return CONC_ENOMEM;
  *out = v;
  *n = j;
  return 0;
}

/* ======================================================================
** For tests
** ====================================================================== */

void conc__sh_hold(void *container) {
  conc_ShHead *c = container;
  if (c->hdr.type == &conc__shlist_type) list_lock((conc_ShList *)c);
  else dict_lock((conc_ShDict *)c);
}
