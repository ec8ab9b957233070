/*
** main.c -- the conc host: a drop-in for the `lua5.4` interpreter with every
** conc module built in.
**
** Same command line, `arg` table, LUA_INIT handling, REPL, messages and exit
** statuses as lua5.4 (its lua.c is the model for the shape: options are
** collected first, all work happens in pmain under lua_pcall). What conc adds:
**   - conc_openlibs() after the standard libraries, so `require "conc.*"`
**     works from any directory;
**   - SIGINT raises KeyboardInterrupt in the main state (conc_interrupt) for
**     the whole run, instead of lua.c's one-shot "interrupted!";
**   - conc_shutdown() after a normal finish waits for non-daemon threads,
**     as Python does at exit;
**   - exit status 130 when the error that ended the run is a KeyboardInterrupt.
** Only the public API of conc.h is used here.
*/

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "conc.h"

#define PROGNAME          "conc"
#define INIT_VAR          "LUA_INIT"
#define INIT_VAR_VERSION  INIT_VAR LUA_VERSUFFIX    /* "LUA_INIT_5_4" */
#define PROMPT1           "> "
#define PROMPT2           ">> "
#define EOFMARK           "<eof>"
#define EXIT_INTERRUPTED  130                      /* 128 + SIGINT, as shells do */

/* Name used in messages; NULL while the REPL runs (errors there are bare). */
static const char *progname = PROGNAME;

/* The main state, for the SIGINT handler (a handler gets no arguments). */
static lua_State *mainL = NULL;


/* ============================================================== *
** Messages
** ============================================================== */

static void message(const char *pname, const char *msg) {
  if (pname != NULL)
    fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/*
** Pushes the text of the error value at idx. Calls __tostring in protected
** mode, because this also runs outside pmain, where an error would panic.
*/
static const char *push_errtext(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  /* twice when a KeyboardInterrupt cut the first call short: a second
  ** Ctrl-C (`timeout -s INT` sends two: to the child and to its group)
  ** fires in whatever Lua runs next, and that is often this call */
  for (int tries = 0; tries < 2; tries++) {
    int rc, interrupted;
    if (luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL) break;
    lua_pushvalue(L, idx);
    rc = lua_pcall(L, 1, 1, 0);
    if (rc == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      return lua_tostring(L, -1);
    interrupted = rc != LUA_OK && conc_iserror(L, -1, "KeyboardInterrupt");
    lua_pop(L, 1);
    if (!interrupted) break;
  }
  return lua_pushfstring(L, "(error object is a %s value)",
                         luaL_typename(L, idx));
}

/* Prints the error on top of the stack, prefixed by pname, and pops it. */
static void report(lua_State *L, const char *pname) {
  message(pname, push_errtext(L, -1));
  lua_pop(L, 2);
}

/* The exit status for the error on top of the stack. */
static int error_status(lua_State *L) {
  return conc_iserror(L, -1, "KeyboardInterrupt") ? EXIT_INTERRUPTED
                                                  : EXIT_FAILURE;
}

/* Reports the error that ends the run; pmain's result is the exit status. */
static int fail(lua_State *L) {
  int status = error_status(L);
  report(L, progname);
  lua_pushinteger(L, status);
  return 1;
}

static void print_usage(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fprintf(stderr,
    "usage: %s [options] [script [args]]\n"
    "Available options are:\n"
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -l mod    require library 'mod' into global 'mod'\n"
    "  -l g=mod  require library 'mod' into global 'g'\n"
    "  -v        show version information\n"
    "  -E        ignore environment variables\n"
    "  -W        turn warnings on\n"
    "  --        stop handling options\n"
    "  -         stop handling options and execute stdin\n",
    progname);
  fflush(stderr);
}

static void print_version(void) {
  fputs(LUA_COPYRIGHT "\n" CONC_VERSION "\n", stdout);
  fflush(stdout);
}


/* ============================================================== *
** Running chunks
** ============================================================== */

/*
** Message handler: appends a traceback to string errors. An error object
** with a __tostring that yields a string is returned as is (lua.c prints it
** with no traceback too): report() stringifies it later, and keeping the
** object lets error_status() see whether it is a KeyboardInterrupt.
*/
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      lua_settop(L, 1);
      return 1;
    }
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below narg arguments with msghandler in place. */
static int docall(lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* Runs a just-loaded chunk; on error the error value is left on top. */
static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK)
    status = docall(L, 0, 0);
  return status;
}

