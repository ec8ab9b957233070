/*
** shared_test.c -- the shared heap (heap.c) and the containers on it
** (shared.c), without Lua: their values are opaque bytes to the core, so
** these tests store plain byte strings.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "core_test.h"

#define WAIT 20.0

/* A value holding the n bytes at p: inline when they fit. */
static conc_Val val(const char *p, size_t n) {
  conc_Val v = conc__val_empty;
  if (n <= CONC_VAL_INLINE) {
    memcpy(v.inl, p, n);
    v.len = (uint32_t)n;
  } else {
    v.msg = conc__msg_new(p, n, NULL, 0);
    check(v.msg != NULL, "conc__msg_new");
  }
  return v;
}

static conc_Val str(const char *s) {
  return val(s, strlen(s));
}

static int is(const conc_Val *v, const char *s) {
  size_t n;
  const char *p = conc__val_data(v, &n);
  return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* ======================================================================
** The heap
** ====================================================================== */

void test_heap_blocks(void) {
  conc_Heap *h = conc__heap_new();
  conc_Off offs[64];
  size_t sizes[] = {1, 16, 17, 33, 100, 1000, 4096, 70000, 300000, 5 << 20};
  check(h != NULL, "conc__heap_new");
  check(conc__heap_shared(h) && !conc__heap_down(h), "a shared heap, up");
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    char *p;
    offs[i] = conc__heap_alloc(h, sizes[i]);
    check(offs[i] != 0 && offs[i] % 16 == 0, "alloc %zu", sizes[i]);
    check(conc__heap_valid(h, offs[i], sizes[i]), "valid %zu", sizes[i]);
    check(!conc__heap_valid(h, offs[i], sizes[i] * 2 + 64), "too large");
    check(!conc__heap_valid(h, offs[i] + 16, 1), "not a block's start");
    p = conc__heap_at(h, offs[i]);
    memset(p, (int)i, sizes[i]);
  }
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *p = conc__heap_at(h, offs[i]);
    check(p[0] == i && p[sizes[i] - 1] == i, "block %zu overwritten", i);
  }
  check(!conc__heap_valid(h, 0, 1), "offset 0");
  check(!conc__heap_valid(h, (conc_Off)1 << 60, 1), "past the arena");
  /* a freed block is reused for its class, a large one too (its pages
  ** kept or given back, it reads as a block either way) */
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    conc_Off again;
    conc__heap_free(h, offs[i]);
    check(!conc__heap_valid(h, offs[i], 1), "freed %zu still valid", sizes[i]);
    conc__heap_free(h, offs[i]);  /* twice: ignored */
    again = conc__heap_alloc(h, sizes[i]);
    check(again == offs[i], "class of %zu not reused", sizes[i]);
    memset(conc__heap_at(h, again), 1, sizes[i]);
    conc__heap_free(h, again);
  }
  check(conc__heap_alloc(h, (size_t)1 << 62) == 0, "an impossible size");
  check(conc__heap_shutdown(h) == 1 && conc__heap_down(h), "shut down");
  check(conc__heap_shutdown(&conc__heap_private) == 0, "the private heap");
  check(!conc__heap_down(&conc__heap_private), "the private heap is up");
  conc__obj_decref(&h->hdr);
}

/* ======================================================================
** Containers on both heaps: the same results
** ====================================================================== */

