/*
** ring.c -- a byte ring of records, as plain data (ring.h says how it is
** laid out, who locks it, and what it checks).
**
** Every entry point starts with snap, which copies the header into locals
** and checks them, so that what follows may trust cap (a power of two, hence
** the mask), the alignment of head and tail, and used = tail - head <= cap.
** From there each index is a counter masked by cap - 1, and each copy is at
** most `used` or `free` bytes long, split where the data area ends: nothing
** can reach past it, even if the header changes under us meanwhile.
*/
#include <stdint.h>
#include <string.h>

#include "errors.h"
#include "ring.h"

/* "concRing" in ASCII: cap_check = cap ^ MAGIC. A header of zeros, or of
** any one repeated byte, fails the check. */
#define MAGIC UINT64_C(0x636f6e6352696e67)

_Static_assert(sizeof(conc_Ring) % 8 == 0,
               "the data area must start 8-aligned, as records do");

/* ---- the header ---------------------------------------------------------- */

/* The header as one call saw it. Each field is read once, through a
** volatile pointer, so that a buggy process writing the header while we run
** (ignoring the mutex) cannot change cap between its check and its use. */
typedef struct Snap {
  uint64_t cap, head, tail, count;
} Snap;

static int is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Reads and checks what every call trusts afterwards. A ring with used bytes
** holds at least one record, and no more records than headers fit in them. */
static int snap(const conc_Ring *r, Snap *s) {
  const volatile conc_Ring *v = r;
  uint64_t check = v->cap_check, used;
  s->cap = v->cap;
  s->head = v->head;
  s->tail = v->tail;
  s->count = v->count;
  used = s->tail - s->head;
  if (check != (s->cap ^ MAGIC)) return CONC_EVALUE;
  if (!is_pow2(s->cap) || s->cap < CONC_RING_MINCAP ||
      s->cap > CONC_RING_MAXCAP)
    return CONC_EVALUE;
  if (((s->head | s->tail) & 7) != 0 || used > s->cap) return CONC_EVALUE;
  if ((used == 0) != (s->count == 0) || s->count > used / CONC_RING_HDR)
    return CONC_EVALUE;
  return CONC_OK;
}

/* Rounds up to a power of two, at least the minimum; 0 past the maximum. */
static size_t round_cap(size_t capacity) {
  size_t cap = CONC_RING_MINCAP;
  if (capacity > CONC_RING_MAXCAP) return 0;
  while (cap < capacity) cap <<= 1;
  return cap;
}

size_t conc__ring_size(size_t capacity) {
  size_t cap = round_cap(capacity);
  return cap ? sizeof(conc_Ring) + cap : 0;
}

size_t conc__ring_recsize(size_t len) {
  /* the second test matters only where size_t is 32 bits */
  if ((uint64_t)len > CONC_RING_MAXREC || len > SIZE_MAX - 15) return SIZE_MAX;
  return CONC_RING_HDR + ((len + 7) & ~(size_t)7);
}

int conc__ring_init(conc_Ring *r, size_t capacity) {
  size_t cap = round_cap(capacity);
  if (cap == 0) return CONC_E2BIG;
  if (((uintptr_t)r & 7) != 0) return CONC_EVALUE;
  r->cap = cap;
  r->cap_check = cap ^ MAGIC;
  r->head = r->tail = r->count = 0;
  return CONC_OK;
}

int conc__ring_check(const conc_Ring *r) {
  Snap s;
  return snap(r, &s);
}

/* ---- copies in and out, split where the data area ends ------------------ */

/* Copies n bytes (n <= cap) into the ring from position pos (a counter). */
static void copy_in(conc_Ring *r, uint64_t cap, uint64_t pos, const void *src,
                    size_t n) {
  size_t at = (size_t)(pos & (cap - 1)), first = (size_t)cap - at;
  if (n == 0) return;  /* src may be NULL then, which memcpy may not see */
  if (first > n) first = n;
  memcpy(r->data + at, src, first);
  memcpy(r->data, (const unsigned char *)src + first, n - first);
}

static void copy_out(const conc_Ring *r, uint64_t cap, uint64_t pos, void *dst,
                     size_t n) {
  size_t at = (size_t)(pos & (cap - 1)), first = (size_t)cap - at;
  if (n == 0) return;
  if (first > n) first = n;
  memcpy(dst, r->data + at, first);
  memcpy((unsigned char *)dst + first, r->data, n - first);
}

/* Snaps the header and reads the length of the record at head, checked
** against the bytes held: CONC_OK, CONC_EEMPTY or CONC_EVALUE. The length
** header never straddles the end (head is 8-aligned, cap a multiple of 8).
** A lone record must fill the used bytes exactly, and one that does must be
** lone. */
static int next_record(const conc_Ring *r, Snap *s, size_t *len) {
  uint32_t hdr[2];
  uint64_t used;
  int rc = snap(r, s);
  if (rc != CONC_OK) return rc;
  used = s->tail - s->head;
  if (used == 0) return CONC_EEMPTY;
  memcpy(hdr, r->data + (s->head & (s->cap - 1)), sizeof hdr);
  if (hdr[1] != (uint32_t)~hdr[0]) return CONC_EVALUE;
  if (conc__ring_recsize(hdr[0]) > used) return CONC_EVALUE;
  if ((s->count == 1) != (conc__ring_recsize(hdr[0]) == used))
    return CONC_EVALUE;
  *len = hdr[0];
  return CONC_OK;
}

/* ---- put and get --------------------------------------------------------- */

