/*
** core_test.h -- what the files of core_test share: the checks, helpers,
** and each file's tests (the table of them is in core_test.c).
*/
#ifndef CONC_CORE_TEST_H
#define CONC_CORE_TEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errors.h"

extern const char *current;        /* the test running */
extern int in_child;               /* a forked child leaves with _exit */
extern volatile pid_t child_pid;   /* to kill if the parent fails */
extern uint64_t rng_state;

__attribute__((format(printf, 4, 5)))
void check_at(const char *file, int line, int ok, const char *fmt, ...);
void check_rc_at(const char *file, int line, const char *expr, int got,
                 int want);
void check_size_at(const char *file, int line, const char *expr, size_t got,
                   size_t want);
/* A code's name for messages: "CONC_EFULL (-1011)". */
const char *code_name(int code, char *buf, size_t size);
double now(void);
uint64_t rnd(void);
size_t rnd_below(size_t n);
void *xmalloc(size_t n);

/* The macros only capture where the check is. */
#define check(cond, ...) check_at(__FILE__, __LINE__, (cond) != 0, __VA_ARGS__)
#define check_rc(expr, want) \
  check_rc_at(__FILE__, __LINE__, #expr, (expr), (want))
#define check_size(expr, want) \
  check_size_at(__FILE__, __LINE__, #expr, (expr), (want))


/* ring_test.c */
void test_ring_sizes(void);
void test_ring_basic(void);
void test_ring_wrap_model(void);
void test_ring_grow_model(void);
void test_ring_full(void);
void test_ring_zero_length(void);
void test_ring_putv(void);
void test_ring_counter_wrap(void);
void test_ring_relocate(void);
void test_ring_two_maps(void);
void test_ring_corrupt(void);
void test_ring_corrupt_fuzz(void);
void test_ring_fork(void);
void test_ring_repair(void);

/* core_test.c */
void test_errors_table(void);

/* sync_test.c */
void test_mutex_contended(void);
void test_mutex_shared(void);
void test_mutex_robust(void);
void test_mutex_robust_thread(void);
void test_mutex_robust_window(void);
void test_flag_count(void);
void test_wait_writable(void);
void test_wait_coalesce(void);
void test_wait_condition(void);
void test_interrupt_wakes(void);
void test_fork_threads(void);

/* loop_test.c */
void test_loop_timer_model(void);
void test_loop_watch_thread(void);

/* shared_test.c */
void test_heap_blocks(void);
void test_shared_containers(void);
void test_shared_killed(void);
void test_shared_spawn(void);

#endif
