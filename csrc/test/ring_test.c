/*
** ring_test.c -- tests of the byte ring (core/ring.c): order, wrap-around
** against a model, full and too-big records, relocation and two mappings,
** corruption, and two processes.
*/
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core_test.h"
#include "ring.h"

/* ======================================================================
** A model of a ring: the records it should hold, each named by an id from
** which its bytes are made. Each operation runs on the ring and on the
** model, and their answers must agree.
** ====================================================================== */

#define MODEL_SLOTS 1024
#define SCRATCH 8192          /* the largest record the model tests, + room */
#define SCRATCH_FILL 0xee

typedef struct Model {
  size_t cap;
  size_t first, n;              /* the records, in ids/lens from `first` */
  uint32_t ids[MODEL_SLOTS];
  size_t lens[MODEL_SLOTS];
  size_t used;
  uint32_t next_id;
  unsigned long puts, gets, splits, fulls;
} Model;

static unsigned char scratch[SCRATCH + 64];

static unsigned char byte_of(uint32_t id, size_t j) {
  return (unsigned char)(id * 131u + j * 7u + (j >> 8) + 1);
}

static void fill(unsigned char *p, uint32_t id, size_t len) {
  for (size_t j = 0; j < len; j++) p[j] = byte_of(id, j);
}

static void model_init(Model *m, size_t cap) {
  memset(m, 0, sizeof *m);
  m->cap = cap;
  check(cap / CONC_RING_HDR <= MODEL_SLOTS && cap <= SCRATCH,
        "model too small for capacity %zu", cap);
}

/* Checks the counts against the model. */
static void model_check(const Model *m, const conc_Ring *r) {
  check_rc(conc__ring_check(r), CONC_OK);
  check_size(conc__ring_capacity(r), m->cap);
  check_size(conc__ring_count(r), m->n);
  check_size(conc__ring_used(r), m->used);
  check_size(conc__ring_free(r), m->cap - m->used);
}

static int model_put(Model *m, conc_Ring *r, size_t len) {
  size_t need = conc__ring_recsize(len);
  int want = need > m->cap ? CONC_E2BIG
           : need > m->cap - m->used ? CONC_EFULL : CONC_OK;
  size_t at = (size_t)((r->tail + CONC_RING_HDR) & (r->cap - 1));
  char w[64], g[64];
  int rc;
  check(len <= SCRATCH, "model put of %zu bytes", len);
  fill(scratch, m->next_id, len);
  rc = conc__ring_put(r, scratch, len);
  check(rc == want, "put #%lu of %zu bytes (used %zu of %zu): expected %s, "
        "got %s", m->puts, len, m->used, m->cap, code_name(want, w, sizeof w),
        code_name(rc, g, sizeof g));
  if (rc == CONC_OK) {
    size_t slot = (m->first + m->n) % MODEL_SLOTS;
    if (len > 0 && at + len > m->cap) m->splits++;
    m->ids[slot] = m->next_id++;
    m->lens[slot] = len;
    m->n++;
    m->used += need;
  } else if (rc == CONC_EFULL) {
    m->fulls++;
  }
  m->puts++;
  return rc;
}

/* A get into a buffer of bufcap bytes (at most SCRATCH): checks the record,
** and that nothing past what it returned was written. */
static int model_get(Model *m, conc_Ring *r, size_t bufcap) {
  size_t len = 12345, plen = 54321, want_len = m->n ? m->lens[m->first] : 0;
  size_t end;
  int want = m->n == 0 ? CONC_EEMPTY
           : want_len > bufcap ? CONC_E2BIG : CONC_OK;
  char w[64], g[64];
  int rc;
  check(bufcap <= SCRATCH, "model get into %zu bytes", bufcap);
  rc = conc__ring_peek(r, &plen);
  check_rc(rc, m->n ? CONC_OK : CONC_EEMPTY);
  check_size(plen, m->n ? want_len : 54321);
  /* an overrun shows within 64 bytes past the buffer; marking all of
  ** scratch every get made this test take minutes under TSan */
  end = bufcap + 64;
  memset(scratch, SCRATCH_FILL, end);
  rc = conc__ring_get(r, scratch, bufcap, &len);
  check(rc == want, "get #%lu into %zu bytes (next is %zu): expected %s, got "
        "%s", m->gets, bufcap, want_len, code_name(want, w, sizeof w),
        code_name(rc, g, sizeof g));
  if (rc == CONC_EEMPTY) check_size(len, 12345);
  else check_size(len, want_len);
  for (size_t j = rc == CONC_OK ? len : 0; j < end; j++)
    check(scratch[j] == SCRATCH_FILL, "get wrote byte %zu past %s", j,
          rc == CONC_OK ? "the record" : "nothing (it failed)");
  if (rc == CONC_OK) {
    uint32_t id = m->ids[m->first];
    for (size_t j = 0; j < len; j++)
      check(scratch[j] == byte_of(id, j),
            "record %u byte %zu of %zu: expected %u, got %u", id, j, len,
            byte_of(id, j), scratch[j]);
    m->first = (m->first + 1) % MODEL_SLOTS;
    m->n--;
    m->used -= conc__ring_recsize(len);
  }
  m->gets++;
  return rc;
}

