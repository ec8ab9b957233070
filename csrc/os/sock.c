/*
** sock.c -- stream sockets for the event loop: TCP over IPv4 and IPv6, and
** Unix-domain ones, every one non-blocking and close-on-exec; and name
** resolution, which blocks (the loop runs it on a worker thread).
**
** Addresses cross as conc_SockAddr, a family with a numeric host (or a
** path) and a port, so that the Lua layer never sees a sockaddr.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "os.h"

typedef union Addr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
  struct sockaddr_un un;
  struct sockaddr_storage ss;
} Addr;

static int to_sockaddr(const conc_SockAddr *a, Addr *out, socklen_t *len) {
  memset(out, 0, sizeof *out);
  switch (a->family) {
    case CONC_AF_INET:
      out->in4.sin_family = AF_INET;
      out->in4.sin_port = htons((uint16_t)a->port);
      if (inet_pton(AF_INET, a->host, &out->in4.sin_addr) != 1)
        return CONC_EVALUE;
      *len = sizeof out->in4;
      return CONC_OK;
    case CONC_AF_INET6:
      out->in6.sin6_family = AF_INET6;
      out->in6.sin6_port = htons((uint16_t)a->port);
      if (inet_pton(AF_INET6, a->host, &out->in6.sin6_addr) != 1)
        return CONC_EVALUE;
      *len = sizeof out->in6;
      return CONC_OK;
    case CONC_AF_UNIX: {
      size_t n = strlen(a->host);
      if (n == 0 || n >= sizeof out->un.sun_path) return CONC_EVALUE;
      out->un.sun_family = AF_UNIX;
      memcpy(out->un.sun_path, a->host, n + 1);
      *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
      return CONC_OK;
    }
    default:
      return CONC_EVALUE;
  }
}

static void from_sockaddr(const Addr *in, socklen_t len, conc_SockAddr *a) {
  memset(a, 0, sizeof *a);
  switch (in->sa.sa_family) {
    case AF_INET:
      a->family = CONC_AF_INET;
      inet_ntop(AF_INET, &in->in4.sin_addr, a->host, sizeof a->host);
      a->port = ntohs(in->in4.sin_port);
      break;
    case AF_INET6:
      a->family = CONC_AF_INET6;
      inet_ntop(AF_INET6, &in->in6.sin6_addr, a->host, sizeof a->host);
      a->port = ntohs(in->in6.sin6_port);
      break;
    case AF_UNIX: {
      size_t n = len > offsetof(struct sockaddr_un, sun_path)
                     ? len - offsetof(struct sockaddr_un, sun_path) : 0;
      a->family = CONC_AF_UNIX;
      if (n >= sizeof a->host) n = sizeof a->host - 1;
      memcpy(a->host, in->un.sun_path, n);
      a->host[n] = '\0';
      break;
    }
    default:
      break;
  }
}

static int new_socket(int family) {
  int fd = socket(family == CONC_AF_INET ? AF_INET
                  : family == CONC_AF_INET6 ? AF_INET6 : AF_UNIX,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
}

/* Small writes go out at once, as asyncio's transports set it. */
static void set_nodelay(int fd, int family) {
  int one = 1;
  if (family != CONC_AF_UNIX)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int fail_close(int fd) {
  int rc = -errno;
  close(fd);
  return rc;
}

int conc__sock_listen(const conc_SockAddr *a, int backlog) {
  Addr addr;
  socklen_t len;
  int fd, one = 1, rc = to_sockaddr(a, &addr, &len);
  if (rc != CONC_OK) return rc;
  if ((fd = new_socket(a->family)) < 0) return fd;
  if (a->family != CONC_AF_UNIX)
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a->family == CONC_AF_INET6)  /* "::" then serves IPv6 alone */
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, &addr.sa, len) < 0 || listen(fd, backlog) < 0)
    return fail_close(fd);
  return fd;
}

int conc__sock_connect(const conc_SockAddr *a, int *pending) {
  Addr addr;
  socklen_t len;
  int fd, rc = to_sockaddr(a, &addr, &len);
  if (rc != CONC_OK) return rc;
  if ((fd = new_socket(a->family)) < 0) return fd;
  set_nodelay(fd, a->family);
  *pending = 0;
  while (connect(fd, &addr.sa, len) < 0) {
    if (errno == EINTR) continue;
    if (errno != EINPROGRESS && errno != EAGAIN) return fail_close(fd);
    *pending = 1;
    break;
  }
  return fd;
}

int conc__sock_accept(int fd, conc_SockAddr *peer) {
  Addr addr;
  socklen_t len = sizeof addr;
  int c;
  do c = accept4(fd, &addr.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (c < 0 && errno == EINTR);
  if (c < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? CONC_EAGAIN : -errno;
  from_sockaddr(&addr, len, peer);
  set_nodelay(c, peer->family);
  return c;
}

int conc__sock_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
  return -err;
}

int conc__sock_name(int fd, int peer, conc_SockAddr *a) {
  Addr addr;
  socklen_t len = sizeof addr;
  int rc = peer ? getpeername(fd, &addr.sa, &len)
                : getsockname(fd, &addr.sa, &len);
  if (rc < 0) return -errno;
  from_sockaddr(&addr, len, a);
  return CONC_OK;
}

int conc__sock_shutdown(int fd) {
  return shutdown(fd, SHUT_WR) < 0 ? -errno : CONC_OK;
}

int conc__sock_numeric(const char *host) {
  struct in6_addr buf;
  return inet_pton(AF_INET, host, &buf) == 1 ||
         inet_pton(AF_INET6, host, &buf) == 1;
}

int conc__sock_resolve(const char *host, int port, int family, int passive,
                       conc_SockAddr *out, int max, char *msg,
                       size_t msgsize) {
  struct addrinfo hints, *res, *ai;
  char service[16];
  int rc, n = 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family == CONC_AF_INET ? AF_INET
                    : family == CONC_AF_INET6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  snprintf(service, sizeof service, "%d", port);
  rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) {
    snprintf(msg, msgsize, "%s", rc == EAI_SYSTEM ? strerror(errno)
                                                  : gai_strerror(rc));
    return CONC_ENAME;
  }
  for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    from_sockaddr((const Addr *)ai->ai_addr, ai->ai_addrlen, &out[n++]);
  }
  freeaddrinfo(res);
  return n;
}
