/*
** spawn.c -- the objects a spawned process is given: each shared object of
** the start message, described by its kind's export (core.h) as the
** descriptors of its mappings, a few numbers and the object it holds; and
** in the child, this process's objects over the same memory, made by the
** kind's attach, in the message's order.
**
** The bytes never leave the machine (native order). An entry's ref is an
** earlier entry (a Condition's lock is written before the Condition), so
** the child attaches in one pass. The child trusts its parent, which wrote
** the bytes, but reads them bounded all the same.
**
**   u32 nentries, then per entry:
**     u32 kind (its index in conc__obj_types), i32 fd, u32 ref (entry + 1,
**     0 for none), i64 num[4], then per map: i32 fd (-1: none), u64 size
**   u32 nobjs, then per object of the message: u32 entry
*/
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* ======================================================================
** Writing, in the parent
** ====================================================================== */

typedef struct Out {
  conc_SpawnObjs *res;
  conc_Obj **seen;     /* entry i is seen[i] */
  unsigned nseen;
} Out;

static int put(conc_SpawnObjs *r, const void *p, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 256;
    char *d;
    while (cap < r->len + n) cap *= 2;
    if ((d = realloc(r->data, cap)) == NULL) return CONC_ENOMEM;
    r->data = d;
    r->cap = cap;
  }
  memcpy(r->data + r->len, p, n);
  r->len += n;
  return CONC_OK;
}

static int put_u32(conc_SpawnObjs *r, uint32_t v) { return put(r, &v, 4); }
static int put_i32(conc_SpawnObjs *r, int32_t v) { return put(r, &v, 4); }

/* fd joins the list the child inherits (once). */
static int inherit(conc_SpawnObjs *r, int fd) {
  int *fds;
  for (unsigned i = 0; i < r->nfds; i++)
    if (r->fds[i] == fd) return CONC_OK;
  if ((fds = realloc(r->fds, (r->nfds + 1) * sizeof *fds)) == NULL)
    return CONC_ENOMEM;
  fds[r->nfds++] = fd;
  r->fds = fds;
  return CONC_OK;
}

/* Writes the entry of x, whose ref has been written as entry ref. */
static int put_export(conc_SpawnObjs *r, unsigned kind, const conc_Export *x,
                      unsigned ref) {
  int rc = put_u32(r, kind);
  if (rc == CONC_OK) rc = put_i32(r, x->fd);
  if (rc == CONC_OK && x->fd >= 0) rc = inherit(r, x->fd);
  if (rc == CONC_OK) rc = put_u32(r, ref);
  if (rc == CONC_OK) rc = put(r, x->num, sizeof x->num);
  for (int i = 0; rc == CONC_OK && i < CONC_EXPORT_MAPS; i++) {
    size_t size = 0;
    int fd = x->map[i] ? conc__shm_fd(x->map[i], &size) : -1;
    uint64_t size64 = size;
    if (x->map[i] != NULL && fd < 0) return CONC_ERUNTIME;  /* anonymous */
    rc = put_i32(r, fd);
    if (rc == CONC_OK) rc = put(r, &size64, sizeof size64);
    if (rc == CONC_OK && fd >= 0) rc = inherit(r, fd);
  }
  return rc;
}

static unsigned kind_of(const conc_ObjType *t) {
  unsigned k = 0;
  while (conc__obj_types[k] != NULL && conc__obj_types[k] != t) k++;
  return k;
}

static int put_entry(Out *out, conc_Obj *o, unsigned *entry, int depth) {
  conc_Export x = {.fd = -1};
  conc_Obj **seen;
  unsigned ref = 0;
  int rc;
  for (unsigned i = 0; i < out->nseen; i++)
    if (out->seen[i] == o) return *entry = i, CONC_OK;
  if (o->type->export == NULL || depth > 1) return CONC_EVALUE;
  if ((rc = o->type->export(o, &x)) != CONC_OK) return rc;
  if (x.ref != NULL) {  /* a lock holds nothing: depth stays bounded */
    if ((rc = put_entry(out, x.ref, &ref, depth + 1)) != CONC_OK) return rc;
    ref++;
  }
  if ((seen = realloc(out->seen, (out->nseen + 1) * sizeof *seen)) == NULL)
    return CONC_ENOMEM;
  out->seen = seen;
  seen[out->nseen] = o;
  if ((rc = put_export(out->res, kind_of(o->type), &x, ref)) != CONC_OK)
    return rc;
  *entry = out->nseen++;
  return CONC_OK;
}

