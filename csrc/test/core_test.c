/*
** core_test.c -- tests of the Lua-free core, linked against conc_nolua alone
** (so a core file that needed Lua would fail to link here).
**
**   core_test NAME      runs one test; exit status 0 when it passes
**   core_test --list    prints the names, one a line
**   core_test --expect NAME...   checks the table holds exactly these names
**   core_test           runs them all, one after the other, in this process
** (CORE_TEST_VERBOSE=1 in the environment: coverage counts, where a test has
** them.)
**
** cmake/ctests.cmake reads the table below (the lines of `tests[]`) at
** configure time and registers one ctest entry, core.NAME, per row: a row
** must stay on one line, in the form  {"name", test_name},  to be found.
** core.table runs --expect with what it found, so a row CMake missed fails.
**
** A failed check prints file:line, the test, and what was expected, then
** exits 1. Every wait is bounded (a deadline, and a SIGALRM watchdog).
*/
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
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
#include "errors.h"
#include "ring.h"

#define WATCHDOG_SECONDS 50  /* under ctest's TIMEOUT 60: we name the test */

const char *current = "?";  /* the test running */
int in_child;               /* a forked child leaves with _exit */
volatile pid_t child_pid;   /* to kill if the parent fails */

/* ======================================================================
** Checks
** ====================================================================== */

