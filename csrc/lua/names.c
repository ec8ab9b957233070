/*
** names.c -- the index of module values: which tables and functions cross
** by name ("module\0field", looked up and required in the receiver) rather
** than by value. Built from package.loaded, kept in the registry, watched
** through a __newindex on package.loaded, and rebuilt when stale. The same
** watch takes a snapshot of a module's fields as require loads it: a name
** holds only while the module is as it was loaded, which is what the
** receiver's require gives (docs/transfer.md, "Modules").
*/
#include <string.h>

#include "lualib.h"

#include "names.h"

/* Registry keys (their addresses). */
static const char NAMES_KEY = 'n';     /* value -> "module\0field" */
static const char NAMES_LOADED = 'l';  /* true: watched; else package.loaded
                                          as NAMES_KEY saw it */
static const char NAMES_COUNT = 'c';   /* and how many entries it had */
static const char NAMES_FRESH = 'f';   /* while watched, the index's tables
                                          as a NameSet (see below) */
static const char NAMES_WATCH = 'w';   /* the metatable watching package.loaded */
static const char NAMES_SNAPS = 's';   /* weak keys: module table -> its
                                          fields as loaded, a snapshot */
static const char SNAP_COUNT = '#';    /* a snapshot's key (its address, a
                                          light userdata no module uses):
                                          how many fields it has */

static void add_name(lua_State *L, int index, int value, const char *mod,
                     const char *field) {
  lua_pushvalue(L, value);
  if (lua_rawget(L, index) != LUA_TNIL) {  /* first name wins */
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, value);
  lua_pushfstring(L, "%s%c%s", mod, '\0', field);
  lua_rawset(L, index);
}

/* Copies package.loaded into a new table on top, and counts it. */
static int snapshot_loaded(lua_State *L, int loaded) {
  int n = 0;
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
    n++;
  }
  return n;
}

/* The index is stale: the next message rebuilds it. */
static void drop_names(lua_State *L) {
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_KEY);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH);
}

static int is_env(const char *mod);

/* Pushes the table of snapshots. */
static void push_snaps(lua_State *L) {
  conc__weak_registry(L, &NAMES_SNAPS, "k");
}

/* Takes the snapshot of the module table at idx, unless it has one and
** again is 0: a copy of its raw fields, and their count. O(its fields),
** about once per module. */
static void snap_module(lua_State *L, int idx, int again) {
  int n = 0;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 5, NULL);
  push_snaps(L);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TNIL && !again) {
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {  /* counted first: one table of the right size */
    lua_pop(L, 1);
    n++;
  }
  lua_createtable(L, 0, n + 1);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushinteger(L, n);
  lua_rawsetp(L, -2, &SNAP_COUNT);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Is the module at idx, named name, one that gets a snapshot: a table, and
** none of the receiver's own (is_env)? */
static int snapshotted(lua_State *L, int idx, int name) {
  return lua_istable(L, idx) && lua_type(L, name) == LUA_TSTRING &&
         !is_env(lua_tostring(L, name));
}

/* package.loaded's __newindex: a module is loaded (or a key set again
** after being cleared, as a reload does); the index is stale. The module
** as it is now is what a receiver's require would give, if require (a C
** function) stored it: a Lua function storing into package.loaded may be
** a module registering itself before it has all its fields, so its
** snapshot waits for the next index built (as for the modules loaded
** before the watch). A table stored again under another name, as
** luassert's init returns the table of luassert.assert with fields added,
** gets a new snapshot: as the name that loaded last gives it. */
static int loaded_newindex(lua_State *L) {
  lua_Debug ar;
  drop_names(L);
  lua_settop(L, 3);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, 1);
  if (snapshotted(L, 3, 2) &&
      !(lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) &&
        strcmp(ar.what, "C") != 0))
    snap_module(L, 3, 1);
  return 0;
}

/* Is the watch on the table at idx (package.loaded)? Installs it when the
** table has no metatable: finding the index fresh then costs two lookups
** per message, not a walk over every module. (Called when conc opens and
** when the index is built: a metatable set on package.loaded later goes
** unnoticed, and the index then follows new modules only as name_holds
** finds it stale.) */
static int watched(lua_State *L, int idx) {
  int ok;
  if (!lua_getmetatable(L, idx)) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_WATCH) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_createtable(L, 0, 1);
      lua_pushcfunction(L, loaded_newindex);
      lua_setfield(L, -2, "__newindex");
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_WATCH);
    }
    lua_setmetatable(L, idx);
    return 1;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_WATCH);
  ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok;
}