static void dict_on(conc_Heap *h) {
  conc_ShDict *d = conc__shdict_new(h, &conc__shdict_type);
  char big[300], key[64];
  conc_Val k, v, out, *snap;
  size_t n;
  check(d != NULL, "conc__shdict_new");
  memset(big, 'b', sizeof big);
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, i % 3 ? "k%d" : "a long key, past the inline "
             "bytes of a value: %d", i);
    k = str(key);
    v = i % 2 ? val(big, sizeof big) : str(key);
    check_rc(conc__shdict_set(d, &k, &v), CONC_OK);
    conc__val_free(&k);
    conc__val_free(&v);
  }
  check_size(conc__shdict_len(d), 1000);
  for (int i = 0; i < 1000; i += 7) {
    snprintf(key, sizeof key, i % 3 ? "k%d" : "a long key, past the inline "
             "bytes of a value: %d", i);
    k = str(key);
    check_rc(conc__shdict_get(d, &k, &out), CONC_OK);
    check(i % 2 ? conc__val_data(&out, &n) && n == sizeof big : is(&out, key),
          "value of %s", key);
    conc__val_free(&out);
    check_rc(conc__shdict_pop(d, &k, &out), CONC_OK);
    conc__val_free(&out);
    check_rc(conc__shdict_get(d, &k, &out), CONC_EKEY);
    conc__val_free(&k);
  }
  check_size(conc__shdict_len(d), 1000 - 143);
  k = str("k1");
  v = str("replaced");
  check_rc(conc__shdict_setdefault(d, &k, &v, &out), CONC_OK);
  check(!is(&out, "replaced"), "setdefault replaced a value");
  conc__val_free(&out);
  k = str("k1");
  v = str("replaced");
  check_rc(conc__shdict_set(d, &k, &v), CONC_OK);
  conc__val_free(&k);
  conc__val_free(&v);
  k = str("k1");
  check_rc(conc__shdict_get(d, &k, &out), CONC_OK);
  check(is(&out, "replaced"), "set did not replace");
  conc__val_free(&out);
  conc__val_free(&k);
  check_rc(conc__shdict_snapshot(d, CONC_SH_KEYS, &snap, &n), CONC_OK);
  check_size(n, 1000 - 143);
  check(is(&snap[0], "k1"),
        "insertion order");
  conc__vals_free(snap, n);
  conc__shdict_clear(d);
  check_size(conc__shdict_len(d), 0);
  conc__obj_decref((conc_Obj *)d);
}

static void list_on(conc_Heap *h) {
  conc_ShList *l = conc__shlist_new(h);
  char big[100];
  conc_Val v, out, *snap;
  size_t n;
  check(l != NULL, "conc__shlist_new");
  memset(big, 'x', sizeof big);
  for (int i = 0; i < 100; i++) {
    char s[16];
    snprintf(s, sizeof s, "%d", i);
    v = i % 10 == 9 ? val(big, sizeof big) : str(s);
    check_rc(conc__shlist_insert(l, i % 2 ? INT64_MAX : 1, &v, 1), CONC_OK);
    conc__val_free(&v);
  }
  check_size(conc__shlist_len(l), 100);
  check_rc(conc__shlist_get(l, 1, &out), CONC_OK);
  check(is(&out, "98"), "the last inserted at the front");
  conc__val_free(&out);
  check_rc(conc__shlist_get(l, -1, &out), CONC_OK);
  check(conc__val_data(&out, &n) && n == sizeof big, "the last appended");
  conc__val_free(&out);
  check_rc(conc__shlist_get(l, 101, &out), CONC_ERANGE);
  v = str("50");
  check(conc__shlist_index(l, &v, 1) > 0, "index");
  check_rc(conc__shlist_remove(l, &v, 1), CONC_OK);
  check_rc(conc__shlist_remove(l, &v, 1), CONC_ENOTFOUND);
  conc__val_free(&v);
  check_rc(conc__shlist_pop(l, 2, &out), CONC_OK);
  check(is(&out, "96"), "pop(2)");
  conc__val_free(&out);
  v = str("new");
  check_rc(conc__shlist_set(l, 3, &v), CONC_OK);
  conc__val_free(&v);
  check_rc(conc__shlist_snapshot(l, &snap, &n), CONC_OK);
  check_size(n, 98);
  check(is(&snap[2], "new"), "set(3)");
  conc__vals_free(snap, n);
  conc__shlist_clear(l);
  check_rc(conc__shlist_pop(l, -1, &out), CONC_EEMPTYLIST);
  conc__obj_decref((conc_Obj *)l);
}