/* A length to try: small, up to a quarter, near the largest, or any. */
static size_t model_len(const Model *m) {
  switch (rnd_below(4)) {
    case 0: return rnd_below(17);
    case 1: return rnd_below(m->cap / 4 + 1);
    case 2: {
      size_t max = m->cap - CONC_RING_HDR, back = rnd_below(9);
      return back > max ? 0 : max - back;
    }
    default: return rnd_below(m->cap + 9);
  }
}

/* One random step: phases of mostly puts then mostly gets, so that the
** ring goes full and empty, at every offset. */
static void model_step(Model *m, conc_Ring *r, unsigned long i) {
  int put_bias = (i / 64) % 2 ? 75 : 25;
  if ((int)rnd_below(100) < put_bias) {
    model_put(m, r, model_len(m));
  } else {
    size_t next = m->n ? m->lens[m->first] : 0;
    /* now and then a buffer one byte short, or just right */
    size_t bufcap = rnd_below(8) == 0 && next > 0 ? next - 1
                  : rnd_below(2) ? next : SCRATCH;
    model_get(m, r, bufcap);
  }
  model_check(m, r);
}

static void model_drain(Model *m, conc_Ring *r) {
  while (m->n) model_get(m, r, SCRATCH);
  model_get(m, r, SCRATCH);  /* and EEMPTY */
  model_check(m, r);
}

/* ======================================================================
** Ring tests
** ====================================================================== */

static conc_Ring *ring_new(size_t capacity) {
  conc_Ring *r = xmalloc(conc__ring_size(capacity));
  check_rc(conc__ring_init(r, capacity), CONC_OK);
  return r;
}

void test_ring_sizes(void) {
  _Alignas(8) unsigned char block[64 + 8];
  conc_Ring *r;
  check_size(conc__ring_size(0), sizeof(conc_Ring) + 8);
  check_size(conc__ring_size(1), sizeof(conc_Ring) + 8);
  check_size(conc__ring_size(8), sizeof(conc_Ring) + 8);
  check_size(conc__ring_size(9), sizeof(conc_Ring) + 16);
  check_size(conc__ring_size(1000), sizeof(conc_Ring) + 1024);
  check_size(conc__ring_size(4096), sizeof(conc_Ring) + 4096);
  check_size(conc__ring_size(CONC_RING_MAXCAP),
             sizeof(conc_Ring) + CONC_RING_MAXCAP);
  check_size(conc__ring_size(CONC_RING_MAXCAP + 1), 0);
  check_size(conc__ring_size(SIZE_MAX), 0);
  check_size(sizeof(conc_Ring) % 8, 0);
  check_size(conc__ring_recsize(0), 8);
  check_size(conc__ring_recsize(1), 16);
  check_size(conc__ring_recsize(8), 16);
  check_size(conc__ring_recsize(9), 24);
  check_size(conc__ring_recsize(CONC_RING_MAXREC), 8 + ((size_t)1 << 32));
  check_size(conc__ring_recsize(CONC_RING_MAXREC + (size_t)1), SIZE_MAX);
  check_size(conc__ring_recsize(SIZE_MAX), SIZE_MAX);

  r = (conc_Ring *)(void *)(block + 4);  /* not 8-aligned: refused */
  check_rc(conc__ring_init(r, 8), CONC_EVALUE);
  r = ring_new(8);
  check_rc(conc__ring_init(r, SIZE_MAX), CONC_E2BIG);
  check_rc(conc__ring_check(r), CONC_OK);  /* E2BIG left it as it was */
  check_size(conc__ring_maxrecord(r), 0);
  check_rc(conc__ring_init(r, 5), CONC_OK);
  check_size(conc__ring_capacity(r), 8);
  free(r);
  r = ring_new(100);
  check_size(conc__ring_capacity(r), 128);
  check_size(conc__ring_maxrecord(r), 120);
  check_rc(conc__ring_put(r, scratch, 120), CONC_OK);   /* fills it exactly */
  check_size(conc__ring_free(r), 0);
  free(r);
}

/* Records come out in the order they went in, each as it was. */
void test_ring_basic(void) {
  conc_Ring *r = ring_new(128);
  const char *words[] = {"a", "bc", "def", "", "ghijklmn", "opqrstuvw"};
  char buf[16];
  size_t len = 99, used = 0;
  check_size(conc__ring_capacity(r), 128);
  check_size(conc__ring_count(r), 0);
  check_size(conc__ring_free(r), 128);
  check_rc(conc__ring_peek(r, &len), CONC_EEMPTY);
  check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_EEMPTY);
  check_size(len, 99);
  for (int i = 0; i < 6; i++) {
    check_rc(conc__ring_put(r, words[i], strlen(words[i])), CONC_OK);
    used += conc__ring_recsize(strlen(words[i]));
  }
  check_size(used, 16 + 16 + 16 + 8 + 16 + 24);  /* 8 + padded bytes */
  check_size(conc__ring_count(r), 6);
  check_size(conc__ring_used(r), used);
  check_size(conc__ring_free(r), 128 - used);
  for (int i = 0; i < 6; i++) {
    check_rc(conc__ring_peek(r, &len), CONC_OK);
    check_size(len, strlen(words[i]));
    memset(buf, 0, sizeof buf);
    check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_OK);
    check(len == strlen(words[i]) && memcmp(buf, words[i], len) == 0,
          "record %d: expected \"%s\", got \"%.*s\"", i, words[i], (int)len,
          buf);
    check_size(conc__ring_count(r), (size_t)(5 - i));
  }
  check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_EEMPTY);
  check_size(conc__ring_used(r), 0);
  free(r);
}