/* Does package.loaded still hold what it did when the index was built?
** With the watch on it (NAMES_LOADED is true), a new key would have dropped
** the index, so yes; a module replaced in place (package.loaded.m = other,
** no nil between) is found out when a value it named no longer holds
** (name_holds). Without the watch (package.loaded had a metatable of
** someone else's), compare it whole: O(#package.loaded) per message. */
static int loaded_unchanged(lua_State *L) {
  int loaded, snap, n = 0, same = 1;
  int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_LOADED);
  if (t != LUA_TTABLE) {
    lua_pop(L, 1);
    return t == LUA_TBOOLEAN;
  }
  snap = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  lua_pushnil(L);
  while (same && lua_next(L, loaded)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, snap);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    n++;
  }
  if (!same) lua_pop(L, 1);  /* the key lua_next left */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_COUNT);
  same = same && lua_tointeger(L, -1) == n;
  lua_pop(L, 3);
  return same;
}

/* Module names in package.loaded, sorted, so that a value reachable under two
** names always crosses under the same one. */
static int sorted_modules(lua_State *L, int loaded) {
  int n = 0;
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, -3, ++n);
    }
  }
  /* insertion sort: a few dozen modules */
  for (int i = 2; i <= n; i++) {
    for (int j = i; j > 1; j--) {
      lua_rawgeti(L, -1, j - 1);
      lua_rawgeti(L, -2, j);
      if (strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) <= 0) {
        lua_pop(L, 2);
        break;
      }
      lua_rawseti(L, -3, j - 1);
      lua_rawseti(L, -2, j);
    }
  }
  return n;
}

/*
** The index of named values: every module in package.loaded and the tables
** and functions directly in it that it had when it was loaded (a function
** stored into a module later is no name the receiver's module has: it
** crosses as a function); from conc's modules, the tables and functions
** they hold (see is_env); but from the standard library's modules only
** what the standard library put there: C functions (print, string.format),
** and package's tables. A Lua function there is the script's own addition
** (string.split), which the receiver lacks: it crosses as a function.
** Rebuilt when package.loaded changes, or when asked to (a C function was
** not found: a module may have grown).
*/
static int is_stdlib(const char *mod) {
  static const char *const names[] = {
    LUA_GNAME, LUA_LOADLIBNAME, LUA_COLIBNAME, LUA_TABLIBNAME, LUA_IOLIBNAME,
    LUA_OSLIBNAME, LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
    LUA_DBLIBNAME, NULL};
  for (int i = 0; names[i]; i++)  /* asked of every module: strcmp rarely */
    if (mod[0] == names[i][0] && strcmp(mod, names[i]) == 0) return 1;
  return 0;
}

/* conc's own modules, "conc" and "conc.*": every state conc makes has
** them as it has the standard library, built in. */
static int is_conc(const char *mod) {
  return strncmp(mod, "conc", 4) == 0 && (mod[4] == '\0' || mod[4] == '.');
}

/*
** The receiver's own, as _G is: the standard library and conc. Their values
** cross by name wherever they are met, data or code, with no snapshot and
** no check: their tables hold what every state's copy holds (conc's
** modules keep their state in upvalues, and keep what a script sets, such
** as threading.excepthook, out of their tables).
*/
static int is_env(const char *mod) {
  return is_stdlib(mod) || is_conc(mod);
}

/*
** The tables the index holds, by address, each with its kind: what the
** encoder asks first of most tables ("is it _G, a standard library's, a
** module value?") answered in C, where a Lua lookup by a table key costs a
** division to hash. A full userdata whose user value is the index, which
** keeps every table in it alive: an address in the set is never a newer
** table's. A key is the address, its low bit set for the ENV kind (a
** table's address is even). O(1) expected per lookup; kept at most half
** full.
*/
typedef struct NameSet {
  size_t cap;           /* a power of two */
  uintptr_t keys[];     /* 0: a free slot */
} NameSet;

