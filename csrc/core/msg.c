/*
** msg.c -- a message's lifecycle: made, copied and freed, each holding one
** reference to every conc object it names. The bytes inside are the wire
** format's (lua/transfer.c writes and reads them); the core only moves them.
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
