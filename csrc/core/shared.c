/*
** shared.c -- conc.shared.list and conc.shared.dict: containers every thread
** sees, Python's Manager().list() and .dict() without the manager process.
**
** An item is a one-value message of the wire format (a conc_Val): what a
** reader gets is a fresh copy, and conc objects inside a value cross by
** reference (the message holds one). Small messages live inline in the item,
** so reading or writing a small scalar allocates nothing; each container is
** guarded by one futex mutex word (lock.c), which costs two compare-and-swaps
** when nobody else holds it.
**
** Under the lock the core only copies bytes and moves items: it never
** decodes, and never frees a value. Freeing a value may drop the last
** reference to another conc object and run its destroy, which may free a
** whole other container: that happens after the lock is released.
**
** The dict is CPython's compact dict: an array of entries in insertion order
** (a removed key leaves a hole until the next resize) and an index of slots
** into it, probed linearly from the key's hash. O(1) expected per lookup.
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"

static void lock(conc_Mutex *mu) {
  conc__mutex_lock(mu);
}

static void unlock(conc_Mutex *mu) {
  conc__mutex_unlock(mu);
}

/* ======================================================================
** Values
** ====================================================================== */

/* Moves src into dst, leaving src empty. */
static void val_move(conc_Val *dst, conc_Val *src) {
  *dst = *src;
  *src = conc__val_empty;
}

static int matches(const conc_Val *v, const conc_Val *needle, int n) {
  for (int i = 0; i < n; i++)
    if (conc__val_equal(v, &needle[i])) return 1;
  return 0;
}

/* A new array of n values (at least one slot, so NULL means no memory). */
static conc_Val *vals_new(size_t n) {
  if (n > SIZE_MAX / sizeof(conc_Val)) return NULL;
  return malloc((n ? n : 1) * sizeof(conc_Val));
}

/* ======================================================================
** list
** ====================================================================== */

struct conc_ShList {
  conc_Obj hdr;
  conc_Mutex mu;
  size_t n, cap;
  conc_Val *items;
};

static void shlist_destroy(conc_Obj *o) {
  conc_ShList *l = (conc_ShList *)o;
  conc__vals_free(l->items, l->n);
  free(l);
}

conc_ObjType conc__shlist_type = {
  .name = "conc.shared.list", .destroy = shlist_destroy};

conc_ShList *conc__shlist_new(void) {
  conc_ShList *l = malloc(sizeof *l);
  if (l == NULL) return NULL;
  conc__obj_init(&l->hdr, &conc__shlist_type);
  conc__mutex_init(&l->mu, CONC_PRIVATE);
  l->n = l->cap = 0;
  l->items = NULL;
  return l;
}

/* The 0-based position of 1-based index i (negative: from the end), or 0
** when it is out of range. */
static int position(int64_t i, size_t n, size_t *at) {
  if (i > 0 && (uint64_t)i <= n) *at = (size_t)(i - 1);
  else if (i < 0 && (uint64_t)-(i + 1) < n) *at = n - (size_t)-(i + 1) - 1;
  else return 0;
  return 1;
}

/* Room for extra more items; under the lock. */
static int list_reserve(conc_ShList *l, size_t extra) {
  size_t cap;
  conc_Val *items;
  if (extra <= l->cap - l->n) return 0;
  if (extra > SIZE_MAX / sizeof *items / 2 - l->n) return CONC_ENOMEM;
  cap = l->cap * 2 > l->n + extra ? l->cap * 2 : l->n + extra;
  if (cap < 4) cap = 4;
  items = realloc(l->items, cap * sizeof *items);
  if (items == NULL) return CONC_ENOMEM;
  l->items = items;
  l->cap = cap;
  return 0;
}

/* The first item equal to a needle, or -1; under the lock. */
static int64_t list_find(conc_ShList *l, const conc_Val *needle, int nn) {
  for (size_t i = 0; i < l->n; i++)
    if (matches(&l->items[i], needle, nn)) return (int64_t)i;
  return -1;
}

/* Takes item `at` out, closing the gap; under the lock. */
static void list_take(conc_ShList *l, size_t at, conc_Val *out) {
  *out = l->items[at];
  memmove(&l->items[at], &l->items[at + 1],
          (l->n - at - 1) * sizeof *l->items);
  l->n--;
}

size_t conc__shlist_len(conc_ShList *l) {
  size_t n;
  lock(&l->mu);
  n = l->n;
  unlock(&l->mu);
  return n;
}