static int nameset_kind(const NameSet *set, const void *p) {
  uintptr_t a = (uintptr_t)p;
  for (size_t i = conc__names_slot(p, set->cap);; i = (i + 1) & (set->cap - 1)) {
    uintptr_t k = set->keys[i];
    if (k == a) return CONC_NAMES_MODULE;
    if (k == 0) return CONC_NAMES_NONE;  /* most lookups end here */
    if (k == (a | 1)) return CONC_NAMES_ENV;
  }
}

static void nameset_add(NameSet *set, const void *p, int env) {
  uintptr_t a = (uintptr_t)p;
  size_t i = conc__names_slot(p, set->cap);
  while (set->keys[i] != 0 && (set->keys[i] & ~(uintptr_t)1) != a)
    i = (i + 1) & (set->cap - 1);
  set->keys[i] = a | (uintptr_t)(env != 0);
}

/* The kind of the name on top of the stack, "module\0field". */
static int name_kind(lua_State *L) {
  return is_env(lua_tostring(L, -1)) ? CONC_NAMES_ENV : CONC_NAMES_MODULE;
}

/* Pushes the NameSet of the index at idx, with _G in it too, whether or not
** package.loaded holds it: the encoder then need not look for _G (which
** crosses as GLOBALS) on its own. */
static void push_nameset(lua_State *L, int idx) {
  size_t n = 1, cap = 16;
  NameSet *set;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n += lua_istable(L, -2);
    lua_pop(L, 1);
  }
  while (cap < 2 * n) cap *= 2;
  set = lua_newuserdatauv(L, sizeof *set + cap * sizeof set->keys[0], 1);
  set->cap = cap;
  memset(set->keys, 0, cap * sizeof set->keys[0]);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_istable(L, -2))
      nameset_add(set, lua_topointer(L, -2), name_kind(L) == CONC_NAMES_ENV);
    lua_pop(L, 1);
  }
  lua_pushglobaltable(L);
  nameset_add(set, lua_topointer(L, -1), 1);
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
}

/* Adds to the index at index the fields of module mod (its name at mod,
** its table on top) that cross by name: of a standard library, the C
** functions and package's tables; of conc's, the tables and functions; of
** any other module, the tables and functions that are still what they
** were when it was loaded. */
static void add_fields(lua_State *L, int index, int mod) {
  const char *name = lua_tostring(L, mod);
  int std = is_stdlib(name), package = strcmp(name, LUA_LOADLIBNAME) == 0;
  int t = lua_gettop(L), snap = 0;
  luaL_checkstack(L, 6, NULL);
  if (!is_env(name)) {
    snap_module(L, t, 0);  /* one loaded before the watch, or by a Lua function */
    push_snaps(L);
    lua_pushvalue(L, t);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    snap = lua_gettop(L);
  }
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vt = lua_type(L, -1), ok;
    if (std) {
      ok = lua_iscfunction(L, -1) || (package && vt == LUA_TTABLE);
    } else {
      ok = vt == LUA_TTABLE || vt == LUA_TFUNCTION;
      if (ok && snap) {
        lua_pushvalue(L, -2);
        lua_rawget(L, snap);
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
      }
    }
    if (ok && lua_type(L, -2) == LUA_TSTRING)
      add_name(L, index, lua_gettop(L), name, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  lua_settop(L, t);
}

static void build_names(lua_State *L) {
  int loaded, index, mods, n;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  lua_newtable(L);
  index = lua_gettop(L);
  n = sorted_modules(L, loaded);
  mods = lua_gettop(L);
  for (int i = 1; i <= n; i++) {  /* modules first: they beat fields */
    lua_rawgeti(L, mods, i);
    lua_pushvalue(L, -1);
    lua_rawget(L, loaded);
    if (lua_istable(L, -1) || lua_isfunction(L, -1))
      add_name(L, index, lua_gettop(L), lua_tostring(L, -2), "");
    lua_pop(L, 2);
  }
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, mods, i);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, loaded) == LUA_TTABLE)
      add_fields(L, index, lua_gettop(L) - 1);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);  /* mods */
  lua_pushvalue(L, index);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_KEY);
  if (watched(L, loaded)) {
    push_nameset(L, index);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH);
    lua_pushboolean(L, 1);
  } else {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH);
    lua_pushinteger(L, snapshot_loaded(L, loaded));
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_COUNT);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES_LOADED);
  lua_remove(L, loaded);  /* leaves the index on top */
}

