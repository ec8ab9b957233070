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
  shared = true, multiprocessing = true, futures = true, asyncio = true,
}

-- conc.list(iter, state, init): the values of a generic-for iterator as a
-- sequence, Python's list(it): conc.list(ex:map(f, xs)).
function M.list(iter, state, ctl, closing)
  local t, n = {}, 0
  for v in iter, state, ctl, closing do
    n = n + 1
    t[n] = v
  end
  return t
end

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
