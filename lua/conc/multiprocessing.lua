-- conc.multiprocessing: Python's multiprocessing module. A Process runs its
-- target in a child process, started one of two ways (docs/multiprocessing.md):
--   fork  (the default) the child runs in its copy of the parent's Lua state:
--         globals and upvalues as the parent had them at start();
--   spawn a fresh conc host receives the target, its arguments and the
--         Process object through the wire format (docs/transfer.md): upvalues
--         and modules cross, the script's globals do not.
-- Either way the script is never run again, so no `if __name__ ==
-- "__main__"` is needed. Locks, queues, Value and Array live in shared
-- memory that every process given them shares.
local core = require "conc.core"
local class = require "conc.class"
local threading = require "conc.threading"
local errors = require "conc.errors"

local M = {}

-- The Lua Process object for each handle seen in this process, for
-- active_children() (weak: a child nobody holds is still in the C table
-- until it ends, and gets a plain view back).
local instances = setmetatable({}, {__mode = "v"})

local current   -- this process's Process object (a child's own, or MainProcess)
local parent    -- the parent's, in a child

local Process = class.class(nil, "Process")
M.Process = Process
-- the class under Python's module path, for `mp.context.Process` habits
M.BaseProcess = Process

local function closed_error()
  return errors.ValueError("process object is closed")
end

local function handle(self)
  local h = rawget(self, "_handle")
  if h == nil then
    if rawget(self, "_main") or rawget(self, "_parent") then return nil end
    Process.__init(self)  -- a subclass whose __init did not call Process's
    h = rawget(self, "_handle")
  end
  return h
end

-- Process{target=, args=, kwargs=, name=, daemon=}
-- Python's names, counted per process in C (every thread's state sees
-- them): Process-1, and Process-1:2 for a child's second child; a
-- subclass's own class name instead of Process.
function Process:__init(opts)
  opts = opts or {}
  local daemon = opts.daemon
  if daemon == nil then daemon = M.current_process().daemon end
  local h = core.process_new(daemon)
  rawset(self, "_handle", h)
  rawset(self, "_target", opts.target)
  rawset(self, "_args", opts.args or {})
  rawset(self, "_kwargs", opts.kwargs)
  local cls = getmetatable(self).__name
  if opts.name ~= nil then h:set_name(tostring(opts.name))
  elseif cls ~= nil and cls ~= "Process" then h:set_name(cls .. "-" .. h:ident()) end
  instances[h] = self
end

function Process:run()
  local target = rawget(self, "_target")
  if target ~= nil then
    threading._call(target, rawget(self, "_args"), rawget(self, "_kwargs"))
  end
end

-- In the child: becomes the current process, runs run(), and ends the
-- process with Python's exit code (0, or 1 after printing the error).
local function bootstrap(self, parent_name)
  -- as Python's children: the parent's stdin is the parent's to read
  core.stdin_null()
  parent = setmetatable({_parent = true, _name = parent_name,
    _pid = core.getppid()}, Process)
  current = self
  for h in pairs(instances) do instances[h] = nil end
  instances[handle(self)] = self
  local code = 0
  local tb
  local ok, err = xpcall(self.run, function(e)
    tb = errors.traceback(errors.tostring(e), 2)
    return e
  end, self)
  if not ok then
    if errors.isinstance(err, errors.SystemExit) then
      -- Python's: none is 0, an integer is the code, anything else is
      -- printed and is 1
      local c = err.message
      if c == nil then code = 0
      elseif math.type(c) == "integer" then code = c
      else
        io.stderr:write(tostring(c), "\n")
        code = 1
      end
    else
      io.stderr:write("Process ", tostring(self.name), ":\n", tostring(tb), "\n")
      code = 1
    end
  end
  core.process_exit(code)
end

-- What a spawned child gets of its Process: the raw fields but the handle
-- (the child makes its own), under the same class.
local function spawned_self(self)
  local t = {}
  for k, v in next, self do
    if k ~= "_handle" then t[k] = v end
  end
  return setmetatable(t, getmetatable(self))
end

function Process:start()
  local h = handle(self)
  if h:closed() then error(closed_error(), 2) end
  if h:started() then
    error(errors.AssertionError("cannot start a process twice"), 2)
  end
  if M.current_process().daemon then
    error(errors.AssertionError(
      "daemonic processes are not allowed to have children"), 2)
  end
  local method = self._start_method or M.get_start_method()
  if method == "spawn" then
    -- target, args and kwargs also sit in self's fields (the message holds
    -- each table once); given first, they are what an error names
    -- ("args[1]: cannot transfer coroutine"), and the child reads self's
    h:spawn(M.get_executable(), package.path, package.cpath,
      rawget(self, "_target"), rawget(self, "_args"), rawget(self, "_kwargs"),
      spawned_self(self), {ident = h:ident(), name = h:name(),
        daemon = h:daemon(), ppid = core.getpid(),
        parent_name = M.current_process().name, arg = arg})
  elseif h:start() == 0 then
    bootstrap(self, M.current_process().name)
  end
