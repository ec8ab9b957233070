/*
** proc.c -- processes: fork, waiting for a child, and a child's exit.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

/* How often a wait for a child looks (it sleeps, interruptibly, between). */
#define POLL_SECONDS 0.001

int conc__proc_fork(void) {
  pid_t pid = fork();
  if (pid == 0) {
    /* The child's one thread is its main thread now, and takes signals as
    ** one: forked by a conc thread, which blocks them all, it would
    ** otherwise never hear a terminate() or its parent's death. */
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
  }
  return pid < 0 ? -errno : (int)pid;
}

/* glibc's posix_spawn clones with CLONE_VFORK: no copy of the parent's
** memory, no fork hook, and an fd dup2'ed onto itself loses its
** close-on-exec (POSIX 2024; glibc since 2.29). */
int conc__proc_spawn(const char *path, char *const argv[], char *const envp[],
                     const int *fds, const int *at, unsigned n, int flags) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none;
  pid_t pid;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc != 0) return -rc;
  if ((rc = posix_spawnattr_init(&attr)) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return -rc;
  }
  sigemptyset(&none);
  rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  for (unsigned i = 0; rc == 0 && i < n; i++)
    rc = posix_spawn_file_actions_adddup2(&fa, fds[i], at ? at[i] : fds[i]);
  if (rc == 0)
    rc = flags & CONC_SPAWN_SEARCH
             ? posix_spawnp(&pid, path, &fa, &attr, argv, envp)
             : posix_spawn(&pid, path, &fa, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return rc != 0 ? -rc : (int)pid;
}

extern char **environ;

static int same_name(const char *a, const char *b) {
  while (*a && *a == *b && *a != '=') a++, b++;
  return *a == '=' && *b == '=';
}

char **conc__proc_env(const char *const *set, unsigned n) {
  size_t count = 0, k = 0;
  char **env;
  while (environ[count]) count++;
  if ((env = malloc((count + n + 1) * sizeof *env)) == NULL) return NULL;
  for (size_t i = 0; i < count; i++) {
    int replaced = 0;
    for (unsigned j = 0; j < n && !replaced; j++)
      replaced = same_name(environ[i], set[j]);
    if (!replaced) env[k++] = environ[i];
  }
  for (unsigned j = 0; j < n; j++) env[k++] = (char *)set[j];
  env[k] = NULL;
  return env;
}

int conc__proc_wait(int pid, double deadline, int *status) {
  for (;;) {
    int st, rc;
    double next;
    pid_t r = waitpid((pid_t)pid, &st, WNOHANG);
    if (r < 0 && errno != EINTR) return -errno;
    if (r == (pid_t)pid) {
      *status = WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
      return CONC_OK;
    }
    next = conc__monotonic() + POLL_SECONDS;
    if (deadline != CONC_FOREVER && next > deadline) {
      if (conc__monotonic() >= deadline) return CONC_ETIMEDOUT;
      next = deadline;
    }
    rc = conc__sleep_until(next);
    if (rc != CONC_OK) return rc;
  }
}

void conc__proc_exit(int code) {
  _exit(code);
}

int conc__proc_pidfd(int pid) {
#ifdef SYS_pidfd_open
  long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
  /* a pidfd is close-on-exec from the start */
  return fd < 0 ? -errno : (int)fd;
#else
  (void)pid;
  return -ENOSYS;
#endif
}

int conc__proc_poll(int pid, int *status) {
  int st;
  pid_t r;
  do {
    r = waitpid((pid_t)pid, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  if (r == 0) return 0;
  *status = WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
  return 1;
}

int conc__proc_kill(int pid, int sig) {
  return kill((pid_t)pid, sig) < 0 ? -errno : CONC_OK;
}

int conc__proc_self(void) {
  return (int)getpid();
}

int conc__proc_parent(void) {
  return (int)getppid();
}

int conc__proc_executable(char *buf, size_t size) {
  ssize_t n = readlink("/proc/self/exe", buf, size);
  if (n < 0) return -errno;
  if ((size_t)n >= size) return -ENAMETOOLONG;
  buf[n] = '\0';
  return (int)n;
}

int conc__proc_stdin_null(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  if (fd != 0 && dup2(fd, 0) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (fd != 0) close(fd);
  __fpurge(stdin);  /* what the parent had read ahead is the parent's */
  clearerr(stdin);
  return CONC_OK;
}

void conc__proc_close_fd(int fd) {
  if (fd >= 0) close(fd);
}

void conc__proc_cloexec(int fd) {
  (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int conc__cpu_count(void) {
  cpu_set_t set;
  long n;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int conc__proc_tid_alive(int tid) {
  char path[64], buf[256];
  const char *paren;
  ssize_t n;
  int fd;
  snprintf(path, sizeof path, "/proc/%d/stat", tid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT && errno != ESRCH;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  /* "tid (comm) S ...": the state follows the last ')' */
  paren = strrchr(buf, ')');
  if (paren == NULL || paren[1] != ' ') return 1;
  return paren[2] != 'Z' && paren[2] != 'X' && paren[2] != 'x';
}

int conc__proc_main_thread(void) {
  return (long)syscall(SYS_gettid) == (long)getpid();
}

/* PR_SET_PDEATHSIG fires when the thread that forked ends, not its
** process: only a child forked by the main thread can use it (the main
** thread ends with the process). The check after it covers a parent that
** died before the call. */
void conc__proc_orphan_rule(int parent) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != (pid_t)parent) raise(SIGTERM);
}
