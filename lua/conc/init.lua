-- conc: require "conc" gives every module, each loaded on first use.
local errors = require "conc.errors"

local M = {
  isinstance = errors.isinstance,
  errors = errors,
  -- conc.select(objs, timeout): the first of several queues and events to
  -- be ready, and its index (see docs/queues.md)
  select = require("conc.core").select,
}

local submodules = {
  threading = true, time = true, class = true, core = true, queue = true,
  shared = true, multiprocessing = true,
}

return setmetatable(M, {
  __index = function(t, k)
    if submodules[k] then
      local m = require("conc." .. k)
      rawset(t, k, m)
      return m
    end
    return errors[k]  -- conc.RuntimeError, conc.KeyboardInterrupt, ...
  end,
})
