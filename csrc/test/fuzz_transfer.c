/*
** fuzz_transfer.c -- the randomized decoder test.
**
**   fuzz_transfer ITERATIONS SEED
**
** Encodes a corpus of representative values with the library's encoder, then
** ITERATIONS times takes a corpus message, mutates it (bit flips, interesting
** bytes, truncation, insertion, deletion, duplicated ranges, splices of two
** messages) and decodes it under lua_pcall. Any Lua error is a pass; a crash
** or a sanitizer report is the failure. What decodes is then used: walked
** (keys, values, metatables, upvalues), the corpus's functions in it called,
** and encoded again, so a value that decodes but is broken inside (a missing
** upvalue, say) crashes here rather than in some later user of it. Each input
** is copied into a buffer malloc'd to exactly its length, so ASan sees a read
** one byte past the end. The state's allocator refuses to grow past
** MEM_LIMIT, so a corrupt size costs an error, never the machine's memory.
** Before the loop, every corpus message must decode as it is, and a few
** hostile inputs (see hostile_inputs) must be rejected as corrupt, not run
** into that limit.
**
** The mutations are a function of SEED alone, but the corpus is not quite:
** Lua seeds its string hashes per state, so the order of a table's hash part,
** and with it the corpus bytes, changes from run to run. So a crash saves its
** input first (to fuzz_transfer-crash.bin, from a signal handler, or from the
** sanitizer's death callback under ASan), and
**
**   fuzz_transfer --replay FILE BASE
**
** decodes that file once, lending it the objects of corpus message BASE as
** the crashed run did. `fuzz_transfer --corpus DIR` writes the corpus out.
**
** Built with -DCONC_LIBFUZZER, the same harness is a libFuzzer target, e.g.
**
**   clang -g -O1 -DCONC_LIBFUZZER -fsanitize=fuzzer,address,undefined \
**     -D_GNU_SOURCE -Icsrc -Icsrc/include -I/usr/include/lua5.4 \
**     csrc/test/fuzz_transfer.c \
**     $(find csrc -maxdepth 1 -name '*.c' ! -name main.c) \
**     BUILD/embedded.c -llua5.4 -lm -lpthread -o fuzz_transfer_lf
**   ./fuzz_transfer --corpus seeds && ./fuzz_transfer_lf seeds
*/
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lualib.h"

#include "lconc.h"  /* the internals: this test links libconc */

#define MEM_LIMIT ((size_t)64 << 20)
#define MAX_MUTATIONS 4

/* ======================================================================
** A bounded allocator
** ====================================================================== */

static size_t mem_used, mem_peak;
static unsigned long mem_refused;

static void *bounded_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr == NULL) osize = 0;  /* osize is a type tag when ptr is NULL */
  if (nsize == 0) {
    free(ptr);
    mem_used -= osize;
    return NULL;
  }
  if (nsize > osize && nsize - osize > MEM_LIMIT - mem_used) {
    mem_refused++;
    return NULL;  /* Lua raises a memory error; shrinking never fails */
  }
  ptr = realloc(ptr, nsize);
  if (ptr == NULL) return NULL;
  mem_used = mem_used - osize + nsize;
  if (mem_used > mem_peak) mem_peak = mem_used;
  return ptr;
}

/* ======================================================================
** The corpus
** ====================================================================== */

