-- conc.futures: Python's concurrent.futures. A Future is a C object (see
-- csrc/lua/lfuture.c): passed to a thread it is the same future there, so
-- a worker sets what the submitter waits for. Its result and error cross
-- with the wire format; result() gives each caller its own copy.
--
-- Future, wait, as_completed, Executor, ThreadPoolExecutor, the
-- FIRST_COMPLETED / FIRST_EXCEPTION / ALL_COMPLETED constants and the
-- errors TimeoutError, CancelledError, InvalidStateError, BrokenExecutor,
-- BrokenThreadPool, BrokenProcessPool. docs/futures.md says where Lua
-- differs: wait() returns two sets (tables keyed by future), map() and
-- as_completed() are generic-for iterators, and a callback added to a
-- pending future runs, copied, in the thread that settles it.
local core = require "conc.core"
local class = require "conc.class"
local errors = require "conc.errors"
local threading = require "conc.threading"
local time = require "conc.time"

local M = {}

M.Future = core.Future
M.FIRST_COMPLETED = "FIRST_COMPLETED"
M.FIRST_EXCEPTION = "FIRST_EXCEPTION"
M.ALL_COMPLETED = "ALL_COMPLETED"
M.TimeoutError = errors.TimeoutError
M.CancelledError = errors.CancelledError
M.InvalidStateError = errors.InvalidStateError
M.BrokenExecutor = errors.BrokenExecutor
M.BrokenThreadPool = errors.BrokenThreadPool
M.BrokenProcessPool = errors.BrokenProcessPool

local monotonic = time.monotonic
local select_ready = core.select

local function add_traceback(e)
  if type(e) == "table" and rawget(e, "traceback") == nil then
    pcall(rawset, e, "traceback", errors.traceback(errors.tostring(e), 2))
  end
  return e
end
M._add_traceback = add_traceback

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end
M._callable = callable

