/*
** array.c -- multiprocessing.Value and Array: typed numbers in a shared
** mapping that forked children inherit, with the Lock or RLock that
** guards them (none for RawValue, RawArray).
**
** Elements are read and written with relaxed atomic accesses of their
** own width: a Raw one shared without a lock is racy by the script's
** choice, which must not be undefined behaviour in C (nor a report of
** ThreadSanitizer's). Values wrap to the element's width, as ctypes'
** do; the Lua layer decides what it accepts.
*/
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct conc_Array {
  conc_Obj hdr;
  char typecode;
  unsigned char elsize;
  int is_value;
  size_t length;
  void *data;           /* the shared mapping, length * elsize bytes */
  conc_Obj *lock;       /* a shared Lock or RLock, or NULL */
};

static void array_destroy(conc_Obj *o) {
  conc_Array *a = (conc_Array *)o;
  conc__shm_unmap(a->data, a->length * a->elsize);
  if (a->lock) conc__obj_decref(a->lock);
  free(a);
}

static int array_export(conc_Obj *o, conc_Export *x) {
  conc_Array *a = (conc_Array *)o;
  x->map[0] = a->data;
  x->num[0] = a->typecode;
  x->num[1] = (int64_t)a->length;
  x->num[2] = a->is_value;
  x->ref = a->lock;
  return CONC_OK;
}

static conc_Array *array_wrap(conc_Array *a, int typecode, size_t length,
                              conc_Obj *lock, int is_value, void *data);

static conc_Obj *array_attach(const conc_Export *x) {
  conc_Array *a;
  int elsize = conc__array_elsize((int)x->num[0]);
  size_t length = (size_t)x->num[1];
  if (elsize == 0 || x->num[1] < 0 || length > x->size[0] / (size_t)elsize)
    return NULL;
  if ((a = malloc(sizeof *a)) == NULL) return NULL;
  return &array_wrap(a, (int)x->num[0], length, x->ref, (int)x->num[2],
                     x->map[0])->hdr;
}

conc_ObjType conc__array_type = {.name = "conc.Array",
                                 .destroy = array_destroy,
                                 .export = array_export,
                                 .attach = array_attach};

static conc_Array *array_wrap(conc_Array *a, int typecode, size_t length,
                              conc_Obj *lock, int is_value, void *data) {
  conc__obj_init(&a->hdr, &conc__array_type);
  a->typecode = (char)typecode;
  a->elsize = (unsigned char)conc__array_elsize(typecode);
  a->is_value = is_value;
  a->length = length;
  a->data = data;
  a->lock = lock;
  if (lock) conc__obj_incref(lock);
  return a;
}

int conc__array_elsize(int typecode) {
  switch (typecode) {
    case 'b': case 'B': case 'c': return 1;
    case 'h': case 'H': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'l': case 'L': case 'q': case 'Q': case 'd': return 8;
  }
  return 0;
}

conc_Array *conc__array_new(int typecode, size_t length, conc_Obj *lock,
                            int is_value) {
  int elsize = conc__array_elsize(typecode);
  conc_Array *a;
  void *data;
  if (elsize == 0 || length > SIZE_MAX / 8) return NULL;
  a = malloc(sizeof *a);
  if (a == NULL) return NULL;
  data = conc__shm_map(length * (size_t)elsize);  /* zeroed */
  if (data == NULL) {
    free(a);
    return NULL;
  }
  return array_wrap(a, typecode, length, lock, is_value, data);
}

int conc__array_typecode(conc_Array *a) { return a->typecode; }
size_t conc__array_len(conc_Array *a) { return a->length; }
int conc__array_is_value(conc_Array *a) { return a->is_value; }
conc_Obj *conc__array_lock(conc_Array *a) { return a->lock; }

int conc__array_is_float(conc_Array *a) {
  return a->typecode == 'f' || a->typecode == 'd';
}

/* The raw bits of element i, zero-extended. */
static uint64_t load(conc_Array *a, size_t i) {
  char *p = (char *)a->data + i * a->elsize;
  switch (a->elsize) {
    case 1: return __atomic_load_n((uint8_t *)p, __ATOMIC_RELAXED);
    case 2: return __atomic_load_n((uint16_t *)p, __ATOMIC_RELAXED);
    case 4: return __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
    default: return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
  }
}

static void store(conc_Array *a, size_t i, uint64_t bits) {
  char *p = (char *)a->data + i * a->elsize;
  switch (a->elsize) {
    case 1: __atomic_store_n((uint8_t *)p, (uint8_t)bits, __ATOMIC_RELAXED);
      break;
    case 2: __atomic_store_n((uint16_t *)p, (uint16_t)bits, __ATOMIC_RELAXED);
      break;
    case 4: __atomic_store_n((uint32_t *)p, (uint32_t)bits, __ATOMIC_RELAXED);
      break;
    default: __atomic_store_n((uint64_t *)p, bits, __ATOMIC_RELAXED);
  }
}

int64_t conc__array_get_int(conc_Array *a, size_t i) {
  uint64_t bits = load(a, i);
  switch (a->typecode) {
    case 'b': return (int8_t)bits;
    case 'h': return (int16_t)bits;
    case 'i': return (int32_t)bits;
    case 'l': case 'q': case 'L': case 'Q': return (int64_t)bits;
  }
  return (int64_t)bits;  /* B H I c: zero-extended */
}

void conc__array_set_int(conc_Array *a, size_t i, int64_t v) {
  store(a, i, (uint64_t)v);
}

double conc__array_get_float(conc_Array *a, size_t i) {
  uint64_t bits = load(a, i);
  if (a->elsize == 4) {
    uint32_t b32 = (uint32_t)bits;
    float f;
    memcpy(&f, &b32, sizeof f);
    return f;
  } else {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
  }
}

void conc__array_set_float(conc_Array *a, size_t i, double v) {
  if (a->elsize == 4) {
    /* out of float's range is undefined in C; ctypes gives inf */
    float f = v > FLT_MAX ? INFINITY : v < -FLT_MAX ? -INFINITY : (float)v;
    uint32_t b32;
    memcpy(&b32, &f, sizeof b32);
    store(a, i, b32);
  } else {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    store(a, i, bits);
  }
}

/* Takes and gives back the guarding lock, whichever kind it is. */
int conc__array_acquire(conc_Array *a) {
  if (a->lock == NULL) return CONC_OK;
  if (a->lock->type == &conc__rlock_type)
    return conc__rlock_acquire((conc_RLock *)a->lock, 1, CONC_FOREVER);
  if (conc__lock_try((conc_Lock *)a->lock)) return CONC_OK;
  return conc__lock_acquire((conc_Lock *)a->lock, CONC_FOREVER);
}

void conc__array_release(conc_Array *a) {
  if (a->lock == NULL) return;
  if (a->lock->type == &conc__rlock_type)
    conc__rlock_release((conc_RLock *)a->lock);
  else
    conc__lock_release((conc_Lock *)a->lock);
}
