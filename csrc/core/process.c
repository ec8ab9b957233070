/*
** process.c -- multiprocessing.Process under the Lua layer: a forked
** child, the pidfd that says when it ended (Python's sentinel), its exit
** code, and the table of this process's live children, which the end of
** the host's script stops (daemons) or waits for (the rest), as Python's
** atexit handler does.
**
** A child is reaped once, by whoever first finds it ended (a join, an
** exitcode, is_alive), under the object's mutex; others then read the code
** it left. In a forked child the table is empty: its parent's children
** are its siblings, which it cannot wait for (a join says so).
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

enum { P_NEW, P_RUNNING, P_DONE, P_CLOSED };

struct conc_Process {
  conc_Obj hdr;
  conc_Mutex mu;        /* state and exitcode, and the reap */
  int state;
  int pid, pidfd;       /* pidfd -1: none (a kernel before 5.3) */
  int joiners;          /* threads waiting on pidfd: close() leaves it open */
  int creator;          /* the pid that forked it: only it may wait */
  int daemon;
  int exitcode;
  conc_Process *next, *prev;  /* the table of children, under list_mu */
  int listed;
  char name[128];       /* under mu */
  char ident[64];       /* "1:2": its place among its ancestors' children */
};

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static conc_Process *children;
/* Python's names are per process: Process-N counts the Process objects
** this process made (in every thread), and a child's own children are
** Process-N:M. Reset in a child, which takes its prefix from itself. */
static atomic_uint counter;
static char prefix[64];   /* this process's ident, "" in the host */

static void process_destroy(conc_Obj *o) {
  conc_Process *p = (conc_Process *)o;
  conc__proc_close_fd(p->pidfd);
  free(p);
}

conc_ObjType conc__process_type = {.name = "conc.Process",
                                   .destroy = process_destroy};

/* Under list_mu. */
static void list_add(conc_Process *p) {
  conc__obj_incref(&p->hdr);
  p->prev = NULL;
  p->next = children;
  if (children) children->prev = p;
  children = p;
  p->listed = 1;
}

/* Under list_mu; the caller drops the table's reference after. */
static int list_remove(conc_Process *p) {
  if (!p->listed) return 0;
  if (p->prev) p->prev->next = p->next;
  else children = p->next;
  if (p->next) p->next->prev = p->prev;
  p->next = p->prev = NULL;
  p->listed = 0;
  return 1;
}

static void unlist(conc_Process *p) {
  int was;
  pthread_mutex_lock(&list_mu);
  was = list_remove(p);
  pthread_mutex_unlock(&list_mu);
  if (was) conc__obj_decref(&p->hdr);
}

/* The child's table starts empty. The references it held stay with the
** objects, which the copied Lua states still name: they are dropped
** here, the child's copy of each being its own. */
static void fork_child(void) {
  conc_Process *p = children;
  children = NULL;
  atomic_store(&counter, 0);
  while (p != NULL) {
    conc_Process *next = p->next;
    p->next = p->prev = NULL;
    p->listed = 0;
    conc__obj_decref(&p->hdr);
    p = next;
  }
}

static conc_ForkHook fork_hook = {.rank = CONC_FORK_PROCS,
                                  .mutex = &list_mu, .child = fork_child};

conc_Process *conc__process_new(int daemon) {
  conc_Process *p = malloc(sizeof *p);
  if (p == NULL) return NULL;
  conc__obj_init(&p->hdr, &conc__process_type);
  conc__mutex_init(&p->mu, CONC_PRIVATE);
  p->state = P_NEW;
  p->pid = 0;
  p->pidfd = -1;
  p->creator = 0;
  p->daemon = daemon;
  p->exitcode = 0;
  p->next = p->prev = NULL;
  p->listed = 0;
  snprintf(p->ident, sizeof p->ident, "%.50s%s%u", prefix, prefix[0] ? ":" : "",
           atomic_fetch_add(&counter, 1) + 1);
  snprintf(p->name, sizeof p->name, "Process-%.60s", p->ident);
  conc__fork_register(&fork_hook);
  return p;
}

char *conc__process_name(conc_Process *p, char *buf, size_t size) {
  conc__mutex_lock(&p->mu);
  snprintf(buf, size, "%s", p->name);
  conc__mutex_unlock(&p->mu);
  return buf;
}