void test_ring_wrap_model(void) {
  static const size_t caps[] = {8, 16, 32, 64, 128, 1000, 4096};
  static Model m;
  unsigned long splits = 0, fulls = 0, wraps_seen = 0;
  for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
    conc_Ring *r = ring_new(caps[c]);
    model_init(&m, conc__ring_capacity(r));
    for (unsigned long i = 0; i < 30000; i++) {
      uint64_t before = r->head & (r->cap - 1);
      model_step(&m, r, i);
      if ((r->head & (r->cap - 1)) < before) wraps_seen++;
    }
    model_drain(&m, r);
    splits += m.splits;
    fulls += m.fulls;
    if (getenv("CORE_TEST_VERBOSE"))
      printf("cap %zu: %lu puts, %lu split, %lu full\n", m.cap, m.puts,
             m.splits, m.fulls);
    free(r);
  }
  check(splits > 5000, "only %lu records split across the end", splits);
  check(fulls > 1000, "the ring was full only %lu times", fulls);
  check(wraps_seen > 1000, "head wrapped only %lu times", wraps_seen);
}

/* Growing: a ring in a block of GROW_MAX data bytes starts at each small
** capacity; a put that finds it full or too small grows it (doubling, as
** mpqueue.c does) and puts again, at every offset, wrapped or not; the
** model checks every record's bytes through the moves. */
#define GROW_MAX 4096

static void grow_step(Model *m, conc_Ring *r, unsigned long i,
                      unsigned long *grown, unsigned long *wrapped) {
  if ((i / 64) % 2 && rnd_below(100) < 75) {
    size_t len = rnd_below(rnd_below(4) ? 200 : GROW_MAX / 2);
    size_t need = conc__ring_recsize(len), cap = m->cap;
    int rc = model_put(m, r, len);
    if (rc == CONC_EFULL || rc == CONC_E2BIG) {
      uint64_t at = r->head & (r->cap - 1);
      while (cap - m->used < need && cap < GROW_MAX) cap *= 2;
      if (cap - m->used < need) return;  /* full at the largest */
      if (at + m->used > m->cap) (*wrapped)++;
      check_rc(conc__ring_grow(r, cap), CONC_OK);
      m->cap = cap;
      (*grown)++;
      model_check(m, r);
      check_rc(model_put(m, r, len), CONC_OK);
    }
  } else {
    model_get(m, r, SCRATCH);
  }
  model_check(m, r);
}

void test_ring_grow_model(void) {
  static const size_t caps[] = {8, 16, 64, 256};
  static Model m;
  unsigned long grown = 0, wrapped = 0;
  conc_Ring *r = xmalloc(conc__ring_size(GROW_MAX));
  for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
    for (int round = 0; round < 40; round++) {
      check_rc(conc__ring_init(r, caps[c]), CONC_OK);
      model_init(&m, caps[c]);
      for (unsigned long i = 0; i < 600; i++) grow_step(&m, r, i, &grown, &wrapped);
      model_drain(&m, r);
    }
  }
  /* what it cannot do: shrink, or past the maximum */
  check_rc(conc__ring_init(r, 64), CONC_OK);
  check_rc(conc__ring_grow(r, 32), CONC_EVALUE);
  check_rc(conc__ring_grow(r, 64), CONC_OK);
  check_rc(conc__ring_grow(r, SIZE_MAX), CONC_E2BIG);
  check_size(conc__ring_capacity(r), 64);
  free(r);
  check(grown > 500, "the ring grew only %lu times", grown);
  check(wrapped > 100, "only %lu rings grew while wrapped", wrapped);
}

