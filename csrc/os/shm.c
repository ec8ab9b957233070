/*
** shm.c -- memory shared with child processes. An anonymous shared
** mapping: a child forked after it is made sees the same pages, and
** nothing is left behind in /dev/shm when the processes end.
*/
#include <sys/mman.h>

#include "os.h"

void *conc__shm_map(size_t size) {
  void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void conc__shm_unmap(void *p, size_t size) {
  if (p != NULL) munmap(p, size ? size : 1);
}