-- The futures of fs, each once: a sequence, or a set as wait() returns.
local function futures_of(fs, fname)
  if type(fs) ~= "table" then
    error(errors.TypeError(fname .. "() needs a table of futures, not " .. type(fs)), 3)
  end
  local seen, list = {}, {}
  local function add(f)
    if seen[f] then return end
    if type(f) ~= "table" and type(f) ~= "userdata" then
      error(errors.TypeError(fname .. "() got a " .. type(f) .. ", not a Future"), 4)
    end
    seen[f] = true
    list[#list + 1] = f
  end
  if #fs > 0 then
    for i = 1, #fs do add(fs[i]) end
  else
    for f in pairs(fs) do add(f) end
  end
  return list
end

local function deadline_of(timeout)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" then
    error(errors.TypeError("timeout must be a number, not " .. type(timeout)), 3)
  end
  return monotonic() + timeout
end

local function remaining(deadline)
  if deadline == nil then return nil end
  local r = deadline - monotonic()
  return r > 0 and r or 0
end

local function failed(f)
  return not f:cancelled() and f:exception() ~= nil
end

-- wait(fs, timeout=nil, return_when=ALL_COMPLETED) -> done, not_done: two
-- sets, tables whose keys are the futures.
function M.wait(fs, timeout, return_when)
  return_when = return_when or M.ALL_COMPLETED
  if return_when ~= M.FIRST_COMPLETED and return_when ~= M.FIRST_EXCEPTION
      and return_when ~= M.ALL_COMPLETED then
    error(errors.ValueError("Invalid return condition: " .. tostring(return_when)), 2)
  end
  local list = futures_of(fs, "wait")
  local deadline = deadline_of(timeout)
  local done, ndone, raised = {}, 0, false
  local pending = list
  while true do
    local still = {}
    for _, f in ipairs(pending) do
      if f:done() then
        done[f] = true
        ndone = ndone + 1
        raised = raised or failed(f)
      else
        still[#still + 1] = f
      end
    end
    pending = still
    if #pending == 0 or (return_when == M.FIRST_COMPLETED and ndone > 0)
        or (return_when == M.FIRST_EXCEPTION and raised) then
      break
    end
    local left = remaining(deadline)
    if left == 0 or select_ready(pending, left) == nil then break end
  end
  local not_done = {}
  for _, f in ipairs(pending) do
    if f:done() then done[f] = true else not_done[f] = true end
  end
  return done, not_done
end

-- for f in as_completed(fs, timeout) do ... end: each future once, those
-- done already first, then each as it is done; TimeoutError when the
-- timeout passes with some still pending.
function M.as_completed(fs, timeout)
  local pending = futures_of(fs, "as_completed")
  local total = #pending
  local deadline = deadline_of(timeout)
  -- ready[at .. nready]: counted, since # of a list whose front was taken
  -- may be any border, 0 too (which ended the loop with futures unyielded)
  local ready, at, nready = {}, 1, 0
  local function sort()
    local still = {}
    ready, at, nready = {}, 1, 0
    for _, f in ipairs(pending) do
      if f:done() then
        nready = nready + 1
        ready[nready] = f
      else
        still[#still + 1] = f
      end
    end
    pending = still
  end
  sort()
  return function()
    while at > nready do
      if #pending == 0 then return nil end
      local left = remaining(deadline)
      if left == 0 or select_ready(pending, left) == nil then
        sort()
        if at > nready then
          error(errors.TimeoutError(string.format(
            "%d (of %d) futures unfinished", #pending, total)), 2)
        end
      else
        sort()
      end
    end
    local f = ready[at]
    ready[at] = nil
    at = at + 1
    return f
  end
end

-- ---- Executor ---------------------------------------------------------------

local Executor = class.class(nil, "Executor")
M.Executor = Executor

function Executor:submit()
  error(errors.NotImplementedError("Executor:submit"), 2)
end

function Executor:shutdown()
end

-- `local ex <close> = ThreadPoolExecutor{}`: Python's `with`, which waits.
function Executor:__close()
  self:shutdown(true)
end

-- The trailing options table of map: a table with no sequence part that
-- names an option (an empty table is an empty iterable).
local function map_options(n, ...)
  if n < 2 then return nil, n end
  local last = select(n, ...)
  if type(last) == "table" and getmetatable(last) == nil and last[1] == nil
      and (last.timeout ~= nil or last.chunksize ~= nil) then
    return last, n - 1
  end
  return nil, n
end
M._map_options = map_options

-- The values of zip(iterables...) as argument lists: each iterable a
-- sequence, the shortest deciding.
local function zip(niter, iters)
  local len = math.huge
  for j = 1, niter do
    local t = iters[j]
    if type(t) ~= "table" then
      error(errors.TypeError("map() argument " .. (j + 1) ..
        " must be a sequence (table), not " .. type(t)), 4)
    end
    if #t < len then len = #t end
  end
  if len == math.huge then len = 0 end
  local rows = {}
  for i = 1, len do
    local row = {n = niter}
    for j = 1, niter do row[j] = iters[j][i] end
    rows[i] = row
  end
  return rows
end
M._zip = zip

-- Yields future i's result, or cancels those after it and raises its
-- error.
local function result_of(fs, i, ok, ...)
  if not ok then
    for j = i + 1, #fs do
      if fs[j] then fs[j]:cancel() end
    end
    error((...), 0)
  end
  return ...
end

-- The closing value of map's generic for (Lua 5.4 closes it when the loop
-- ends, by a break or an error): it cancels the futures not yet yielded,
-- as Python's map does when its generator is closed.
local function canceller(fs)
  return setmetatable({}, {__close = function()
    for _, f in pairs(fs) do f:cancel() end
  end})
end

-- The iterator over the results of the futures fs, in order, with one
-- deadline for all; and its closing value.
local function results(fs, deadline)
  local i = 0
  return function()
    i = i + 1
    local f = fs[i]
    if f == nil then return nil end
    fs[i] = nil
    return result_of(fs, i, pcall(f.result, f, remaining(deadline)))
  end, nil, nil, canceller(fs)
end
M._results = results

-- Runs fn over rows (argument lists, table.pack'ed): one table.pack(ok,
-- ...) per row. What a chunk of map calls is, in a thread or a process.
local function run_rows(fn, rows)
  local res = {}
  for i = 1, #rows do
    local row = rows[i]
    res[i] = table.pack(xpcall(fn, add_traceback, table.unpack(row, 1, row.n)))
  end
  return res
end
M._run_rows = run_rows

-- The iterator over the values of chunk futures fs, in order: each one's
-- result is its chunk's list of table.pack(ok, ...). A failed call raises
-- its error where its value would be, and cancels the chunks after it.
local function chunk_results(fs, deadline)
  local chunks = results(fs, deadline)
  local chunk, at = nil, 1
  return function()
    while chunk == nil or at > #chunk do
      chunk, at = chunks(), 1
      if chunk == nil then return nil end
    end
    local r = chunk[at]
    at = at + 1
    if not r[1] then
      for _, f in pairs(fs) do f:cancel() end
      error(r[2], 0)
    end
    return table.unpack(r, 2, r.n)
  end, nil, nil, canceller(fs)
end

-- The rows of map's calls split in chunks of size n.
local function split(rows, n)
  local chunks = {}
  for i = 1, #rows, n do
    chunks[#chunks + 1] = table.move(rows, i, math.min(i + n - 1, #rows), 1, {})
  end
  return chunks
end

local function check_chunksize(c, level)
  if math.type(c) ~= "integer" or c < 1 then
    error(errors.ValueError("chunksize must be >= 1."), level + 1)
  end
  return c
end

-- for r in ex:map(fn, t1, ..., {timeout=, chunksize=}) do: every call is
-- submitted at once, as in Python; the results come in input order. A loop
-- left early (break, error) cancels the calls that have not started. An
-- executor with _submit_chunk sends chunksize calls as one task (its
-- _chunksize(n) the default for n calls); the base one sends each alone.
function Executor:map(fn, ...)
  local opts, niter = map_options(select("#", ...), ...)
  if niter < 1 then
    error(errors.TypeError("map() must have at least two arguments."), 2)
  end
  local deadline = deadline_of(opts and opts.timeout)
  local rows = zip(niter, {...})
  local chunksize = opts and opts.chunksize
  if chunksize == nil then chunksize = self:_chunksize(#rows) end
  check_chunksize(chunksize, 2)
  local fs = {}
  if chunksize == 1 or self._submit_chunk == nil then
    for i, row in ipairs(rows) do
      fs[i] = self:submit(fn, table.unpack(row, 1, row.n))
    end
    return results(fs, deadline)
  end
  self:_check(2)
  if not callable(fn) then
    error(errors.TypeError("map() needs a callable, not " .. type(fn)), 2)
  end
  for i, chunk in ipairs(split(rows, chunksize)) do
    fs[i] = self:_submit_chunk(fn, chunk)
  end
  return chunk_results(fs, deadline)
end

function Executor:_chunksize()
  return 1
end

-- The options of an executor's constructor, checked as Python checks
-- them: a number alone is max_workers (default_max when nil).
local function executor_options(opts, name, default_max)
  if type(opts) == "number" then opts = {max_workers = opts} end
  opts = opts or {}
  if type(opts) ~= "table" then
    error(errors.TypeError(name .. "{max_workers=, ...} expects a table"), 4)
  end
  local max = opts.max_workers
  if max == nil then
    max = default_max
  elseif math.type(max) ~= "integer" then
    error(errors.TypeError("max_workers must be an integer, not " .. type(max)), 4)
  elseif max <= 0 then
    error(errors.ValueError("max_workers must be greater than 0"), 4)
  end
  if opts.initializer ~= nil and not callable(opts.initializer) then
    error(errors.TypeError("initializer must be a callable"), 4)
  end
  if opts.initargs ~= nil and type(opts.initargs) ~= "table" then
    error(errors.TypeError("initargs must be a table"), 4)
  end
  return opts, max
end

-- ---- ThreadPoolExecutor -----------------------------------------------------

local ThreadPoolExecutor = Executor:extend("ThreadPoolExecutor")
M.ThreadPoolExecutor = ThreadPoolExecutor

local STOP = false  -- the queue item that tells a worker to end
local BROKEN_THREADS =
  "A thread initializer failed, the thread pool is not usable anymore"

-- Sets f's outcome from xpcall's results; a result or error that cannot
-- cross (a coroutine, say) becomes the future's error instead.
local function settle(f, ok, ...)
  local sent, err
  if ok then
    sent, err = pcall(f.set_result, f, ...)
  else
    sent, err = pcall(f.set_exception, f, (...))
  end
  if not sent and not f:done() then
    pcall(f.set_exception, f, errors.tostring(err))
  end
end


-- Runs a work item {future, fn, args} unless its future was cancelled.
-- Runs a work item {future, fn, args} (or {future, fn, rows, true}: a
-- chunk of map calls) unless its future was cancelled.
local function run_item(item)
  local f, fn, args = item[1], item[2], item[3]
  if not f:set_running_or_notify_cancel() then return end
  if not callable(fn) then
    f:set_exception(errors.TypeError("'" .. type(fn) .. "' object is not callable"))
  elseif item[4] then
    settle(f, true, run_rows(fn, args))
  else
    settle(f, xpcall(fn, add_traceback, table.unpack(args, 1, args.n)))
  end
end

-- Fails every item still queued: the pool broke.
local function fail_queued(work, err)
  while true do
    local ok, item = pcall(work.get, work, false)
    if not ok then return end
    if item == STOP then
      work:put(STOP)
      return
    end
    if item[1]:set_running_or_notify_cancel() then item[1]:set_exception(err) end
  end
end

-- A worker thread's body (it crosses by this name): runs the initializer,
-- then work items until STOP, which it passes on to the next worker.
function M._thread_worker(work, idle, broken, initializer, initargs)
  if initializer ~= nil then
    local tb
    local ok = xpcall(threading._call, function(e)
      tb = errors.traceback(errors.tostring(e), 2)
      return e
    end, initializer, initargs)
    if not ok then
      io.stderr:write("Exception in initializer:\n", tostring(tb), "\n")
      io.stderr:flush()
      broken:set()
      fail_queued(work, errors.BrokenThreadPool(BROKEN_THREADS))
      return
    end
  end
  while true do
    local item = work:get()
    if item == STOP then
      work:put(STOP)
      return
    end
    run_item(item)
    item = nil
    idle:release()
  end
end

local executor_count = 0
local live = setmetatable({}, {__mode = "k"})

-- ThreadPoolExecutor{max_workers=, thread_name_prefix=, initializer=,
-- initargs=} (or ThreadPoolExecutor(max_workers))
function ThreadPoolExecutor:__init(opts)
  local max
  opts, max = executor_options(opts, "ThreadPoolExecutor",
    math.min(32, core.cpu_count() + 4))
  local prefix = opts.thread_name_prefix
  if prefix == nil then
    prefix = "ThreadPoolExecutor-" .. executor_count
    executor_count = executor_count + 1
  end
  rawset(self, "_max_workers", max)
  rawset(self, "_prefix", tostring(prefix))
  rawset(self, "_initializer", opts.initializer)
  rawset(self, "_initargs", opts.initargs or {})
  rawset(self, "_work", core.SimpleQueue())
  rawset(self, "_idle", core.Semaphore(0))
  rawset(self, "_broken", core.Event())
  rawset(self, "_threads", {})
  rawset(self, "_shutdown", false)
  rawset(self, "_pid", core.getpid())
  live[self] = true
end

function ThreadPoolExecutor:_adjust_thread_count()
  if self._idle:acquire(false) then return end
  local threads = self._threads
  local n = #threads
  if n < self._max_workers then
    local t = threading.Thread{
      name = self._prefix .. "_" .. n, target = M._thread_worker,
      args = {self._work, self._idle, self._broken, self._initializer,
        self._initargs},
      daemon = true}
    t:start()
    threads[n + 1] = t
  end
end

-- submit(fn, ...) -> Future
function ThreadPoolExecutor:_check(level)
  if self._broken:is_set() then
    error(errors.BrokenThreadPool(BROKEN_THREADS), level + 1)
  end
  if self._shutdown then
    error(errors.RuntimeError("cannot schedule new futures after shutdown"), level + 1)
  end
end

-- Queues a work item and makes sure a worker will take it.
function ThreadPoolExecutor:_put(item)
  self._work:put(item)
  if self._broken:is_set() then
    -- broke since the check above, maybe after its worker drained the
    -- queue: no worker may be left to fail this item
    fail_queued(self._work, errors.BrokenThreadPool(BROKEN_THREADS))
    return
  end
  self:_adjust_thread_count()
end

-- submit(fn, ...) -> Future
function ThreadPoolExecutor:submit(fn, ...)
  self:_check(2)
  if not callable(fn) then
    error(errors.TypeError("submit() needs a callable, not " .. type(fn)), 2)
  end
  local f = core.Future()
  self:_put({f, fn, table.pack(...)})
  return f
end

-- Beyond Python, whose thread pool ignores chunksize: map's calls go to
-- the workers in chunks, by default about 32 a worker once there are more
-- than that many calls (a Future per call costs more than a small call
-- itself), else one by one.
function ThreadPoolExecutor:_chunksize(n)
  return math.max(1, n // (32 * self._max_workers))
end

function ThreadPoolExecutor:_submit_chunk(fn, chunk)
  local f = core.Future()
  self:_put({f, fn, chunk, true})
  return f
end

-- shutdown(wait=true, {cancel_futures=false})
function ThreadPoolExecutor:shutdown(wait, opts)
  if wait == nil then wait = true end
  local work = self._work
  rawset(self, "_shutdown", true)
  if opts and opts.cancel_futures then
    while true do
      local ok, item = pcall(work.get, work, false)
      if not ok then break end
      if item ~= STOP then item[1]:cancel() end
    end
  end
  work:put(STOP)
  if wait then
    for _, t in ipairs(self._threads) do t:join() end
  end
  live[self] = nil
end

-- ---- ProcessPoolExecutor ----------------------------------------------------

-- The workers are processes of conc.pool's engine (see there); its
-- manager thread moves tasks to them and settles the futures. A worker
-- that dies breaks the pool, as in Python: every pending future fails with
-- BrokenProcessPool, and so does every later submit.
local ProcessPoolExecutor = Executor:extend("ProcessPoolExecutor")
M.ProcessPoolExecutor = ProcessPoolExecutor

-- ProcessPoolExecutor{max_workers=, initializer=, initargs=,
-- max_tasks_per_child=, mp_context=} (or ProcessPoolExecutor(max_workers))
function ProcessPoolExecutor:__init(opts)
  local max
  opts, max = executor_options(opts, "ProcessPoolExecutor", core.cpu_count())
  local mt = opts.max_tasks_per_child
  if mt ~= nil and (math.type(mt) ~= "integer" or mt < 1) then
    error(errors.ValueError("max_tasks_per_child must be >= 1"), 3)
  end
  local ctx = opts.mp_context
  local method = type(ctx) == "string" and ctx or
    (ctx and ctx.get_start_method()) or
    require("conc.multiprocessing").get_start_method()
  rawset(self, "_max_workers", max)
  rawset(self, "_engine", require("conc.pool").Engine{kind = "process",
    n = max, method = method, mode = "executor",
    initializer = opts.initializer, initargs = opts.initargs, max_tasks = mt})
  rawset(self, "_shutdown", false)
  rawset(self, "_pid", core.getpid())
  live[self] = true
end

function ProcessPoolExecutor:_check(level)
  if self._engine:broken() then
    error(errors.BrokenProcessPool("A child process terminated abruptly, " ..
      "the process pool is not usable anymore"), level + 1)
  end
  if self._shutdown then
    error(errors.RuntimeError("cannot schedule new futures after shutdown"), level + 1)
  end
end

function ProcessPoolExecutor:submit(fn, ...)
  self:_check(2)
  if not callable(fn) then
    error(errors.TypeError("submit() needs a callable, not " .. type(fn)), 2)
  end
  return self._engine:job("call", fn, {{table.pack(...)}})
end

-- map's chunks (chunksize calls to a worker together, as in Python; 1 by
-- default, Executor's _chunksize)
function ProcessPoolExecutor:_submit_chunk(fn, chunk)
  return self._engine:job("chunk", fn, {chunk})
end

-- shutdown(wait=true, {cancel_futures=false})
function ProcessPoolExecutor:shutdown(wait, opts)
  if wait == nil then wait = true end
  local engine = self._engine
  rawset(self, "_shutdown", true)
  if opts and opts.cancel_futures then engine:tell("cancel") end
  engine:tell("stop")
  if wait then engine:join() end
  live[self] = nil
end

-- At the script's end, as Python's atexit hook: the executors left running
-- finish their queued work.
threading._register_atexit(function()
  local pid = core.getpid()
  for ex in pairs(live) do
    if ex._pid == pid then ex:shutdown(true) end
  end
end)

return M