int conc__shlist_get(conc_ShList *l, int64_t i, conc_Val *out) {
  size_t at;
  int rc = CONC_ERANGE;
  lock(&l->mu);
  if (position(i, l->n, &at)) rc = conc__val_copy(out, &l->items[at]);
  unlock(&l->mu);
  return rc;
}

int conc__shlist_set(conc_ShList *l, int64_t i, conc_Val *v) {
  conc_Val old = conc__val_empty;
  size_t at;
  int rc = 0;
  lock(&l->mu);
  if (position(i, l->n, &at)) {
    old = l->items[at];
    val_move(&l->items[at], v);
  } else if (i > 0 && (uint64_t)i == l->n + 1) {
    rc = list_reserve(l, 1);
    if (rc == 0) val_move(&l->items[l->n++], v);
  } else {
    rc = CONC_ERANGE;
  }
  unlock(&l->mu);
  conc__val_free(&old);
  return rc;
}

int conc__shlist_insert(conc_ShList *l, int64_t i, conc_Val *v, size_t n) {
  size_t at;
  int rc;
  lock(&l->mu);
  rc = list_reserve(l, n);
  if (rc == 0 && n > 0) {
    /* Python's clamping: past the end appends, before the start prepends */
    if (i > 0) at = (uint64_t)i - 1 < l->n ? (size_t)(i - 1) : l->n;
    else if (!position(i, l->n, &at)) at = 0;
    memmove(&l->items[at + n], &l->items[at], (l->n - at) * sizeof *v);
    for (size_t k = 0; k < n; k++) val_move(&l->items[at + k], &v[k]);
    l->n += n;
  }
  unlock(&l->mu);
  return rc;
}

int conc__shlist_pop(conc_ShList *l, int64_t i, conc_Val *out) {
  size_t at;
  int rc = 0;
  lock(&l->mu);
  if (l->n == 0) rc = CONC_EEMPTYLIST;
  else if (!position(i, l->n, &at)) rc = CONC_ERANGE;
  else list_take(l, at, out);
  unlock(&l->mu);
  return rc;
}

int64_t conc__shlist_index(conc_ShList *l, const conc_Val *needle, int nn) {
  int64_t at;
  lock(&l->mu);
  at = list_find(l, needle, nn);
  unlock(&l->mu);
  return at + 1;
}

size_t conc__shlist_count(conc_ShList *l, const conc_Val *needle, int nn) {
  size_t count = 0;
  lock(&l->mu);
  for (size_t i = 0; i < l->n; i++) count += matches(&l->items[i], needle, nn);
  unlock(&l->mu);
  return count;
}

int conc__shlist_remove(conc_ShList *l, const conc_Val *needle, int nn) {
  conc_Val old = conc__val_empty;
  int64_t at;
  lock(&l->mu);
  at = list_find(l, needle, nn);
  if (at >= 0) list_take(l, (size_t)at, &old);
  unlock(&l->mu);
  conc__val_free(&old);
  return at >= 0 ? 0 : CONC_ENOTFOUND;
}

void conc__shlist_clear(conc_ShList *l) {
  conc_Val *items;
  size_t n;
  lock(&l->mu);
  items = l->items;
  n = l->n;
  l->items = NULL;
  l->n = l->cap = 0;
  unlock(&l->mu);
  conc__vals_free(items, n);
}

/* Copies of n values into a new array; under the caller's lock. */
static int copy_all(const conc_Val *src, size_t n, conc_Val **out) {
  conc_Val *v = vals_new(n);
  if (v == NULL) return CONC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (conc__val_copy(&v[i], &src[i]) != 0) {
      conc__vals_free(v, i);
      return CONC_ENOMEM;
    }
  }
  *out = v;
  return 0;
}

int conc__shlist_snapshot(conc_ShList *l, conc_Val **out, size_t *n) {
  int rc;
  lock(&l->mu);
  *n = l->n;
  rc = copy_all(l->items, l->n, out);
  unlock(&l->mu);
  return rc;
}

/* ======================================================================
** dict
** ====================================================================== */

#define SLOT_EMPTY (-1)
#define SLOT_DUMMY (-2)  /* its entry was removed: probing goes on past it */

typedef struct Entry {
  uint64_t hash;
  conc_Val key, val;  /* key empty: removed */
} Entry;

struct conc_ShDict {
  conc_Obj hdr;
  conc_Mutex mu;
  size_t used;      /* keys present */
  size_t nentries;  /* entries written, the removed ones included */
  size_t capentries;
  size_t nindex;    /* 0 or a power of two, more than capentries */
  Entry *entries;   /* one block: capentries entries, then the index */
  int32_t *index;   /* SLOT_EMPTY, SLOT_DUMMY, or a position in entries */
};