void test_ring_full(void) {
  conc_Ring *r = ring_new(64);
  unsigned char big[64], buf[64];
  size_t len = 0;
  memset(big, 'x', sizeof big);
  check_rc(conc__ring_put(r, big, 57), CONC_E2BIG);  /* 8 + 64 > 64 */
  check_rc(conc__ring_put(r, big, 64), CONC_E2BIG);
  check_rc(conc__ring_put(r, big, SIZE_MAX), CONC_E2BIG);
  check_size(conc__ring_count(r), 0);
  check_rc(conc__ring_put(r, big, 56), CONC_OK);     /* 8 + 56 = 64 */
  check_size(conc__ring_free(r), 0);
  check_rc(conc__ring_put(r, NULL, 0), CONC_EFULL);
  check_rc(conc__ring_put(r, big, 57), CONC_E2BIG);  /* never, not "full" */
  /* a buffer too small: E2BIG, the size needed, nothing removed */
  memset(buf, 0, sizeof buf);
  check_rc(conc__ring_get(r, buf, 55, &len), CONC_E2BIG);
  check_size(len, 56);
  check(buf[0] == 0, "a failed get wrote into the buffer");
  check_size(conc__ring_count(r), 1);
  check_rc(conc__ring_get(r, NULL, 0, &len), CONC_E2BIG);
  check_rc(conc__ring_get(r, buf, 56, &len), CONC_OK);
  check_size(len, 56);
  check_rc(conc__ring_get(r, buf, 56, &len), CONC_EEMPTY);
  /* fill with records of 16 bytes, then one more: full; one out, one in */
  for (int i = 0; i < 4; i++) check_rc(conc__ring_put(r, big, 8), CONC_OK);
  check_rc(conc__ring_put(r, big, 1), CONC_EFULL);
  check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_OK);
  check_rc(conc__ring_put(r, big, 9), CONC_EFULL);   /* 24 > 16 free */
  check_rc(conc__ring_put(r, big, 8), CONC_OK);
  check_size(conc__ring_count(r), 4);
  free(r);
}

void test_ring_zero_length(void) {
  conc_Ring *r = ring_new(8);  /* room for one empty record and no more */
  size_t len = 7;
  static Model m;
  check_size(conc__ring_maxrecord(r), 0);
  check_rc(conc__ring_put(r, NULL, 0), CONC_OK);
  check_rc(conc__ring_put(r, NULL, 0), CONC_EFULL);
  check_rc(conc__ring_put(r, "x", 1), CONC_E2BIG);
  check_rc(conc__ring_peek(r, &len), CONC_OK);
  check_size(len, 0);
  len = 7;
  check_rc(conc__ring_get(r, NULL, 0, &len), CONC_OK);
  check_size(len, 0);
  check_rc(conc__ring_get(r, NULL, 0, &len), CONC_EEMPTY);
  free(r);
  /* many empty records, with a few others among them */
  r = ring_new(256);
  model_init(&m, 256);
  for (unsigned long i = 0; i < 5000; i++) {
    if (rnd_below(3)) model_put(&m, r, rnd_below(10) ? 0 : rnd_below(20));
    else model_get(&m, r, rnd_below(2) ? 0 : SCRATCH);
    model_check(&m, r);
  }
  model_drain(&m, r);
  free(r);
}

/* putv joins its parts: the record reads back as their concatenation, also
** split across the end, and empty parts (with NULL data) add nothing. */
void test_ring_putv(void) {
  conc_Ring *r = ring_new(64);
  unsigned char buf[64];
  size_t len = 0;
  conc_RingPart parts[4] = {{"head", 4}, {NULL, 0}, {"-body-", 6}, {"!", 1}};
  conc_RingPart toobig[2] = {{scratch, 30}, {scratch, 30}};
  conc_RingPart overflow[2] = {{scratch, SIZE_MAX}, {scratch, 2}};
  int splits = 0;
  for (int round = 0; round < 20; round++) {  /* at many offsets of the end */
    splits += ((r->tail + CONC_RING_HDR) & 63) + 11 > 64;
    check_rc(conc__ring_putv(r, parts, 4), CONC_OK);
    check_rc(conc__ring_put(r, "pad", (size_t)round % 3), CONC_OK);
    memset(buf, 0, sizeof buf);
    check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_OK);
    check(len == 11 && memcmp(buf, "head-body-!", 11) == 0,
          "round %d: expected \"head-body-!\", got \"%.*s\"", round, (int)len,
          buf);
    check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_OK);
    check_size(len, (size_t)round % 3);
  }
  check(splits >= 2, "only %d records split across the end", splits);
  check_rc(conc__ring_putv(r, toobig, 2), CONC_E2BIG);
  check_rc(conc__ring_putv(r, overflow, 2), CONC_E2BIG);
  check_rc(conc__ring_putv(r, NULL, 0), CONC_OK);  /* an empty record */
  check_rc(conc__ring_get(r, buf, 0, &len), CONC_OK);
  check_size(len, 0);
  check_size(conc__ring_count(r), 0);
  free(r);
}

/* The counters run past 2^64 and wrap: full and empty must still differ.
** (The test sets the counters itself: they are plain fields.) */
void test_ring_counter_wrap(void) {
  conc_Ring *r = ring_new(256);
  static Model m;
  int wrapped = 0;
  r->head = r->tail = UINT64_MAX - 255;  /* 2^64 - 256, 8-aligned */
  model_init(&m, 256);
  model_check(&m, r);
  for (unsigned long i = 0; i < 20000; i++) {
    model_step(&m, r, i);
    if (r->tail < 1024) wrapped = 1;
  }
  model_drain(&m, r);
  check(wrapped, "the tail counter never wrapped past 2^64");
  free(r);
}

