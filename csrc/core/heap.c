/*
** heap.c -- the heaps the shared containers keep their state in (core.h):
** malloc's for threads, and for a Manager an arena in one MAP_SHARED
** reservation as large as the machine's memory (conc__shm_reserve: backed
** only where written), which the processes forked after it share, and
** those spawned with it map from its descriptor (heap_export; the arena
** holds offsets only, so another address is fine).
**
** The arena: its header in the first page, blocks after it. A block is a
** 16-byte header (a magic word saying live or free, its size class, the
** next free block of its class) and its bytes. Sizes come in classes
** 32, 48, 64, 96, 128, ... (a power of two and the step half way to the
** next), so no block wastes more than a third; a freed block goes on its
** class's free list, and an allocation takes from that list or, when it
** is empty, from the top of the arena. Blocks of LARGE bytes and more
** start on a page. Freed, they keep their pages while the free ones kept
** so come to at most RETAIN bytes (a dict rebuilt again and again reuses
** them with no page fault); past that their pages after the first go back
** to the kernel (conc__shm_discard): a dict that once held 100 MB does not
** keep it. A large block handed out without its pages gets them all in one
** call (conc__shm_populate), not a fault a page. Nothing is coalesced: a
** program that frees many small blocks and then wants large ones grows the
** arena (virtual space is not short; freed small blocks stay backed).
**
** One robust shared mutex guards the header. A process killed holding it
** leaves at most a block lost: every change is ordered so that any prefix
** of it is a consistent heap (push: the block's link, then the list head;
** pop: the head, then the block's magic; the top moves before the block
** it hands out is written). Lock order: a container's mutex, then this.
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define HEAP_MAGIC 0x636f6e63486561ull  /* "concHea" */
#define LIVE 0x4c495645u
#define FREE 0x46524545u   /* free, its pages backed */
#define BARE 0x42415245u   /* free, a large one whose pages went back */
#define NCLASS 80
#define LARGE ((size_t)64 << 10)
#define RETAIN ((uint64_t)16 << 20)

typedef struct Block {
  uint32_t magic;      /* LIVE or FREE */
  uint32_t cls;
  conc_Off next;       /* FREE: the next free block of the class */
} Block;

struct conc_HeapHead {
  uint64_t magic;
  conc_Mutex mu;
  atomic_uint down;
  uint64_t size;       /* the reservation */
  uint64_t top;        /* the first byte never handed out */
  uint64_t retained;   /* bytes of the large FREE blocks */
  conc_Off free[NCLASS];
};

/* ======================================================================
** Size classes
** ====================================================================== */

static uint64_t class_size(unsigned c) {
  return (uint64_t)(c & 1 ? 3 : 2) << (c / 2 + 4);
}

/* The smallest class holding n bytes, block header included. */
static unsigned class_of(uint64_t n) {
  unsigned p;
  if (n <= 32) return 0;
  p = 64u - (unsigned)__builtin_clzll(n - 1);  /* 2^(p-1) < n <= 2^p */
  return ((uint64_t)3 << (p - 2)) >= n ? 2 * (p - 6) + 1 : 2 * (p - 5);
}

/* ======================================================================
** The private heap: malloc
** ====================================================================== */

static const atomic_uint never_down;

conc_Heap conc__heap_private = {.down = &never_down};

/* ======================================================================
** Shared heaps
** ====================================================================== */

static void heap_destroy(conc_Obj *o) {
  conc_Heap *h = (conc_Heap *)o;
  conc__shm_unmap(h->head, h->size);
  free(h);
}

/* A spawned process is given the reservation's descriptor and the maker's
** pid (only the maker shuts the Manager down, as in a forked child). */
static int heap_export(conc_Obj *o, conc_Export *x) {
  conc_Heap *h = (conc_Heap *)o;
  x->map[0] = h->head;
  x->num[0] = h->pid;
  return CONC_OK;
}

static conc_Heap *heap_wrap(conc_Heap *h, conc_HeapHead *head, size_t size,
                            int pid);

/* This process's heap over its own mapping of the arena, which must be a
** heap's header and as large as the header says. */
static conc_Obj *heap_attach(const conc_Export *x) {
  conc_HeapHead *head = x->map[0];
  conc_Heap *h;
  if (head == NULL || x->size[0] < conc__shm_page() ||
      head->magic != HEAP_MAGIC || head->size != x->size[0] ||
      (h = malloc(sizeof *h)) == NULL)
    return NULL;
  return &heap_wrap(h, head, x->size[0], (int)x->num[0])->hdr;
}

conc_ObjType conc__heap_type = {.name = "conc.Manager",
                                .destroy = heap_destroy,
                                .export = heap_export,
                                .attach = heap_attach};

static conc_Heap *heap_wrap(conc_Heap *h, conc_HeapHead *head, size_t size,
                            int pid) {
  conc__obj_init(&h->hdr, &conc__heap_type);
  h->base = (uintptr_t)head;
  h->head = head;
  h->down = &head->down;
  h->size = size;
  h->pid = pid;
  return h;
}

