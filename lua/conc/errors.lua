-- conc.errors: Python's exception classes as Lua values. error(ValueError("x"))
-- raises one; tostring gives "ValueError: x"; conc.isinstance tests the class.
-- Errors cross threads like any value: their class crosses by module name, so
-- isinstance still holds on the other side, and `traceback` keeps the remote
-- stack.
local class = require "conc.class"

local M = {}

local BaseException = class.class(nil, "BaseException")
BaseException.__qualname = "BaseException"

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
  M[name] = cls
  return cls
end
M.define = define

define("Exception", BaseException)
define("KeyboardInterrupt", BaseException)
define("SystemExit", BaseException)
define("RuntimeError", M.Exception)
define("ValueError", M.Exception)
define("TypeError", M.Exception)
define("AttributeError", M.Exception)
define("OSError", M.Exception)
define("TimeoutError", M.OSError)
define("NotImplementedError", M.RuntimeError)

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