void test_shared_containers(void) {
  conc_Heap *h = conc__heap_new();
  conc_Obj *obj = conc__local_new();
  conc_ShList *l;
  conc_Val v = conc__val_empty;
  check(h != NULL && obj != NULL, "setup");
  dict_on(&conc__heap_private);
  list_on(&conc__heap_private);
  dict_on(h);
  list_on(h);
  /* a value naming a conc object: held by reference in threads' lists,
  ** refused in a shared heap */
  v.msg = conc__msg_new("o", 1, &obj, 1);
  for (int shared = 0; shared < 2; shared++) {
    conc_Val copy;
    l = conc__shlist_new(shared ? h : &conc__heap_private);
    check(l != NULL && conc__val_copy(&copy, &v) == 0, "setup");
    check_rc(conc__shlist_insert(l, INT64_MAX, &copy, 1),
             shared ? CONC_EVALUE : CONC_OK);
    conc__val_free(&copy);
    check_size(conc__shlist_len(l), shared ? 0 : 1);
    conc__obj_decref((conc_Obj *)l);
  }
  conc__val_free(&v);
  conc__obj_decref(obj);
  conc__obj_decref(&h->hdr);
}

/* ======================================================================
** A child killed at any moment of its updates
** ====================================================================== */

/* Values are a key's letter repeated, 8 or 100 bytes: a torn value shows. */
static conc_Val pattern(int k, size_t n) {
  char buf[100];
  memset(buf, 'a' + k % 26, n);
  return val(buf, n);
}

static int whole(const conc_Val *v, int k) {
  size_t n;
  const char *p = conc__val_data(v, &n);
  if (n != 8 && n != 100) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] != 'a' + k % 26) return 0;
  return 1;
}

static void churn(conc_ShDict *d, conc_ShList *l) {
  for (uint64_t i = 0;; i++) {
    int k = (int)(rnd() % 40);
    char key[8];
    conc_Val kv, v, out;
    snprintf(key, sizeof key, "%d", k);
    kv = str(key);
    switch (rnd() % 8) {
      case 0: case 1: case 2:
        v = pattern(k, rnd() % 2 ? 8 : 100);
        conc__shdict_set(d, &kv, &v);
        conc__val_free(&v);
        break;
      case 3:
        if (conc__shdict_pop(d, &kv, &out) == 0) conc__val_free(&out);
        break;
      case 4: {
        conc_Val pairs[4] = {str("1"), pattern(1, 100), str("2"), pattern(2, 8)};
        conc__shdict_update(d, pairs, 2);
        for (int j = 0; j < 4; j++) conc__val_free(&pairs[j]);
        break;
      }
      case 5:
        v = pattern(0, rnd() % 2 ? 8 : 100);
        conc__shlist_insert(l, rnd() % 2 ? INT64_MAX : (int64_t)(rnd() % 30),
                            &v, 1);
        conc__val_free(&v);
        break;
      case 6:
        if (conc__shlist_len(l) > 50 &&
            conc__shlist_pop(l, (int64_t)(rnd() % 40) - 20, &out) == 0)
          conc__val_free(&out);
        break;
      case 7:
        v = pattern(0, rnd() % 2 ? 8 : 100);
        conc__shlist_set(l, (int64_t)(rnd() % 50) + 1, &v);
        conc__val_free(&v);
        if (i % 500 == 0) conc__shlist_clear(l);
        break;
    }
    conc__val_free(&kv);
  }
}

/* Every item whole, the lengths what the snapshots hold, and both still
** taking changes. */
static void check_whole(conc_ShDict *d, conc_ShList *l) {
  conc_Val *snap, k, v;
  size_t n;
  check_rc(conc__shdict_snapshot(d, CONC_SH_KEYS | CONC_SH_VALUES, &snap, &n),
           CONC_OK);
  check_size(n / 2, conc__shdict_len(d));
  for (size_t i = 0; i < n; i += 2) {
    size_t klen;
    const char *kp = conc__val_data(&snap[i], &klen);
    char key[8] = {0};
    check(klen > 0 && klen < sizeof key, "a key of %zu bytes", klen);
    memcpy(key, kp, klen);
    check(whole(&snap[i + 1], atoi(key)), "the value of key %s", key);
  }
  conc__vals_free(snap, n);
  check_rc(conc__shlist_snapshot(l, &snap, &n), CONC_OK);
  check_size(n, conc__shlist_len(l));
  for (size_t i = 0; i < n; i++) check(whole(&snap[i], 0), "list item %zu", i);
  conc__vals_free(snap, n);
  k = str("after");
  v = pattern(0, 100);
  check_rc(conc__shdict_set(d, &k, &v), CONC_OK);
  conc__val_free(&k);
  k = str("after");
  check_rc(conc__shdict_pop(d, &k, &v), CONC_OK);
  conc__val_free(&k);
  conc__val_free(&v);
  v = pattern(0, 8);
  check_rc(conc__shlist_insert(l, 1, &v, 1), CONC_OK);
  check_rc(conc__shlist_pop(l, 1, &v), CONC_OK);
  conc__val_free(&v);
}

