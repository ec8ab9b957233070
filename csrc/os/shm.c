/*
** shm.c -- memory shared with child processes. Each mapping is a memfd's:
** a child forked after it is made sees the same pages, a spawned child is
** given the descriptor and maps it (at another address: what lives there
** is addressed by offsets), and nothing is left in /dev/shm when the
** processes end, because a memfd has no name there.
**
** The registry maps a mapping's address to its descriptor, for the spawn
** that hands it on. When no descriptor can be had (the process is at its
** limit even after raising the soft one to the hard one, as Go's runtime
** does), the mapping is plain anonymous shared memory: forked children
** share it, a spawned one cannot be given it (conc__shm_fd says -1).
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "os.h"

/* ======================================================================
** The registry: address -> (size, fd), open addressing over a power of two
** ====================================================================== */

typedef struct Entry {
  void *addr;   /* NULL empty, TOMB removed */
  size_t size;
  int fd;
} Entry;

#define TOMB ((void *)1)

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static Entry *table;
static size_t cap, filled;  /* filled counts tombstones too */

/* A fork copies the table and the descriptors with it: only the mutex
** needs holding across it. */
static conc_ForkHook fork_hook = {.rank = CONC_FORK_SHM, .mutex = &reg_mu};

static size_t slot_of(const void *addr, size_t mask) {
  uint64_t h = (uint64_t)(uintptr_t)addr * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & mask;
}

/* Under reg_mu. */
static int grow(void) {
  size_t ncap = cap ? cap * 2 : 64;
  Entry *nt = calloc(ncap, sizeof *nt);
  if (nt == NULL) return -1;
  filled = 0;
  for (size_t i = 0; i < cap; i++) {
    if (table[i].addr == NULL || table[i].addr == TOMB) continue;
    size_t j = slot_of(table[i].addr, ncap - 1);
    while (nt[j].addr != NULL) j = (j + 1) & (ncap - 1);
    nt[j] = table[i];
    filled++;
  }
  free(table);
  table = nt;
  cap = ncap;
  return 0;
}

/* Under reg_mu: the live entry of addr, or NULL. */
static Entry *find(const void *addr) {
  if (cap == 0) return NULL;
  for (size_t j = slot_of(addr, cap - 1);; j = (j + 1) & (cap - 1)) {
    if (table[j].addr == addr) return &table[j];
    if (table[j].addr == NULL) return NULL;
  }
}

static int add(void *addr, size_t size, int fd) {
  int rc = 0;
  conc__fork_register(&fork_hook);
  pthread_mutex_lock(&reg_mu);
  if ((filled + 1) * 2 > cap) rc = grow();
  if (rc == 0) {
    size_t j = slot_of(addr, cap - 1);
    while (table[j].addr != NULL && table[j].addr != TOMB)
      j = (j + 1) & (cap - 1);
    if (table[j].addr == NULL) filled++;
    table[j] = (Entry){addr, size, fd};
  }
  pthread_mutex_unlock(&reg_mu);
  return rc;
}

/* The descriptor of the mapping at addr, removed from the registry, or -1. */
static int take(void *addr) {
  int fd = -1;
  pthread_mutex_lock(&reg_mu);
  Entry *e = find(addr);
  if (e != NULL) {
    fd = e->fd;
    e->addr = TOMB;
  }
  pthread_mutex_unlock(&reg_mu);
  return fd;
}

int conc__shm_fd(const void *p, size_t *size) {
  int fd = -1;
  pthread_mutex_lock(&reg_mu);
  Entry *e = find(p);
  if (e != NULL) {
    fd = e->fd;
    if (size) *size = e->size;
  }
  pthread_mutex_unlock(&reg_mu);
  return fd;
}

/* ======================================================================
** Mappings
** ====================================================================== */

