-- conc.asyncio: Python's asyncio over Lua coroutines and a C event loop
-- (csrc/core/loop.c: epoll, an eventfd, a timer heap, watches of conc
-- objects). docs/asyncio.md says where Lua differs.
--
-- async(fn) makes an async function: calling it gives a coroutine object,
-- a deferred call that runs only when awaited (inline, in the awaiting
-- task: Lua coroutines are stackful, so await works at any call depth) or
-- wrapped in a Task. A Task runs its coroutine object in a Lua coroutine;
-- await(future) yields that future to the task's step, which resumes the
-- coroutine when the future is done. Cancelling a task cancels the future
-- it awaits, so CancelledError comes out of that await, as in Python.
--
-- The loop keeps its ready callbacks in two parallel arrays (function,
-- argument), so scheduling a task step or a future's callback allocates
-- nothing; timers and fds live in the C core and come back as keys.
local core = require "conc.core"
local class = require "conc.class"
local errors = require "conc.errors"

local M = {}

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume,
  coroutine.yield
local co_running, co_close = coroutine.running, coroutine.close
local unpack, pack, select, type = table.unpack, table.pack, select, type
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local pcall, xpcall, error, tostring = pcall, xpcall, error, tostring
local monotonic = core.monotonic or require("conc.time").monotonic
local isinstance = class.isinstance

local CancelledError = errors.CancelledError
local InvalidStateError = errors.InvalidStateError
local RuntimeError = errors.RuntimeError
local TypeError = errors.TypeError
local ValueError = errors.ValueError
local TimeoutError = errors.TimeoutError

M.CancelledError = CancelledError
M.InvalidStateError = InvalidStateError
M.TimeoutError = TimeoutError
M.IncompleteReadError = errors.IncompleteReadError
M.LimitOverrunError = errors.LimitOverrunError
M.QueueEmpty = errors.QueueEmpty
M.QueueFull = errors.QueueFull
M.QueueShutDown = errors.QueueShutDown
M.ExceptionGroup = errors.ExceptionGroup
M.FIRST_COMPLETED = "FIRST_COMPLETED"
M.FIRST_EXCEPTION = "FIRST_EXCEPTION"
M.ALL_COMPLETED = "ALL_COMPLETED"

local function is_fatal(e)  -- what a task does not keep: it stops the loop
  return isinstance(e, errors.KeyboardInterrupt) or
    isinstance(e, errors.SystemExit)
end

local function describe(v)
  local ok, s = pcall(tostring, v)
  return ok and s or type(v)
end

-- ---------------------------------------------------------------------
-- The running loop, the running task
-- ---------------------------------------------------------------------

local running_loop   -- the loop running in this state (one at a time)
local current_task   -- the task whose step runs now
local debug_env = os.getenv("CONC_ASYNCIO_DEBUG")
local debug_default = debug_env ~= nil and debug_env ~= "" and debug_env ~= "0"

-- The running loop's state (internal callers), and the loop scripts see.
local function get_running_loop()
  if running_loop == nil then error(RuntimeError("no running event loop"), 3) end
  return running_loop
end

function M.get_running_loop()
  if running_loop == nil then error(RuntimeError("no running event loop"), 2) end
  return running_loop._public
end

function M._get_running_loop() return running_loop and running_loop._public end

local impls = setmetatable({}, {__mode = "k"})  -- script's loop -> its state

-- The state of a loop a script gave (nil: the running one).
local function state_of(loop, level)
  if loop == nil then return get_running_loop() end
  local impl = impls[loop]
  if impl ~= nil then return impl end
  if loop._public == loop or (loop._core and loop._public) then return loop end
  error(RuntimeError("this event loop belongs to another thread"), (level or 2) + 1)
end

-- ---------------------------------------------------------------------
-- Coroutine objects
-- ---------------------------------------------------------------------

local Coroutine = class.class(nil, "Coroutine")
Coroutine.__module = "conc.asyncio"
Coroutine.__qualname = "coroutine"
M.Coroutine = Coroutine

local debug_coroutines = debug_default

local function func_name(fn)
  local info = debug.getinfo(fn, "S")
  if info == nil or info.short_src == "?" then return tostring(fn) end
  return string.format("%s:%d", info.short_src, info.linedefined)
end

function Coroutine:_qualname()
  return self._name or func_name(self._fn)
end

function Coroutine:__tostring()
  return string.format("<coroutine object %s>", self:_qualname())
end

-- In debug mode a coroutine object that is collected unawaited is
-- reported, as Python's RuntimeWarning does: only then does it carry a
-- finalizer (one costs the collector work for every object).
local DebugCoroutine = Coroutine:extend("DebugCoroutine")
DebugCoroutine.__module = "conc.asyncio"
function DebugCoroutine:__gc()
  if not self._started then
    io.stderr:write(string.format(
      "RuntimeWarning: coroutine '%s' was never awaited\n", self:_qualname()))
  end
end

local async_fns = setmetatable({}, {__mode = "k"})

-- async(fn [, name]): an async function. Calling it makes a coroutine
-- object; name (default: where fn is defined) is what tasks and warnings
-- call it.
function M.async(fn, name)
  if type(fn) ~= "function" then
    error(TypeError("async() needs a function, not " .. type(fn)), 2)
  end
  local f = function(...)
    return setmetatable({n = select("#", ...), _fn = fn, _name = name or false,
      _started = false, ...}, debug_coroutines and DebugCoroutine or Coroutine)
  end
  async_fns[f] = true
  return f
end

function M.iscoroutinefunction(f) return async_fns[f] == true end

local function iscoroutine(c)
  local mt = getmetatable(c)
  return mt == Coroutine or mt == DebugCoroutine
end
M.iscoroutine = iscoroutine

-- Runs a coroutine object in the calling task (await's inline case).
local function run_coro(c)
  if c._started then
    error(RuntimeError("cannot reuse already awaited coroutine"), 3)
  end
  c._started = true
  return c._fn(unpack(c, 1, c.n))
end

-- ---------------------------------------------------------------------
-- The ready queue, shared by every loop of this state (one runs at a time)
-- ---------------------------------------------------------------------

local PENDING, CANCELLED, FINISHED = 0, 1, 2

-- ---------------------------------------------------------------------
-- Future
-- ---------------------------------------------------------------------

local Future = class.class(nil, "Future")
Future.__module = "conc.asyncio"
Future.__qualname = "Future"
M.Future = Future

local Task  -- below
local step  -- a task's step, below
local gather_done  -- gather's callback, below

-- What asyncio.sleep returns: an awaitable of a delay (one with no delay
-- and no result is this one constant, so sleep(0) makes nothing).
local Sleep = {__name = "asyncio.sleep"}
local SLEEP0 = setmetatable({_d = 0}, Sleep)
local sleep_coro  -- a coroutine object of a Sleep, below
local do_sleep  -- awaits a Sleep, below

-- Appends (fn, arg) to a loop's ready queue (see Loop:_run_once).
local function push(loop, fn, arg)
  local n = loop._rn + 1
  loop._rn = n
  loop._rfn[n], loop._rarg[n] = fn, arg
end

-- A future's callbacks: the first in _cb (most futures have one: the
-- task that awaits it), the others in the list _cbs. A task in the list
-- is woken (its step runs); a function is called with the future.
local function schedule_callback(loop, cb, fut)
  if type(cb) == "table" and cb._co then
    push(loop, step, cb)
  else
    push(loop, cb, fut)
  end
end

local function schedule_callbacks(fut)
  local cb = fut._cb
  if not cb then return end
  fut._cb = false
  local loop = fut._loop
  schedule_callback(loop, cb, fut)
  local cbs = fut._cbs
  if cbs == nil then return end
  fut._cbs = nil
  for i = 1, #cbs do schedule_callback(loop, cbs[i], fut) end