int conc__ring_putv(conc_Ring *r, const conc_RingPart *parts, size_t n) {
  size_t len = 0, need, i;
  uint32_t hdr[2];
  uint64_t pos;
  Snap s;
  int rc = snap(r, &s);
  if (rc != CONC_OK) return rc;
  for (i = 0; i < n; i++) {
    if (parts[i].len > SIZE_MAX - len) return CONC_E2BIG;
    len += parts[i].len;
  }
  need = conc__ring_recsize(len);
  if (need > s.cap) return CONC_E2BIG;
  if (need > s.cap - (s.tail - s.head)) return CONC_EFULL;
  hdr[0] = (uint32_t)len;
  hdr[1] = ~hdr[0];
  memcpy(r->data + (s.tail & (s.cap - 1)), hdr, sizeof hdr);
  pos = s.tail + CONC_RING_HDR;
  for (i = 0; i < n; i++) {
    copy_in(r, s.cap, pos, parts[i].data, parts[i].len);
    pos += parts[i].len;
  }
  /* The padding is left as it was: no reader looks at it. */
  r->tail = s.tail + need;
  r->count = s.count + 1;
  return CONC_OK;
}

int conc__ring_put(conc_Ring *r, const void *data, size_t len) {
  conc_RingPart part;
  part.data = data;
  part.len = len;
  return conc__ring_putv(r, &part, 1);
}

int conc__ring_peek(const conc_Ring *r, size_t *len) {
  Snap s;
  return next_record(r, &s, len);
}

int conc__ring_get(conc_Ring *r, void *buf, size_t bufcap, size_t *len) {
  size_t n;
  Snap s;
  int rc = next_record(r, &s, &n);
  if (rc != CONC_OK) return rc;
  *len = n;
  if (n > bufcap) return CONC_E2BIG;
  copy_out(r, s.cap, s.head + CONC_RING_HDR, buf, n);
  r->head = s.head + conc__ring_recsize(n);
  r->count = s.count - 1;
  return CONC_OK;
}

/* head and tail are renumbered from the old index of head: positions below
** the new capacity index themselves, so the part past the old end is where
** the wrapped part is copied to. The old bytes stay until the header says
** otherwise: until tail is stored, the old cap still reads them right. */
int conc__ring_grow(conc_Ring *r, size_t capacity) {
  size_t cap = round_cap(capacity);
  uint64_t at, used;
  Snap s;
  int rc = snap(r, &s);
  if (rc != CONC_OK) return rc;
  if (cap == 0) return CONC_E2BIG;
  if (cap < s.cap) return CONC_EVALUE;
  if (cap == s.cap) return CONC_OK;
  used = s.tail - s.head;
  at = s.head & (s.cap - 1);
  if (at + used > s.cap)
    memcpy(r->data + s.cap, r->data, (size_t)(at + used - s.cap));
  r->head = at;
  r->tail = at + used;
  r->cap_check = cap ^ MAGIC;
  r->cap = cap;
  return CONC_OK;
}

/* ---- counts -------------------------------------------------------------- */

size_t conc__ring_capacity(const conc_Ring *r) {
  Snap s;
  return snap(r, &s) == CONC_OK ? (size_t)s.cap : 0;
}

size_t conc__ring_count(const conc_Ring *r) {
  Snap s;
  return snap(r, &s) == CONC_OK ? (size_t)s.count : 0;
}

size_t conc__ring_used(const conc_Ring *r) {
  Snap s;
  return snap(r, &s) == CONC_OK ? (size_t)(s.tail - s.head) : 0;
}

size_t conc__ring_free(const conc_Ring *r) {
  Snap s;
  return snap(r, &s) == CONC_OK ? (size_t)(s.cap - (s.tail - s.head)) : 0;
}

size_t conc__ring_maxrecord(const conc_Ring *r) {
  size_t room;
  Snap s;
  if (snap(r, &s) != CONC_OK) return 0;
  room = (size_t)s.cap - CONC_RING_HDR;
  return room < CONC_RING_MAXREC ? room : CONC_RING_MAXREC;
}

/* ---- repair -------------------------------------------------------------- */

/* A writer that died half-way through a put or a get (the process killed
** between its stores) can leave tail or head moved and count not, or the
** other way round. Walks the records from head and keeps those whose
** length headers check out and end by tail: count becomes their number and
** tail their end (a record cut short is dropped). A header past saving
** (cap and its check word) empties the ring. Returns the records kept. */
size_t conc__ring_repair(conc_Ring *r) {
  uint64_t cap = r->cap, pos, tail = r->tail, n = 0;
  if (r->cap_check != (cap ^ MAGIC) || !is_pow2(cap) ||
      cap < CONC_RING_MINCAP || cap > CONC_RING_MAXCAP ||
      ((r->head | tail) & 7) != 0 || tail - r->head > cap) {
    conc__ring_init(r, (size_t)(is_pow2(cap) && cap >= CONC_RING_MINCAP &&
                                        cap <= CONC_RING_MAXCAP
                                    ? cap : CONC_RING_MINCAP));
    return 0;
  }
  for (pos = r->head; pos < tail;) {
    uint32_t hdr[2];
    size_t need;
    memcpy(hdr, r->data + (pos & (cap - 1)), sizeof hdr);
    need = conc__ring_recsize(hdr[0]);
    if (hdr[1] != (uint32_t)~hdr[0] || need > tail - pos) break;
    pos += need;
    n++;
  }
  r->tail = pos;
  r->count = n;
  return (size_t)n;
}