static int dofile(lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* `-l spec`: spec is `mod` (global mod = require "mod") or `g=mod`. */
static int dolibrary(lua_State *L, const char *spec) {
  int status;
  const char *eq = strchr(spec, '=');
  const char *modname = (eq != NULL) ? eq + 1 : spec;
  lua_pushlstring(L, spec, (eq != NULL) ? (size_t)(eq - spec) : strlen(spec));
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = docall(L, 1, 1);
  if (status != LUA_OK) {
    lua_remove(L, -2);                      /* drop the global's name */
    return status;
  }
  lua_setglobal(L, lua_tostring(L, -2));
  lua_pop(L, 1);
  return LUA_OK;
}

/* Pushes arg[1..#arg] (read back from the global, as a script may change it). */
static int pushargs(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

/* Runs the script at argv[0]; "-" means stdin unless it came after "--". */
static int handle_script(lua_State *L, char **argv) {
  int status;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return status;
}

/* LUA_INIT_5_4, else LUA_INIT: a chunk, or `@file` to run a file. */
static int handle_luainit(lua_State *L) {
  const char *name = "=" INIT_VAR_VERSION;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=" INIT_VAR;
    init = getenv(name + 1);
  }
  if (init == NULL)
    return LUA_OK;
  if (init[0] == '@')
    return dofile(L, init + 1);
  return dostring(L, init, name);
}


/* ============================================================== *
** Command line
** ============================================================== */

#define HAS_ERROR  1    /* bad option */
#define HAS_I      2    /* -i */
#define HAS_V      4    /* -v (also set by -i) */
#define HAS_E      8    /* -e */
#define HAS_NOENV  16   /* -E */

/*
** Checks the options without running anything (so -E can act before the
** libraries open). Sets *first to the script's index (argc if none), or to
** the bad option's index when HAS_ERROR is returned.
*/
static int collectargs(char **argv, int *first) {
  int args = 0;
  int i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-')                  /* the script */
      return args;
    switch (argv[i][1]) {
      case '-':                             /* "--" */
        if (argv[i][2] != '\0')
          return HAS_ERROR;
        *first = i + 1;
        return args;
      case '\0':                            /* "-": the script is stdin */
        return args;
      case 'E':
        if (argv[i][2] != '\0')
          return HAS_ERROR;
        args |= HAS_NOENV;
        break;
      case 'W':
        if (argv[i][2] != '\0')
          return HAS_ERROR;
        break;
      case 'i':
        args |= HAS_I;
        /* FALLTHROUGH */                    /* -i implies -v */
      case 'v':
        if (argv[i][2] != '\0')
          return HAS_ERROR;
        args |= HAS_V;
        break;
      case 'e':
        args |= HAS_E;
        /* FALLTHROUGH */
      case 'l':                             /* both take an argument */
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-')
            return HAS_ERROR;
        }
        break;
      default:
        return HAS_ERROR;
    }
  }
  *first = i;
  return args;
}

/*
** Builds the global `arg`: the script at index 0, its arguments after it,
** the interpreter and options at negative indices. With no script, the
** interpreter is at 0.
*/
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  int i;
  if (script == argc)
    script = 0;
  lua_createtable(L, argc - (script + 1), script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Runs -e, -l and -W in command-line order, up to the script. */
static int runargs(lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    if (option == 'e' || option == 'l') {
      int status;
      const char *extra = argv[i] + 2;
      if (*extra == '\0')
        extra = argv[++i];
      status = (option == 'e') ? dostring(L, extra, "=(command line)")
                               : dolibrary(L, extra);
      if (status != LUA_OK)
        return status;
    }
    else if (option == 'W') {
      lua_warning(L, "@on", 0);
    }
  }
  return LUA_OK;
}