void conc__process_set_name(conc_Process *p, const char *name) {
  conc__mutex_lock(&p->mu);
  snprintf(p->name, sizeof p->name, "%s", name);
  conc__mutex_unlock(&p->mu);
}

const char *conc__process_ident(conc_Process *p) {
  return p->ident;
}

/* Under p->mu: the parent's side of a start. */
static void started(conc_Process *p, int pid) {
  p->pid = pid;
  p->pidfd = conc__proc_pidfd(pid);
  p->creator = conc__proc_self();
  p->state = P_RUNNING;
  pthread_mutex_lock(&list_mu);
  list_add(p);
  pthread_mutex_unlock(&list_mu);
}

int conc__process_fork(conc_Process *p) {
  int pid, self = conc__proc_self(), from_main = conc__proc_main_thread();
  conc__mutex_lock(&p->mu);
  if (p->state != P_NEW) {
    int closed = p->state == P_CLOSED;
    conc__mutex_unlock(&p->mu);
    return closed ? CONC_ECLOSED : CONC_ESTARTED;
  }
  pid = conc__proc_fork();
  if (pid == 0) {
    /* an orphan is not left running (docs/multiprocessing.md) */
    if (from_main) conc__proc_orphan_rule(self);
    /* the child's own copy of p: this process, running; its children
    ** are named after it (the fork hook reset the counter) */
    snprintf(prefix, sizeof prefix, "%.50s", p->ident);
    p->pid = conc__proc_self();
    p->creator = self;
    p->state = P_RUNNING;
    conc__mutex_unlock(&p->mu);
    return 0;
  }
  if (pid > 0) started(p, pid);
  conc__mutex_unlock(&p->mu);
  return pid;
}

int conc__process_spawn(conc_Process *p, const char *path, char *const argv[],
                        char *const envp[], const int *fds, unsigned nfds) {
  int pid;
  conc__mutex_lock(&p->mu);
  if (p->state != P_NEW) {
    int closed = p->state == P_CLOSED;
    conc__mutex_unlock(&p->mu);
    return closed ? CONC_ECLOSED : CONC_ESTARTED;
  }
  pid = conc__proc_spawn(path, argv, envp, fds, NULL, nfds, 0);
  if (pid > 0) started(p, pid);
  conc__mutex_unlock(&p->mu);
  return pid;
}

conc_Process *conc__process_adopt(const char *ident, int parent, int daemon) {
  conc_Process *p = conc__process_new(daemon);
  if (p == NULL) return NULL;
  atomic_store(&counter, 0);
  snprintf(p->ident, sizeof p->ident, "%.60s", ident);
  snprintf(prefix, sizeof prefix, "%.50s", ident);
  p->pid = conc__proc_self();
  p->creator = parent;
  p->state = P_RUNNING;
  return p;
}

/* Under p->mu: reaps p if it has ended. 1 when done, 0 while running, or
** a code (not started, not our child, closed). */
static int reap(conc_Process *p) {
  int rc, status;
  switch (p->state) {
    case P_NEW: return CONC_EASSERT;
    case P_DONE: return 1;
    case P_CLOSED: return CONC_ECLOSED;
  }
  if (p->creator != conc__proc_self()) return CONC_EASSERT;
  rc = conc__proc_poll(p->pid, &status);
  if (rc != 1) return rc;
  p->exitcode = status;
  p->state = P_DONE;
  return 1;
}

static int poll_locked(conc_Process *p, int *exitcode) {
  int rc;
  conc__mutex_lock(&p->mu);
  rc = reap(p);
  if (rc == 1 && exitcode != NULL) *exitcode = p->exitcode;
  conc__mutex_unlock(&p->mu);
  if (rc == 1) unlist(p);
  return rc;
}

int conc__process_poll(conc_Process *p, int *exitcode) {
  return poll_locked(p, exitcode);
}

/* Under p->mu: the pidfd goes once the process is closed and no join is
** waiting on it (another thread's close must not hand its number to a new
** file while a join sleeps on it). */
static void drop_pidfd(conc_Process *p) {
  if (p->state == P_CLOSED && p->joiners == 0 && p->pidfd >= 0) {
    conc__proc_close_fd(p->pidfd);
    p->pidfd = -1;
  }
}