end

local function add_callback(f, cb)
  if not f._cb then
    f._cb = cb
    return
  end
  local cbs = f._cbs
  if cbs == nil then f._cbs = {cb} else cbs[#cbs + 1] = cb end
end

local function future_init(self, loop)
  self._loop = loop or get_running_loop()
  self._state = PENDING
  self._exception = false
end

function Future:__init(opts)
  future_init(self, opts and opts.loop and state_of(opts.loop, 3))
end

function Future:get_loop() return self._loop._public end
function Future:done() return self._state ~= PENDING end
function Future:cancelled() return self._state == CANCELLED end

function Future:result()
  local st = self._state
  if st == FINISHED then
    local e = self._exception
    if e then error(e, 0) end
    local more = self._more
    if more then return unpack(more, 1, more.n) end
    return self._result
  elseif st == CANCELLED then
    error(CancelledError(self._cancel_msg), 0)
  end
  error(InvalidStateError("Result is not ready."), 2)
end

function Future:exception()
  local st = self._state
  if st == FINISHED then return self._exception or nil end
  if st == CANCELLED then error(CancelledError(self._cancel_msg), 0) end
  error(InvalidStateError("Exception is not set."), 2)
end

local function future_cancel(self, msg)
  if self._state ~= PENDING then return false end
  self._state = CANCELLED
  self._cancel_msg = msg
  local tid = self._timer
  if tid then
    self._timer = nil
    self._loop:_cancel_timer(tid)
  end
  schedule_callbacks(self)
  return true
end

function Future:cancel(msg) return future_cancel(self, msg) end

local function set_result(self, v)
  self._result = v
  self._state = FINISHED
  if self._cb then schedule_callbacks(self) end
end

function Future:set_result(v)
  if self._state ~= PENDING then
    error(InvalidStateError("invalid state: the future is done"), 2)
  end
  set_result(self, v)
end

local function set_exception(self, e)
  if not e then  -- error(nil) or error(false): keep that something failed
    e = RuntimeError("the task raised " .. tostring(e))
  end
  self._exception = e
  self._state = FINISHED
  if self._cb then schedule_callbacks(self) end
end

function Future:set_exception(e)
  if self._state ~= PENDING then
    error(InvalidStateError("invalid state: the future is done"), 2)
  end
  if e == nil then error(TypeError("set_exception() needs an error"), 2) end
  set_exception(self, e)
end

-- fn(fut) once fut is done, run by the loop (soon, if it is done now).
function Future:add_done_callback(fn)
  if self._state ~= PENDING then
    push(self._loop, fn, self)
    return
  end
  add_callback(self, fn)
end

function Future:remove_done_callback(fn)
  if not self._cb then return 0 end
  local all, n = {self._cb}, 0
  local cbs = self._cbs
  if cbs then for i = 1, #cbs do all[#all + 1] = cbs[i] end end
  self._cb, self._cbs = false, nil
  for i = 1, #all do
    if all[i] == fn then n = n + 1 else add_callback(self, all[i]) end
  end
  return n
end

function Future:__tostring()
  local st = self._state == PENDING and "pending"
    or self._state == CANCELLED and "cancelled" or "finished"
  return string.format("<%s %s>", getmetatable(self).__qualname or "Future", st)
end

local function isfuture(x)
  local mt = getmetatable(x)
  return mt == Future or mt == Task or isinstance(x, Future)
end
M.isfuture = isfuture

-- ---------------------------------------------------------------------
-- Task
-- ---------------------------------------------------------------------

Task = Future:extend("Task")
Task.__module = "conc.asyncio"
Task.__qualname = "Task"
M.Task = Task

local CANCEL = {}      -- what a step resumes a coroutine with to cancel it
local task_count = 0

local last_traceback
local function on_error(e)
  if not isinstance(e, CancelledError) then
    last_traceback = debug.traceback(errors.tostring(e), 2)
    if type(e) == "table" and rawget(e, "traceback") == nil then
      pcall(rawset, e, "traceback", last_traceback)
    end
  end
  return e
end

-- The coroutine of every task: the body under xpcall inside the
-- coroutine, so that an error unwinds there and its <close> variables
-- (a TaskGroup, a timeout) close where they may still await. Its end
-- comes back marked DONE, which a yield (a future, or nil) never is.
-- A body returning several values comes back as ok, MULTI, {values}: a
-- task's result is its first value, and result() and await give them all.
local DONE, MULTI = {}, {}
local function ended(ok, ...)
  if ok and select("#", ...) > 1 then return DONE, ok, MULTI, pack(...) end
  return DONE, ok, ...
end
local function task_main(task)
  local c = task._coro
  return ended(xpcall(c._fn, on_error, unpack(c, 1, c.n)))
end


local function new_task(loop, coro, name)
  if getmetatable(coro) == Sleep then coro = sleep_coro(coro) end
  if not iscoroutine(coro) then
    error(TypeError("a coroutine was expected, got " .. describe(coro)), 3)
  end
  if coro._started then
    error(RuntimeError("cannot reuse already awaited coroutine"), 3)
  end
  coro._started = true
  task_count = task_count + 1
  local t = setmetatable({_loop = loop, _state = PENDING, _coro = coro,
    _co = co_create(task_main), _name = name or false, _num = task_count,
    _ncancels = 0, _begun = false, _waiting = false, _cb = false,
    _gather = false, _gather_i = 0, _result = false, _exception = false}, Task)
  loop._tasks[t] = true  -- the pending ones, for all_tasks and run's end
  push(loop, step, t)
  return t
end

function Task:__init()
  error(TypeError("make tasks with asyncio.create_task(coro)"), 3)
end

function Task:get_name()
  local n = self._name
  if not n then
    n = "Task-" .. self._num
    self._name = n
  end
  return n
end
function Task:set_name(n) self._name = tostring(n) end
function Task:get_coro() return self._coro end
function Task:cancelling() return self._ncancels end
function Task:uncancel()
  if self._ncancels > 0 then self._ncancels = self._ncancels - 1 end
  if self._ncancels == 0 then self._must_cancel = false end
  return self._ncancels
end

function Task:cancel(msg)
  if self._state ~= PENDING then return false end
  self._ncancels = self._ncancels + 1
  local w = self._waiting
  if w and w:cancel(msg) then
    -- the await raises CancelledError once the task wakes up
    self._cancel_msg = msg
    return true
  end
  self._must_cancel = true
  self._cancel_msg = msg
  return true
end

function Task:__tostring()
  local st = self._state == PENDING and "pending"
    or self._state == CANCELLED and "cancelled" or "finished"
  return string.format("<Task %s name='%s' coro=%s>", st, self:get_name(),
    tostring(self._coro))
end


local function task_finished(task, ok, v)
  task._loop._tasks[task] = nil
  -- the dead coroutine and its stack go now, not with the task: a
  -- gathered task outlives its end, and every live Lua thread is walked by
  -- each cycle of the collector
  task._co = false
  if ok then
    set_result(task, v)
    return
  end
  if isinstance(v, CancelledError) and (task._ncancels > 0 or task._must_cancel) then
    task._state = CANCELLED
    task._cancel_msg = v.message
    schedule_callbacks(task)
    return
  end
  task._traceback = last_traceback
  set_exception(task, v)
  if is_fatal(v) then error(v, 0) end
end

step = function(task)
  if task._state ~= PENDING then return end
  local signal, msg
  if task._must_cancel then
    task._must_cancel = false
    signal, msg = CANCEL, task._cancel_msg
  end
  task._waiting = false
  local prev = current_task
  current_task = task
  local loop = task._loop
  local co = task._co
  local t0 = loop._debug and loop:_arm_slow(co)
  local alive, a, b, c, d
  if task._begun then
    alive, a, b, c, d = co_resume(co, signal, msg)
  elseif signal == CANCEL then  -- cancelled before it began: it never runs
    current_task = prev
    task_finished(task, false, CancelledError(msg))
    return
  else
    task._begun = true
    alive, a, b, c, d = co_resume(co, task)
  end
  current_task = prev
  if t0 then loop:_check_slow(t0, task) end
  if not alive then  -- an error in conc's own machinery, not the task's
    task_finished(task, false, a)
    return
  end
  if a == DONE then  -- the body ended: xpcall's (ok, value)
    if c == MULTI then
      task._more = d
      c = d[1]
    end
    task_finished(task, b, c)
    return
  end
  if a == nil then  -- a bare yield: sleep(0)
    push(loop, step, task)
    return
  end
  -- a pending future the task awaits
  task._waiting = a
  add_callback(a, task)
  if task._must_cancel then
    -- cancel() came while the step ran: the await ends in CancelledError
    if a:cancel(task._cancel_msg) then task._must_cancel = false end
  end
end


-- ---------------------------------------------------------------------
-- await
-- ---------------------------------------------------------------------

local wrap_future  -- below

local function check_in_task(level)
  local t = current_task
  if t == nil then
    error(RuntimeError("await outside an async function"), level + 1)
  end
  if co_running() ~= t._co then
    error(RuntimeError("await inside a coroutine that is not the task's own"),
      level + 1)
  end
  return t
end

-- Waits, inside the current task, for future f to be done.
local function await_future(f, task)
  if f._state == PENDING then
    if f._loop ~= task._loop then
      error(RuntimeError("Task got Future attached to a different loop"), 3)
    end
    if f == task then error(RuntimeError("Task cannot await on itself"), 3) end
    local signal, msg = co_yield(f)
    if signal == CANCEL then error(CancelledError(msg), 0) end
  end
  local st = f._state
  if st == FINISHED then
    local e = f._exception
    if e then error(e, 0) end
    local more = f._more
    if more then return unpack(more, 1, more.n) end
    return f._result
  elseif st == CANCELLED then
    error(CancelledError(f._cancel_msg), 0)
  end
  error(RuntimeError("await wasn't used with future"), 3)
end

-- A bare yield to the loop: what sleep(0) does.
local function yield_once()
  local signal, msg = co_yield(nil)
  if signal == CANCEL then error(CancelledError(msg), 0) end
end

local function await(x)
  local task = current_task
  if task == nil or co_running() ~= task._co then task = check_in_task(2) end
  if type(x) == "table" then  -- the common cases, told by their fields
    if x._state ~= nil then return await_future(x, task) end
    if x._fn ~= nil and not x._started then
      x._started = true
      return x._fn(unpack(x, 1, x.n))
    end
    if x == SLEEP0 then  -- yield_once, inline: one frame less per task
      local signal, msg = co_yield(nil)
      if signal == CANCEL then error(CancelledError(msg), 0) end
      return nil
    end
  end
  local mt = getmetatable(x)
  if mt == Coroutine or mt == DebugCoroutine then
    return run_coro(x)
  elseif mt == Sleep then
    return do_sleep(x, task)
  elseif mt == Task or mt == Future then
    return await_future(x, task)
  end
  if isinstance(x, Future) then return await_future(x, task) end
  if M._is_cfuture(x) then return await_future(wrap_future(x, task._loop), task) end
  local aw = mt and rawget(mt, "__await")
  if aw then return await(aw(x)) end
  error(TypeError("object " .. describe(x) .. " can't be used in 'await' expression"), 2)
end
M.await = await


-- ---------------------------------------------------------------------
-- Handles
-- ---------------------------------------------------------------------

local Handle = class.class(nil, "Handle")
Handle.__module = "conc.asyncio"
M.Handle = Handle

function Handle:cancel()
  if self._cancelled then return end
  self._cancelled = true
  local id = self._id
  if id then
    self._id = nil
    self._loop:_cancel_timer(id)
  end
end
function Handle:cancelled() return self._cancelled == true end
function Handle:when() return self._when end
function Handle:get_context() return nil end

local function run_handle(h)
  if h._cancelled then return end
  return h._hfn(unpack(h, 1, h.n))
end

local TimerHandle = Handle:extend("TimerHandle")
TimerHandle.__module = "conc.asyncio"
M.TimerHandle = TimerHandle

-- ---------------------------------------------------------------------
-- The event loop
-- ---------------------------------------------------------------------

-- A loop is two objects: the one scripts hold (BaseEventLoop, below),
-- which holds only the queue other threads call in through and so crosses
-- to a thread as a handle on the same loop, and this one, its state in
-- the state that runs it, which tasks and futures point at.
local Loop = class.class(nil, "_Loop")
Loop.__module = "conc.asyncio"

function Loop:__init()
  self._core = core.loop_new()
  self._rfn, self._rarg, self._rn = {}, {}, 0
  self._bfn, self._barg, self._bn, self._bi = {}, {}, 0, 1
  self._timers = {}       -- timer id -> TimerHandle or sleeping Future
  self._fds = {}          -- key -> {fd, reader, writer} or {fd, on_events}
  self._fdkeys = {}       -- add_reader/add_writer's fd -> its key
  self._watches = {}      -- key -> function(events)
  self._tasks = {}        -- the pending tasks (a set)
  -- a future done already, with no result: what an awaitable that has
  -- nothing to wait for hands out (StreamWriter.drain)
  self._done = setmetatable({_loop = self, _state = FINISHED, _exception = false}, Future)
  self._nextkey = 0
  self._out = {}
  self._debug = debug_default
  self.slow_callback_duration = 0.1
  -- the SimpleQueue other threads call in through
  self._port = core.SimpleQueue()
  self:_watch(self._port, 1, function() self:_drain_port() end)
end

function Loop:_key()
  local k = self._nextkey + 1
  self._nextkey = k
  return k
end

-- Appends (fn, arg) to the ready queue; protected: a user's callback,
-- whose errors go to the exception handler.
Loop._push = push

function Loop:_cancel_timer(id)
  self._timers[id] = nil
  if self._core then self._core:timer_cancel(id) end
end

function Loop:_check_closed()
  if self._closed then error(RuntimeError("Event loop is closed"), 3) end
end

function Loop:time() return monotonic() end
function Loop:get_debug() return self._debug end
function Loop:set_debug(on) self._debug = not not on; debug_coroutines = self._debug end
function Loop:is_running() return self._running == true end
function Loop:is_closed() return self._closed == true end

local function make_handle(cls, loop, fn, ...)
  if type(fn) ~= "function" and not (getmetatable(fn) and getmetatable(fn).__call) then
    error(TypeError("a callable object was expected, got " .. describe(fn)), 3)
  end
  local h = pack(...)
  h._hfn, h._loop = fn, loop
  return setmetatable(h, cls)
end

function Loop:call_soon(fn, ...)
  self:_check_closed()
  local h = make_handle(Handle, self, fn, ...)
  push(self, run_handle, h)
  return h
end

function Loop:call_at(when, fn, ...)
  self:_check_closed()
  if type(when) ~= "number" then error(TypeError("when must be a number"), 2) end
  local h = make_handle(TimerHandle, self, fn, ...)
  h._when = when
  local id = self._core:timer(when)
  h._id = id
  self._timers[id] = h
  return h
end

function Loop:call_later(delay, fn, ...)
  if type(delay) ~= "number" then error(TypeError("delay must be a number"), 2) end
  return self:call_at(monotonic() + delay, fn, ...)
end

function Loop:create_future() return setmetatable({_loop = self, _state = PENDING}, Future) end
function Loop:shutdown_asyncgens() end

function Loop:create_task(coro, opts)
  self:_check_closed()
  return new_task(self, coro, opts and opts.name)
end

-- A future that a timer settles: what sleep() awaits.
function Loop:_timer_future(when, result)
  local f = setmetatable({_loop = self, _state = PENDING, _sleep = result}, Future)
  local id = self._core:timer(when)
  f._timer = id
  self._timers[id] = f
  return f
end

-- ---- exceptions in callbacks ----

function Loop:set_exception_handler(h) self._exc_handler = h end
function Loop:get_exception_handler() return self._exc_handler end

function Loop:default_exception_handler(ctx)
  local msg = ctx.message or "Unhandled exception in event loop"
  local e = ctx.exception
  local lines = {msg}
  if ctx.task then lines[#lines + 1] = "task: " .. tostring(ctx.task) end
  if e ~= nil then
    local tb = type(e) == "table" and rawget(e, "traceback")
    lines[#lines + 1] = tb or errors.tostring(e)
  end
  io.stderr:write(table.concat(lines, "\n"), "\n")
end

function Loop:call_exception_handler(ctx)
  local h = self._exc_handler
  if h then
    local ok, e = pcall(h, self, ctx)
    if ok then return end
    io.stderr:write("Unhandled error in exception handler: ", errors.tostring(e), "\n")
  end
  self:default_exception_handler(ctx)
end

local cb_traceback
local function cb_error(e)
  if not is_fatal(e) then cb_traceback = debug.traceback(errors.tostring(e), 2) end
  return e
end

-- ---- the loop's turn ----

-- Debug mode: a step that held the loop past slow_callback_duration is
-- reported with where it was. A return hook on the task's coroutine looks
-- at the clock each time a function returns, so a blocking call (a
-- time.sleep) is caught as it returns, with the stack that made it.
local slow_t0, slow_limit, slow_tb = 0, 0.1, nil
local function slow_hook()
  if slow_tb == nil and monotonic() - slow_t0 >= slow_limit then
    slow_tb = debug.traceback("", 2):gsub("\n\t%[C%]: in function 'xpcall'.*$", "")
      :gsub("\n\t%?: in [^\n]*", "")
  end
end

function Loop:_arm_slow(co)
  slow_t0, slow_limit, slow_tb = monotonic(), self.slow_callback_duration, nil
  if co then debug.sethook(co, slow_hook, "r") end
  return slow_t0
end

function Loop:_check_slow(t0, task)
  local dt = monotonic() - t0
  if dt < self.slow_callback_duration then return end
  local what = task and tostring(task) or "callback"
  io.stderr:write(string.format("Executing %s took %.3f seconds%s\n", what, dt,
    slow_tb or ""))
  slow_tb = nil
end

-- Dispatches what a poll found: fd events and watches run now (they
-- settle futures, whose callbacks go to the ready queue), due timers go
-- to the ready queue in order.
function Loop:_dispatch(n)
  local out, timers = self._out, self._timers
  for i = 1, 2 * n, 2 do
    local key, code = out[i], out[i + 1]
    if code == 16 then
      local h = timers[key]
      if h ~= nil then
        timers[key] = nil
        if getmetatable(h) == Future then
          h._timer = nil
          if h._state == PENDING then set_result(h, h._sleep) end
        else
          h._id = nil
          push(self, run_handle, h)
        end
      end
    elseif code >= 32 then
      local w = self._watches[key]
      if w then w(code - 32) end
    else
      local r = self._fds[key]
      if r then
        if code & 5 ~= 0 and r.reader then push(self, run_handle, r.reader) end
        if code & 6 ~= 0 and r.writer then push(self, run_handle, r.writer) end
        if r.on_events then r.on_events(code) end
      end
    end
  end
end

-- The ready queue is two pairs of arrays: callbacks are appended to one
-- (_rfn/_rarg, _rn of them) while a turn runs the other (the batch, _bfn/
-- _barg up to _bn, from _bi). Each array is filled from 1 and emptied
-- whole, so Lua keeps it an array part and never rehashes it, which a
-- queue that takes from the front and adds at the back would make it do.
function Loop:_run_once()
  local timeout = (self._rn > 0 or self._bi <= self._bn or self._stopping)
    and 0 or nil
  local n = self._core:poll(timeout, self._out)
  if n > 0 then self:_dispatch(n) end
  if self._bi > self._bn then  -- the last batch is done: this one is next
    local fns, args = self._rfn, self._rarg
    self._rfn, self._rarg = self._bfn, self._barg
    self._bfn, self._barg = fns, args
    self._bn, self._bi = self._rn, 1
    self._rn = 0
  end
  -- run what is ready now; what these callbacks schedule waits a turn
  local fns, args, last = self._bfn, self._barg, self._bn
  local i = self._bi
  local debug_on = self._debug
  while i <= last do
    local fn, arg = fns[i], args[i]
    fns[i], args[i] = nil, nil
    i = i + 1
    self._bi = i  -- an error leaving here leaves the rest for the next turn
    if fn == step or fn == gather_done then  -- conc's own: they raise nothing
      fn(arg)
    else
      local t0 = debug_on and self:_arm_slow(nil)
      local ok, e = xpcall(fn, cb_error, arg)
      if t0 then self:_check_slow(t0) end
      if not ok then
        if is_fatal(e) then error(e, 0) end
        self:call_exception_handler({message = "Exception in callback " ..
          describe(fn), exception = e, traceback = cb_traceback})
      end
    end
  end
end

local function enter_loop(self)
  self:_check_closed()
  if self._running then error(RuntimeError("This event loop is already running"), 3) end
  if running_loop ~= nil then
    error(RuntimeError("Cannot run the event loop while another loop is running"), 3)
  end
  self._running = true
  self._saved_debug = debug_coroutines
  debug_coroutines = self._debug
  running_loop = self
end

local function leave_loop(self)
  self._running = false
  self._stopping = false
  running_loop = nil
  debug_coroutines = self._saved_debug
end

function Loop:run_forever()
  enter_loop(self)
  local ok, e = pcall(function()
    while not self._stopping do self:_run_once() end
    self:_run_once()  -- what stop() found ready still runs, as in Python
  end)
  leave_loop(self)
  if not ok then error(e, 0) end
end

function Loop:stop() self._stopping = true end

local function ensure_future(x, loop)
  local mt = getmetatable(x)
  if mt == Task or mt == Future or isinstance(x, Future) then
    if loop and x._loop ~= loop then
      error(ValueError("The future belongs to a different loop than the one specified"), 3)
    end
    return x
  end
  if mt == Coroutine or mt == DebugCoroutine or mt == Sleep then
    return new_task(loop or get_running_loop(), x, nil)
  end
  if M._is_cfuture(x) then return wrap_future(x, loop) end
  local aw = mt and rawget(mt, "__await")
  if aw then return ensure_future(aw(x), loop) end
  error(TypeError("An asyncio.Future, a coroutine or an awaitable is required, not " ..
    describe(x)), 3)
end

function M.ensure_future(x, opts)
  return ensure_future(x, opts and opts.loop and state_of(opts.loop))
end

local function stop_loop(fut) fut._loop:stop() end

function Loop:run_until_complete(x)
  self:_check_closed()
  if self._running then error(RuntimeError("This event loop is already running"), 2) end
  if running_loop ~= nil then
    error(RuntimeError("Cannot run the event loop while another loop is running"), 2)
  end
  local fut = ensure_future(x, self)
  fut:add_done_callback(stop_loop)
  local ok, e = pcall(self.run_forever, self)
  fut:remove_done_callback(stop_loop)
  if not ok then error(e, 0) end
  if fut._state == PENDING then
    error(RuntimeError("Event loop stopped before Future completed."), 2)
  end
  return fut:result()
end

function Loop:close()
  if self._running then error(RuntimeError("Cannot close a running event loop"), 2) end
  if self._closed then return end
  self._closed = true
  for _, r in pairs(self._fds) do
    if r.close then pcall(r.close) end
  end
  self._fds, self._fdkeys = {}, {}
  if self._executor then self._executor:shutdown(false) end
  self._core:close()
  self._rfn, self._rarg, self._rn = {}, {}, 0
  self._bfn, self._barg, self._bn, self._bi = {}, {}, 0, 1
end

-- ---- fds ----

-- An fd's record, by key: reader and writer handles (add_reader's, whose
-- fds _fdkeys maps to their key), or on_events(code) for the transports,
-- which keep one edge-triggered registration for good.

local function fd_events(r)
  return (r.reader and 1 or 0) | (r.writer and 2 or 0)
end

local function update_fd(self, fd, kind, h)
  local key = self._fdkeys[fd]
  local r = key and self._fds[key]
  if r == nil then
    if h == nil then return false end
    key = self:_key()
    r = {fd = fd}
    r[kind] = h
    self._fds[key] = r
    self._fdkeys[fd] = key
    self._core:fd_add(fd, fd_events(r), key)
    return true
  end
  local had = r[kind] ~= nil
  if had then r[kind]:cancel() end
  r[kind] = h
  if r.reader == nil and r.writer == nil then
    self._fds[key] = nil
    self._fdkeys[fd] = nil
    self._core:fd_del(fd)
  else
    self._core:fd_mod(fd, fd_events(r), key)
  end
  return had
end

function Loop:add_reader(fd, fn, ...)
  self:_check_closed()
  update_fd(self, fd, "reader", make_handle(Handle, self, fn, ...))
end
function Loop:remove_reader(fd) return update_fd(self, fd, "reader", nil) end
function Loop:add_writer(fd, fn, ...)
  self:_check_closed()
  update_fd(self, fd, "writer", make_handle(Handle, self, fn, ...))
end
function Loop:remove_writer(fd) return update_fd(self, fd, "writer", nil) end

-- For the transports: fd watched edge-triggered for reads and writes until
-- _unwatch_fd; on_events(code) runs in the poll's dispatch (1 readable,
-- 2 writable, 4 error or hang-up).
function Loop:_watch_fd(fd, on_events)
  local key = self:_key()
  self._fds[key] = {fd = fd, on_events = on_events}
  self._core:fd_add(fd, 1 | 2 | 8, key)
  return key
end

function Loop:_unwatch_fd(key)
  local r = self._fds[key]
  if r == nil then return end
  self._fds[key] = nil
  if self._core and not self._closed then self._core:fd_del(r.fd) end
end

-- ---- conc objects of threads: watches ----

-- on_ready(events) runs whenever obj may have changed; returns the key.
function Loop:_watch(obj, events, on_ready)
  local key = self:_key()
  self._watches[key] = on_ready
  self._core:watch(obj, events, key)
  return key
end

function Loop:_unwatch(key)
  self._watches[key] = nil
  if not self._closed then self._core:unwatch(key) end
end

-- ---- threads calling in ----

function Loop:_drain_port()
  local loop = self
  local port = loop._port
  local poll = core.queue_poll
  while true do
    local ok, msg = poll(port)
    if not ok then return end
    local kind = msg[1]
    if kind == "call" then
      push(loop, run_handle, make_handle(Handle, loop, msg[2], unpack(msg, 3, msg.n)))
    elseif kind == "run" then
      local cf, coro = msg[2], msg[3]
      if cf:set_running_or_notify_cancel() then
        local ok2, t = pcall(new_task, loop, coro, nil)
        if not ok2 then
          pcall(cf.set_exception, cf, t)
        else
          t:add_done_callback(function(task)
            if task._state == CANCELLED then
              cf:cancel()
            elseif task._exception then
              pcall(cf.set_exception, cf, task._exception)
            else
              pcall(cf.set_result, cf, task._result)
            end
          end)
          M._watch_cancel(loop, cf, t)
        end
      end
    end
  end
end


-- ---- executors ----

function Loop:set_default_executor(ex) self._executor = ex end

function Loop:run_in_executor(executor, fn, ...)
  self:_check_closed()
  if executor == nil then
    executor = self._executor
    if executor == nil then
      local futures = require "conc.futures"
      executor = futures.ThreadPoolExecutor({thread_name_prefix = "asyncio"})
      self._executor = executor
    end
  end
  return wrap_future(executor:submit(fn, ...), self)
end

function Loop:shutdown_default_executor()
  local ex = self._executor
  self._executor = nil
  if ex then ex:shutdown(false) end
  local f = self:create_future()
  set_result(f, nil)
  return f
end

-- ---------------------------------------------------------------------
-- Thread-side futures and objects (conc.futures.Future, Queue, Event...)
-- ---------------------------------------------------------------------

local cfuture_mt = getmetatable(core.Future())
function M._is_cfuture(x) return getmetatable(x) == cfuture_mt end

-- Copies a done conc future's outcome into f.
local function copy_outcome(cf, f)
  if f._state ~= PENDING then return end
  if cf:cancelled() then future_cancel(f) return end
  local ok, v = pcall(cf.result, cf, 0)
  if ok then set_result(f, v) else set_exception(f, v) end
end

-- wrap_future(cf): an asyncio future of this loop that a conc.futures
-- Future settles (from whichever thread settles it); cancelling the
-- asyncio one cancels cf too.
wrap_future = function(cf, loop)
  if isfuture(cf) then return cf end
  if not M._is_cfuture(cf) then
    error(TypeError("wrap_future() needs a concurrent.futures.Future, not " ..
      describe(cf)), 2)
  end
  loop = loop or get_running_loop()
  local f = loop:create_future()
  if cf:done() then
    copy_outcome(cf, f)
    return f
  end
  local key
  key = loop:_watch(cf, 1, function()
    if cf:done() then
      loop:_unwatch(key)
      copy_outcome(cf, f)
    end
  end)
  f:add_done_callback(function()
    if f._state == CANCELLED then
      cf:cancel()
      loop:_unwatch(key)
    end
  end)
  return f
end
M.wrap_future = function(cf, opts)
  return wrap_future(cf, opts and opts.loop and state_of(opts.loop))
end

-- A run_coroutine_threadsafe future cancelled by the thread cancels the
-- task.
function M._watch_cancel(loop, cf, task)
  local key
  key = loop:_watch(cf, 1, function()
    if cf:done() then
      loop:_unwatch(key)
      if cf:cancelled() then task:cancel() end
    end
  end)
  task:add_done_callback(function() loop:_unwatch(key) end)
end

-- How each kind of thread-side object is awaited: try(obj) -> done, value.
local waiters_of = setmetatable({}, {__mode = "k"})
local queue_poll = core.queue_poll

local tries = {
  ["conc.Queue"] = {1, function(q) return queue_poll(q) end},
  ["conc.Event"] = {1, function(e) return e:is_set(), true end},
  ["conc.Lock"] = {2, function(l) return l:acquire(false), true end},
  ["conc.RLock"] = {2, function(l) return l:acquire(false), true end},
  ["conc.Semaphore"] = {2, function(s) return s:acquire(false), true end},
}

-- Serves obj's waiting futures, in order, while obj has something.
local function serve(loop, obj, w)
  local try = w.try
  while w.head <= w.tail do
    local f = w.list[w.head]
    if f._state ~= PENDING then
      w.list[w.head] = nil
      w.head = w.head + 1
    else
      local ok, done, v = pcall(try, obj)
      if not ok then
        w.list[w.head] = nil
        w.head = w.head + 1
        set_exception(f, done)
      elseif not done then
        return
      else
        w.list[w.head] = nil
        w.head = w.head + 1
        set_result(f, v)
      end
    end
  end
  -- nobody waits: stop hearing of obj
  loop:_unwatch(w.key)
  waiters_of[obj] = nil
end

-- wrap(obj): an awaitable for a thread-side conc object, which the loop
-- waits for without blocking: a conc.queue.Queue's next item, a
-- threading.Event being set (true), a Lock or Semaphore acquired (true;
-- release it yourself), a conc.futures.Future's result.
function M.wrap(obj, opts)
  if M._is_cfuture(obj) then
    return wrap_future(obj, opts and opts.loop and state_of(opts.loop))
  end
  local mt = getmetatable(obj)
  local kind = mt and rawget(mt, "__name")
  local spec = kind and tries[kind]
  if spec == nil then
    error(TypeError("asyncio.wrap() cannot await a " .. (kind or type(obj))), 2)
  end
  local loop = state_of(opts and opts.loop)
  local f = setmetatable({_loop = loop, _state = PENDING}, Future)
  local w = waiters_of[obj]
  if w ~= nil and (w.loop ~= loop or loop._closed) then
    w = nil  -- left by a loop that closed with tasks still waiting
  end
  if w == nil then
    local done, v = spec[2](obj)  -- the common case: no wait at all
    if done then
      f._state, f._result = FINISHED, v
      return f
    end
    w = {list = {f}, head = 1, tail = 1, try = spec[2], loop = loop}
    waiters_of[obj] = w
    w.key = loop:_watch(obj, spec[1], function() serve(loop, obj, w) end)
  else
    w.tail = w.tail + 1
    w.list[w.tail] = f
  end
  return f
end

-- ---------------------------------------------------------------------
-- Loops and the policy's few functions
-- ---------------------------------------------------------------------

local set_loop  -- the loop set_event_loop set, or get_event_loop made

-- The loop scripts hold: its port, and (in the state that made it) the
-- state behind it, which each method forwards to. Passed to a thread it
-- crosses as its port: there call_soon_threadsafe and
-- run_coroutine_threadsafe reach the same loop, and the other methods
-- say that the loop belongs to another thread.
local BaseEventLoop = class.class(nil, "BaseEventLoop")
BaseEventLoop.__module = "conc.asyncio"
M.BaseEventLoop = BaseEventLoop
M.AbstractEventLoop = BaseEventLoop

local function new_loop()
  local impl = Loop()
  local pub = setmetatable({_port = impl._port}, BaseEventLoop)
  impl._public = pub
  impls[pub] = impl
  return pub, impl
end

for _, name in ipairs({"time", "get_debug", "set_debug", "is_running",
    "is_closed", "call_soon", "call_at", "call_later", "create_future",
    "create_task", "set_exception_handler", "get_exception_handler",
    "default_exception_handler", "call_exception_handler", "run_forever",
    "stop", "run_until_complete", "close", "add_reader", "remove_reader",
    "add_writer", "remove_writer", "set_default_executor", "run_in_executor",
    "shutdown_default_executor", "getaddrinfo", "create_connection",
    "create_server", "create_unix_connection", "create_unix_server"}) do
  BaseEventLoop[name] = function(self, ...)
    local impl = impls[self]
    if impl == nil then
      error(RuntimeError("this event loop belongs to another thread: " ..
        name .. "() is not thread-safe (call_soon_threadsafe is)"), 2)
    end
    local f = impl[name]
    if f == nil then  -- a transport method: conc.asyncio.streams adds them
      require "conc.asyncio.streams"
      f = impl[name]
    end
    return f(impl, ...)
  end
end

function BaseEventLoop:__tostring()
  local impl = impls[self]
  return string.format("<BaseEventLoop running=%s closed=%s>",
    tostring(impl and impl._running or false), tostring(impl and impl._closed or false))
end

-- From any thread: fn(...) runs on the loop soon (copied there when
-- called from another thread, as any value crossing threads is).
function BaseEventLoop:call_soon_threadsafe(fn, ...)
  local impl = impls[self]
  if impl ~= nil then return impl:call_soon(fn, ...) end
  self._port:put(pack("call", fn, ...))
end

function M.new_event_loop() return (new_loop()) end

function M.get_event_loop()
  if running_loop then return running_loop._public end
  if set_loop == nil or impls[set_loop] == nil or impls[set_loop]._closed then
    set_loop = new_loop()
  end
  return set_loop
end

function M.set_event_loop(loop) set_loop = loop end

local function cancel_all(loop)
  local pending = {}
  for t in pairs(loop._tasks) do pending[#pending + 1] = t end
  if #pending == 0 then return end
  for i = 1, #pending do pending[i]:cancel() end
  loop:run_until_complete(M.gather(unpack(pending, 1, #pending), {return_exceptions = true}))
  for i = 1, #pending do
    local t = pending[i]
    if t._state == FINISHED and t._exception then
      loop:call_exception_handler({message = "unhandled exception during asyncio.run() shutdown",
        exception = t._exception, task = t})
    end
  end
end

-- run(coro, {debug=}): a new loop runs coro to its end; then the tasks
-- still pending are cancelled and the loop closed.
function M.run(coro, opts)
  if running_loop ~= nil then
    error(RuntimeError("asyncio.run() cannot be called from a running event loop"), 2)
  end
  if not iscoroutine(coro) then
    error(ValueError("a coroutine was expected, got " .. describe(coro)), 2)
  end
  local _, loop = new_loop()
  if opts and opts.debug ~= nil then loop:set_debug(opts.debug) end
  local ok, r = pcall(loop.run_until_complete, loop, coro)
  local ok2, e2 = pcall(cancel_all, loop)
  loop:close()
  if not ok then error(r, 0) end
  if not ok2 then error(e2, 0) end
  return r
end

-- ---------------------------------------------------------------------
-- Tasks' functions
-- ---------------------------------------------------------------------

function M.create_task(coro, opts)
  return new_task(get_running_loop(), coro, opts and opts.name)
end

function M.current_task()
  return current_task
end

function M.all_tasks(loop)
  loop = state_of(loop)
  local set = {}
  for t in pairs(loop._tasks) do set[t] = true end
  return set
end

-- sleep(delay, result): the task waits delay seconds (0: one turn of the
-- loop) and gets result.
do_sleep = function(sl, task)
  local delay = sl._d
  if delay <= 0 then
    yield_once()
    return sl._r
  end
  return await_future(task._loop:_timer_future(monotonic() + delay, sl._r), task)
end

function M.sleep(delay, result)
  if type(delay) ~= "number" then
    error(TypeError("sleep() needs a number of seconds, not " .. type(delay)), 2)
  end
  if delay <= 0 and result == nil then return SLEEP0 end
  return setmetatable({_d = delay, _r = result}, Sleep)
end

sleep_coro = M.async(function(sl) return do_sleep(sl, current_task) end, "sleep")

-- gather(aws..., {return_exceptions=}): a future of every result, in order.
gather_done = function(child)
  local outer = child._gather
  if outer._state ~= PENDING then return end
  local i = child._gather_i
  local results = outer._results
  if child._state == CANCELLED then
    if not outer._return_exceptions then
      future_cancel(outer, child._cancel_msg)
      return
    end
    results[i] = CancelledError(child._cancel_msg)
  elseif child._exception then
    if not outer._return_exceptions then
      set_exception(outer, child._exception)
      return
    end
    results[i] = child._exception
  else
    results[i] = child._result
  end
  local left = outer._left - 1
  outer._left = left
  if left == 0 then
    if outer._cancel_requested then
      future_cancel(outer, outer._cancel_msg)
    else
      set_result(outer, results)
    end
  end
end

local Gathering = Future:extend("_GatheringFuture")
Gathering.__module = "conc.asyncio"
Gathering.__qualname = "_GatheringFuture"

function Gathering:cancel(msg)
  if self._state ~= PENDING then return false end
  local any = false
  for i = 1, #self._children do
    if self._children[i]:cancel(msg) then any = true end
  end
  if any then
    self._cancel_requested = true
    self._cancel_msg = msg
  end
  return any
end

function M.gather(...)
  local args = pack(...)
  local n = args.n
  local opts = n > 0 and args[n] or nil
  if type(opts) == "table" and getmetatable(opts) == nil then
    n = n - 1
  else
    opts = nil
  end
  local loop = running_loop
  -- the packed arguments become the children, in place
  local children, results = args, {}
  if opts then children[n + 1] = nil end
  children.n = nil
  for i = 1, n do
    local c = ensure_future(args[i], nil)
    if loop == nil then loop = c._loop end
    children[i] = c
  end
  if loop == nil then loop = get_running_loop() end
  local outer = setmetatable({_loop = loop, _state = PENDING, _children = children,
    _results = results, _left = n,
    _return_exceptions = opts and opts.return_exceptions or false}, Gathering)
  if n == 0 then
    set_result(outer, results)
    return outer
  end
  -- the same future twice counts once, as Python's does
  for i = 1, n do
    local c = children[i]
    if c._gather == outer then
      outer._left = outer._left - 1
      outer._dups = outer._dups or {}
      outer._dups[i] = c._gather_i
    else
      c._gather, c._gather_i = outer, i
      if c._state ~= PENDING then
        push(loop, gather_done, c)
      else
        add_callback(c, gather_done)
      end
    end
  end
  if outer._dups then
    outer:add_done_callback(function(o)
      if o._state == FINISHED and not o._exception then
        for i, j in pairs(o._dups) do o._result[i] = o._result[j] end
      end
    end)
  end
  return outer
end

-- shield(aw): the inner work goes on when the awaiting task is cancelled.
function M.shield(aw)
  local inner = ensure_future(aw, nil)
  if inner._state ~= PENDING then return inner end
  local loop = inner._loop
  local outer = loop:create_future()
  inner:add_done_callback(function(i)
    if outer._state ~= PENDING then return end
    if i._state == CANCELLED then future_cancel(outer)
    elseif i._exception then set_exception(outer, i._exception)
    else set_result(outer, i._result) end
  end)
  return outer
end

-- ---- timeouts ----

local Timeout = class.class(nil, "Timeout")
Timeout.__module = "conc.asyncio"
M.Timeout = Timeout

local function timeout_fire(self)
  self._handle = nil
  if self._state ~= "entered" then return end
  self._state = "expiring"
  self._task:cancel()
end

function Timeout:__init(when)
  self._when = when
  self._task = check_in_task(3)
  self._state = "entered"
  self._ncancels = self._task._ncancels
  self:reschedule(when)
end

function Timeout:when() return self._when end
function Timeout:expired() return self._state == "expiring" or self._state == "expired" end

function Timeout:reschedule(when)
  if self._state ~= "entered" then
    error(RuntimeError("Timeout has not been entered or is done"), 2)
  end
  self._when = when
  if self._handle then self._handle:cancel() self._handle = nil end
  if when ~= nil then
    local loop = self._task._loop
    if when <= monotonic() then
      self._handle = loop:call_soon(timeout_fire, self)
    else
      self._handle = loop:call_at(when, timeout_fire, self)
    end
  end
end

-- The end of the block: a CancelledError that the timeout caused becomes
-- TimeoutError (raised from here, it replaces the error leaving the block).
function Timeout:__close(err)
  if self._handle then self._handle:cancel() self._handle = nil end
  local expiring = self._state == "expiring"
  self._state = expiring and "expired" or "exited"
  if expiring then
    local t = self._task
    if t:uncancel() <= self._ncancels and (err == nil or isinstance(err, CancelledError)) then
      error(TimeoutError(), 0)
    end
  end
end

-- timeout(delay): local _ <close> = asyncio.timeout(1) bounds the rest of
-- the block (nil: no bound, until reschedule()).
function M.timeout(delay)
  if delay ~= nil and type(delay) ~= "number" then
    error(TypeError("timeout() needs a number of seconds or nil"), 2)
  end
  return Timeout(delay and monotonic() + delay)
end

function M.timeout_at(when)
  if when ~= nil and type(when) ~= "number" then
    error(TypeError("timeout_at() needs a loop time or nil"), 2)
  end
  return Timeout(when)
end

-- wait_for(aw, timeout): aw's result, or TimeoutError having cancelled aw
-- and waited for it to end.
M.wait_for = M.async(function(aw, timeout)
  local task = current_task
  if timeout == nil then return await(aw) end
  if type(timeout) ~= "number" then error(TypeError("timeout must be a number or nil"), 2) end
  local fut = ensure_future(aw, task._loop)
  if timeout <= 0 then
    if fut._state ~= PENDING then return fut:result() end
    fut:cancel()
    pcall(await_future, fut, task)
    error(TimeoutError(), 2)
  end
  local t <close> = Timeout(monotonic() + timeout)
  return await_future(fut, task)
end, "wait_for")

-- wait(aws, {timeout=, return_when=}) -> done, pending (sets: tables keyed
-- by future).
M.wait = M.async(function(fs, opts)
  local task = current_task
  if type(fs) ~= "table" or isfuture(fs) or iscoroutine(fs) then
    error(TypeError("expect a list of futures, not " .. describe(fs)), 2)
  end
  local timeout = opts and opts.timeout
  local when = opts and opts.return_when or M.ALL_COMPLETED
  if when ~= M.ALL_COMPLETED and when ~= M.FIRST_COMPLETED and when ~= M.FIRST_EXCEPTION then
    error(ValueError("Invalid return_when value: " .. tostring(when)), 2)
  end
  local list = {}
  if #fs > 0 then
    for i = 1, #fs do list[i] = ensure_future(fs[i], task._loop) end
  else
    for f in pairs(fs) do list[#list + 1] = ensure_future(f, task._loop) end
  end
  if #list == 0 then error(ValueError("Set of Tasks/Futures is empty."), 2) end
  local function finished()
    local done, left, failed = 0, 0, false
    for i = 1, #list do
      local f = list[i]
      if f._state ~= PENDING then
        done = done + 1
        if f._state == FINISHED and f._exception then failed = true end
      else
        left = left + 1
      end
    end
    return left == 0 or (when == M.FIRST_COMPLETED and done > 0)
      or (when == M.FIRST_EXCEPTION and failed)
  end
  if not finished() then
    local waiter = task._loop:create_future()
    local function on_done()
      if waiter._state == PENDING and finished() then set_result(waiter, true) end
    end
    for i = 1, #list do
      if list[i]._state == PENDING then list[i]:add_done_callback(on_done) end
    end
    local h
    if timeout ~= nil then
      h = task._loop:call_later(timeout, function()
        if waiter._state == PENDING then set_result(waiter, false) end
      end)
    end
    local ok, e = pcall(await_future, waiter, task)
    if h then h:cancel() end
    for i = 1, #list do list[i]:remove_done_callback(on_done) end
    if not ok then error(e, 0) end
  end
  local done, pending = {}, {}
  for i = 1, #list do
    local f = list[i]
    if f._state ~= PENDING then done[f] = true else pending[f] = true end
  end
  return done, pending
end, "wait")

-- as_completed(aws, {timeout=}): a generic-for iterator of awaitables, each
-- giving the next result to come: for f in asyncio.as_completed(cs) do
-- local r = await(f) end
function M.as_completed(fs, opts)
  local loop = get_running_loop()
  local timeout = opts and opts.timeout
  local list, seen = {}, {}
  local src = fs
  if #fs == 0 then src = {} for f in pairs(fs) do src[#src + 1] = f end end
  for i = 1, #src do
    local f = ensure_future(src[i], loop)
    if not seen[f] then seen[f] = true list[#list + 1] = f end
  end
  local done, dhead, dtail = {}, 1, 0
  local waiting, whead, wtail = {}, 1, 0
  local left = #list
  local function deliver(f)
    if whead <= wtail then
      local w = waiting[whead]
      waiting[whead] = nil
      whead = whead + 1
      if f._state == CANCELLED then future_cancel(w)
      elseif f._exception then set_exception(w, f._exception)
      elseif getmetatable(f) == nil then set_exception(w, TimeoutError())
      else set_result(w, f._result) end
    else
      dtail = dtail + 1
      done[dtail] = f
    end
  end
  local h
  local function on_done(f)
    left = left - 1
    deliver(f)
    if left == 0 and h then h:cancel() end
  end
  for i = 1, #list do list[i]:add_done_callback(on_done) end
  if timeout ~= nil then
    h = loop:call_later(timeout, function()
      for i = 1, #list do list[i]:remove_done_callback(on_done) end
      for _ = 1, left do deliver({}) end
      left = 0
    end)
  end
  local given = 0
  return function()
    if given >= #list then return nil end
    given = given + 1
    if dhead <= dtail then
      local f = done[dhead]
      done[dhead] = nil
      dhead = dhead + 1
      if getmetatable(f) == nil then
        local fut = loop:create_future()
        set_exception(fut, TimeoutError())
        return fut
      end
      return f
    end
    local w = loop:create_future()
    wtail = wtail + 1
    waiting[wtail] = w
    return w
  end
end

-- ---- TaskGroup ----

local TaskGroup = class.class(nil, "TaskGroup")
TaskGroup.__module = "conc.asyncio"
M.TaskGroup = TaskGroup

-- local tg <close> = asyncio.TaskGroup(): tasks made by tg:create_task are
-- awaited when the block ends; the first failure cancels the rest, and
-- every failure comes out together in an ExceptionGroup.
function TaskGroup:__init()
  self._parent = check_in_task(3)
  self._loop = self._parent._loop
  self._tasks = {}
  self._ntasks = 0
  self._errors = {}
  self._entered = true
end

local function tg_abort(self)
  self._aborting = true
  for t in pairs(self._tasks) do
    if t._state == PENDING then t:cancel() end
  end
end

local function tg_task_done(self, t)
  self._tasks[t] = nil
  self._ntasks = self._ntasks - 1
  if self._on_completed and self._ntasks == 0 and self._on_completed._state == PENDING then
    set_result(self._on_completed, true)
  end
  if t._state == CANCELLED then return end
  local e = t._exception
  if not e then return end
  self._errors[#self._errors + 1] = e
  if is_fatal(e) and self._fatal == nil then self._fatal = e end
  if not self._aborting then
    tg_abort(self)
    if not self._exiting then
      -- the body still runs: stop it too, as Python's parent cancel does
      self._parent_cancel_requested = true
      self._parent:cancel()
    end
  end
end

function TaskGroup:create_task(coro, opts)
  if not self._entered then error(RuntimeError("TaskGroup has not been entered"), 2) end
  if self._exited then error(RuntimeError("TaskGroup is finished"), 2) end
  if self._aborting then
    error(RuntimeError("TaskGroup is shutting down"), 2)
  end
  local t = new_task(self._loop, coro, opts and opts.name)
  self._tasks[t] = true
  self._ntasks = self._ntasks + 1
  t:add_done_callback(function(task) tg_task_done(self, task) end)
  return t
end

function TaskGroup:__close(err)
  self._exiting = true
  local parent = self._parent
  local propagate_cancel
  if err ~= nil then
    if isinstance(err, CancelledError) then
      propagate_cancel = err
    else
      self._errors[#self._errors + 1] = err
    end
    if not self._aborting then tg_abort(self) end
  end
  while self._ntasks > 0 do
    self._on_completed = self._loop:create_future()
    local ok, e = pcall(await_future, self._on_completed, parent)
    self._on_completed = nil
    if not ok then
      if isinstance(e, CancelledError) then
        propagate_cancel = e
        if not self._aborting then tg_abort(self) end
      else
        error(e, 0)
      end
    end
  end
  self._exited = true
  if self._parent_cancel_requested then
    if parent:uncancel() == 0 then propagate_cancel = nil end
  end
  if self._fatal then error(self._fatal, 0) end
  local errs = self._errors
  if #errs > 0 then
    -- the body's own error was among them: errs[1] came first
    local eg = errors.ExceptionGroup("unhandled errors in a TaskGroup (" ..
      #errs .. " sub-exception" .. (#errs > 1 and "s" or "") .. ")")
    eg.exceptions = errs
    error(eg, 0)
  end
  if propagate_cancel then error(propagate_cancel, 0) end
end

-- ---------------------------------------------------------------------
-- Threads and the loop
-- ---------------------------------------------------------------------

-- to_thread(fn, ...): fn runs on a worker thread (its own state: fn and
-- its arguments are copied there); the task gets its result.
M.to_thread = M.async(function(fn, ...)
  local task = current_task
  return await_future(task._loop:run_in_executor(nil, fn, ...), task)
end, "to_thread")

-- run_coroutine_threadsafe(coro, loop): from another thread, coro runs as
-- a task of loop; the thread gets a conc.futures.Future of its result.
function M.run_coroutine_threadsafe(coro, loop)
  if not iscoroutine(coro) then
    error(TypeError("A coroutine object is required"), 2)
  end
  if getmetatable(loop) ~= BaseEventLoop then
    error(TypeError("run_coroutine_threadsafe() needs an event loop, not " ..
      describe(loop)), 2)
  end
  local cf = core.Future()
  loop._port:put(pack("run", cf, coro))
  return cf
end

-- Futures and tasks are looked up in the hot path, and often for fields
-- they lack (_exception, _must_cancel): their classes get every inherited
-- method as their own, and lose the class chain's __index function, so a
-- miss is two table lookups, not two function calls.
local function flatten(cls)
  local chain, c = {}, cls
  while c do chain[#chain + 1] = c c = rawget(c, "__parent") end
  for i = #chain, 2, -1 do
    for k, v in next, chain[i] do
      if rawget(cls, k) == nil and k ~= "__index" then rawset(cls, k, v) end
    end
  end
  local mt = getmetatable(cls)
  setmetatable(cls, {__call = mt and mt.__call})
end
flatten(Coroutine)
flatten(DebugCoroutine)
flatten(Future)
flatten(Task)
flatten(Gathering)
flatten(Loop)

-- For the package's other parts (conc.asyncio.locks, .queues, .streams,
-- .subprocess): the running loop's state, a loop's state, and a future's
-- settling without the checks of the public methods.
M._running = get_running_loop
M._Loop = Loop  -- the parts add their methods (create_server, ...)
M._state_of = state_of
M._current_task = function() return current_task end
M._set_result, M._set_exception, M._cancel = set_result, set_exception,
  future_cancel
M._await_future = await_future

-- The other parts, loaded on first use of one of their names.
local parts = {
  Lock = "locks", Event = "locks", Condition = "locks", Semaphore = "locks",
  BoundedSemaphore = "locks", Barrier = "locks", BrokenBarrierError = "locks",
  Queue = "queues", PriorityQueue = "queues", LifoQueue = "queues",
  open_connection = "streams", start_server = "streams",
  open_unix_connection = "streams", start_unix_server = "streams",
  StreamReader = "streams", StreamWriter = "streams", Server = "streams",
  create_subprocess_exec = "subprocess", create_subprocess_shell = "subprocess",
  PIPE = "subprocess", DEVNULL = "subprocess", STDOUT = "subprocess",
  subprocess = "subprocess",
}
setmetatable(M, {__index = function(t, k)
  local part = parts[k]
  if part == nil then return nil end
  local mod = require("conc.asyncio." .. part)
  local v = mod[k]
  if k == "subprocess" then v = mod end
  rawset(t, k, v)
  return v
end})

return M