/*
** Each entry is a list of values that make one message. No value holds a
** "__gc" or "__close" string, and no function has side effects: mutations
** can build a table whose metatable is any table of the corpus, and a
** finalizer run at collection must not print or loop.
*/
static const char CORPUS[] =
  "local threading = require 'conc.threading'\n"
  "local core = require 'conc.core'\n"
  "local bytes = {}\n"
  "for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end\n"
  "bytes = table.concat(bytes)\n"
  "local shared = {1, 2}\n"
  "local cyc = {name = 'cyc'}; cyc.self = cyc; cyc[cyc] = shared\n"
  "local function counter()\n"
  "  local n = 0\n"
  "  return function() n = n + 1; return n end, function() return n end\n"
  "end\n"
  "local inc, get = counter()\n"
  /* closures sharing cells: these cross as UPVAL */
  "local function floor(x) return math.floor(x) end\n"
  "local function str(x) return tostring(x) end\n"
  "local function fact(n)\n"
  "  if n <= 1 then return 1 end\n"
  "  return n * fact(n - 1)\n"
  "end\n"
  "local function adder(x)\n"
  "  return function(y) return function(z) return x + y + z end end\n"
  "end\n"
  "local mid = adder(1)\n"
  "local mt = {__index = function(t, k) return k end, __name = 'Point'}\n"
  "local deep = {}\n"
  "do local p = deep; for i = 1, 200 do p.n = {i}; p = p.n end end\n"
  /* deeper than the decoder's window of frames (deep.h), as keys and as
  ** metatables too */
  "local mdeep = {}\n"
  "do local p = mdeep; for i = 1, 80 do\n"
  "  local m = {i}; setmetatable(p, m); p = m\n"
  "end end\n"
  "local kdeep = {'leaf'}\n"
  "for i = 2, 80 do kdeep = {[kdeep] = i} end\n"
  "local arr = {}; for i = 1, 100 do arr[i] = i * 1.5 end\n"
  "local hash = {}; for i = 1, 40 do hash['k' .. i] = i end\n"
  "local env = {y = 2}\n"
  "local withenv = load('return y', '=withenv', 't', env)\n"
  "local lo = threading['local']()\n"
  "local main = threading.main_thread()\n"
  "local th = threading.Thread{target = fact, args = {5}, name = 'w'}\n"
  /* what a decoded value must survive: being walked (every key, value,
  ** metatable and upvalue), the corpus's own functions being called under an
  ** instruction budget, and being encoded again */
  "local function budget() error('budget', 0) end\n"
  "local callable = {['=corpus'] = true, ['=withenv'] = true}\n"
  "local G = _G\n"
  "local function exercise(...)\n"
  "  local list, seen, i = table.pack(...), {}, 0\n"
  "  local n = list.n\n"
  "  while i < n and i < 400 do\n"
  "    i = i + 1\n"
  "    local v = list[i]\n"
  "    local t = type(v)\n"
  "    if (t == 'table' or t == 'function') and not seen[v] and v ~= G then\n"
  "      seen[v] = true\n"
  "      if t == 'table' then\n"
  "        for k, x in next, v do\n"
  "          list[n + 1] = k; list[n + 2] = x; n = n + 2\n"
  "        end\n"
  "        n = n + 1; list[n] = debug.getmetatable(v)\n"
  "        local _ = rawlen(v)\n"
  "      else\n"
  "        for u = 1, 255 do\n"
  "          local name, x = debug.getupvalue(v, u)\n"
  "          if name == nil then break end\n"
  "          n = n + 1; list[n] = x\n"
  "        end\n"
  "        if callable[debug.getinfo(v, 'S').source] then\n"
  "          debug.sethook(budget, '', 10000)\n"
  "          pcall(v, 3, 3, 3)\n"
  "          debug.sethook()\n"
  "        end\n"
  "      end\n"
  "    end\n"
  "  end\n"
  "  pcall(core.copy, ...)\n"
  "end\n"
  "debug.getregistry()['fuzz_transfer.exercise'] = exercise\n"
  "return {\n"
  "  {n = 11, nil, true, false, 0, -1, math.maxinteger, math.mininteger, 0.5,"
  "   -0.0, 1/0, 0/0},\n"
  "  {n = 4, '', 'a\\0b', string.rep('x', 300), bytes},\n"
  "  {n = 3, {1, 2, 3, x = 1.5, y = 's', [true] = false, [2.5] = 'f'},"
  "   {a = shared, b = shared, shared}, cyc},\n"
  "  {n = 3, inc, get, fact},\n"
  "  {n = 4, adder(1), adder(1)(2), mid, mid(2)},\n"
  "  {n = 3, floor, str, {floor, str, inc}},\n"
  "  {n = 7, string, string.format, print, math.floor, threading,"
  "   threading.Thread, _G},\n"
  "  {n = 3, lo, main, {lo, lo, main = main}},\n"
  "  {n = 4, setmetatable({x = 1, y = 2}, mt), deep, mdeep, kdeep},\n"
  "  {n = 3, arr, hash, {arr, hash, arr}},\n"
  "  {n = 2, withenv, env},\n"
  "  {n = 1, {f = fact, s = string, l = lo, c = cyc, inc = inc, g = get}},\n"
  "  {n = 1, th},\n"
  /* records: one table of scalars, which the decoder reads apart */
  "  {n = 1, {id = 7, name = 'item'}},\n"
  "  {n = 1, {1, 2.5, 'three', x = -1, [true] = false, [2.5] = 0/0}},\n"
  "  {n = 0},\n"
  "}\n";