static int live(const Entry *e) {
  return e->key.msg != NULL || e->key.len != 0;
}

static void free_entries(Entry *e, size_t n) {
  for (size_t i = 0; i < n; i++) {
    conc__val_free(&e[i].key);
    conc__val_free(&e[i].val);
  }
  free(e);
}

static void shdict_destroy(conc_Obj *o) {
  conc_ShDict *d = (conc_ShDict *)o;
  free_entries(d->entries, d->nentries);
  free(d);
}

conc_ObjType conc__shdict_type = {
  .name = "conc.shared.dict", .destroy = shdict_destroy};

conc_ShDict *conc__shdict_new(void) {
  conc_ShDict *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  conc__obj_init(&d->hdr, &conc__shdict_type);
  conc__mutex_init(&d->mu, CONC_PRIVATE);
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
static int64_t dict_find(const conc_ShDict *d, const conc_Val *key,
                         uint64_t h, size_t *slot) {
  size_t mask = d->nindex - 1, i, insert_at = SIZE_MAX;
  *slot = 0;  /* no index yet: dict_add resizes, then finds the slot again */
  if (d->nindex == 0) return -1;
  for (i = h & mask;; i = (i + 1) & mask) {
    int32_t ix = d->index[i];
    if (ix == SLOT_EMPTY) {
      *slot = insert_at != SIZE_MAX ? insert_at : i;
      return -1;
    }
    if (ix == SLOT_DUMMY) {
      if (insert_at == SIZE_MAX) insert_at = i;
    } else if (d->entries[ix].hash == h && conc__val_equal(&d->entries[ix].key,
                                                       key)) {
      *slot = i;
      return ix;
    }
  }
}

/* Rebuilds the table with room for `need` keys (and as many again, so that
** growth is geometric), leaving out removed entries. O(entries). */
static int dict_resize(conc_ShDict *d, size_t need) {
  size_t want = need > 2 * d->used ? need : 2 * d->used, nindex = 8, cap, j = 0;
  Entry *entries;
  int32_t *index;
  while (nindex / 3 * 2 < want) {
    if (nindex > (size_t)INT32_MAX / 2) return CONC_ENOMEM;
    nindex *= 2;
  }
  cap = nindex / 3 * 2;
  entries = malloc(cap * sizeof *entries + nindex * sizeof *index);
  if (entries == NULL) return CONC_ENOMEM;
  index = (int32_t *)(entries + cap);
  memset(index, 0xff, nindex * sizeof *index);  /* all SLOT_EMPTY */
  for (size_t k = 0; k < d->nentries; k++) {
    size_t i;
    if (!live(&d->entries[k])) continue;
    entries[j] = d->entries[k];
    for (i = entries[j].hash & (nindex - 1); index[i] != SLOT_EMPTY;
         i = (i + 1) & (nindex - 1)) {
    }
    index[i] = (int32_t)j++;
  }
  free(d->entries);
  d->entries = entries;
  d->index = index;
  d->nindex = nindex;
  d->capentries = cap;
  d->nentries = j;
  return 0;
}

/* Adds a key known to be absent, taking key and v; finds its slot again if
** the table has to grow. Under the lock. */
static int dict_add(conc_ShDict *d, conc_Val *key, conc_Val *v, uint64_t h,
                    size_t slot) {
  Entry *e;
  if (d->nentries == d->capentries) {
    if (dict_resize(d, d->used + 1) != 0) return CONC_ENOMEM;
    dict_find(d, key, h, &slot);
  }
  e = &d->entries[d->nentries];
  e->hash = h;
  val_move(&e->key, key);
  val_move(&e->val, v);
  d->index[slot] = (int32_t)d->nentries++;
  d->used++;
  return 0;
}

size_t conc__shdict_len(conc_ShDict *d) {
  size_t n;
  lock(&d->mu);
  n = d->used;
  unlock(&d->mu);
  return n;
}

int conc__shdict_get(conc_ShDict *d, const conc_Val *key, conc_Val *out) {
  uint64_t h = hash_key(key);
  size_t slot;
  int64_t ix;
  int rc = CONC_EKEY;
  lock(&d->mu);
  ix = dict_find(d, key, h, &slot);
  if (ix >= 0) rc = conc__val_copy(out, &d->entries[ix].val);
  unlock(&d->mu);
  return rc;
}

int conc__shdict_set(conc_ShDict *d, conc_Val *key, conc_Val *v) {
  uint64_t h = hash_key(key);
  conc_Val old = conc__val_empty;
  size_t slot;
  int64_t ix;
  int rc = 0;
  lock(&d->mu);
  ix = dict_find(d, key, h, &slot);
  if (ix >= 0) {
    old = d->entries[ix].val;
    val_move(&d->entries[ix].val, v);
  } else {
    rc = dict_add(d, key, v, h, slot);
  }
  unlock(&d->mu);
  if (rc == 0) conc__val_free(key);  /* the caller's copy, if not kept */
  conc__val_free(&old);
  return rc;
}

int conc__shdict_pop(conc_ShDict *d, const conc_Val *key, conc_Val *out) {
  uint64_t h = hash_key(key);
  conc_Val oldkey = conc__val_empty;
  size_t slot;
  int64_t ix;
  lock(&d->mu);
  ix = dict_find(d, key, h, &slot);
  if (ix >= 0) {
    val_move(&oldkey, &d->entries[ix].key);
    val_move(out, &d->entries[ix].val);
    d->index[slot] = SLOT_DUMMY;
    if (--d->used == 0) {  /* start over: no dummies to probe past */
      d->nentries = 0;
      memset(d->index, 0xff, d->nindex * sizeof *d->index);
    }
  }
  unlock(&d->mu);
  conc__val_free(&oldkey);
  return ix >= 0 ? 0 : CONC_EKEY;
}

int conc__shdict_setdefault(conc_ShDict *d, conc_Val *key, conc_Val *v,
                            conc_Val *out) {
  uint64_t h = hash_key(key);
  size_t slot;
  int64_t ix;
  int rc;
  lock(&d->mu);
  ix = dict_find(d, key, h, &slot);
  if (ix >= 0) {
    rc = conc__val_copy(out, &d->entries[ix].val);
  } else {
    rc = conc__val_copy(out, v);
    if (rc == 0 && (rc = dict_add(d, key, v, h, slot)) != 0)
      conc__val_free(out);
  }
  unlock(&d->mu);
  if (rc == 0) {
    conc__val_free(key);
    conc__val_free(v);
  }
  return rc;
}

int conc__shdict_update(conc_ShDict *d, conc_Val *kv, size_t n) {
  int rc = 0;
  lock(&d->mu);
  if (n > d->capentries - d->nentries) rc = dict_resize(d, d->used + n);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    conc_Val *key = &kv[2 * i], *v = &kv[2 * i + 1];
    uint64_t h = hash_key(key);
    size_t slot;
    int64_t ix = dict_find(d, key, h, &slot);
    if (ix >= 0) {
      conc_Val old = d->entries[ix].val;  /* freed below, unlocked */
      val_move(&d->entries[ix].val, v);
      *v = old;
    } else {
      dict_add(d, key, v, h, slot);  /* cannot fail: room was made */
    }
  }
  unlock(&d->mu);
  if (rc == 0)
    for (size_t i = 0; i < 2 * n; i++) conc__val_free(&kv[i]);
  return rc;
}

