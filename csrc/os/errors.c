/*
** errors.c -- lookups in the table of result codes (errors.h).
*/
#include <stddef.h>

#include "errors.h"

typedef struct Entry {
  int code;
  const char *name, *cls, *msg;
} Entry;

static const Entry entries[] = {
#define CONC_ERRENTRY(code, value, cls, msg) {value, #code, cls, msg},
  CONC_ERRORS(CONC_ERRENTRY)
#undef CONC_ERRENTRY
  {0, NULL, NULL, NULL}};

/* O(n) in the table's few dozen rows: only an error pays for it. */
static const Entry *find(int code) {
  for (const Entry *e = entries; e->name != NULL; e++)
    if (e->code == code) return e;
  return NULL;
}

const char *conc__err_name(int code) {
  const Entry *e = find(code);
  return e ? e->name : NULL;
}

const char *conc__err_class(int code) {
  const Entry *e = find(code);
  return e ? e->cls : NULL;
}

const char *conc__err_message(int code) {
  const Entry *e = find(code);
  return e ? e->msg : NULL;
}