/* ============================================================== *
** REPL
** ============================================================== */

#define LINE_OK    1
#define LINE_EOF   (-1)
#define LINE_INTR  (-2)  /* a signal interrupted the read */

/* Pushes _PROMPT or _PROMPT2 and returns its text (the default if unset). */
static const char *get_prompt(lua_State *L, int firstline) {
  const char *p;
  lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2");
  p = lua_tostring(L, -1);
  return (p != NULL) ? p : (firstline ? PROMPT1 : PROMPT2);
}

/*
** Prompts and reads one line of any length with fgets, pushing it without
** its newline. A partial last line counts as a line. Pushes nothing at end
** of input or when SIGINT interrupted the read (the handler is installed
** without SA_RESTART precisely so a Ctrl-C at the prompt gets here).
*/
static int read_line(lua_State *L, const char *prompt) {
  char chunk[512];
  luaL_Buffer b;
  int got = 0;
  fputs(prompt, stdout);
  fflush(stdout);
  luaL_buffinit(L, &b);
  for (;;) {
    size_t n;
    errno = 0;
    if (fgets(chunk, sizeof chunk, stdin) == NULL) {
      if (ferror(stdin) && errno == EINTR) {
        clearerr(stdin);
        luaL_pushresult(&b);
        lua_pop(L, 1);
        return LINE_INTR;
      }
      break;
    }
    got = 1;
    n = strlen(chunk);
    if (n > 0 && chunk[n - 1] == '\n') {
      luaL_addlstring(&b, chunk, n - 1);
      break;
    }
    luaL_addlstring(&b, chunk, n);
  }
  luaL_pushresult(&b);
  if (!got) {
    lua_pop(L, 1);
    return LINE_EOF;
  }
  return LINE_OK;
}

/* Pushes the next input line; a first line `=e` means `return e` (5.2 style). */
static int pushline(lua_State *L, int firstline) {
  int got;
  const char *prompt = get_prompt(L, firstline);
  got = read_line(L, prompt);
  if (got != LINE_OK) {
    lua_pop(L, 1);                          /* the prompt */
    return got;
  }
  lua_remove(L, -2);                        /* the prompt */
  if (firstline && lua_tostring(L, -1)[0] == '=') {
    lua_pushfstring(L, "return %s", lua_tostring(L, -1) + 1);
    lua_remove(L, -2);
  }
  return LINE_OK;
}

/* True (popping the message) when a syntax error is only "input ended early". */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t lmark = sizeof(EOFMARK) - 1;
    if (lmsg >= lmark && strcmp(msg + lmsg - lmark, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* With the line on top, tries to compile `return <line>;` so expressions print. */
static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK)
    lua_remove(L, -2);                      /* keep line, function */
  else
    lua_pop(L, 2);                          /* keep line */
  return status;
}

/*
** With the first line at index 1, compiles it as a statement, reading
** continuation lines while the only problem is a premature end of input.
** Leaves the code at 1 and the function or error above it. Returns
** LINE_INTR when Ctrl-C cut the statement short; at end of input the
** "<eof>" syntax error stands, to be reported like any other.
*/
static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin");
    int got;
    if (!incomplete(L, status))
      return status;
    got = pushline(L, 0);
    if (got == LINE_INTR)
      return LINE_INTR;
    if (got == LINE_EOF)                    /* compile again for the message */
      return luaL_loadbuffer(L, code, len, "=stdin");
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/*
** Reads and compiles one statement: leaves the function (or the error) alone
** on the stack and returns its status, or LINE_EOF / LINE_INTR.
*/
static int loadline(lua_State *L) {
  int status;
  lua_settop(L, 0);
  status = pushline(L, 1);
  if (status != LINE_OK)
    return status;
  if ((status = addreturn(L)) != LUA_OK)
    status = multiline(L);
  if (status < 0)
    return status;
  lua_remove(L, 1);                         /* the source line */
  return status;
}