int conc__process_join(conc_Process *p, double deadline) {
  for (;;) {
    int rc, fd;
    conc__mutex_lock(&p->mu);
    rc = reap(p);
    fd = p->pidfd;
    if (rc == 0 && fd >= 0) p->joiners++;
    conc__mutex_unlock(&p->mu);
    if (rc == 1) {
      unlist(p);
      return CONC_OK;
    }
    if (rc < 0) return rc;
    if (fd >= 0) {
      rc = conc__fd_wait(fd, CONC_FD_READ, deadline, 0);
      conc__mutex_lock(&p->mu);
      p->joiners--;
      drop_pidfd(p);
      conc__mutex_unlock(&p->mu);
    } else {
      /* no pidfd: look every millisecond */
      double next = conc__monotonic() + 0.001;
      if (deadline != CONC_FOREVER && next > deadline) {
        if (conc__monotonic() >= deadline) return CONC_ETIMEDOUT;
        next = deadline;
      }
      rc = conc__sleep_until(next);
    }
    if (rc != CONC_OK) return rc;
  }
}

int conc__process_signal(conc_Process *p, int sig) {
  int rc = CONC_OK;
  conc__mutex_lock(&p->mu);
  if (p->state == P_CLOSED) rc = CONC_ECLOSED;
  else if (p->state == P_RUNNING && p->creator == conc__proc_self())
    rc = conc__proc_kill(p->pid, sig);
  /* not started, ended, or not ours: nothing to stop, as in Python */
  conc__mutex_unlock(&p->mu);
  return rc == -ESRCH ? CONC_OK : rc;  /* ended, not yet reaped */
}

int conc__process_close(conc_Process *p) {
  int rc = CONC_OK;
  conc__mutex_lock(&p->mu);
  if (p->state == P_RUNNING && p->creator == conc__proc_self()) {
    int status;
    if (conc__proc_poll(p->pid, &status) == 1) {
      p->exitcode = status;
      p->state = P_DONE;
    }
  }
  if (p->state == P_RUNNING && p->creator == conc__proc_self()) {
    rc = CONC_EVALUE;
  } else if (p->state != P_CLOSED) {
    p->state = P_CLOSED;
    drop_pidfd(p);
  }
  conc__mutex_unlock(&p->mu);
  if (rc == CONC_OK) unlist(p);
  return rc;
}

int conc__process_pid(conc_Process *p) {
  return p->state == P_NEW ? 0 : p->pid;
}

int conc__process_sentinel(conc_Process *p) {
  return p->state == P_CLOSED ? CONC_ECLOSED : p->pidfd;
}

int conc__process_started(conc_Process *p) {
  return p->state != P_NEW;
}

int conc__process_closed(conc_Process *p) {
  return p->state == P_CLOSED;
}

int conc__process_daemon(conc_Process *p) {
  return p->daemon;
}

int conc__process_set_daemon(conc_Process *p, int daemon) {
  if (p->state != P_NEW) return CONC_EASSERT;
  p->daemon = daemon;
  return CONC_OK;
}

int conc__process_children(conc_Process ***out) {
  int n = 0, i = 0;
  conc_Process **v;
  pthread_mutex_lock(&list_mu);
  for (conc_Process *p = children; p; p = p->next) n++;
  v = malloc(sizeof *v * (size_t)(n ? n : 1));
  if (v == NULL) {
    pthread_mutex_unlock(&list_mu);
    return CONC_ENOMEM;
  }
  /* oldest first, as Python's set of children is read in start order */
  for (conc_Process *p = children; p; p = p->next) {
    conc__obj_incref(&p->hdr);
    v[n - 1 - i++] = p;
  }
  pthread_mutex_unlock(&list_mu);
  *out = v;
  return n;
}

/* Python's atexit handler of multiprocessing: daemonic children are
** terminated, then every child is waited for. */
int conc__process_shutdown(void) {
  conc_Process **v;
  int n = conc__process_children(&v), rc = CONC_OK;
  if (n < 0) return n;
  for (int i = 0; i < n; i++)
    if (v[i]->daemon) conc__process_signal(v[i], SIGTERM);
  for (int i = 0; i < n; i++) {
    if (rc == CONC_OK) {
      rc = conc__process_join(v[i], CONC_FOREVER);
      if (rc == CONC_EASSERT || rc == CONC_ECLOSED) rc = CONC_OK;
    }
    conc__obj_decref(&v[i]->hdr);
  }
  free(v);
  return rc;
}