/* Mid-use, with records split across the end, the whole block moves with
** memcpy (to an address only 8-aligned, then to another block) and the old
** one is scribbled over and freed: the ring goes on where it moved. */
void test_ring_relocate(void) {
  size_t size = conc__ring_size(512);
  unsigned char *pool = xmalloc(size + 16);
  conc_Ring *a = ring_new(512), *b, *c;
  static Model m;
  model_init(&m, 512);
  for (unsigned long i = 0; i < 3000 || m.n < 3; i++) model_step(&m, a, i);
  b = (conc_Ring *)(void *)(pool + 8);
  memcpy(b, a, size);
  memset(a, 0xdd, size);
  free(a);
  model_check(&m, b);
  for (unsigned long i = 0; i < 3000 || m.n < 3; i++) model_step(&m, b, i);
  c = xmalloc(size);
  memcpy(c, b, size);
  memset(pool, 0xdd, size + 16);
  free(pool);
  model_check(&m, c);
  for (unsigned long i = 0; i < 3000; i++) model_step(&m, c, i);
  model_drain(&m, c);
  check(m.splits > 100, "only %lu records split across the end", m.splits);
  free(c);
}

/* The same bytes mapped at two addresses in one process (a memfd, mapped
** twice): what goes in through one view comes out through the other. */
void test_ring_two_maps(void) {
  size_t size = conc__ring_size(1024);
  int fd = memfd_create("conc-ring-test", 0);
  conc_Ring *a, *b;
  static Model m;
  check(fd >= 0, "memfd_create: %s", strerror(errno));
  check(ftruncate(fd, (off_t)size) == 0, "ftruncate: %s", strerror(errno));
  a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  check(a != MAP_FAILED && b != MAP_FAILED, "mmap: %s", strerror(errno));
  check(a != b, "the two views share an address");
  check_rc(conc__ring_init(a, 1024), CONC_OK);
  model_init(&m, 1024);
  model_check(&m, b);
  for (unsigned long i = 0; i < 20000; i++) {
    /* puts through one view, gets through the other, at random */
    model_step(&m, rnd_below(2) ? a : b, i);
    model_check(&m, a);
  }
  model_drain(&m, b);
  check(m.splits > 100, "only %lu records split across the end", m.splits);
  munmap(a, size);
  munmap(b, size);
  close(fd);
}

/* ---- corruption ----------------------------------------------------------
** A corrupt header or length header must give CONC_EVALUE and change
** nothing; no call may read or write outside the block or past a buffer.
** The block sits between guard bytes, which catch stray writes; under ASan
** it is a malloc block of its own, exactly its size, so that ASan's redzones
** touch it and catch stray reads as well (guards inside one block would hide
** those from ASan). */

#if defined(__SANITIZE_ADDRESS__)
#define GUARD 0
#else
#define GUARD 64
#endif
#define GUARD_FILL 0xa5

typedef struct Guarded {
  unsigned char *mem;   /* GUARD bytes, the block, GUARD bytes */
  conc_Ring *r;
  size_t size;
  unsigned char *saved; /* a copy of the block, to see that nothing changed */
} Guarded;

/* The guard's size as a variable: with GUARD 0, loops to it would draw
** "comparison is always false" warnings. */
static size_t guard_bytes(void) { return GUARD; }

static void guarded_new(Guarded *g, size_t capacity) {
  g->size = conc__ring_size(capacity);
  g->mem = xmalloc(g->size + 2 * GUARD);
  g->saved = xmalloc(g->size);
  memset(g->mem, GUARD_FILL, g->size + 2 * GUARD);
  g->r = (conc_Ring *)(void *)(g->mem + GUARD);
  check_rc(conc__ring_init(g->r, capacity), CONC_OK);
}

static void guarded_save(Guarded *g) { memcpy(g->saved, g->r, g->size); }

static void guarded_check(const Guarded *g, int unchanged) {
  for (size_t i = 0; i < guard_bytes(); i++) {
    check(g->mem[i] == GUARD_FILL, "byte %zu before the block written", i);
    check(g->mem[GUARD + g->size + i] == GUARD_FILL,
          "byte %zu after the block written", i);
  }
  if (unchanged)
    check(memcmp(g->saved, g->r, g->size) == 0,
          "a call that failed changed the block");
}

static void guarded_free(Guarded *g) {
  free(g->mem);
  free(g->saved);
}

/* Every call on a corrupt ring: CONC_EVALUE, counts 0, nothing written. */
static void expect_corrupt(Guarded *g, const char *what) {
  unsigned char buf[32];
  size_t len = 777;
  guarded_save(g);
  memset(buf, SCRATCH_FILL, sizeof buf);
  check(conc__ring_check(g->r) == CONC_EVALUE, "%s: check passed", what);
  check(conc__ring_peek(g->r, &len) == CONC_EVALUE, "%s: peek passed", what);
  check(conc__ring_get(g->r, buf, sizeof buf, &len) == CONC_EVALUE,
        "%s: get passed", what);
  check(conc__ring_put(g->r, "abc", 3) == CONC_EVALUE, "%s: put passed",
        what);
  check(len == 777, "%s: a failed call set *len", what);
  for (size_t i = 0; i < sizeof buf; i++)
    check(buf[i] == SCRATCH_FILL, "%s: get wrote into the buffer", what);
  check(conc__ring_count(g->r) == 0 && conc__ring_used(g->r) == 0 &&
        conc__ring_free(g->r) == 0 && conc__ring_capacity(g->r) == 0 &&
        conc__ring_maxrecord(g->r) == 0, "%s: counts not 0", what);
  guarded_check(g, 1);
}

