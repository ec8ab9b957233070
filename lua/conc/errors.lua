-- conc.errors: Python's exception classes as Lua values. error(ValueError("x"))
-- raises one; tostring gives "ValueError: x"; conc.isinstance tests the class.
-- Errors cross threads like any value: their class crosses by module name, so
-- isinstance still holds on the other side, and `traceback` keeps the remote
-- stack.
local class = require "conc.class"

local M = {}

-- A class whose __module and __name lead back to it, as
-- package.loaded[__module][__name], crosses by that name (the wire format
-- looks them up raw, so a user's subclass, which inherits __module through
-- __parent, crosses by value).
local BaseException = class.class(nil, "BaseException")
BaseException.__qualname = "BaseException"
BaseException.__module = "conc.errors"

function BaseException:__init(message)
  self.message = message
end

function BaseException:__tostring()
  local name = getmetatable(self).__qualname
  local msg = self.message
  if msg == nil or msg == "" then return name end
  return name .. ": " .. tostring(msg)
end

M.BaseException = BaseException

-- Declares class `name` under `parent`; `qualname` is what tostring shows.
local function define(name, parent, qualname)
  local cls = parent:extend(name)
  cls.__qualname = qualname or name
  cls.__module = "conc.errors" -- with __name, its way back (see above)
  rawset(M, name, cls)
  return cls
end
M.define = define

-- The classes are made on first use: a thread's state loads this module
-- whether or not it ever raises, and making ten classes up front was a
-- sixth of building that state. (So pairs(errors) lists only those made.)
local parents = {}
local qualnames = {}

-- Declares class `name` under the class named `parent`, made on first use.
function M.declare(name, parent, qualname)
  parents[name] = parent
  qualnames[name] = qualname
end

M.declare("Exception", "BaseException")
M.declare("KeyboardInterrupt", "BaseException")
M.declare("SystemExit", "BaseException")
M.declare("RuntimeError", "Exception")
M.declare("ValueError", "Exception")
M.declare("TypeError", "Exception")
M.declare("AttributeError", "Exception")
M.declare("OSError", "Exception")
M.declare("ChildProcessError", "OSError")
M.declare("FileNotFoundError", "OSError")
M.declare("PermissionError", "OSError")
M.declare("ConnectionError", "OSError")
M.declare("BrokenPipeError", "ConnectionError")
M.declare("ConnectionResetError", "ConnectionError")
M.declare("ConnectionRefusedError", "ConnectionError")
M.declare("MemoryError", "Exception")
M.declare("AssertionError", "Exception")
M.declare("EOFError", "Exception")
M.declare("SystemError", "Exception")
M.declare("TimeoutError", "OSError")
M.declare("NotImplementedError", "RuntimeError")
M.declare("BrokenBarrierError", "RuntimeError")
M.declare("Empty", "Exception", "queue.Empty")
M.declare("Full", "Exception", "queue.Full")
M.declare("ShutDown", "Exception", "queue.ShutDown")
M.declare("LookupError", "Exception")
M.declare("KeyError", "LookupError")
M.declare("IndexError", "LookupError")
-- concurrent.futures' (Python's TimeoutError there is the built-in one)
M.declare("CancelledError", "Exception")
M.declare("InvalidStateError", "Exception")
M.declare("BrokenExecutor", "RuntimeError")
M.declare("BrokenThreadPool", "BrokenExecutor")
M.declare("BrokenProcessPool", "BrokenExecutor")
-- multiprocessing's own
M.declare("ProcessError", "Exception")
-- the socket and asyncio ones
M.declare("BlockingIOError", "OSError")
M.declare("ProcessLookupError", "OSError")
M.declare("ConnectionAbortedError", "ConnectionError")
M.declare("IncompleteReadError", "EOFError", "asyncio.IncompleteReadError")
M.declare("LimitOverrunError", "Exception", "asyncio.LimitOverrunError")
M.declare("QueueEmpty", "Exception", "asyncio.QueueEmpty")
M.declare("QueueFull", "Exception", "asyncio.QueueFull")
M.declare("QueueShutDown", "Exception", "asyncio.QueueShutDown")
M.declare("ExceptionGroup", "Exception")

setmetatable(M, {
  __index = function(t, name)
    local parent = parents[name]
    if parent == nil then return nil end
    return define(name, t[parent], qualnames[name])
  end,
})

-- Any Lua error value as text: tostring, with a fallback for non-strings.
function M.tostring(err)
  if type(err) == "string" then return err end
  local ok, s = pcall(tostring, err)
  if ok and type(s) == "string" then return s end
  return "(error object is a " .. type(err) .. " value)"
end

M.isinstance = class.isinstance

-- debug.traceback without conc's own frames: the facades are carried as
-- stripped bytecode (their frames read "?"), and what lies below the
-- xpcall that runs a thread's body is conc's machinery, not the user's.
function M.traceback(msg, level)
  local tb = debug.traceback(msg, (level or 1) + 1)
  tb = tb:gsub("\n\t%[C%]: in function 'xpcall'.*$", "")
  return (tb:gsub("\n\t%?: in [^\n]*", ""))
end

return M