void conc__shdict_clear(conc_ShDict *d) {
  Entry *entries;
  size_t n;
  lock(&d->mu);
  entries = d->entries;
  n = d->nentries;
  d->entries = NULL;
  d->index = NULL;
  d->used = d->nentries = d->capentries = d->nindex = 0;
  unlock(&d->mu);
  free_entries(entries, n);
}

int conc__shdict_snapshot(conc_ShDict *d, int which, conc_Val **out,
                          size_t *n) {
  int per = (which & CONC_SH_KEYS ? 1 : 0) + (which & CONC_SH_VALUES ? 1 : 0);
  size_t j = 0;
  conc_Val *v;
  lock(&d->mu);
  v = vals_new(d->used * (size_t)per);
  for (size_t i = 0; v != NULL && i < d->nentries; i++) {
    const Entry *e = &d->entries[i];
    int failed = 0;
    if (!live(e)) continue;
    if (which & CONC_SH_KEYS) failed = conc__val_copy(&v[j++], &e->key) != 0;
    if (!failed && (which & CONC_SH_VALUES))
      failed = conc__val_copy(&v[j++], &e->val) != 0;
    if (failed) {
      conc__vals_free(v, j - 1);
      v = NULL;
    }
  }
  unlock(&d->mu);
  if (v == NULL) return CONC_ENOMEM;
  *out = v;
  *n = j;
  return 0;
}