typedef struct Corpus {
  conc_Msg **msgs;
  int n;
} Corpus;

static int build_corpus_p(lua_State *L) {
  Corpus *c = lua_touserdata(L, 1);
  int list, count;
  /* hermetic: a mutated module name must not find a file on disk */
  lua_getglobal(L, "package");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, CORPUS, sizeof CORPUS - 1, "=corpus") != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, 1);
  list = lua_gettop(L);
  count = (int)luaL_len(L, list);
  c->msgs = calloc((size_t)count, sizeof *c->msgs);
  if (c->msgs == NULL) return luaL_error(L, "not enough memory");
  for (int i = 1; i <= count; i++) {
    int top, n;
    lua_rawgeti(L, list, i);
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    top = lua_gettop(L);
    for (int j = 1; j <= n; j++) lua_rawgeti(L, top, j);
    c->msgs[c->n++] = conc__encode(L, top + 1, n, NULL);
    lua_settop(L, top - 1);
  }
  /* the values stay alive (the objects in particular) in the registry */
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz_transfer.corpus");
  return 0;
}

/* ======================================================================
** Decoding one input
** ====================================================================== */

typedef struct Input {
  const char *data;
  size_t len;
  const conc_Msg *objs_from;  /* whose object array the input may index */
} Input;

static int decode_p(lua_State *L) {
  Input *in = lua_touserdata(L, 1);
  int n;
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz_transfer.exercise");
  n = conc__decode_bytes(L, in->data, in->len, in->objs_from->objs,
                         in->objs_from->nobjs);
  lua_call(L, n, 0);  /* raises nothing of its own */
  return 0;
}

/* Decodes len bytes from a copy allocated to exactly that length. Returns 1
** if they decoded, 0 if the decoder raised an error (its message copied to
** why, when why is not NULL). */
static int decode_input(lua_State *L, const char *data, size_t len,
                        const conc_Msg *objs_from, char *why, size_t whysize) {
  char *copy = malloc(len ? len : 1);
  Input in;
  int ok;
  if (copy == NULL) {
    fprintf(stderr, "fuzz_transfer: out of memory\n");
    exit(2);
  }
  memcpy(copy, data, len);
  in.data = copy;
  in.len = len;
  in.objs_from = objs_from;
  lua_pushcfunction(L, decode_p);
  lua_pushlightuserdata(L, &in);
  ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
  if (!ok && why) {
    const char *msg = lua_tostring(L, -1);
    snprintf(why, whysize, "%s", msg ? msg : "(not a string)");
  }
  lua_settop(L, 0);
  free(copy);
  return ok;
}

static int try_decode(lua_State *L, const char *data, size_t len,
                      const conc_Msg *objs_from) {
  return decode_input(L, data, len, objs_from, NULL, 0);
}