/* Prints everything on the stack with the global `print`. */
static void l_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      message(progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                        lua_tostring(L, -1)));
  }
}

/*
** Ctrl-C at the prompt: conc_interrupt has armed a KeyboardInterrupt for the
** next Lua instruction. Run an empty chunk so it fires now and is reported
** like Python's "KeyboardInterrupt" at the prompt, rather than hitting the
** next statement the user types.
*/
static void interrupted_prompt(lua_State *L) {
  fputs("\n", stdout);
  fflush(stdout);
  lua_settop(L, 0);
  if (dostring(L, "", "=stdin") != LUA_OK)
    report(L, progname);
}

static void doREPL(lua_State *L) {
  int status;
  const char *oldprogname = progname;
  progname = NULL;
  for (;;) {
    status = loadline(L);
    if (status == LINE_EOF)
      break;
    if (status == LINE_INTR) {
      interrupted_prompt(L);
      continue;
    }
    if (status == LUA_OK)
      status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      l_print(L);
    else
      report(L, progname);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = oldprogname;
}


/* ============================================================== *
** Main
** ============================================================== */

/*
** Does all the work in protected mode. Arguments: argc, argv. Result: the
** process exit status (errors have been reported by then).
*/
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = argc;
  int args = (argc > 0) ? collectargs(argv, &script) : 0;
  int status;
  luaL_checkversion(L);
  if (args == HAS_ERROR) {
    print_usage(argv[script]);
    lua_pushinteger(L, EXIT_FAILURE);
    return 1;
  }
  if (args & HAS_V)
    print_version();
  if (args & HAS_NOENV) {
    /* read by the package library as it opens: ignore LUA_PATH/LUA_CPATH */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  conc_openlibs(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & HAS_NOENV) && handle_luainit(L) != LUA_OK)
    return fail(L);
  if (runargs(L, argv, script) != LUA_OK)
    return fail(L);
  if (script < argc && handle_script(L, argv + script) != LUA_OK)
    return fail(L);
  if (args & HAS_I)
    doREPL(L);
  else if (script == argc && !(args & (HAS_E | HAS_V))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      doREPL(L);
    }
    else if (dofile(L, NULL) != LUA_OK)     /* lua5.4 exits 0 here: a bug */
      return fail(L);
  }
  status = conc_shutdown(L);
  if (status != LUA_OK)
    return fail(L);
  lua_pushinteger(L, EXIT_SUCCESS);
  return 1;
}

/* SIGINT only flags: a signal handler cannot touch the Lua state itself. */
static void on_sigint(int sig) {
  (void)sig;
  conc_interrupt(mainL);
}

/*
** Installed once for the whole run (a second Ctrl-C interrupts again, e.g.
** a wait for threads at shutdown). No SA_RESTART, so a blocking read at the
** REPL prompt returns with EINTR.
*/
static void install_sigint(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, NULL);
}

int main(int argc, char **argv) {
  int status, result;
  lua_State *L = conc_newstate();
  if (L == NULL) {
    message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  if (argc > 0 && argv[0][0] != '\0')
    progname = argv[0];
  mainL = L;
  install_sigint();
  lua_gc(L, LUA_GCSTOP);                    /* no GC while building the state */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  if (status == LUA_OK)
    result = (int)lua_tointeger(L, -1);
  else {                                    /* e.g. out of memory in pmain */
    result = error_status(L);
    report(L, progname);
  }
  /* the handler must not reach a state being freed; finalizers still run */
  signal(SIGINT, SIG_DFL);
  conc_close(L);
  return result;
}
