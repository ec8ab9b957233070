/*
** poll.c -- the event loop's view of the kernel: an epoll set, and the
** eventfd through which threads (and conc's waiters) wake it.
**
** The wait unblocks signals only while it sleeps (epoll_pwait with the
** caller's mask), after looking at the KeyboardInterrupt flag with every
** signal blocked: a Ctrl-C arriving at any moment ends it, as with
** conc__fd_wait, and no wakeup fd is needed for it.
*/
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "os.h"

int conc__poll_open(void) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  return ep < 0 ? -errno : ep;
}

static uint32_t to_epoll(unsigned events) {
  return (events & CONC_POLL_IN ? EPOLLIN | EPOLLRDHUP : 0) |
         (events & CONC_POLL_OUT ? EPOLLOUT : 0) |
         (events & CONC_POLL_EDGE ? EPOLLET : 0);
}

static int ctl(int ep, int op, int fd, unsigned events,
               unsigned long long data) {
  struct epoll_event ev;
  ev.events = to_epoll(events);
  ev.data.u64 = data;
  return epoll_ctl(ep, op, fd, &ev) < 0 ? -errno : CONC_OK;
}

int conc__poll_add(int ep, int fd, unsigned events, unsigned long long data) {
  return ctl(ep, EPOLL_CTL_ADD, fd, events, data);
}

int conc__poll_mod(int ep, int fd, unsigned events, unsigned long long data) {
  return ctl(ep, EPOLL_CTL_MOD, fd, events, data);
}

int conc__poll_del(int ep, int fd) {
  return ctl(ep, EPOLL_CTL_DEL, fd, 0, 0);
}

#define WAIT_BATCH 256

int conc__poll_wait(int ep, conc_PollEvent *evs, int max, double timeout) {
  struct epoll_event raw[WAIT_BATCH];
  sigset_t all, old;
  int n, ms;
  if (max > WAIT_BATCH) max = WAIT_BATCH;
  /* round up: a timer due in 0.3 ms must not make a busy loop of 0 ms
  ** waits */
  ms = timeout < 0 ? -1 : timeout > 1e6 ? 1000000000 : (int)(timeout * 1e3 + 0.999);
  if (ms == 0) {
    n = epoll_wait(ep, raw, max, 0);
  } else {
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (conc__interrupt_pending()) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      return CONC_EINTR;
    }
    n = epoll_pwait(ep, raw, max, ms, &old);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  if (n < 0) {
    if (errno != EINTR) return -errno;
    return conc__interrupt_pending() ? CONC_EINTR : 0;
  }
  for (int i = 0; i < n; i++) {
    uint32_t e = raw[i].events;
    evs[i].events = (e & (EPOLLIN | EPOLLRDHUP) ? CONC_POLL_IN : 0) |
                    (e & EPOLLOUT ? CONC_POLL_OUT : 0) |
                    (e & (EPOLLERR | EPOLLHUP) ? CONC_POLL_ERR : 0) |
                    (e & (EPOLLRDHUP | EPOLLHUP) ? CONC_POLL_HUP : 0);
    evs[i].data = raw[i].data.u64;
  }
  return n;
}

int conc__poll_eventfd(void) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

void conc__poll_notify(int efd) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(efd, &one, sizeof one);
  while (r < 0 && errno == EINTR);
}

void conc__poll_drain(int efd) {
  uint64_t n;
  ssize_t r;
  do r = read(efd, &n, sizeof n);
  while (r < 0 && errno == EINTR);
}