/* Once per process, at the first EMFILE: the soft limit goes up to the
** hard one, as Go's runtime raises it at start. */
static int raise_nofile(void) {
  static atomic_int raised;
  struct rlimit rl;
  if (atomic_exchange(&raised, 1)) return 0;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
    return 0;
  rl.rlim_cur = rl.rlim_max;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

static int new_memfd(size_t size) {
  int fd = memfd_create("conc", MFD_CLOEXEC);
  if (fd < 0 && errno == EMFILE && raise_nofile())
    fd = memfd_create("conc", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (ftruncate(fd, (off_t)size) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A memfd's mapping when a descriptor can be had, else anonymous. memfds
** are made with VM_NORESERVE: their pages are charged when touched, so
** flags' MAP_NORESERVE matters to the anonymous kind only. */
static void *map_new(size_t size, int flags) {
  int fd = new_memfd(size);
  void *p;
  if (fd >= 0) {
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED && add(p, size, fd) == 0) return p;
    if (p != MAP_FAILED) munmap(p, size);
    close(fd);
  }
  p = mmap(NULL, size, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS | flags, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *conc__shm_map(size_t size) {
  return map_new(size ? size : 1, 0);
}

/* Pages are backed only once touched: a queue may reserve as much as the
** machine has. */
void *conc__shm_reserve(size_t size) {
  return map_new(size, MAP_NORESERVE);
}

/* Each attach keeps a descriptor of its own, so that two objects over
** one mapping (the ends of a Pipe) each close theirs. */
void *conc__shm_attach(int fd, size_t size) {
  void *p;
  int own;
  if (size == 0 || (own = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) return NULL;
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
  if (p != MAP_FAILED && add(p, size, own) == 0) return p;
  if (p != MAP_FAILED) munmap(p, size);
  close(own);
  return NULL;
}

void conc__shm_unmap(void *p, size_t size) {
  int fd;
  if (p == NULL) return;
  fd = take(p);
  munmap(p, size ? size : 1);
  if (fd >= 0) close(fd);
}

void conc__shm_discard(void *p, size_t len) {
  /* shared memory is tmpfs: MADV_REMOVE frees the pages for every
  ** process that maps them, and they read back as zeros */
  (void)madvise(p, len, MADV_REMOVE);
}

/* Linux 5.14; before it the pages come one fault at a time, as they would */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void conc__shm_populate(void *p, size_t len) {
  (void)madvise(p, len, MADV_POPULATE_WRITE);
}

size_t conc__shm_page(void) {
  long n = sysconf(_SC_PAGESIZE);
  return n > 0 ? (size_t)n : 4096;
}

size_t conc__shm_physical(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || size <= 0) return (size_t)1 << 30;
  return (size_t)pages * (size_t)size;
}

/* A /proc file's first bytes, NUL-ended: its length, or -1. */
static long read_proc(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  if (fd < 0) return -1;
  n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return (long)n;
}

/* A "Name:   N kB" line of /proc/meminfo, in bytes; 0 when absent. */
static size_t meminfo_field(const char *info, const char *name) {
  const char *p = strstr(info, name);
  unsigned long long kb;
  if (p == NULL || sscanf(p + strlen(name), " %llu", &kb) != 1) return 0;
  return (size_t)kb * 1024;
}

/* Under strict overcommit a reservation is charged in full, and against an
** address-space limit it counts too: there a quarter of what commit
** accounting has left, or an eighth of the limit, leaves room for the rest
** of the process (a sanitizer's shadow among it). */
size_t conc__shm_room(void) {
  size_t room = SIZE_MAX;
  struct rlimit rl;
  char buf[4096];
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    room = (size_t)rl.rlim_cur / 8;
  if (read_proc("/proc/sys/vm/overcommit_memory", buf, 8) > 0 &&
      buf[0] == '2' && read_proc("/proc/meminfo", buf, sizeof buf) > 0) {
    size_t limit = meminfo_field(buf, "CommitLimit:");
    size_t used = meminfo_field(buf, "Committed_AS:");
    size_t left = limit > used ? (limit - used) / 4 : 0;
    if (left < room) room = left;
  }
  return room;
}