/*
** Inputs built to cost memory: MiB-long messages whose nested tables each
** claim the rest of the message as their array or hash size, and one that
** is nothing but tables, each the first key of the one before (as deep as
** a MiB can nest, with no depth refused: what the decoder's frames cost
** must stay about what the message holds). The decoder must call them
** corrupt, having allocated about as much as the message holds; the
** allocator's limit would turn a per-level preallocation into "not enough
** memory" instead. Returns 1 if every one is rejected so.
*/
static int hostile_inputs(lua_State *L, const Corpus *c) {
  const size_t len = (size_t)1 << 20;
  char *buf = calloc(len, 1), why[256];
  int ok = 1;
  if (buf == NULL) return 0;
  for (int kind = 0; kind < 4; kind++) {
    size_t p = 0;
    why[0] = 0;
    memset(buf, 0, len);
    buf[p++] = 'C';
    buf[p++] = 1;     /* the version */
    buf[p++] = 1;     /* one value */
    for (int level = 0; kind == 3 ? p + 6 <= len : level < 150; level++) {
      buf[p++] = 6;   /* TABLE */
      if (kind == 0) {  /* narray: the rest, as a 3-byte varint */
        size_t n = len - (p + 3 + 4);
        buf[p++] = (char)(0x80 | (n & 0x7f));
        buf[p++] = (char)(0x80 | ((n >> 7) & 0x7f));
        buf[p++] = (char)(n >> 14);
        memset(buf + p, 0, 4);
      } else {          /* no array; a huge nhash hint (none for kind 3);
                           the next is a key */
        buf[p++] = 0;
        memset(buf + p, kind == 1 ? 0xff : kind == 2 ? 0x7f : 0, 4);
      }
      p += 4;
    }
    /* what follows is zeros: NIL array elements, or a nil table key; or
    ** (kind 3) nothing */
    if (decode_input(L, buf, kind == 3 ? p : len, c->msgs[0], why,
                     sizeof why) ||
        strstr(why, "corrupt message") == NULL) {
      fprintf(stderr, "fuzz_transfer: hostile input %d: %s\n", kind,
              why[0] ? why : "decoded");
      ok = 0;
    }
    lua_gc(L, LUA_GCCOLLECT);
  }
  free(buf);
  return ok;
}

static lua_State *new_state(void) {
  lua_State *L = lua_newstate(bounded_alloc, NULL);
  if (L == NULL) return NULL;
  luaL_openlibs(L);
  conc_openlibs(L);
  return L;
}

static int setup(lua_State *L, Corpus *c) {
  lua_pushcfunction(L, build_corpus_p);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_transfer: cannot build the corpus: %s\n",
            lua_tostring(L, -1));
    return 0;
  }
  /* every unmutated message must decode */
  for (int i = 0; i < c->n; i++) {
    if (!try_decode(L, c->msgs[i]->data, c->msgs[i]->len, c->msgs[i])) {
      fprintf(stderr, "fuzz_transfer: corpus message %d does not decode\n",
              i + 1);
      return 0;
    }
  }
  return hostile_inputs(L, c);
}

#ifndef CONC_LIBFUZZER

/* ======================================================================
** Mutations
** ====================================================================== */

static uint64_t rng_state;

