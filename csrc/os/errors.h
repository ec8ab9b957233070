/*
** errors.h -- the one table of conc's result codes (prefix CONC_E, conc__).
**
** Every function of the C layers that can fail returns 0 (CONC_OK) or one of
** these negative codes, as libuv returns negative errno: the system's own
** where one fits (their values are Linux's errno, negated), conc's own from
** -1000 down. Each code names the Python exception class it becomes in Lua
** and the message it carries unless the raiser gives one; lua/errors.c turns
** any code into that error, and a code missing from the table into
** SystemError naming it, never into a guess. It sits at the bottom of the
** layers so that every layer can return these.
*/
#ifndef CONC_ERRORS_H
#define CONC_ERRORS_H

#define CONC_OK 0

/*    code           value  class                 message */
#define CONC_ERRORS(X)                                                       \
  X(ENOENT,          -2,    "FileNotFoundError",                             \
    "no such file or directory")                                             \
  X(EINTR,           -4,    "KeyboardInterrupt",  NULL)                      \
  X(E2BIG,           -7,    "ValueError",         "message too long")        \
  X(EBADF,           -9,    "OSError",            "bad file descriptor")     \
  X(ECHILD,          -10,   "ChildProcessError",  "no child processes")      \
  X(EAGAIN,          -11,   "RuntimeError",                                  \
    "resource temporarily unavailable")                                      \
  X(ENOMEM,          -12,   "MemoryError",        "not enough memory")       \
  X(ERANGE,          -34,   "IndexError",         "index out of range")      \
  X(EACCES,          -13,   "PermissionError",    "permission denied")       \
  X(EPIPE,           -32,   "BrokenPipeError",    "broken pipe")             \
  X(EMSGSIZE,        -90,   "OSError",            "bad message length")      \
  X(ECONNRESET,      -104,  "ConnectionResetError",                          \
    "connection reset by peer")                                              \
  X(ENOTSOCK,        -88,   "OSError",            "not a socket")            \
  X(EADDRINUSE,      -98,   "OSError",            "address already in use")  \
  X(EADDRNOTAVAIL,   -99,   "OSError",                                       \
    "cannot assign requested address")                                       \
  X(ENETUNREACH,     -101,  "OSError",            "network is unreachable")  \
  X(ECONNABORTED,    -103,  "ConnectionAbortedError",                        \
    "software caused connection abort")                                      \
  X(ENOTCONN,        -107,  "OSError",                                       \
    "transport endpoint is not connected")                                   \
  X(ETIMEDOUT,       -110,  "TimeoutError",       "timed out")               \
  X(ECONNREFUSED,    -111,  "ConnectionRefusedError",                        \
    "connection refused")                                                    \
  X(EHOSTUNREACH,    -113,  "OSError",            "no route to host")        \
  X(EINPROGRESS,     -115,  "BlockingIOError",                               \
    "operation now in progress")                                             \
  X(EVALUE,          -1000, "ValueError",         NULL)                      \
  X(ETYPE,           -1001, "TypeError",          NULL)                      \
  X(EATTRIBUTE,      -1002, "AttributeError",     NULL)                      \
  X(ERUNTIME,        -1003, "RuntimeError",       NULL)                      \
  X(EKEY,            -1004, "KeyError",           NULL)                      \
  X(ENOTFOUND,       -1005, "ValueError",         "value not in list")       \
  X(EEMPTYLIST,      -1006, "IndexError",         "pop from empty list")     \
  X(EEMPTY,          -1010, "Empty",              NULL)                      \
  X(EFULL,           -1011, "Full",               NULL)                      \
  X(ESHUTDOWN,       -1012, "ShutDown",           NULL)                      \
  X(EUNORDERED,      -1013, "TypeError",          "'<' not supported")       \
  X(ETASKDONE,       -1014, "ValueError",                                    \
    "task_done() called too many times")                                     \
  X(EUNLOCKED,       -1020, "RuntimeError",       "release unlocked lock")   \
  X(ENOTOWNER,       -1021, "RuntimeError",                                  \
    "cannot release un-acquired lock")                                       \
  X(EWAITUNOWNED,    -1022, "RuntimeError",                                  \
    "cannot wait on un-acquired lock")                                       \
  X(ENOTIFYUNOWNED,  -1023, "RuntimeError",                                  \
    "cannot notify on un-acquired lock")                                     \
  X(EOVERRELEASE,    -1024, "ValueError",                                    \
    "Semaphore released too many times")                                     \
  X(EBROKEN,         -1025, "BrokenBarrierError", NULL)                      \
  X(ESTARTED,        -1030, "RuntimeError",                                  \
    "threads can only be started once")                                      \
  X(EASSERT,         -1040, "AssertionError",     NULL)                      \
  X(ECLOSED,         -1041, "ValueError",                                    \
    "process object is closed")                                              \
  X(EEOF,            -1042, "EOFError",           NULL)                      \
  X(ECONNCLOSED,     -1043, "OSError",            "handle is closed")     \
  X(ECANCELLED,      -1050, "CancelledError",     NULL)                      \
  X(EINVALSTATE,     -1051, "InvalidStateError",  NULL)                      \
  X(EFUTURESTATE,    -1052, "RuntimeError",                                  \
    "Future in unexpected state")                                          \
  X(ENAME,           -1060, "OSError",                                       \
    "name or service not known")                                             \
  X(EINCOMPLETE,     -1061, "IncompleteReadError", NULL)                     \
  X(ELIMIT,          -1062, "LimitOverrunError",  NULL)

enum {
#define CONC_ERRCODE(code, value, cls, msg) CONC_##code = value,
  CONC_ERRORS(CONC_ERRCODE)
#undef CONC_ERRCODE
  CONC_ELAST_ = 0
};

/* "EFULL" for CONC_EFULL; NULL for a code not in the table. */
const char *conc__err_name(int code);
/* The Python class a code becomes ("Full"); NULL when unknown. */
const char *conc__err_class(int code);
/* Its default message; NULL when it has none (or is unknown). */
const char *conc__err_message(int code);
#endif
