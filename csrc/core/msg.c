/*
** msg.c -- a message's lifecycle: made, copied and freed, each holding one
** reference to every conc object it names; and values (conc_Val), a
** message held inline when it is small. The bytes inside are the wire
** format's (lua/ writes and reads them); the core only moves them.
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* One block: the header, the object array, then the bytes. */
conc_Msg *conc__msg_new(const char *data, size_t len, conc_Obj *const *objs,
                        unsigned nobjs) {
  size_t objsz = nobjs * sizeof(conc_Obj *);
  conc_Msg *m = malloc(sizeof *m + objsz + len);
  if (m == NULL) return NULL;
  m->len = len;
  m->nobjs = nobjs;
  m->objs = (conc_Obj **)(m + 1);
  m->data = (char *)(m + 1) + objsz;
  for (unsigned i = 0; i < nobjs; i++) {
    m->objs[i] = objs[i];
    conc__obj_incref(objs[i]);
  }
  memcpy(m->data, data, len);
  return m;
}

conc_Msg *conc__msg_dup(const conc_Msg *m) {
  return conc__msg_new(m->data, m->len, m->objs, m->nobjs);
}

void conc__msg_free(conc_Msg *m) {
  if (m == NULL) return;
  for (unsigned i = 0; i < m->nobjs; i++) conc__obj_decref(m->objs[i]);
  free(m);
}

/* ---- values --------------------------------------------------------------- */

const conc_Val conc__val_empty = {NULL, 0, {0}};

const char *conc__val_data(const conc_Val *v, size_t *len) {
  if (v->msg) {
    *len = v->msg->len;
    return v->msg->data;
  }
  *len = v->len;
  return v->inl;
}

void conc__val_free(conc_Val *v) {
  if (v->msg) conc__msg_free(v->msg);
  v->msg = NULL;  /* empty; the inline bytes need not be cleared */
  v->len = 0;
}

void conc__vals_free(conc_Val *v, size_t n) {
  if (v == NULL) return;
  for (size_t i = 0; i < n; i++) conc__val_free(&v[i]);
  free(v);
}

/* An inline value is copied whole: a fixed-size copy is a few moves, where
** copying just its len bytes was a call to memcpy. */
int conc__val_copy(conc_Val *dst, const conc_Val *src) {
  if (src->msg) {
    dst->msg = conc__msg_dup(src->msg);
    dst->len = 0;
    return dst->msg ? CONC_OK : CONC_ENOMEM;
  }
  *dst = *src;
  return CONC_OK;
}

int conc__val_equal(const conc_Val *a, const conc_Val *b) {
  size_t alen, blen;
  const char *ad, *bd;
  unsigned na, nb;
  if (a->msg == NULL && b->msg == NULL)  /* both inline: a dict's keys */
    return a->len == b->len && memcmp(a->inl, b->inl, a->len) == 0;
  ad = conc__val_data(a, &alen);
  bd = conc__val_data(b, &blen);
  na = a->msg ? a->msg->nobjs : 0;
  nb = b->msg ? b->msg->nobjs : 0;
  if (alen != blen || na != nb || memcmp(ad, bd, alen) != 0) return 0;
  for (unsigned i = 0; i < na; i++)
    if (a->msg->objs[i] != b->msg->objs[i]) return 0;
  return 1;
}