/* Pushes the module named by the modlen bytes at s: package.loaded's, or
** _G (which need not be in package.loaded) for "_G". */
static void push_module(lua_State *L, const char *s, size_t modlen) {
  if (modlen == strlen(LUA_GNAME) && memcmp(s, LUA_GNAME, modlen) == 0) {
    lua_pushglobaltable(L);
  } else {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushlstring(L, s, modlen);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
}

/* Does "module\0field" (n bytes at s) still name the value at idx? Looked up
** as the decoder will. A module's field may have been reassigned since the
** index was built. */
static int name_holds(lua_State *L, const char *s, size_t n, int idx) {
  const char *field = memchr(s, '\0', n);
  int ok;
  push_module(L, s, (size_t)(field - s));
  field++;
  if (field < s + n) {
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_pushlstring(L, field, (size_t)(s + n - field));
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  ok = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  return ok;
}


/* Leaves the index at *slot (pushing it there the first time), building it
** if stale or asked to. */
static void get_index(lua_State *L, int *slot, int rebuild) {
  if (*slot && !rebuild) return;
  if (!rebuild &&
      (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_KEY) != LUA_TTABLE ||
       !loaded_unchanged(L))) {
    lua_pop(L, 1);
    rebuild = 1;
  }
  if (rebuild) build_names(L);
  if (*slot) lua_replace(L, *slot);
  else *slot = lua_gettop(L);
}

int conc__names_find(lua_State *L, int idx, int *slot, int rebuild) {
  size_t n;
  const char *s;
  get_index(L, slot, rebuild);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, *slot) != LUA_TSTRING) {
    lua_pop(L, 1);
    return CONC_NAMES_NONE;
  }
  s = lua_tolstring(L, -1, &n);
  if (name_holds(L, s, n, idx)) return name_kind(L);
  lua_pop(L, 1);
  /* stale: once more, fresh */
  return rebuild ? CONC_NAMES_NONE : conc__names_find(L, idx, slot, 1);
}

int conc__names_self(lua_State *L, int idx) {
  int top = lua_gettop(L), ok = 0;
  size_t modlen;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 5, NULL);
  lua_pushliteral(L, "__module");
  if (lua_rawget(L, idx) == LUA_TSTRING) {
    lua_pushliteral(L, "__name");
    /* a '\0' in the module's name would end it early on the wire, and an
    ** empty field names the module itself */
    ok = lua_rawget(L, idx) == LUA_TSTRING && lua_rawlen(L, top + 2) > 0 &&
         strlen(lua_tolstring(L, top + 1, &modlen)) == modlen;
  }
  if (ok) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, top + 1);
    ok = lua_rawget(L, -2) == LUA_TTABLE;
    if (ok) {
      lua_pushvalue(L, top + 2);
      lua_gettable(L, -2);  /* may make the field: that is the point */
      ok = lua_rawequal(L, -1, idx);
    }
  }
  if (ok) {
    lua_pushvalue(L, top + 1);
    lua_pushlstring(L, "", 1);  /* the '\0' between module and field */
    lua_pushvalue(L, top + 2);
    lua_concat(L, 3);
    lua_replace(L, top + 1);
  }
  lua_settop(L, top + ok);
  return ok;
}

int conc__names_kind(lua_State *L, int idx) {
  int kind = CONC_NAMES_ASK;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES_FRESH) == LUA_TUSERDATA)
    kind = nameset_kind(lua_touserdata(L, -1), lua_topointer(L, idx));
  lua_pop(L, 1);
  return kind;
}

/* ======================================================================
** Is a module as it was loaded?
** ====================================================================== */

/* The length of the module's part of the name s (n bytes). */
static size_t mod_len(const char *s, size_t n) {
  const char *z = memchr(s, '\0', n);
  return z ? (size_t)(z - s) : n;
}

