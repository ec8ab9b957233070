/*
** shm.c -- memory shared with child processes. An anonymous shared
** mapping: a child forked after it is made sees the same pages, and
** nothing is left behind in /dev/shm when the processes end.
*/
#include <sys/mman.h>
#include <unistd.h>

#include "os.h"

void *conc__shm_map(size_t size) {
  void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void conc__shm_unmap(void *p, size_t size) {
  if (p != NULL) munmap(p, size ? size : 1);
}

/* Pages are backed only once touched, and MAP_NORESERVE keeps the size out
** of the commit charge: a queue may reserve as much as the machine has. */
void *conc__shm_reserve(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void conc__shm_discard(void *p, size_t len) {
  /* shared anonymous memory is tmpfs: MADV_REMOVE frees the pages for
  ** every process that maps them, and they read back as zeros */
  (void)madvise(p, len, MADV_REMOVE);
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
