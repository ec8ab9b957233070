/*
** names.h -- which values cross by name: the index of module values
** (names.c), as the encoder asks it.
*/
#ifndef CONC_NAMES_H
#define CONC_NAMES_H

#include "lconc.h"

/*
** The name ("module\0field", field empty for a module itself) under which
** the value at idx crosses, from the index of module values: pushes it and
** returns 1, or returns 0 having pushed nothing. *slot is the stack index
** where the index stays while one message is written: 0 before the first
** lookup, which pushes the index on top and sets *slot; leave it there
** until the message is done. rebuild: build the index afresh first (a C
** function was not found: a module may have grown since it was built). A
** module's field is in the index only while it holds what it held when the
** module was loaded.
*/
int conc__names_find(lua_State *L, int idx, int *slot, int rebuild);

/*
** The name of a class that names itself, for what the index cannot know: a
** table with raw string fields __module and __name where
** package.loaded[__module][__name] (not raw: a module may make its fields
** on first use, as conc.errors makes its classes) is that very table.
** Pushes "module\0name" and returns 1, or returns 0 having pushed nothing.
*/
int conc__names_self(lua_State *L, int idx);

/*
** Is the table at idx surely neither a module value nor _G? Yes only while
** the index is known fresh (watched) and does not hold it; otherwise the
** general path asks conc__names_find, rebuilding the index if need be.
** O(1); never raises.
*/
int conc__names_unnamed(lua_State *L, int idx);

/*
** Puts the watch on package.loaded (see names.c) if it has no metatable,
** and then takes the snapshot of each module loaded so far: called when
** conc opens in a state, so that the modules loaded after it get theirs as
** require loads them.
*/
void conc__names_watch(lua_State *L);

/* The home slot of an address in an open-addressed table of cap slots (a
** power of two): the encoder's map of ids and the index's set of tables. */
static inline size_t conc__names_slot(const void *p, size_t cap) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & (cap - 1);
}

#endif
