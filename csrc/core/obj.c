/*
** obj.c -- the refcounted header every shared conc object starts with, and
** the list of every kind there is.
*/
#include <stdlib.h>

#include "core.h"

void conc__obj_init(conc_Obj *o, conc_ObjType *type) {
  atomic_init(&o->refs, 1);
  o->type = type;
  atomic_fetch_add_explicit(&type->live, 1, memory_order_relaxed);
}

void conc__obj_incref(conc_Obj *o) {
  atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

/* acq_rel on the decrement: every write another holder made before dropping
** its reference happens-before the free. (Release plus an acquire fence is
** the cheaper classic, but TSan does not model fences.) */
void conc__obj_decref(conc_Obj *o) {
  if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1) {
    conc_ObjType *type = o->type;
    type->destroy(o);
    atomic_fetch_sub_explicit(&type->live, 1, memory_order_relaxed);
  }
}

/* The destroy of every kind that owns nothing beyond its own block. */
void conc__obj_free(conc_Obj *o) {
  free(o);
}

void *conc__obj_state(void *own, size_t size, int shared) {
  return shared == CONC_SHARED ? conc__shm_map(size) : own;
}

void conc__obj_state_free(void *state, const void *own, size_t size) {
  if (state != own) conc__shm_unmap(state, size);
}

int conc__obj_export_state(void *state, const void *own, conc_Export *x) {
  if (state == own) return CONC_EVALUE;  /* threading's: ours alone */
  x->map[0] = state;
  return CONC_OK;
}

conc_ObjType conc__local_type = {.name = "conc.local",
                                 .destroy = conc__obj_free};

conc_Obj *conc__local_new(void) {
  conc_Obj *o = malloc(sizeof *o);
  if (o) conc__obj_init(o, &conc__local_type);
  return o;
}

/* A new kind is listed here, or live_objects cannot see it leak. */
conc_ObjType *const conc__obj_types[] = {
  &conc__thread_type, &conc__lock_type, &conc__rlock_type, &conc__sem_type,
  &conc__cond_type, &conc__barrier_type, &conc__event_type,
  &conc__queue_type, &conc__shlist_type, &conc__shdict_type,
  &conc__local_type, &conc__process_type, &conc__array_type,
  &conc__mpq_type, &conc__conn_type, &conc__heap_type,
  &conc__namespace_type, &conc__future_type, NULL};