/* Three records in a 64-byte area, from head 40: 20 bytes (header at 40,
** payload 48..64 and 0..4: split across the end), 5 bytes (8..24) and 0
** bytes (24..32); tail 96. */
static void three_records(Guarded *g) {
  size_t len;
  memset(scratch, 'S', sizeof scratch);
  check_rc(conc__ring_init(g->r, 64), CONC_OK);
  check_rc(conc__ring_put(g->r, scratch, 30), CONC_OK);
  check_rc(conc__ring_get(g->r, scratch, SCRATCH, &len), CONC_OK);
  check_rc(conc__ring_put(g->r, scratch, 20), CONC_OK);
  check_rc(conc__ring_put(g->r, scratch, 5), CONC_OK);
  check_rc(conc__ring_put(g->r, NULL, 0), CONC_OK);
  check(g->r->head == 40 && g->r->tail == 96 && conc__ring_count(g->r) == 3,
        "three_records: head %llu tail %llu", (unsigned long long)g->r->head,
        (unsigned long long)g->r->tail);
}

/* Writes the length header of the record at data + at. */
static void set_len_header(Guarded *g, size_t at, uint32_t len, uint32_t chk) {
  uint32_t hdr[2];
  hdr[0] = len;
  hdr[1] = chk;
  memcpy(g->r->data + at, hdr, sizeof hdr);
}

/* A get and a peek that must fail with CONC_EVALUE and change nothing. */
static void expect_bad_record(Guarded *g, const char *what) {
  size_t len = 777;
  guarded_save(g);
  check(conc__ring_peek(g->r, &len) == CONC_EVALUE, "%s: peek passed", what);
  check(conc__ring_get(g->r, scratch, SCRATCH, &len) == CONC_EVALUE,
        "%s: get passed", what);
  check(len == 777, "%s: a failed call set *len", what);
  guarded_check(g, 1);
}

void test_ring_corrupt(void) {
  Guarded g;
  size_t len;
  guarded_new(&g, 64);

  three_records(&g);
  g.r->cap = 128;  /* cap_check no longer matches */
  expect_corrupt(&g, "cap changed");
  three_records(&g);
  g.r->cap = 1u << 20;
  g.r->cap_check = 0;
  expect_corrupt(&g, "cap and check scribbled");
  three_records(&g);
  g.r->cap_check ^= 1;
  expect_corrupt(&g, "check word changed");
  three_records(&g);
  g.r->tail += 128;  /* more held than there is room */
  expect_corrupt(&g, "tail past head + cap");
  three_records(&g);
  g.r->head = g.r->tail + 8;  /* head past tail */
  expect_corrupt(&g, "head past tail");
  three_records(&g);
  g.r->head += 3;
  expect_corrupt(&g, "head misaligned");
  three_records(&g);
  g.r->tail -= 4;
  expect_corrupt(&g, "tail misaligned");
  three_records(&g);
  g.r->count = 0;
  expect_corrupt(&g, "count 0 with bytes held");
  three_records(&g);
  g.r->count = 1000;
  expect_corrupt(&g, "more records than headers fit");
  three_records(&g);
  g.r->head = g.r->tail;
  expect_corrupt(&g, "count 3 with nothing held");
  memset(g.r, 0, sizeof *g.r);
  expect_corrupt(&g, "header zeroed");
  memset(g.r, 0xff, sizeof *g.r);
  expect_corrupt(&g, "header all ones");

  /* the length header of the next record (at 40): only get and peek
  ** read it */
  three_records(&g);
  set_len_header(&g, 40, 21, ~(uint32_t)20);
  expect_bad_record(&g, "length and complement differ");
  set_len_header(&g, 40, 1000, ~(uint32_t)1000);
  expect_bad_record(&g, "length longer than what is held");
  set_len_header(&g, 40, 0xffffffffu, 0);
  expect_bad_record(&g, "length 2^32 - 1");
  /* a length that fits and is consistent cannot be told from a good one:
  ** the get returns 28 bytes (the next record's header among them), and the
  ** next header it lands on, amid the second record's bytes, is caught */
  set_len_header(&g, 40, 28, ~(uint32_t)28);
  check_rc(conc__ring_get(g.r, scratch, SCRATCH, &len), CONC_OK);
  check_size(len, 28);
  expect_bad_record(&g, "landed inside a record");
  /* a lone record that does not fill what is held */
  three_records(&g);
  g.r->count = 1;
  expect_bad_record(&g, "count 1 with three records");
  /* a put on a ring whose data is scribbled still works (it reads none) */
  three_records(&g);
  memset(g.r->data, 0x5a, 64);
  check_rc(conc__ring_put(g.r, "", 0), CONC_OK);  /* the 8 bytes free */
  guarded_check(&g, 0);
  /* and init makes a corrupt ring good again */
  check_rc(conc__ring_init(g.r, 64), CONC_OK);
  check_rc(conc__ring_check(g.r), CONC_OK);
  guarded_free(&g);
}

