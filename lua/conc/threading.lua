-- conc.threading: Python's threading module. Each Thread runs in its own OS
-- thread with its own lua_State; what it needs (target, args, the Thread
-- object itself with any subclass fields) is copied there with the wire
-- format, conc objects (locks, queues, the thread handle) by reference.
local core = require "conc.core"
local class = require "conc.class"
-- conc.errors is needed only when something goes wrong: a thread's state
-- that never raises does not load it (loading it is a tenth of building
-- that state).
local errors = setmetatable({}, {__index = function(t, k)
  local m = require "conc.errors"
  setmetatable(t, {__index = m})
  return m[k]
end})

local M = {}

-- The Lua Thread object for each handle seen in this state, so that
-- current_thread() and enumerate() give back the very object the script
-- made (weak: a finished thread nobody holds goes away).
local instances = setmetatable({}, {__mode = "k"})
local current -- this state's own Thread object, set by _bootstrap

local Thread = class.class(nil, "Thread")
M.Thread = Thread

local excepthook  -- threading.excepthook, kept out of M (see below)

local function handle(self)
  local h = rawget(self, "_handle")
  if h == nil then
    -- a subclass whose __init did not call Thread.__init
    Thread.__init(self)
    h = rawget(self, "_handle")
  end
  return h
end

-- Python names a thread after its target's __name__; a Lua function has no
-- name of its own, so take the one the caller knows it by: a local of the
-- calling function, else an upvalue of it, else a global.
local function function_name(f, level)
  for i = 1, math.huge do
    local name, v = debug.getlocal(level + 1, i)
    if name == nil then break end
    if rawequal(v, f) and name:sub(1, 1) ~= "(" then return name end
  end
  local info = debug.getinfo(level + 1, "f")
  if info and info.func then
    for i = 1, math.huge do
      local name, v = debug.getupvalue(info.func, i)
      if name == nil then break end
      if rawequal(v, f) then return name end
    end
  end
  local found
  for k, v in pairs(_G) do
    if rawequal(v, f) and type(k) == "string" and (found == nil or k < found) then
      found = k
    end
  end
  return found or "<lambda>"
end

-- Thread{target=, args=, kwargs=, name=, daemon=}
function Thread:__init(opts)
  opts = opts or {}
  local name = opts.name
  if name == nil then
    name = "Thread-" .. core.next_number()
    if opts.target ~= nil then
      -- level 3: function_name <- __init <- class call <- the caller
      name = name .. " (" .. function_name(opts.target, 3) .. ")"
    end
  end
  local daemon = opts.daemon
  if daemon == nil then  -- the creating thread's, as in Python
    daemon = (current and handle(current) or core.current_thread()):daemon()
  end
  local h = core.thread_new(tostring(name), daemon)
  rawset(self, "_handle", h)
  rawset(self, "_target", opts.target)
  rawset(self, "_args", opts.args or {})
  rawset(self, "_kwargs", opts.kwargs)
  instances[h] = self
end