int conc__spawn_export(conc_Obj *const *objs, unsigned n, conc_SpawnObjs *r,
                       unsigned *bad) {
  Out out = {r, NULL, 0};
  unsigned *entries = malloc((n ? n : 1) * sizeof *entries);
  int rc = entries ? CONC_OK : CONC_ENOMEM;
  memset(r, 0, sizeof *r);
  if (rc == CONC_OK) rc = put_u32(r, 0);  /* nentries, filled in below */
  for (unsigned i = 0; rc == CONC_OK && i < n; i++) {
    rc = put_entry(&out, objs[i], &entries[i], 0);
    if (rc != CONC_OK) *bad = i;
  }
  if (rc == CONC_OK) {
    uint32_t ne = out.nseen;
    memcpy(r->data, &ne, 4);
    rc = put_u32(r, n);
  }
  for (unsigned i = 0; rc == CONC_OK && i < n; i++) rc = put_u32(r, entries[i]);
  free(entries);
  free(out.seen);
  if (rc != CONC_OK) conc__spawn_objs_free(r);
  return rc;
}

void conc__spawn_objs_free(conc_SpawnObjs *r) {
  free(r->data);
  free(r->fds);
  memset(r, 0, sizeof *r);
}

/* ======================================================================
** Reading, in the child
** ====================================================================== */

typedef struct In {
  const char *p, *end;
} In;

static int get(In *in, void *v, size_t n) {
  if ((size_t)(in->end - in->p) < n) return 0;
  memcpy(v, in->p, n);
  in->p += n;
  return 1;
}

static void unmap_all(conc_Export *x) {
  for (int i = 0; i < CONC_EXPORT_MAPS; i++)
    if (x->map[i]) conc__shm_unmap(x->map[i], x->size[i]);
}

/* One entry: its object, or NULL (a short or bad entry, no memory). The
** inherited map descriptors join fds, for the caller to close once all
** are attached (two entries may map the same one). */
static conc_Obj *get_entry(In *in, conc_Obj **made, unsigned nmade, int *fds,
                           unsigned *nfds) {
  conc_Export x = {.fd = -1};
  uint32_t kind, ref;
  int32_t fd;
  unsigned nkinds = 0;
  conc_Obj *o;
  while (conc__obj_types[nkinds] != NULL) nkinds++;
  if (!get(in, &kind, 4) || !get(in, &fd, 4) || !get(in, &ref, 4) ||
      !get(in, x.num, sizeof x.num) || kind >= nkinds || ref > nmade ||
      conc__obj_types[kind]->attach == NULL)
    return NULL;
  x.fd = fd;
  x.ref = ref ? made[ref - 1] : NULL;
  for (int i = 0; i < CONC_EXPORT_MAPS; i++) {
    int32_t mfd;
    uint64_t size;
    if (!get(in, &mfd, 4) || !get(in, &size, 8)) return unmap_all(&x), NULL;
    if (mfd < 0) continue;
    fds[(*nfds)++] = mfd;
    x.size[i] = (size_t)size;
    if ((x.map[i] = conc__shm_attach(mfd, x.size[i])) == NULL)
      return unmap_all(&x), NULL;
  }
  if (x.fd >= 0) conc__proc_cloexec(x.fd);
  o = conc__obj_types[kind]->attach(&x);
  if (o == NULL) unmap_all(&x);
  return o;
}

int conc__spawn_attach(const char *data, size_t len, conc_Obj ***objs,
                       unsigned *n) {
  In in = {data, data + len};
  uint32_t ne, no;
  conc_Obj **made, **res = NULL;
  unsigned nmade = 0, nfds = 0;
  int rc = CONC_EVALUE, *fds;
  if (!get(&in, &ne, 4) || ne > len) return CONC_EVALUE;
  made = malloc((ne ? ne : 1) * sizeof *made);
  fds = malloc((ne ? ne : 1) * CONC_EXPORT_MAPS * sizeof *fds);
  if (made == NULL || fds == NULL) {
    free(made);
    free(fds);
    return CONC_ENOMEM;
  }
  while (nmade < ne &&
         (made[nmade] = get_entry(&in, made, nmade, fds, &nfds)) != NULL)
    nmade++;
  for (unsigned i = 0; i < nfds; i++) {
    int dup = 0;
    for (unsigned j = 0; j < i; j++) dup |= fds[j] == fds[i];
    if (!dup) conc__proc_close_fd(fds[i]);
  }
  free(fds);
  if (nmade == ne && get(&in, &no, 4) && no <= len) {
    rc = (res = malloc((no ? no : 1) * sizeof *res)) ? CONC_OK : CONC_ENOMEM;
    for (unsigned i = 0; rc == CONC_OK && i < no; i++) {
      uint32_t e;
      if (!get(&in, &e, 4) || e >= nmade) rc = CONC_EVALUE;
      else conc__obj_incref(res[i] = made[e]);
      if (rc != CONC_OK)
        while (i > 0) conc__obj_decref(res[--i]);
    }
  }
  /* the references the message holds are res's; the entries' go */
  for (unsigned i = 0; i < nmade; i++) conc__obj_decref(made[i]);
  free(made);
  if (rc != CONC_OK) {
    free(res);
    return rc;
  }
  *objs = res;
  *n = no;
  return CONC_OK;
}
