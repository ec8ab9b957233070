rockspec_format = "3.0"
package = "conc"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Python's concurrency toolkit for Lua 5.4, one lua_State per thread",
  detailed = [[
    Threads without a global lock, with Python's threading API: each thread
    runs its own lua_State and values cross with one wire format.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CONC_LUA_DIR = "$(LUADIR)",
    CONC_LIB_DIR = "$(LIBDIR)",
  },
}
