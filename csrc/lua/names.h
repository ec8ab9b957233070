/*
** names.h -- which values cross by name: the index of module values
** (names.c), as the encoder asks it.
*/
#ifndef CONC_NAMES_H
#define CONC_NAMES_H

#include "lconc.h"

/* What a name is (docs/transfer.md, "Modules"). */
enum {
  CONC_NAMES_NONE,    /* surely no named value */
  CONC_NAMES_MODULE,  /* a module or a field of one: a reference to code,
                         valid while the module is as it was loaded */
  CONC_NAMES_ENV,     /* _G's, the standard library's or conc's: the
                         receiver's own, by name as data too, unchecked */
  CONC_NAMES_ASK      /* not known without conc__names_find */
};

/*
** The name ("module\0field", field empty for a module itself) under which
** the value at idx crosses, from the index of module values: pushes it and
** returns CONC_NAMES_MODULE or CONC_NAMES_ENV, or returns CONC_NAMES_NONE
** having pushed nothing. *slot is the stack index where the index stays
** while one message is written: 0 before the first lookup, which pushes
** the index on top and sets *slot; leave it there until the message is
** done. rebuild: build the index afresh first (a C function was not found:
** a module may have grown since it was built). A module's field is in the
** index only while it holds what it held when the module was loaded.
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
** What the table at idx may be, for the paths that skip the index when
** they can: CONC_NAMES_NONE, _MODULE or _ENV (_G counts as ENV) while the
** index is known fresh (watched), else CONC_NAMES_ASK. O(1); never raises.
*/
int conc__names_kind(lua_State *L, int idx);

/*
** The module of the name s (n bytes, as conc__names_find pushed it) by
** address, for the encoder to check it once per message; NULL when there is
** nothing to check (a name of the ENV kind, a module that is no table).
** Pushes nothing.
*/
const void *conc__names_module(lua_State *L, const char *s, size_t n);

/*
** Is the module of the name s (n bytes) as it was loaded? A snapshot of
** its fields taken then is compared with them now, shallowly: O(its
** fields). A field a module makes on first use (it has an __index, and the
** field is itself a module value or a class that names itself) is no
** change. Returns 0, or 1 having pushed what differs, for an error:
** "NAME by name: MODULE.FIELD was changed (added, removed) after the module
** was loaded, ...". index is the stack slot of the index (see
** conc__names_find).
*/
int conc__names_changed(lua_State *L, const char *s, size_t n, int index);

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