-- Calls f with args (a sequence, or table.pack's result) and, when given,
-- the kwargs table after them, as Python's f(*args, **kwargs).
local function call(f, args, kwargs)
  local n = args.n or #args
  if kwargs ~= nil then
    -- kwargs after all of args: f(table.unpack(args), kw) would keep
    -- only the first of args
    args = table.move(args, 1, n, 1, {})
    n = n + 1
    args[n] = kwargs
  end
  return f(table.unpack(args, 1, n))
end

M._call = call

function Thread:run()
  local target = rawget(self, "_target")
  if target ~= nil then
    call(target, rawget(self, "_args"), rawget(self, "_kwargs"))
  end
end

function Thread:start()
  local hook = excepthook  -- declared below, before any start can run
  if rawequal(hook, M.__excepthook__) then hook = nil end -- the receiver has it
  handle(self):start(rawget(self, "_target"), rawget(self, "_args"), self, hook)
end

function Thread:join(timeout)
  handle(self):join(timeout)
end

function Thread:is_alive()
  return handle(self):is_alive()
end

-- Python 3.9 removed these spellings; they still read well in Lua.
function Thread:getName() return self.name end
function Thread:setName(n) self.name = n end
function Thread:isDaemon() return self.daemon end
function Thread:setDaemon(d) self.daemon = d end

function Thread:__tostring()
  local h = handle(self)
  local status = "initial"
  if h:started() then status = h:is_alive() and "started" or "stopped" end
  if h:daemon() then status = status .. " daemon" end
  local ident = h:started() and (" " .. tostring(h:ident())) or ""
  return string.format("<%s(%s, %s%s)>", getmetatable(self).__name or "Thread",
    h:name(), status, ident)
end

function Thread.__eq(a, b)
  return rawequal(a, b) or rawequal(rawget(a, "_handle"), rawget(b, "_handle"))
end

-- Attributes that live in the C thread object, visible from every state.
local getters = {
  name = function(h) return h:name() end,
  daemon = function(h) return h:daemon() end,
  ident = function(h) return h:ident() end,
  native_id = function(h) return h:native_id() end,
}

local setters = {
  name = function(h, v) h:set_name(tostring(v)) end,
  daemon = function(h, v) h:set_daemon(v) end,
  ident = false, native_id = false, -- read-only
}

function Thread.__index(self, k)
  local v = getmetatable(self)[k]
  if v ~= nil then return v end
  local get = getters[k]
  if get then return get(handle(self)) end
end

function Thread.__newindex(self, k, v)
  local set = setters[k]
  if set then set(handle(self), v)
  elseif set == false then
    error(errors.AttributeError("attribute '" .. k .. "' is read-only"), 2)
  else rawset(self, k, v) end
end

-- The Thread object for a handle: the one this state made, or a plain view.
local function wrap(h)
  local t = instances[h]
  if t == nil then
    t = setmetatable({_handle = h}, Thread)
    instances[h] = t
  end
  return t
end

-- The main thread's object, and that of the dummy thread a foreign OS
-- thread gets, are held for good, not just while the script holds them:
-- Python's current_thread() is one object whose attributes stay put.
local kept = {}

local function keep(h)
  local t = kept[h]
  if t == nil then
    t = wrap(h)
    kept[h] = t
  end
  return t
end

function M.current_thread()
  if current then return current end
  return keep(core.current_thread())
end

function M.main_thread()
  return keep(core.main_thread())
end

function M.enumerate()
  local hs = core.enumerate()
  local main = core.main_thread()
  for i, h in ipairs(hs) do hs[i] = h == main and keep(h) or wrap(h) end
  return hs
end

M.Lock = core.Lock
M.RLock = core.RLock
M.Condition = core.Condition
M.Barrier = core.Barrier
M.Semaphore = core.Semaphore
M.BoundedSemaphore = core.BoundedSemaphore
M.Event = core.Event
M.active_count = core.active_count
M.stack_size = core.stack_size
M.get_ident = core.get_ident
M.get_native_id = core.get_native_id

-- Python's currentThread/activeCount aliases.
M.currentThread = M.current_thread
M.activeCount = M.active_count

-- threading.local(): `local` is a Lua keyword, so threading["local"]() or
-- threading.Local(). Fields set in one thread are not seen by another.
M["local"] = core.local_new
M.Local = core.local_new

-- threading.excepthook(args): args has exc_type, exc_value, exc_traceback
-- and thread, as in Python; SystemExit is ignored. Replacing it in the main
-- state applies to the threads started after that.
function M.__excepthook__(args)
  if errors.isinstance(args.exc_value, errors.SystemExit) then return end
  local name = args.thread and args.thread.name or tostring(core.get_ident())
  io.stderr:write("Exception in thread ", name, ":\n",
    tostring(args.exc_traceback or errors.tostring(args.exc_value)), "\n")
  io.stderr:flush()
end

-- The hook is kept out of the module's own fields: the wire format sends a
-- function found in a loaded module by its name, so a hook the script
-- stored there would reach the thread as the receiver's default one.
excepthook = M.__excepthook__

setmetatable(M, {
  __index = function(_, k)
    if k == "excepthook" then return excepthook end
    if k == "BrokenBarrierError" then return errors.BrokenBarrierError end
    -- Timer lives in conc.timer, loaded on first use: every thread's state
    -- loads this module, and few of them make timers
    if k == "Timer" then return require "conc.timer" end
  end,
  __newindex = function(t, k, v)
    if k == "excepthook" then excepthook = v
    else rawset(t, k, v) end
  end,
})

-- Runs in the new thread's own state: the C side decoded what start() sent.
function M._bootstrap(target, args, self, hook)
  local _ = target, args
  current = self
  instances[rawget(self, "_handle")] = self
  if hook then M.excepthook = hook end
  local tb
  local ok, err = xpcall(self.run, function(e)
    tb = errors.traceback(errors.tostring(e), 2)
    if type(e) == "table" and rawget(e, "traceback") == nil then
      pcall(rawset, e, "traceback", tb)
    end
    return e
  end, self)
  if not ok then
    local exc_type = type(err) == "table" and getmetatable(err) or type(err)
    local hok, herr = pcall(M.excepthook, {
      exc_type = exc_type, exc_value = err, exc_traceback = tb, thread = self})
    if not hok then
      io.stderr:write("Exception in threading.excepthook:\n",
        errors.tostring(herr), "\n")
    end
  end
end

M.TIMEOUT_MAX = 2 ^ 31

-- threading._register_atexit(fn), as Python's: fn runs when the main
-- state's script has ended, before the non-daemon threads are waited for
-- (the host's conc_shutdown calls _run_atexit), the last registered
-- first. What concurrent.futures uses to finish the work of the executors
-- a script did not shut down. A stock lua5.4 has no such moment: there
-- they do not run.
local atexit = {}

function M._register_atexit(fn)
  atexit[#atexit + 1] = fn
end

function M._run_atexit()
  while #atexit > 0 do
    local fn = table.remove(atexit)
    local ok, err = pcall(fn)
    if not ok then
      io.stderr:write("Exception in threading atexit callback:\n",
        errors.tostring(err), "\n")
      io.stderr:flush()
    end
  end
end

return M