end

-- The spawned child's entry point: its host runs `_spawn_main(fd)` with
-- the descriptor of the start its parent wrote.
function M._spawn_main(fd)
  local _, _, _, self, info, from_main = core.spawn_receive(fd)
  local h = core.process_adopt(info.ident, info.ppid, info.daemon, from_main)
  h:set_name(info.name)
  rawset(self, "_handle", h)
  arg = info.arg
  bootstrap(self, info.parent_name)
end

local function started_handle(self, what)
  local h = handle(self)
  if h == nil then
    error(errors.AssertionError("can only " .. what .. " a child process"), 3)
  end
  if h:closed() then error(closed_error(), 3) end
  if not h:started() then
    error(errors.AssertionError("can only " .. what .. " a started process"), 3)
  end
  return h
end

function Process:join(timeout)
  started_handle(self, "join"):join(timeout)
end

function Process:is_alive()
  if rawequal(self, current) or rawget(self, "_main") then return true end
  if rawget(self, "_parent") then return core.getppid() == rawget(self, "_pid") end
  local h = handle(self)
  if h:closed() then error(closed_error(), 2) end
  if not h:started() then return false end
  return h:is_alive()
end

function Process:terminate()
  local h = handle(self)
  if h then h:terminate() end
end

function Process:kill()
  local h = handle(self)
  if h then h:kill() end
end

function Process:close()
  local h = handle(self)
  if h then h:close() end
end

local getters = {
  pid = function(self, h)
    if h == nil then return rawget(self, "_pid") or core.getpid() end
    if h:closed() then error(closed_error(), 3) end
    return h:pid()
  end,
  exitcode = function(self, h)
    if h == nil or rawequal(self, current) then return nil end
    if h:closed() then error(closed_error(), 3) end
    return h:exitcode()
  end,
  daemon = function(_, h) return h ~= nil and h:daemon() end,
  name = function(self, h)
    if h == nil then return rawget(self, "_name") end
    return h:name()
  end,
  sentinel = function(_, h)
    if h == nil then error(errors.ValueError("process not started"), 3) end
    return h:sentinel()
  end,
}
getters.ident = getters.pid

local setters = {
  name = function(self, h, v)
    if h == nil then rawset(self, "_name", tostring(v)) else h:set_name(tostring(v)) end
  end,
  daemon = function(_, h, v)
    if h == nil then
      error(errors.AssertionError("process has already started"), 3)
    end
    h:set_daemon(v)
  end,
  pid = false, ident = false, exitcode = false, sentinel = false,
}

function Process.__index(self, k)
  local v = getmetatable(self)[k]
  if v ~= nil then return v end
  local get = getters[k]
  if get then return get(self, handle(self)) end
end

function Process.__newindex(self, k, v)
  local set = setters[k]
  if set then set(self, handle(self), v)
  elseif set == false then
    error(errors.AttributeError("attribute '" .. k .. "' is read-only"), 2)
  else rawset(self, k, v) end
end

function Process.__eq(a, b)
  return rawequal(a, b) or (rawget(a, "_handle") ~= nil and
    rawequal(rawget(a, "_handle"), rawget(b, "_handle")))
end