void test_shared_killed(void) {
  conc_Heap *h = conc__heap_new();
  conc_ShDict *d;
  conc_ShList *l;
  int rounds = 60, recovered = 0;
  check(h != NULL, "conc__heap_new");
  conc__thread_main();  /* its fork hook gives a child its own thread id */
  d = conc__shdict_new(h, &conc__shdict_type);
  l = conc__shlist_new(h);
  check(d != NULL && l != NULL, "containers");
  for (int r = 0; r < rounds; r++) {
    int status;
    child_pid = conc__proc_fork();
    check(child_pid >= 0, "fork failed");
    if (child_pid == 0) {
      in_child = 1;
      rng_state += (uint64_t)r * 0x9e3779b97f4a7c15u;
      churn(d, l);
    }
    usleep((useconds_t)(200 + rnd() % 3000));
    kill(child_pid, SIGKILL);
    check_rc(conc__proc_wait(child_pid, conc__monotonic() + WAIT, &status),
             CONC_OK);
    child_pid = 0;
    check_whole(d, l);
    recovered += 1;
  }
  check(recovered == rounds, "rounds");
  conc__obj_decref((conc_Obj *)d);
  conc__obj_decref((conc_Obj *)l);
  conc__obj_decref(&h->hdr);
}

/* ======================================================================
** A Manager's containers given to another process (spawn.c)
** ====================================================================== */

static conc_ShHead *head_of(conc_Obj *o) {
  return (conc_ShHead *)o;
}

static void dict_put(conc_ShDict *d, const char *key, const char *value) {
  conc_Val k = str(key), v = str(value);
  check_rc(conc__shdict_set(d, &k, &v), CONC_OK);
  conc__val_free(&k);
  conc__val_free(&v);
}

static void list_append(conc_ShList *l, conc_Val v) {
  check_rc(conc__shlist_insert(l, INT64_MAX, &v, 1), CONC_OK);
  conc__val_free(&v);
}

/* Is d[key] the string want? */
static void dict_is(conc_ShDict *d, const char *key, const char *want) {
  conc_Val k = str(key), out;
  check_rc(conc__shdict_get(d, &k, &out), CONC_OK);
  check(is(&out, want), "d[%s] is not %s", key, want);
  conc__val_free(&out);
  conc__val_free(&k);
}

/* What the child gets: the parent's values, read through objects of its
** own over its own mapping of the arena; it answers in the same ones. */
static void attach_child(const conc_SpawnObjs *r, const conc_Heap *h) {
  conc_Obj **objs;
  unsigned n;
  conc_ShDict *d, *ns;
  conc_ShList *l;
  conc_Val out;
  size_t len;
  in_child = 1;
  check_rc(conc__spawn_attach(r->data, r->len, &objs, &n), CONC_OK);
  check(n == 3 && objs[0]->type == &conc__shdict_type &&
        objs[1]->type == &conc__shlist_type &&
        objs[2]->type == &conc__namespace_type, "the three kinds, in order");
  d = (conc_ShDict *)objs[0];
  l = (conc_ShList *)objs[1];
  ns = (conc_ShDict *)objs[2];
  check(head_of(objs[0])->heap == head_of(objs[2])->heap &&
        head_of(objs[0])->heap->base != h->base &&
        conc__heap_shared(head_of(objs[0])->heap),
        "one heap of its own, mapped at another address");
  dict_is(d, "greeting", "hello from the parent");
  check_size(conc__shlist_len(l), 2);
  check_rc(conc__shlist_get(l, 2, &out), CONC_OK);
  check(conc__val_data(&out, &len) && len == 300, "the parent's large value");
  conc__val_free(&out);
  dict_is(ns, "x", "1");
  dict_put(d, "answer", "from the child");
  list_append(l, str("appended"));
  for (unsigned i = 0; i < n; i++) conc__obj_decref(objs[i]);
  free(objs);
  _exit(0);
}