static uint64_t rng(void) {  /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static size_t below(size_t n) {
  return n ? (size_t)(rng() % n) : 0;
}

typedef struct Buf {
  char *p;
  size_t len, cap;
} Buf;

static void buf_reserve(Buf *b, size_t n) {
  if (b->len + n <= b->cap) return;
  while (b->cap < b->len + n) b->cap = b->cap ? b->cap * 2 : 256;
  b->p = realloc(b->p, b->cap);
  if (b->p == NULL) {
    fprintf(stderr, "fuzz_transfer: out of memory\n");
    exit(2);
  }
}

/* Inserts n bytes from src (NULL: random bytes) at position at. */
static void buf_insert(Buf *b, size_t at, const char *src, size_t n) {
  buf_reserve(b, n);
  memmove(b->p + at + n, b->p + at, b->len - at);
  for (size_t i = 0; i < n; i++)
    b->p[at + i] = src ? src[i] : (char)rng();
  b->len += n;
}

static void mutate(Buf *b, const Corpus *c) {
  static const unsigned char interesting[] = {0, 1, 0x7f, 0x80, 0xff};
  size_t at = below(b->len + 1);
  switch (rng() % 9) {
    case 0:  /* flip a bit */
      if (b->len) b->p[below(b->len)] ^= (char)(1 << (rng() % 8));
      break;
    case 1:  /* an interesting byte: a boundary value, or any tag (0..13) */
      if (b->len) {
        unsigned char v = rng() % 2 ? interesting[below(sizeof interesting)]
                                    : (unsigned char)below(14);
        b->p[below(b->len)] = (char)v;
      }
      break;
    case 2:  /* a random byte */
      if (b->len) b->p[below(b->len)] = (char)rng();
      break;
    case 3:  /* truncate */
      b->len = below(b->len + 1);
      break;
    case 4:  /* insert random bytes */
      buf_insert(b, at, NULL, 1 + below(8));
      break;
    case 5: {  /* delete a range */
      size_t n = below(b->len - (at < b->len ? at : b->len) + 1);
      if (n > 16 && rng() % 2) n = 1 + below(16);
      memmove(b->p + at, b->p + at + n, b->len - at - n);
      b->len -= n;
      break;
    }
    case 6: {  /* duplicate a range */
      size_t from = below(b->len + 1);
      size_t n = below(b->len - from + 1);
      char *tmp;
      if (n > 64) n = 1 + below(64);
      tmp = malloc(n ? n : 1);
      if (tmp == NULL) exit(2);
      memcpy(tmp, b->p + from, n);
      buf_insert(b, at, tmp, n);
      free(tmp);
      break;
    }
    case 7: {  /* splice: our prefix, another message's suffix */
      const conc_Msg *m = c->msgs[below((size_t)c->n)];
      size_t from = below(m->len + 1);
      b->len = at;
      buf_insert(b, at, m->data + from, m->len - from);
      break;
    }
    default: {  /* a varint-sized run of 0xff or 0x80: huge counts */
      size_t n = 1 + below(10);
      if (at + n > b->len) n = b->len - at;
      memset(b->p + at, rng() % 2 ? 0xff : 0x80, n);
      if (n && rng() % 2) b->p[at + n - 1] = (char)below(0x80);
      break;
    }
  }
}

/* ======================================================================
** Saving the input that crashed
** ====================================================================== */

#define CRASH_FILE "fuzz_transfer-crash.bin"

static const char *volatile cur_data;
static volatile size_t cur_len;
static volatile int cur_base;

/* Async-signal-safe: open, write, close, and digits by hand. */
static void save_input(void) {
  static const char msg[] = "\nfuzz_transfer: input saved to " CRASH_FILE
                            "; replay: fuzz_transfer --replay " CRASH_FILE " ";
  char num[16];
  int n = 0, fd, base = cur_base;
  if (cur_data == NULL) return;
  fd = open(CRASH_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    if (write(fd, cur_data, cur_len) < 0) { /* nothing more to do */ }
    close(fd);
  }
  do num[sizeof num - 1 - n++] = (char)('0' + base % 10);
  while ((base /= 10) > 0 && n < 15);
  if (write(2, msg, sizeof msg - 1) < 0 ||
      write(2, num + sizeof num - n, (size_t)n) < 0 || write(2, "\n", 1) < 0) {
  }
  cur_data = NULL;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifdef UNDER_ASAN
/* ASan reports a bad read itself, then calls this before it exits. */
void __sanitizer_set_death_callback(void (*callback)(void));

static void on_crash_install(void) {
  __sanitizer_set_death_callback(save_input);
}
#else
static void on_signal(int sig) {
  save_input();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void on_crash_install(void) {
  static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    signal(sigs[i], on_signal);
}
#endif

/* ======================================================================
** main
** ====================================================================== */

static int write_corpus(const Corpus *c, const char *dir) {
  for (int i = 0; i < c->n; i++) {
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/msg%02d", dir, i);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(c->msgs[i]->data, 1, c->msgs[i]->len, f) !=
                         c->msgs[i]->len) {
      perror(path);
      return 1;
    }
    fclose(f);
  }
  printf("fuzz_transfer: %d messages written to %s\n", c->n, dir);
  return 0;
}

static int replay(lua_State *L, const Corpus *c, const char *file, int base) {
  Buf b = {NULL, 0, 0};
  char chunk[4096];
  size_t n;
  int ok;
  FILE *f = fopen(file, "rb");
  if (f == NULL) {
    perror(file);
    return 1;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    buf_insert(&b, b.len, chunk, n);
  fclose(f);
  if (base < 0 || base >= c->n) base = 0;
  ok = try_decode(L, b.p ? b.p : "", b.len, c->msgs[base]);
  printf("fuzz_transfer: %s: %zu bytes, %s\n", file, b.len,
         ok ? "decoded" : "rejected");
  free(b.p);
  return 0;
}

int main(int argc, char **argv) {
  long iterations;
  unsigned long long seed;
  unsigned long decoded = 0, rejected = 0;
  Corpus c = {NULL, 0};
  Buf b = {NULL, 0, 0};
  lua_State *L;
  int rc = 0;
  int mode = argc == 3 && strcmp(argv[1], "--corpus") == 0   ? 'c'
             : argc == 4 && strcmp(argv[1], "--replay") == 0 ? 'r'
             : argc == 3 && argv[1][0] != '-'                ? 'f'
                                                             : 0;
  if (mode == 0) {
    fprintf(stderr, "usage: %s ITERATIONS SEED\n"
                    "       %s --replay FILE BASE\n"
                    "       %s --corpus DIR\n", argv[0], argv[0], argv[0]);
    return 2;
  }
  L = new_state();
  if (L == NULL) return 1;
  if (!setup(L, &c)) {
    rc = 1;
  } else if (mode == 'c') {
    rc = write_corpus(&c, argv[2]);
  } else if (mode == 'r') {
    rc = replay(L, &c, argv[2], atoi(argv[3]));
  } else {
    iterations = strtol(argv[1], NULL, 10);
    seed = strtoull(argv[2], NULL, 10);
    rng_state = seed;
    on_crash_install();
    for (long it = 0; it < iterations; it++) {
      int base = (int)below((size_t)c.n);
      int rounds = 1 + (int)below(MAX_MUTATIONS);
      const conc_Msg *m = c.msgs[base];
      b.len = 0;
      buf_insert(&b, 0, m->data, m->len);
      for (int r = 0; r < rounds; r++) mutate(&b, &c);
      cur_base = base;
      cur_len = b.len;
      cur_data = b.p;
      if (try_decode(L, b.p, b.len, m)) decoded++;
      else rejected++;
      cur_data = NULL;
      if (it % 1024 == 1023) lua_gc(L, LUA_GCCOLLECT);
    }
    printf("fuzz_transfer: %ld inputs, %lu decoded, %lu rejected "
           "(seed %llu, peak %zu KiB, %lu allocations refused)\n",
           iterations, decoded, rejected, seed, mem_peak >> 10, mem_refused);
  }
  free(b.p);
  lua_close(L);
  for (int i = 0; i < c.n; i++) conc__msg_free(c.msgs[i]);
  free(c.msgs);
  return rc;
}

#else

/* ======================================================================
** libFuzzer entry point
** ====================================================================== */

static lua_State *fuzz_L;
static Corpus fuzz_corpus;
static const conc_Msg *fuzz_objs;  /* the corpus message with most objects */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned long runs;
  if (fuzz_L == NULL) {
    fuzz_L = new_state();
    if (fuzz_L == NULL || !setup(fuzz_L, &fuzz_corpus)) abort();
    fuzz_objs = fuzz_corpus.msgs[0];
    for (int i = 1; i < fuzz_corpus.n; i++)
      if (fuzz_corpus.msgs[i]->nobjs > fuzz_objs->nobjs)
        fuzz_objs = fuzz_corpus.msgs[i];
  }
  try_decode(fuzz_L, (const char *)data, size, fuzz_objs);
  if (++runs % 1024 == 0) lua_gc(fuzz_L, LUA_GCCOLLECT);
  return 0;
}

#endif