function Process:__tostring()
  local h = handle(self)
  local parts = {string.format("<%s name='%s'", getmetatable(self).__name or
    "Process", tostring(self.name))}
  local status
  if h == nil or rawequal(self, current) then
    status = "started"
    parts[#parts + 1] = " pid=" .. tostring(self.pid)
  elseif h:closed() then
    status = "closed"
  elseif not h:started() then
    status = "initial"
  else
    parts[#parts + 1] = " pid=" .. tostring(h:pid())
    local code = h:exitcode()
    status = code == nil and "started" or ("stopped exitcode=" .. code)
  end
  parts[#parts + 1] = " " .. status
  if h ~= nil and h:daemon() then parts[#parts + 1] = " daemon" end
  return table.concat(parts) .. ">"
end

function M.current_process()
  if current == nil then
    current = setmetatable({_main = true, _name = "MainProcess"}, Process)
  end
  return current
end

function M.parent_process()
  return parent
end

-- The live children this process started, oldest first (ended ones are
-- reaped on the way, as Python's are).
function M.active_children()
  local hs = core.active_children()
  for i, h in ipairs(hs) do
    local p = instances[h]
    if p == nil then
      p = setmetatable({_handle = h}, Process)
      instances[h] = p
    end
    hs[i] = p
  end
  return hs
end

M.cpu_count = core.cpu_count

-- Queues in shared memory: a put has stored its item when it returns (no
-- feeder thread), maxsize counts items, 0 is unbounded.
M.Queue = core.mp_Queue
M.JoinableQueue = core.mp_JoinableQueue
M.SimpleQueue = core.mp_SimpleQueue

-- Pipe(duplex=true) -> two Connections: send/recv a value, send_bytes/
-- recv_bytes a string, poll(timeout), fileno, close; EOFError once the
-- other end is closed in every process.
function M.Pipe(duplex)
  return core.Pipe(duplex ~= false)
end

-- Locks, events, semaphores, conditions and barriers in shared memory: the same objects as
-- threading's, which threads of every process that inherits them can use.
function M.Lock() return core.Lock(true) end
function M.RLock() return core.RLock(true) end
function M.Event() return core.Event(true) end
function M.Semaphore(value) return core.Semaphore(value, true) end
function M.BoundedSemaphore(value) return core.BoundedSemaphore(value, true) end
function M.Condition(lock) return core.Condition(lock, true) end
function M.Barrier(parties, action, timeout)
  return core.Barrier(parties, action, timeout, true)
end

-- Value(typecode, init, {lock=true}): lock true makes an RLock, false
-- none (RawValue), or give a multiprocessing Lock or RLock.
local function lock_opt(opts)
  if opts == nil or opts.lock == nil then return true end
  return opts.lock
end

function M.Value(typecode, init, opts)
  return core.Value(typecode, init, lock_opt(opts))
end

function M.Array(typecode, size_or_initializer, opts)
  return core.Array(typecode, size_or_initializer, lock_opt(opts))
end

function M.RawValue(typecode, init)
  return core.Value(typecode, init, false)
end

function M.RawArray(typecode, size_or_initializer)
  return core.Array(typecode, size_or_initializer, false)
end

-- Manager(): dict, list and Namespace in shared memory that every process
-- forked after it sees (no server process: docs/multiprocessing.md), and
-- the queues and synchronization objects of this module. Closable:
-- `local m <close> = mp.Manager()` shuts it down at the end of the block.
M.Manager = core.Manager

-- Pool(processes, initializer, initargs, maxtasksperchild) and
-- multiprocessing.pool (Pool, ThreadPool, AsyncResult): conc.pool, loaded
-- on first use.
function M.Pool(...)
  return require("conc.pool").Pool(...)
end

M.TimeoutError = errors.TimeoutError

-- Start methods: fork and spawn (docs/multiprocessing.md; no
-- forkserver). A context holds the module's constructors, its Process being
-- ForkProcess or SpawnProcess, as in Python.
M.ForkProcess = Process:extend("ForkProcess")
M.ForkProcess._start_method = "fork"
M.SpawnProcess = Process:extend("SpawnProcess")
M.SpawnProcess._start_method = "spawn"
local methods = {fork = M.ForkProcess, spawn = M.SpawnProcess}
local start_method

function M.get_all_start_methods()
  return {"fork", "spawn"}
end

function M.get_start_method(allow_none)
  if start_method == nil and not allow_none then start_method = "fork" end
  return start_method
end

function M.set_start_method(method, force)
  if method ~= nil and not methods[method] then
    error(errors.ValueError("cannot find context for '" .. tostring(method) .. "'"), 2)
  end
  if start_method ~= nil and not force then
    error(errors.RuntimeError("context has already been set"), 2)
  end
  start_method = method
end

-- The program spawn starts: this one unless set_executable said otherwise
-- (an embedding host whose program is not a Lua interpreter names conc's
-- host, or lua5.4).
local executable

function M.set_executable(path)
  if type(path) ~= "string" then
    error(errors.TypeError("set_executable: path must be a string"), 2)
  end
  executable = path
end

function M.get_executable()
  if executable == nil then executable = core.executable() end
  return executable
end

local contexts = {}

function M.get_context(method)
  method = method or M.get_start_method()
  if not methods[method] then
    error(errors.ValueError("cannot find context for '" .. tostring(method) .. "'"), 2)
  end
  local ctx = contexts[method]
  if ctx == nil then
    local own = {Process = methods[method],
      get_start_method = function() return method end,
      Pool = function(processes, initializer, initargs, maxtasksperchild)
        if type(processes) == "table" then
          processes = setmetatable({context = method}, {__index = processes})
          return M.Pool(processes)
        end
        return M.Pool(processes, initializer, initargs, maxtasksperchild, method)
      end}
    ctx = setmetatable({}, {__index = function(_, k)
      local v = own[k]
      if v == nil then v = M[k] end
      return v
    end})
    contexts[method] = ctx
  end
  return ctx
end

-- multiprocessing.pool (Pool, ThreadPool, AsyncResult), loaded on first use
setmetatable(M, {__index = function(_, k)
  if k == "pool" then return require "conc.pool" end
end})

return M
