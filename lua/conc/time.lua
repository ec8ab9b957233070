-- conc.time: the part of Python's time module that concurrency needs.
-- sleep is interruptible by Ctrl-C in the host (KeyboardInterrupt).
local core = require "conc.core"

return {
  sleep = core.sleep,
  monotonic = core.monotonic,
  perf_counter = core.perf_counter,
  time = core.time,
}
