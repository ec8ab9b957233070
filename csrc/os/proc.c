/*
** proc.c -- processes: fork, waiting for a child, and a child's exit.
*/
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os.h"

/* How often a wait for a child looks (it sleeps, interruptibly, between). */
#define POLL_SECONDS 0.001

int conc__proc_fork(void) {
  pid_t pid = fork();
  return pid < 0 ? -errno : (int)pid;
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