/* A failing parent kills its child first: left alone, it would run to its
** own deadline, and ctest waits for it (it holds the output pipe open). */
static void fail_exit(void) {
  fflush(stdout);
  if (in_child) _exit(1);
  if (child_pid > 0) {
    kill(child_pid, SIGKILL);
    waitpid(child_pid, NULL, 0);
  }
  exit(1);
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

void check_at(const char *file, int line, int ok, const char *fmt,
                     ...) {
  va_list ap;
  if (ok) return;
  fprintf(stderr, "%s:%d: %s%s: ", base_name(file), line, current,
          in_child ? " (child)" : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fail_exit();
}

/* A code's name for messages: "CONC_EFULL", "CONC_OK", or "unknown". */
const char *code_name(int code, char *buf, size_t size) {
  const char *name = conc__err_name(code);
  if (code == CONC_OK) name = "OK";
  snprintf(buf, size, "CONC_%s (%d)", name ? name : "?unknown", code);
  return buf;
}

void check_rc_at(const char *file, int line, const char *expr, int got,
                        int want) {
  char g[64], w[64];
  check_at(file, line, got == want, "%s: expected %s, got %s", expr,
           code_name(want, w, sizeof w), code_name(got, g, sizeof g));
}

void check_size_at(const char *file, int line, const char *expr,
                          size_t got, size_t want) {
  check_at(file, line, got == want, "%s: expected %zu, got %zu", expr, want,
           got);
}


double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: the same sequence on every libc, from a fixed seed. */
uint64_t rng_state = 0x9e3779b97f4a7c15u;

uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1du;
}

size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

void *xmalloc(size_t n) {
  void *p = malloc(n);
  check(p != NULL, "malloc(%zu) failed", n);
  return p;
}

/* ======================================================================
** The error table (errors.h)
** ====================================================================== */

static const struct {
  int value;
  const char *name;
} codes[] = {
#define ERROR_ROW(code, value, cls, msg) {CONC_##code, #code},
    CONC_ERRORS(ERROR_ROW)
#undef ERROR_ROW
};

#define NCODES (sizeof codes / sizeof codes[0])

static int in_table(int value) {
  for (size_t i = 0; i < NCODES; i++)
    if (codes[i].value == value) return 1;
  return 0;
}

void test_errors_table(void) {
  check(NCODES > 10, "only %zu codes", NCODES);
  for (size_t i = 0; i < NCODES; i++) {
    const char *name = conc__err_name(codes[i].value);
    const char *cls = conc__err_class(codes[i].value);
    check(codes[i].value < 0, "%s is %d, not negative", codes[i].name,
          codes[i].value);
    check(name && strcmp(name, codes[i].name) == 0,
          "conc__err_name(%d): expected \"%s\", got \"%s\"", codes[i].value,
          codes[i].name, name ? name : "(null)");
    check(cls && cls[0] >= 'A' && cls[0] <= 'Z',
          "%s: class \"%s\" is no class name", codes[i].name,
          cls ? cls : "(null)");
    (void)conc__err_message(codes[i].value);  /* may be NULL */
    for (size_t j = 0; j < i; j++) {
      check(codes[j].value != codes[i].value, "%s and %s are both %d",
            codes[j].name, codes[i].name, codes[i].value);
      check(strcmp(codes[j].name, codes[i].name) != 0, "%s twice",
            codes[i].name);
    }
  }
  check(conc__err_message(CONC_E2BIG) != NULL, "E2BIG has no message");
  check(conc__err_class(CONC_EFULL) && !strcmp(conc__err_class(CONC_EFULL),
        "Full"), "EFULL's class is not Full");
  /* codes not in the table, CONC_OK among them, are unknown */
  for (int v = -1200; v <= 10; v++) {
    if (in_table(v)) continue;
    check(!conc__err_name(v) && !conc__err_class(v) && !conc__err_message(v),
          "unknown code %d gives a name, class or message", v);
  }
  check(!conc__err_name(INT_MIN) && !conc__err_name(INT_MAX),
        "INT_MIN or INT_MAX has a name");
}

/* ======================================================================
** The table of tests, and main
** ====================================================================== */

typedef struct Test {
  const char *name;
  void (*fn)(void);
} Test;

/* One row a line, as ctests.cmake reads them. */
static const Test tests[] = {
  {"ring_basic", test_ring_basic},
  {"ring_sizes", test_ring_sizes},
  {"ring_wrap_model", test_ring_wrap_model},
  {"ring_grow_model", test_ring_grow_model},
  {"ring_full", test_ring_full},
  {"ring_zero_length", test_ring_zero_length},
  {"ring_putv", test_ring_putv},
  {"ring_counter_wrap", test_ring_counter_wrap},
  {"ring_relocate", test_ring_relocate},
  {"ring_two_maps", test_ring_two_maps},
  {"ring_corrupt", test_ring_corrupt},
  {"ring_corrupt_fuzz", test_ring_corrupt_fuzz},
  {"ring_fork", test_ring_fork},
  {"ring_repair", test_ring_repair},
  {"errors_table", test_errors_table},
  {"mutex_contended", test_mutex_contended},
  {"mutex_shared", test_mutex_shared},
  {"mutex_robust", test_mutex_robust},
  {"mutex_robust_thread", test_mutex_robust_thread},
  {"mutex_robust_window", test_mutex_robust_window},
  {"flag_count", test_flag_count},
  {"wait_writable", test_wait_writable},
  {"wait_coalesce", test_wait_coalesce},
  {"wait_condition", test_wait_condition},
  {"interrupt_wakes", test_interrupt_wakes},
  {"fork_threads", test_fork_threads},
  {"heap_blocks", test_heap_blocks},
  {"shared_containers", test_shared_containers},
  {"shared_killed", test_shared_killed},
  {"shared_spawn", test_shared_spawn},
  {"loop_timer_model", test_loop_timer_model},
  {"loop_watch_thread", test_loop_watch_thread},
};

#define NTESTS (sizeof tests / sizeof tests[0])

static void on_alarm(int sig) {
  static const char msg[] = ": timed out (watchdog)\n";
  (void)sig;
  if (child_pid > 0) kill(child_pid, SIGKILL);
  if (write(2, current, strlen(current)) < 0 ||
      write(2, msg, sizeof msg - 1) < 0) {
    /* nothing more to do: we are leaving anyway */
  }
  _exit(2);
}

static const Test *find_test(const char *name) {
  for (size_t i = 0; i < NTESTS; i++)
    if (strcmp(tests[i].name, name) == 0) return &tests[i];
  return NULL;
}

static void run(const Test *t) {
  current = t->name;
  rng_state = 0x9e3779b97f4a7c15u;  /* each test its own fixed sequence */
  alarm(WATCHDOG_SECONDS);
  t->fn();
  alarm(0);
  printf("ok %s\n", t->name);
  fflush(stdout);
}

/* --expect: the names CMake found must be the table's, in its order. */
static int expect(int n, char **names) {
  int bad = (size_t)n != NTESTS;
  for (int i = 0; i < n && !bad; i++)
    bad = strcmp(names[i], tests[i].name) != 0;
  if (bad) {
    fprintf(stderr, "ctests.cmake found %d tests, the table has %zu: a row "
            "of tests[] is not in the form {\"name\", test_name}, on one "
            "line (or rerun cmake)\n", n, NTESTS);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGALRM, on_alarm);
  if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < NTESTS; i++) printf("%s\n", tests[i].name);
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "--expect") == 0)
    return expect(argc - 2, argv + 2);
  if (argc == 2) {
    const Test *t = find_test(argv[1]);
    if (!t) {
      fprintf(stderr, "core_test: no test named %s (see --list)\n", argv[1]);
      return 2;
    }
    run(t);
    return 0;
  }
  if (argc > 2) {
    fprintf(stderr, "usage: core_test [NAME | --list | --expect NAME...]\n");
    return 2;
  }
  for (size_t i = 0; i < NTESTS; i++) run(&tests[i]);
  return 0;
}