/* Random scribbles over a ring in use, in the header and the data, then
** calls until one fails: whatever a call returns, it stays inside the block
** and the buffer, and a failed call changes nothing. Run it under ASan. */
void test_ring_corrupt_fuzz(void) {
  static const size_t caps[] = {8, 16, 64, 256};
  unsigned long detected = 0, trials = 20000;
  unsigned char *buf = xmalloc(256);
  for (unsigned long t = 0; t < trials; t++) {
    Guarded g;
    size_t len, nscribble = 1 + rnd_below(4);
    guarded_new(&g, caps[rnd_below(4)]);
    for (size_t i = 0, n = rnd_below(40); i < n; i++) {
      if (rnd_below(3)) conc__ring_put(g.r, scratch, rnd_below(g.r->cap));
      else conc__ring_get(g.r, buf, 256, &len);
    }
    for (size_t i = 0; i < nscribble; i++) {
      unsigned char *p = (unsigned char *)g.r;
      size_t at = rnd_below(4) ? rnd_below(sizeof(conc_Ring)) /* header */
                               : rnd_below(g.size);
      p[at] = (unsigned char)rnd();
      if (rnd_below(4) == 0) {  /* small shifts are the likelier bug */
        uint64_t *fields[] = {&g.r->cap, &g.r->cap_check, &g.r->head,
                              &g.r->tail, &g.r->count};
        *fields[rnd_below(5)] += (uint64_t)rnd_below(33) - 16;
      }
    }
    for (int step = 0; step < 64; step++) {
      size_t bufcap = rnd_below(257), want_len = 0;
      int rc, op = (int)rnd_below(3);
      guarded_save(&g);
      if (op == 0) {
        rc = conc__ring_put(g.r, scratch, rnd_below(300));
        check(rc == CONC_OK || rc == CONC_EFULL || rc == CONC_E2BIG ||
              rc == CONC_EVALUE, "put returned %d", rc);
      } else if (op == 1) {
        rc = conc__ring_peek(g.r, &want_len);
        check(rc == CONC_OK || rc == CONC_EEMPTY || rc == CONC_EVALUE,
              "peek returned %d", rc);
      } else {
        size_t used = conc__ring_used(g.r);
        /* exactly bufcap bytes, so that ASan sees a byte written past it */
        unsigned char *exact = bufcap ? xmalloc(bufcap) : NULL;
        len = 0;
        rc = conc__ring_get(g.r, exact, bufcap, &len);
        free(exact);
        check(rc == CONC_OK || rc == CONC_EEMPTY || rc == CONC_E2BIG ||
              rc == CONC_EVALUE, "get returned %d", rc);
        if (rc == CONC_OK)
          check(len <= bufcap && conc__ring_recsize(len) <= used,
                "get returned %zu bytes (buffer %zu, %zu held)", len, bufcap,
                used);
      }
      guarded_check(&g, rc != CONC_OK);
      if (rc == CONC_EVALUE) {
        detected++;
        break;
      }
    }
    guarded_free(&g);
  }
  free(buf);
  if (getenv("CORE_TEST_VERBOSE"))
    printf("%lu of %lu scribbles detected\n", detected, trials);
  check(detected > trials / 4, "only %lu of %lu scribbles detected", detected,
        trials);
}

/* ---- two processes -------------------------------------------------------
** The ring in MAP_SHARED|MAP_ANONYMOUS memory, under a spin lock of the
** test's own (the real process-shared mutex is elsewhere). The child puts
** RECORDS records, waiting while the ring is full; the parent gets them all,
** in order, while the ring is small enough to fill many times over. */

#define RECORDS 10000
#define FORK_DEADLINE 30.0

typedef struct Shared {
  atomic_flag lock;
  atomic_ulong fulls;   /* the child's EFULLs, for CORE_TEST_VERBOSE */
  _Alignas(64) unsigned char ring[];  /* the conc_Ring block */
} Shared;

/* Spins for the lock, yielding now and then (2 CPUs, other work on them);
** 0 if the deadline passes first. */
static int spin_lock(atomic_flag *f, double deadline) {
  for (unsigned n = 1;; n++) {
    if (!atomic_flag_test_and_set_explicit(f, memory_order_acquire)) return 1;
    if (n % 64 == 0) {
      sched_yield();
      if (now() > deadline) return 0;
    }
  }
}

static void spin_unlock(atomic_flag *f) {
  atomic_flag_clear_explicit(f, memory_order_release);
}

static size_t fork_len(uint32_t i) { return (i * 37u) % 300; }