void test_shared_spawn(void) {
  conc_Heap *h = conc__heap_new();
  conc_ShDict *d, *ns, *mine = conc__shdict_new(&conc__heap_private,
                                                &conc__shdict_type);
  conc_ShList *l;
  conc_Obj *objs[3];
  conc_SpawnObjs r;
  conc_Export x = {.fd = -1};
  unsigned bad = 9;
  char big[300];
  int status;
  check(h != NULL && mine != NULL, "setup");
  conc__thread_main();  /* its fork hook gives a child its own thread id */
  d = conc__shdict_new(h, &conc__shdict_type);
  l = conc__shlist_new(h);
  ns = conc__shdict_new(h, &conc__namespace_type);
  check(d != NULL && l != NULL && ns != NULL, "containers");
  dict_put(d, "greeting", "hello from the parent");
  memset(big, 'b', sizeof big);
  list_append(l, str("first"));
  list_append(l, val(big, sizeof big));
  dict_put(ns, "x", "1");

  /* a thread container is this process's alone */
  objs[0] = (conc_Obj *)mine;
  check_rc(conc__spawn_export(objs, 1, &r, &bad), CONC_EVALUE);
  check(bad == 0, "the refused object named");
  check_rc(objs[0]->type->export(objs[0], &x), CONC_EVALUE);
  /* once exported, a list outlives the object it was made as (another
  ** process may hold it): an object attached here still has its items */
  objs[0] = (conc_Obj *)conc__shlist_new(h);
  check(objs[0] != NULL, "a list");
  check_rc(conc__shlist_type.export(objs[0], &x), CONC_OK);
  check(x.ref == &h->hdr && (objs[1] = conc__shlist_type.attach(&x)) != NULL,
        "attach in this process");
  conc__obj_decref(objs[0]);
  list_append((conc_ShList *)objs[1], str("kept"));
  check(conc__heap_valid(h, (conc_Off)x.num[0], 1), "its state freed");
  conc__obj_decref(objs[1]);
  /* a state that is no live block of a heap is not attached */
  x.ref = (conc_Obj *)mine;
  check(conc__shdict_type.attach(&x) == NULL, "attached to no heap");
  x.ref = &h->hdr;
  x.num[0] = (int64_t)(h->size / 2);
  check(conc__shdict_type.attach(&x) == NULL, "attached past the top");
  x.num[0] = 0;
  check(conc__shlist_type.attach(&x) == NULL, "attached offset 0");

  objs[0] = (conc_Obj *)d;
  objs[1] = (conc_Obj *)l;
  objs[2] = (conc_Obj *)ns;
  check_rc(conc__spawn_export(objs, 3, &r, &bad), CONC_OK);
  check(r.nfds == 1, "one descriptor, the arena's: %u", r.nfds);
  fflush(stdout);
  fflush(stderr);
  child_pid = conc__proc_fork();
  check(child_pid >= 0, "fork failed");
  if (child_pid == 0) attach_child(&r, h);
  check_rc(conc__proc_wait(child_pid, conc__monotonic() + WAIT, &status),
           CONC_OK);
  child_pid = 0;
  check(status == 0, "the child failed: %d", status);
  conc__spawn_objs_free(&r);

  /* the child's answer, and its objects let go of nothing of ours */
  dict_is(d, "answer", "from the child");
  check_size(conc__shlist_len(l), 3);
  for (int i = 0; i < 3; i++) {
    x = (conc_Export){.fd = -1};
    check_rc(objs[i]->type->export(objs[i], &x), CONC_OK);
    check(x.ref == &h->hdr && conc__heap_valid(h, (conc_Off)x.num[0], 1),
          "object %d's state is still a live block", i);
  }
  for (int i = 0; i < 3; i++) conc__obj_decref(objs[i]);
  conc__obj_decref((conc_Obj *)mine);
  conc__obj_decref(&h->hdr);
}
