/*
** conc.h -- the public embedding API of conc.
**
** An application that hosts Lua 5.4 calls conc_openlibs() on each state it
** wants conc in; conc itself creates more states (one per thread) and runs the
** state-init hook on each, so that the application's own C functions exist
** there too. The conc host (csrc/host/main.c) is written against this header only.
*/
#ifndef CONC_H
#define CONC_H

#include "lua.h"

#define CONC_VERSION "conc 0.1"

/* Opens the `conc` module: pushes the table that `require "conc"` returns. */
int luaopen_conc(lua_State *L);

/* Opens `conc.core` (the C functions the Lua facades are built on). */
int luaopen_conc_core(lua_State *L);

/*
** Registers every conc module (`conc`, `conc.core`, `conc.threading`,
** `conc.time`, ...) in package.preload of L, so `require` finds them with no
** LUA_PATH set. Requires the package library to be open in L. Also replaces
** the global print with one that writes each line in a single write, so
** lines printed by several threads at once never interleave.
*/
void conc_openlibs(lua_State *L);

/*
** A new state with no libraries open, as luaL_newstate makes, but with the
** allocator conc gives its thread states: small blocks go back to free lists
** of the state's own, which makes allocation-heavy Lua code (tables made and
** dropped in a loop) faster than through malloc alone. Warnings are off at
** first, as in lua.c. NULL when out of memory. Close it with conc_close, not
** lua_close. The conc host's main state is one.
*/
lua_State *conc_newstate(void);
void conc_close(lua_State *L);

/*
** A hook run on every lua_State conc creates (thread states, later worker
** states), after the standard libraries and conc modules are registered and
** before any user code runs. `ud` is passed back untouched. One hook per
** process; setting it again replaces it. Set it before starting threads.
*/
typedef void (*conc_StateInit)(lua_State *L, void *ud);
void conc_set_state_init(conc_StateInit fn, void *ud);

/*
** Flags a KeyboardInterrupt for L, which must be the state running in the
** calling OS thread (the host's main state). Async-signal-safe: meant to be
** called from a SIGINT handler. Lua code running in L raises KeyboardInterrupt
** at its next instruction; a conc blocking call (join, sleep, ...) waiting in
** this OS thread returns early and raises it.
*/
void conc_interrupt(lua_State *L);

/*
** Python's threading._shutdown: waits until every non-daemon thread has
** finished. Returns LUA_OK, or an error status with the error (for example a
** KeyboardInterrupt) on top of L's stack. Daemon threads are not waited for.
*/
int conc_shutdown(lua_State *L);

/*
** True when the value at idx is a conc error of the class named `name` or of a
** subclass of it (e.g. "KeyboardInterrupt", "RuntimeError").
*/
int conc_iserror(lua_State *L, int idx, const char *name);

#endif