static void fork_child(Shared *sh) {
  conc_Ring *r = (conc_Ring *)(void *)sh->ring;
  unsigned char rec[512];
  double deadline = now() + FORK_DEADLINE;
  in_child = 1;
  for (uint32_t i = 0; i < RECORDS;) {
    size_t len = fork_len(i);
    int rc;
    fill(rec, i, len);
    check(spin_lock(&sh->lock, deadline), "put %u: lock timed out", i);
    rc = conc__ring_put(r, rec, len);
    spin_unlock(&sh->lock);
    check(rc == CONC_OK || rc == CONC_EFULL, "put %u: rc %d", i, rc);
    if (rc == CONC_OK) {
      i++;
      continue;
    }
    atomic_fetch_add(&sh->fulls, 1);
    check(now() < deadline, "put %u: still full at the deadline", i);
    sched_yield();
  }
  _exit(0);
}

void test_ring_fork(void) {
  size_t size = sizeof(Shared) + conc__ring_size(2048);
  Shared *sh = mmap(NULL, size, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  conc_Ring *r;
  unsigned char rec[512];
  double deadline = now() + FORK_DEADLINE;
  unsigned long empties = 0;
  size_t len = 0;
  pid_t pid, w;
  int status = 0;
  check(sh != MAP_FAILED, "mmap: %s", strerror(errno));
  atomic_flag_clear(&sh->lock);
  atomic_init(&sh->fulls, 0);
  r = (conc_Ring *)(void *)sh->ring;
  check_rc(conc__ring_init(r, 2048), CONC_OK);
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  check(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) fork_child(sh);
  child_pid = pid;
  for (uint32_t i = 0; i < RECORDS;) {
    int rc;
    check(spin_lock(&sh->lock, deadline), "get %u: lock timed out", i);
    rc = conc__ring_get(r, rec, sizeof rec, &len);
    spin_unlock(&sh->lock);
    if (rc == CONC_EEMPTY) {
      check(now() < deadline, "get %u: still empty at the deadline", i);
      /* a child that failed has said why: do not wait out the deadline */
      if (++empties % 1024 == 0 && waitpid(pid, &status, WNOHANG) == pid) {
        child_pid = 0;
        check(0, "get %u: the child left early, status %#x", i, status);
      }
      sched_yield();
      continue;
    }
    check_rc(rc, CONC_OK);
    check(len == fork_len(i), "record %u: expected %zu bytes, got %zu", i,
          fork_len(i), len);
    for (size_t j = 0; j < len; j++)
      check(rec[j] == byte_of(i, j), "record %u byte %zu differs", i, j);
    i++;
  }
  /* a bounded waitpid: poll until the deadline */
  while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now() < deadline + 5)
    usleep(1000);
  check(w != 0, "the child did not exit");  /* fail_exit kills it */
  check(w == pid, "waitpid: %s", strerror(errno));
  child_pid = 0;
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child status %#x (exited %d, signal %d)", status,
        WIFEXITED(status) ? WEXITSTATUS(status) : -1,
        WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  check_size(conc__ring_count(r), 0);
  check_rc(conc__ring_get(r, rec, sizeof rec, &len), CONC_EEMPTY);
  if (getenv("CORE_TEST_VERBOSE"))
    printf("%u records; the parent found the ring empty %lu times, the child "
           "found it full %lu times\n", RECORDS, empties,
           (unsigned long)atomic_load(&sh->fulls));
  munmap(sh, size);
}


/* A writer killed between its stores leaves tail moved and count not, or a
** record's header written and its tail not moved: repair keeps every whole
** record and makes the header consistent. */
void test_ring_repair(void) {
  conc_Ring *r = ring_new(256);
  char buf[32];
  size_t len;
  for (int i = 0; i < 3; i++)
    check_rc(conc__ring_put(r, "abcdef", 6), CONC_OK);
  check_size(conc__ring_get(r, buf, sizeof buf, &len) == CONC_OK, 1);
  /* a put that moved tail, then died before count */
  check_rc(conc__ring_put(r, "xyz", 3), CONC_OK);
  r->count--;
  check_size(conc__ring_count(r), 2);  /* wrong: three are whole */
  check_size(conc__ring_repair(r), 3);
  check_size(conc__ring_count(r), 3);
  /* a put that moved tail over a header it had not written yet */
  r->tail += 16;
  memset(r->data + ((r->tail - 16) & (r->cap - 1)), 0x55, 16);
  check_size(conc__ring_repair(r), 3);
  for (int i = 0; i < 2; i++) {
    check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_OK);
    check(len == 6 && memcmp(buf, "abcdef", 6) == 0, "record %d", i);
  }
  check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_OK);
  check(len == 3 && memcmp(buf, "xyz", 3) == 0, "the last whole record");
  check_rc(conc__ring_get(r, buf, sizeof buf, &len), CONC_EEMPTY);
  check_rc(conc__ring_put(r, "ok", 2), CONC_OK);
  check_size(conc__ring_count(r), 1);
  free(r);
}
