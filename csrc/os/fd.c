/*
** fd.c -- file descriptors: making pipes and socket pairs, moving bytes
** without blocking, and the one interruptible wait on an fd.
**
** Every fd conc makes is non-blocking, and every wait goes through
** conc__fd_wait: a blocking read(2) would not end on a Ctrl-C in a host
** that restarts system calls, and could not take a timeout.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

int conc__fd_wait(int fd, int events, double deadline, int flags) {
  sigset_t all, old;
  struct pollfd pfd;
  int rc = CONC_OK;
  pfd.fd = fd;
  pfd.events = (short)((events & CONC_FD_READ ? POLLIN : 0) |
                       (events & CONC_FD_WRITE ? POLLOUT : 0));
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  for (;;) {
    struct timespec ts, *tsp = NULL;
    int n;
    if (!(flags & CONC_WAIT_NOINTR) && conc__interrupt_pending()) {
      rc = CONC_EINTR;
      break;
    }
    if (deadline != CONC_FOREVER) {
      double left = deadline - conc__monotonic();
      if (left < 0) left = 0;
      ts.tv_sec = (time_t)left;
      ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
      tsp = &ts;
    }
    n = ppoll(&pfd, 1, tsp, &old);
    if (n > 0) break;
    if (n == 0) {
      rc = CONC_ETIMEDOUT;
      break;
    }
    if (errno != EINTR) {
      rc = -errno;
      break;
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

long conc__fd_read(int fd, void *buf, size_t n) {
  for (;;) {
    ssize_t r = read(fd, buf, n);
    if (r >= 0) return (long)r;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? CONC_EAGAIN : -errno;
  }
}

long conc__fd_write(int fd, const void *buf, size_t n) {
  for (;;) {
    /* MSG_NOSIGNAL where it is a socket: a closed peer is EPIPE, not a
    ** SIGPIPE that would end the process */
    ssize_t r = send(fd, buf, n, MSG_NOSIGNAL);
    if (r >= 0) return (long)r;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? CONC_EAGAIN : -errno;
  }
}

/* A one-way pair is a socket pair too, each end shut the other way: a
** pipe's write to a closed reader raises SIGPIPE, which would end the
** process, where a socket's send takes MSG_NOSIGNAL. */
int conc__fd_pair(int fds[2], int duplex) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                 fds) < 0)
    return -errno;
  if (!duplex) {
    shutdown(fds[0], SHUT_WR);
    shutdown(fds[1], SHUT_RD);
  }
  return CONC_OK;
}

int conc__fd_memfile(const void *data, size_t len) {
  int fd = memfd_create("conc-spawn", MFD_CLOEXEC);
  const char *p = data;
  if (fd < 0) return -errno;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int rc = n < 0 ? -errno : CONC_ENOMEM;
      close(fd);
      return rc;
    }
    p += n;
    len -= (size_t)n;
  }
  return fd;
}

int conc__fd_slurp(int fd, char **data, size_t *len) {
  struct stat st;
  size_t got = 0, size;
  char *buf;
  if (fstat(fd, &st) != 0) return -errno;
  size = (size_t)st.st_size;
  if ((buf = malloc(size ? size : 1)) == NULL) return CONC_ENOMEM;
  while (got < size) {
    ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int rc = n < 0 ? -errno : CONC_EVALUE;
      free(buf);
      return rc;
    }
    got += (size_t)n;
  }
  *data = buf;
  *len = size;
  return CONC_OK;
}

int conc__fd_devnull(void) {
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int conc__fd_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) return -errno;
  return CONC_OK;
}
