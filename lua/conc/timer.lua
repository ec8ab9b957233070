-- conc.timer: threading.Timer, kept out of conc.threading (which every
-- thread's state loads) and loaded on first use of threading.Timer.
--
-- Timer(interval, function, args, kwargs): a Thread that waits, then calls
-- function unless cancel() came first. As Python's: the wait is on an
-- Event (`finished`), so cancel() ends it at once. The fields are Python's
-- names; `function` is a Lua keyword, so it reads timer["function"].
local core = require "conc.core"
local threading = require "conc.threading"

local Thread = threading.Thread
local Timer = Thread:extend("Timer")

function Timer:__init(interval, fn, args, kwargs)
  Thread.__init(self)
  rawset(self, "interval", interval)
  rawset(self, "function", fn)
  rawset(self, "args", args or {})
  rawset(self, "kwargs", kwargs)
  rawset(self, "finished", core.Event())
end

function Timer:cancel()
  rawget(self, "finished"):set()
end

function Timer:run()
  local finished = rawget(self, "finished")
  finished:wait(rawget(self, "interval"))
  if not finished:is_set() then
    threading._call(rawget(self, "function"), rawget(self, "args"),
      rawget(self, "kwargs"))
  end
  finished:set()
end

return Timer