/* Pushes the module of the name s (n bytes) if it is one a snapshot was
** taken of, and returns 1; else returns 0 having pushed nothing. */
static int push_checked(lua_State *L, const char *s, size_t n) {
  if (is_env(s)) return 0;  /* s ends at the '\0' for strcmp */
  push_module(L, s, mod_len(s, n));
  if (lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

const void *conc__names_module(lua_State *L, const char *s, size_t n) {
  const void *p;
  if (!push_checked(L, s, n)) return NULL;
  p = lua_topointer(L, -1);
  lua_pop(L, 1);
  return p;
}

/* Pushes "NAME" for "module\0field" (n bytes at s): module.field, or the
** module's name alone. */
static void push_display(lua_State *L, const char *s, size_t n) {
  size_t modlen = mod_len(s, n);
  lua_pushlstring(L, s, modlen);
  if (modlen + 1 < n) {
    lua_pushliteral(L, ".");
    lua_pushlstring(L, s + modlen + 1, n - modlen - 1);
    lua_concat(L, 3);
  }
}

/* Pushes MODULE.KEY for the key at idx of the module whose name is the
** modlen bytes at s. */
static void push_field(lua_State *L, const char *s, size_t modlen, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushlstring(L, s, modlen);
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushliteral(L, ".");
    lua_pushvalue(L, idx);
    lua_concat(L, 3);
    return;
  }
  lua_pushliteral(L, "[");
  if (lua_type(L, idx) == LUA_TNUMBER || lua_type(L, idx) == LUA_TBOOLEAN)
    luaL_tolstring(L, idx, NULL);
  else
    lua_pushstring(L, luaL_typename(L, idx));
  lua_pushliteral(L, "]");
  lua_concat(L, 4);
}

/* May the module at mod have made the value at v by itself on first use,
** as conc's modules make their submodules and classes, so that the
** receiver's module makes it too? It can make fields (it has an __index),
** and the value is a module value or a class that names itself. */
static int made_on_use(lua_State *L, int mod, int v, int index) {
  int ok;
  v = lua_absindex(L, v);
  if (!lua_getmetatable(L, mod)) return 0;
  lua_pushliteral(L, "__index");
  ok = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  if (!ok || !(lua_istable(L, v) || lua_isfunction(L, v))) return 0;
  lua_pushvalue(L, v);
  ok = lua_rawget(L, index) == LUA_TSTRING;
  lua_pop(L, 1);
  if (!ok && lua_istable(L, v) && conc__names_self(L, v)) {
    lua_pop(L, 1);
    ok = 1;
  }
  return ok;
}

int conc__names_changed(lua_State *L, const char *s, size_t n, int index) {
  int top = lua_gettop(L), mod, snap, matched = 0;
  size_t modlen = mod_len(s, n);
  const char *how = NULL;
  luaL_checkstack(L, 8, NULL);
  if (!push_checked(L, s, n)) return 0;
  mod = lua_gettop(L);
  push_snaps(L);
  lua_pushvalue(L, mod);
  if (lua_rawget(L, -2) != LUA_TTABLE) {  /* the index is no older than it */
    lua_settop(L, top);
    return 0;
  }
  snap = lua_gettop(L);
  lua_pushnil(L);
  while (how == NULL && lua_next(L, mod)) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, snap) == LUA_TNIL) {
      if (!made_on_use(L, mod, -2, index)) how = "added";
    } else if (lua_rawequal(L, -1, -2)) {
      matched++;
    } else {
      how = "changed";
    }
    lua_pop(L, 2);  /* on a change, the key stays on top */
  }
  if (how == NULL) {
    lua_rawgetp(L, snap, &SNAP_COUNT);
    if (lua_tointeger(L, -1) == matched) {
      lua_settop(L, top);
      return 0;
    }
    lua_pop(L, 1);
    lua_pushnil(L);  /* a field is gone: which one */
    while (lua_next(L, snap)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) continue;  /* SNAP_COUNT */
      lua_pushvalue(L, -1);
      if (lua_rawget(L, mod) == LUA_TNIL) {
        lua_pop(L, 1);
        how = "removed";
        break;
      }
      lua_pop(L, 1);
    }
  }
  if (how == NULL) {  /* not reached: a count short means a field gone */
    lua_settop(L, top);
    return 0;
  }
  push_display(L, s, n);  /* the key is below it */
  push_field(L, s, modlen, -2);
  lua_pushfstring(L, "%s by name: %s was %s after the module was loaded, "
                  "and the receiver's require gives it as loaded",
                  lua_tostring(L, -2), lua_tostring(L, -1), how);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 1;
}

void conc__names_watch(lua_State *L) {
  int loaded;
  luaL_checkstack(L, 4, NULL);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  if (lua_getmetatable(L, loaded)) {  /* watched already, or by another */
    lua_pop(L, 2);
    return;
  }
  watched(L, loaded);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    if (snapshotted(L, -1, -2)) snap_module(L, -1, 0);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}