conc_Heap *conc__heap_new(void) {
  size_t page = conc__shm_page();
  size_t size = (conc__shm_physical() + page - 1) & ~(page - 1);
  conc_Heap *h = malloc(sizeof *h);
  conc_HeapHead *head;
  if (h == NULL) return NULL;
  if (size < 16 * page) size = 16 * page;
  head = conc__shm_reserve(size);
  if (head == NULL) {
    free(h);
    return NULL;
  }
  head->magic = HEAP_MAGIC;
  conc__mutex_init(&head->mu, CONC_SHARED);
  atomic_init(&head->down, 0);
  head->size = size;
  head->top = page;
  head->retained = 0;
  memset(head->free, 0, sizeof head->free);
  return heap_wrap(h, head, size, conc__proc_self());
}

void conc__heap_hold(conc_Heap *h) {
  if (conc__heap_shared(h)) conc__obj_incref(&h->hdr);
}

void conc__heap_drop(conc_Heap *h) {
  if (conc__heap_shared(h)) conc__obj_decref(&h->hdr);
}

int conc__heap_shutdown(conc_Heap *h) {
  if (!conc__heap_shared(h) || h->pid != conc__proc_self()) return 0;
  atomic_store(&h->head->down, 1);
  return 1;
}

static Block *block_of(const conc_Heap *h, conc_Off off) {
  return (Block *)conc__heap_at(h, off - sizeof(Block));
}

/* A process that died holding the mutex left a consistent heap (see the
** top of the file): nothing to repair. */
static void heap_lock(conc_HeapHead *head) {
  conc__mutex_lock(&head->mu);
  if (atomic_load_explicit(&head->mu.recovered, memory_order_relaxed))
    atomic_store_explicit(&head->mu.recovered, 0, memory_order_relaxed);
}

/* Compiler barrier: a process killed between two steps has made the first
** (interrupts are precise; the next holder's takeover orders the rest). */
#define STEP() atomic_signal_fence(memory_order_seq_cst)

conc_Off conc__heap_alloc(conc_Heap *h, size_t size) {
  conc_HeapHead *head = h->head;
  uint64_t need, at;
  unsigned c;
  int bare = 1;
  Block *b;
  if (head == NULL) return (conc_Off)(uintptr_t)malloc(size ? size : 1);
  if (size > head->size) return 0;
  c = class_of(size + sizeof(Block));
  if (c >= NCLASS) return 0;
  need = class_size(c);
  heap_lock(head);
  at = head->free[c];
  if (at != 0) {
    b = block_of(h, at);
    head->free[c] = b->next;
    bare = b->magic != FREE;
    if (!bare && need >= LARGE) head->retained -= need;
  } else {
    uint64_t top = head->top, page = conc__shm_page();
    if (need >= LARGE) top = (top + page - 1) & ~(page - 1);
    if (top > head->size || need > head->size - top) {
      conc__mutex_unlock(&head->mu);
      return 0;
    }
    head->top = top + need;
    at = top + sizeof(Block);
  }
  STEP();
  b = block_of(h, at);
  b->magic = LIVE;
  b->cls = c;
  conc__mutex_unlock(&head->mu);
  if (bare && need >= LARGE) conc__shm_populate(b, (size_t)need);
  return at;
}

void conc__heap_free(conc_Heap *h, conc_Off off) {
  conc_HeapHead *head = h->head;
  uint32_t magic = FREE;
  uint64_t size;
  Block *b;
  if (head == NULL) {
    free((void *)(uintptr_t)off);
    return;
  }
  if (off == 0) return;
  b = block_of(h, off);
  if (b->magic != LIVE || b->cls >= NCLASS) return;  /* not a live block */
  size = class_size(b->cls);
  heap_lock(head);
  if (size >= LARGE) {
    if (head->retained + size <= RETAIN) {
      head->retained += size;
    } else {  /* its pages past the first go back, before it is free */
      size_t page = conc__shm_page();
      conc__mutex_unlock(&head->mu);
      conc__shm_discard((char *)b + page, (size_t)size - page);
      magic = BARE;
      heap_lock(head);
    }
  }
  b->next = head->free[b->cls];
  b->magic = magic;
  STEP();
  head->free[b->cls] = off;
  conc__mutex_unlock(&head->mu);
}

int conc__heap_valid(const conc_Heap *h, conc_Off off, size_t size) {
  const conc_HeapHead *head = h->head;
  uint64_t top;
  const Block *b;
  if (head == NULL) return 1;
  top = head->top;
  if (off % 16 != 0 || off < conc__shm_page() + sizeof(Block) ||
      off > top || top > head->size)
    return 0;
  b = block_of(h, off);
  return b->magic == LIVE && b->cls < NCLASS &&
         class_size(b->cls) <= top - (off - sizeof(Block)) &&
         size <= class_size(b->cls) - sizeof(Block);
}
