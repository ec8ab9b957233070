-- conc.pool: the worker pools behind multiprocessing.Pool,
-- multiprocessing.pool.ThreadPool and concurrent.futures'
-- ProcessPoolExecutor, and those first two classes.
--
-- One engine serves all three. A manager thread starts the workers
-- (processes or threads) and waits on one queue, the box: the workers'
-- results come there, and so does every job the script's state sends,
-- each with the conc.futures Future its caller waits on (a process pool's
-- box is an mp queue, which carries no conc object: the job itself goes
-- by a thread queue beside it, the box carrying its notice). A pool's
-- tasks go straight from the script's state to the call queue; an
-- executor's go through the manager, which keeps the call queue at most
-- one task per worker ahead, so that what waits is still cancellable, as
-- in Python. The manager settles each job's Future from the results; a
-- map's chunks come as bytes, which it hands on unread for the caller to
-- make the list from (assemble): each item is encoded and decoded once
-- each way.
-- Every worker notes in a shared slot which task it runs: when a process
-- dies (SIGKILL, os.exit in a task), the manager, which looks at the
-- workers between messages and at least every POLL seconds, knows which
-- task was lost.
-- An executor then breaks as Python's does (every pending future gets
-- BrokenProcessPool); a Pool fails that task's result only, starts a
-- replacement, and goes on (Python's hangs).
local core = require "conc.core"
local class = require "conc.class"
local errors = require "conc.errors"
local threading = require "conc.threading"

local M = {}

local STOP = false  -- the call queue's "end now"
local POLL = 0.05   -- seconds between looks at the workers when idle

local run_rows = require("conc.futures")._run_rows
local add_traceback = require("conc.futures")._add_traceback

-- A result that cannot cross back (a coroutine, say) becomes an error.
local function sendable(r)
  local ok, why = pcall(core.copy, r)
  if ok then return r end
  return table.pack(false, errors.tostring(why))
end

-- ---- the worker ------------------------------------------------------------

-- A chunk of one-argument calls (map's): args is {n =, ...} of plain
-- values, and the result {single = true, n =, vals =, errs =, holes =}:
-- the first values, the errors by index (nil when none), and whether a
-- value is nil (a call that failed or returned nil). No table a call: a
-- chunk of 1000 squares is two arrays each way.
local function run_single(fn, args)
  local n = args.n or #args
  local vals, errs, i, holes = core.newtable(n), nil, 0, false
  local function loop()
    while i < n do
      i = i + 1
      local v = fn(args[i])
      if v == nil then holes = true end
      vals[i] = v
    end
  end
  while i < n do
    local ok, err = xpcall(loop, add_traceback)
    if not ok then
      errs = errs or {}
      errs[i] = err
      holes = true
    end
  end
  return {single = true, n = n, vals = vals, errs = errs, holes = holes}
end

-- A single result as the rows form: table.pack(ok, v) a call.
local function single_rows(res)
  local rows = {}
  for i = 1, res.n do
    local e = res.errs and res.errs[i]
    if e ~= nil then rows[i] = table.pack(false, e)
    else rows[i] = table.pack(true, res.vals[i]) end
  end
  return rows
end
M._single_rows = single_rows

-- A worker's body (a process's or a thread's; it crosses by this name):
-- runs the initializer, then tasks {tid, fn, rows} until STOP. Each row is
-- one call's arguments (table.pack'ed); the result message holds one
-- table.pack(ok, ...) per row.
function M._worker(call_q, out_q, slots, slot, gen, initializer, initargs,
                   max_tasks, parent)
  -- a process worker ends with its pool's manager thread, so with its
  -- parent: an mp queue never tells it that the parent is gone
  if parent then core.orphan_rule(parent) end
  if initializer ~= nil then
    local tb
    local ok = xpcall(threading._call, function(e)
      tb = errors.traceback(errors.tostring(e), 2)
      return e
    end, initializer, initargs or {})
    if not ok then
      io.stderr:write("Exception in initializer:\n", tostring(tb), "\n")
      io.stderr:flush()
      out_q:put({"initfail", slot, gen, tostring(tb)})
      return
    end
  end
  local done = 0
  while true do
    local task = call_q:get()
    if task == STOP then
      out_q:put({"exit", slot, gen})
      return
    end
    local tid, fn, rows, single = task[1], task[2], task[3], task[4]
    if single and rows.bytes then rows = core.loads(rows.bytes) end
    if slots then slots[slot] = tid end
    task = nil
    local res = single and run_single(fn, rows) or run_rows(fn, rows)
    local msg = {tid, res}
    if single and not res.holes then
      -- map's chunk with a value for each call: the values as bytes, which
      -- the manager hands on unread and the caller loads into its list
      local ok, bytes = pcall(core.dumps, res.vals)
      if ok then msg = {tid, bytes} end
    end
    local sent, why = pcall(out_q.put, out_q, msg)
    if not sent then
      if res.single then res = single_rows(res) end
      for i = 1, #res do res[i] = sendable(res[i]) end
      if not pcall(out_q.put, out_q, {tid, res}) then
        -- a conc object, which cannot go to another process
        for i = 1, #res do res[i] = table.pack(false, errors.tostring(why)) end
        out_q:put({tid, res})
      end
    end
    if slots then slots[slot] = 0 end
    done = done + 1
    if max_tasks and done >= max_tasks then
      out_q:put({"exit", slot, gen, "max"})
      return
    end
  end
end

-- ---- the manager -------------------------------------------------------------

-- A chunk's results (see took) as a table: bytes are a single chunk's
-- values, one for each call.
local function chunk_of(res)
  if type(res) == "string" then
    local vals = core.loads(res)
    return {single = true, n = #vals, vals = vals}
  end
  return res
end

-- The first error among a chunk's results, or nil (bytes hold none).
local function first_error(res)
  if type(res) == "string" then return nil end
  if res.single then
    if res.errs then
      for i = 1, res.n do
        if res.errs[i] ~= nil then return res.errs[i] end
      end
    end
    return nil
  end
  for _, r in ipairs(res) do
    if not r[1] then return r[2] end
  end
  return nil
end

-- A list job's result as the caller gets it from the manager, its parts:
-- each chunk's first index then its results, in the order they came. The
-- list is made here, in the caller's state: the manager never decodes nor
-- encodes the items, which cross twice, as pickle's do in Python's Pool.
local function assemble(parts, total)
  local out = core.newtable(total)
  for i = 1, #parts, 2 do
    local first, res = parts[i], parts[i + 1]
    if type(res) == "string" then
      core.loads_into(res, out, first)
    elseif res.single then
      core.rawmove(res.vals, 1, res.n, first, out)
    else
      for j = 1, #res do out[first + j - 1] = res[j][2] end
    end
  end
  return out
end
M._assemble = assemble

-- What the manager fails jobs with when a pool breaks or ends.
local function broken_error(cfg, why)
  if cfg.mode == "executor" then
    return errors.BrokenProcessPool(why or
      "A process in the process pool was terminated abruptly while the " ..
      "future was running or pending.")
  end
  return errors.RuntimeError(why or "the pool was terminated")
end

-- The manager thread's body: cfg holds the queues, the slots, the worker
-- kind and options (see Engine below).
function M._manager(cfg)
  local mp = require "conc.multiprocessing"
  local time = require "conc.time"
  local box, side, call_q, n = cfg.box, cfg.side, cfg.call_q, cfg.n
  local workers, exited, gens = {}, {}, {}  -- by slot
  local nlive = 0
  local jobs, njobs = {}, 0       -- by job id
  local tasks = {}                -- by task id: {job, first row index, nrows}
  -- The tasks not yet on the call queue, queued[qhead .. qtail]. Counted,
  -- not measured: # of a table whose front was taken (nils below qhead)
  -- may be any border, 0 too, and that lost the tasks behind it (an
  -- executor's map hung, now and then, in CI).
  local queued, qhead, qtail = {}, 1, 0
  local inflight = 0
  local next_tid = 0
  local stopping, broken = false, nil
  local last_look = time.monotonic()

  -- A slot's worker; its generation tells its messages from those of the
  -- worker it replaced.
  local function start(slot)
    gens[slot] = (gens[slot] or 0) + 1
    local args = {call_q, box, cfg.slots, slot, gens[slot], cfg.initializer,
      cfg.initargs, cfg.max_tasks, cfg.kind ~= "thread" and core.getpid() or nil}
    local w
    if cfg.kind == "thread" then
      w = threading.Thread{target = M._worker, args = args, daemon = true,
        name = cfg.name .. "-" .. slot}
    else
      w = mp.get_context(cfg.method).Process{target = M._worker, args = args,
        daemon = true}
      if cfg.mode == "pool" then w.name = cfg.name .. "-" .. slot end
    end
    w:start()
    workers[slot], exited[slot] = w, false
    nlive = nlive + 1
  end

  local function settle_job(job)
    jobs[job.id] = nil
    njobs = njobs - 1
    local f = job.future
    if job.stream then
      job.stream:put(STOP)
    elseif job.error ~= nil then
      pcall(f.set_exception, f, job.error)
    elseif job.kind == "call" then
      local r = job.values[1]
      if r[1] then pcall(f.set_result, f, table.unpack(r, 2, r.n))
      else pcall(f.set_exception, f, r[2]) end
    elseif job.kind == "one" then
      pcall(f.set_result, f, job.values[1])
    elseif job.kind == "list" then
      pcall(f.set_result, f, job.parts)
    else
      pcall(f.set_result, f, job.values)
    end
  end

  -- A task's results: into its job's values, its parts (a list job's: the
  -- caller makes the list, see assemble) or its stream.
  local function took(tid, res)
    local t = tasks[tid]
    if t == nil then return end
    tasks[tid] = nil
    if not t[3] then inflight = inflight - 1 end
    local job, first = t[1], t[2]
    if jobs[job.id] == nil then return end  -- failed already
    if job.stream then
      job.stream:put({first, res})
    elseif job.kind == "list" then
      local parts = job.parts
      parts[#parts + 1] = first
      parts[#parts + 1] = res
      if job.error == nil then job.error = first_error(res) end
    else
      for i, r in ipairs(res) do
        if job.kind ~= "one" then
          job.values[first + i - 1] = r
        elseif r[1] then
          job.values[first + i - 1] = r[2]
        elseif job.error == nil then
          job.error = r[2]
        end
      end
    end
    job.left = job.left - 1
    if job.left == 0 then settle_job(job) end
  end

  local function fail_job(job, err)
    if jobs[job.id] == nil then return end
    if job.stream then
      job.stream:put({0, {table.pack(false, err)}})
      jobs[job.id] = nil
      njobs = njobs - 1
      job.stream:put(STOP)
      return
    end
    job.error = err
    settle_job(job)
  end

  local function fail_all(err)
    for _, job in pairs(jobs) do fail_job(job, err) end
    for tid in pairs(tasks) do tasks[tid] = nil end
    queued, qhead, qtail, inflight = {}, 1, 0, 0
  end

  local function add_job(job)
    jobs[job.id] = job
    njobs = njobs + 1
    if broken then
      fail_job(job, broken)
      return
    end
    job.values = {}
    if job.sizes then  -- a pool's: its tasks are on the call queue already
      job.left = #job.sizes
      local first = 1
      for i, size in ipairs(job.sizes) do
        tasks[job.first_tid + i - 1] = {job, first, true}
        first = first + size
      end
      if job.kind == "list" then job.parts = core.newtable(2 * #job.sizes) end
      if job.left == 0 then settle_job(job) end
      return
    end
    local chunks = job.chunks
    job.chunks = nil
    job.left = #chunks
    if job.left == 0 then
      settle_job(job)
      return
    end
    local first = 1
    for _, rows in ipairs(chunks) do
      next_tid = next_tid + 1
      tasks[next_tid] = {job, first}
      qtail = qtail + 1
      queued[qtail] = {next_tid, job.fn, rows, job.single}
      first = first + (rows.n or #rows)
    end
  end

  -- An executor's call queue gets tasks while fewer than n + 1 wait or run
  -- there, its futures marked running (or found cancelled) as their tasks
  -- go, as Python's manager does: what waits stays cancellable. A pool's
  -- tasks cannot be cancelled, so they all go at once, as Python's task
  -- handler sends them: no worker waits for the manager between tasks.
  local ahead = cfg.mode == "executor" and 1 or math.huge
  local function feed()
    while inflight < nlive + ahead and qhead <= qtail do
      local task = queued[qhead]
      queued[qhead] = nil
      qhead = qhead + 1
      local t = tasks[task[1]]
      local job = t and t[1]
      if job and not job.started then
        job.started = true
        if not job.future:set_running_or_notify_cancel() then
          jobs[job.id] = nil
          njobs = njobs - 1
          tasks[task[1]] = nil
          job = nil
        end
      end
      if job then
        inflight = inflight + 1
        local ok, err = pcall(call_q.put, call_q, task)
        if not ok then  -- what cannot go to another process
          inflight = inflight - 1
          tasks[task[1]] = nil
          fail_job(job, err)
        end
      end
    end
    if qhead > qtail then queued, qhead, qtail = {}, 1, 0 end
  end

  local function break_pool(err)
    broken = err
    if cfg.broken then cfg.broken:set() end
    fail_all(err)
    for slot, w in pairs(workers) do
      if not exited[slot] and cfg.kind ~= "thread" then pcall(w.terminate, w) end
    end
  end

  -- Looks at each process worker: one that ended without saying so died.
  -- One that returned (exit code 0, no task in its slot) said so: its
  -- message may still wait in the box.
  local function look()
    last_look = time.monotonic()
    if cfg.kind == "thread" then return end
    for slot, w in pairs(workers) do
      local code = not exited[slot] and w.exitcode
      if code and (code ~= 0 or cfg.slots[slot] ~= 0) then
        exited[slot] = true
        nlive = nlive - 1
        local tid = cfg.slots[slot]
        local why = string.format("worker process %s (pid %d) died with exit code %d",
          tostring(w.name), w.pid, w.exitcode)
        if broken or stopping and cfg.mode == "executor" then
          -- nothing to save
        elseif cfg.mode == "executor" then
          break_pool(broken_error(cfg, nil))
        else
          local t = tid ~= 0 and tasks[tid]
          if t then
            tasks[tid] = nil
            if not t[3] then inflight = inflight - 1 end
            fail_job(t[1], errors.ProcessError(why .. " while running this task"))
          end
          cfg.slots[slot] = 0
          if not stopping then start(slot) end
        end
      end
    end
  end

  local function on_message(msg)
    local k = msg[1]
    if type(k) == "number" then
      took(k, msg[2])
    elseif k == "job" then
      local job = msg[2]
      if type(job) ~= "table" then  -- its notice: the job is beside the box
        local ok
        ok, job = pcall(side.get, side, false)
        if not ok then return end
      end
      add_job(job)
    elseif k == "lost" then  -- a task the script could not send
      local job = jobs[msg[2]]
      if job then fail_job(job, msg[3]) end
    elseif k == "exit" then
      local slot = msg[2]
      if gens[slot] == msg[3] and not exited[slot] then
        exited[slot] = true
        nlive = nlive - 1
        workers[slot]:join()
        if msg[4] == "max" and not stopping and not broken then start(slot) end
      end
    elseif k == "initfail" then
      local slot = msg[2]
      if gens[slot] == msg[3] and not exited[slot] then
        exited[slot] = true
        nlive = nlive - 1
      end
      if not broken then
        local why = "an initializer failed, the pool is not usable anymore:\n" ..
          tostring(msg[4])
        break_pool(cfg.mode == "executor" and errors.BrokenProcessPool(why)
          or errors.RuntimeError(why))
      end
    elseif k == "cancel" then  -- shutdown's cancel_futures: what waits
      for i = qhead, qtail do
        local t = tasks[queued[i][1]]
        if t and not t[1].started then
          t[1].future:cancel()
          jobs[t[1].id] = nil
          njobs = njobs - 1
          tasks[queued[i][1]] = nil
        end
      end
      queued, qhead, qtail = {}, 1, 0
    elseif k == "stop" then
      stopping = true
    elseif k == "terminate" then
      stopping = true
      break_pool(broken_error(cfg, "the pool was terminated"))
    end
  end

  -- One turn of the loop: false once it is over.
  local function turn()
    feed()
    if stopping and (njobs == 0 or broken) then return false end
    local ok, msg = pcall(box.get, box, true, POLL)
    if ok then
      on_message(msg)
    elseif not errors.isinstance(msg, errors.Empty) then
      error(msg, 0)  -- a message that cannot be read
    end
    if not ok or time.monotonic() - last_look >= POLL then look() end
    return true
  end

  -- Whatever fails here (a worker that cannot start, a message that cannot
  -- be read, a bug) breaks the pool with its error: each job's caller is
  -- told at once, where it would otherwise wait for ever.
  local function why(e)
    return errors.traceback(errors.tostring(e), 2)
  end
  local ok, going = xpcall(function()
    for slot = 1, n do start(slot) end
    return true
  end, why)
  while ok and going do ok, going = xpcall(turn, why) end
  if not ok then
    stopping = true
    if not broken then
      break_pool(broken_error(cfg, "the pool's manager failed: " .. tostring(going)))
    end
  end
  -- the end: every worker is told to stop and waited for
  for slot, w in pairs(workers) do
    if not exited[slot] then call_q:put(STOP) end
  end
  for slot, w in pairs(workers) do
    if not exited[slot] then
      w:join()
      exited[slot] = true
    end
  end
end

-- ---- the engine, as the script's state sees it -----------------------------

local Engine = class.class(nil, "Engine")
M.Engine = Engine

local pool_count = 0

-- Engine{kind = "process"|"thread", n=, method=, mode = "pool"|"executor",
-- initializer=, initargs=, max_tasks=, name=}
function Engine:__init(o)
  local mq = o.kind == "process" and require("conc.multiprocessing") or nil
  pool_count = pool_count + 1
  local cfg = {
    kind = o.kind, n = o.n, method = o.method, mode = o.mode,
    initializer = o.initializer, initargs = o.initargs,
    max_tasks = o.max_tasks,
    name = o.name or ((o.kind == "thread" and "ThreadPoolWorker" or
      o.method == "spawn" and "SpawnPoolWorker" or "ForkPoolWorker") ..
      "-" .. pool_count),
    broken = core.Event(),
  }
  if o.kind == "process" then
    cfg.call_q = mq.SimpleQueue()
    cfg.box = mq.SimpleQueue()
    cfg.side = core.SimpleQueue()
    cfg.slots = mq.RawArray("q", o.n)
  else
    cfg.call_q = core.SimpleQueue()
    cfg.box = core.SimpleQueue()
  end
  rawset(self, "_cfg", cfg)
  rawset(self, "_next", 0)
  rawset(self, "_next_tid", 0)
  rawset(self, "_threads", nil)
end

-- The manager thread starts with the first job.
function Engine:_start()
  local cfg = self._cfg
  local manager = threading.Thread{target = M._manager, args = {cfg},
    daemon = true, name = cfg.name .. "-manager"}
  manager:start()
  rawset(self, "_threads", {manager})
end

-- Hands the manager a job: in the box, or beside it with a notice.
function Engine:_post(job)
  local cfg = self._cfg
  if cfg.side then
    cfg.side:put(job)
    cfg.box:put({"job", job.id})
  else
    cfg.box:put({"job", job})
  end
end

function Engine:broken()
  return self._cfg.broken:is_set()
end

-- Sends a job: kind "call" (one row; the future gets its values), "one"
-- (one row; its first value), "list" (rows in chunks; the parts that
-- assemble makes the list of first values of), "chunk" (each row's table.pack(ok, ...)), or a stream (rows in
-- chunks; each chunk's results put on `stream`, then STOP).
-- single: each chunk is {n =, ...} of one-argument calls' arguments.
-- A pool's chunks go to the call queue from here (tasks numbered here);
-- an executor's go with the job, for the manager to feed.
function Engine:job(kind, fn, chunks, stream, single)
  if self._threads == nil then self:_start() end
  local cfg = self._cfg
  local id = self._next + 1
  rawset(self, "_next", id)
  local f = core.Future()
  local job = {id = id, kind = kind, future = f, stream = stream,
    single = single}
  if cfg.mode ~= "pool" then
    job.fn, job.chunks = fn, chunks
    self:_post(job)
    return f
  end
  local first_tid = self._next_tid + 1
  local sizes = {}
  for i, c in ipairs(chunks) do sizes[i] = c.n or #c end
  rawset(self, "_next_tid", self._next_tid + #chunks)
  job.first_tid, job.sizes = first_tid, sizes
  self:_post(job)
  for i, c in ipairs(chunks) do
    local ok, err = pcall(cfg.call_q.put, cfg.call_q,
      {first_tid + i - 1, fn, c, single})
    if not ok then  -- what cannot go to a worker: the job fails with it
      if not pcall(cfg.box.put, cfg.box, {"lost", id, err}) then
        cfg.box:put({"lost", id, errors.tostring(err)})
      end
      break
    end
  end
  return f
end

function Engine:tell(what)
  if self._threads ~= nil then self._cfg.box:put({what}) end
end

-- Waits for the manager to end, after stop or terminate.
function Engine:join(timeout)
  for _, t in ipairs(self._threads or {}) do t:join(timeout) end
end

-- ---- multiprocessing.Pool and ThreadPool -----------------------------------

local AsyncResult = class.class(nil, "AsyncResult")
M.AsyncResult = AsyncResult

-- finish, when given, makes the value of the future's result (a list
-- job's parts: see assemble), once.
function AsyncResult:__init(future, finish)
  rawset(self, "_future", future)
  rawset(self, "_finish", finish)
end

-- get(timeout=nil): the value, or raises the task's error; TimeoutError
-- when not ready in time.
function AsyncResult:get(timeout)
  local f = self._future
  if not f:done() and core.select({f}, timeout) == nil then
    error(errors.TimeoutError(), 2)
  end
  local finish = rawget(self, "_finish")
  if finish == nil then return f:result() end
  if rawget(self, "_value") == nil then rawset(self, "_value", finish(f:result())) end
  return rawget(self, "_value")
end

function AsyncResult:wait(timeout)
  if not self._future:done() then core.select({self._future}, timeout) end
end

function AsyncResult:ready()
  return self._future:done()
end

function AsyncResult:successful()
  if not self._future:done() then
    error(errors.ValueError("AsyncResult object is not ready"), 2)
  end
  return self._future:exception() == nil
end

local Pool = class.class(nil, "Pool")
M.Pool = Pool

local RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

local callable = require("conc.futures")._callable

local function check_callable(f, what, level)
  if not callable(f) then
    error(errors.TypeError(what .. " must be callable, not " .. type(f)), level + 1)
  end
end

-- Pool(processes, initializer, initargs, maxtasksperchild) or
-- Pool{processes=, initializer=, initargs=, maxtasksperchild=, context=}
function Pool:__init(processes, initializer, initargs, maxtasksperchild, context)
  local o = type(processes) == "table" and processes or {processes = processes,
    initializer = initializer, initargs = initargs,
    maxtasksperchild = maxtasksperchild, context = context}
  local kind = rawget(getmetatable(self), "_kind") or "process"
  local n = o.processes
  if n == nil then
    n = core.cpu_count()
  elseif math.type(n) ~= "integer" then
    error(errors.TypeError("processes must be an integer, not " .. type(n)), 3)
  elseif n < 1 then
    error(errors.ValueError("Number of processes must be at least 1"), 3)
  end
  if o.initializer ~= nil then check_callable(o.initializer, "initializer", 3) end
  local mt = o.maxtasksperchild
  if mt ~= nil and (math.type(mt) ~= "integer" or mt < 1) then
    error(errors.ValueError("maxtasksperchild must be a positive int or nil"), 3)
  end
  local method
  if kind == "process" then
    local ctx = o.context
    method = type(ctx) == "string" and ctx or
      (ctx and ctx.get_start_method()) or
      require("conc.multiprocessing").get_start_method()
  end
  rawset(self, "_engine", M.Engine{kind = kind, n = n, method = method,
    mode = "pool", initializer = o.initializer, initargs = o.initargs,
    max_tasks = mt})
  rawset(self, "_state", RUN)
  rawset(self, "_processes", n)
  self._engine:_start()  -- Python's Pool starts its workers at once
end

function Pool:_check_running(level)
  if self._state ~= RUN then
    error(errors.ValueError("Pool not running"), level + 1)
  end
end

local function check_iterable(iterable, level)
  if type(iterable) ~= "table" then
    error(errors.TypeError("iterable must be a sequence (table), not " ..
      type(iterable)), level + 1)
  end
  return iterable
end

-- starmap's rows: each item a table of arguments.
local function star_rows(iterable, level)
  local rows = {}
  for i = 1, #check_iterable(iterable, level + 1) do
    local v = iterable[i]
    if type(v) ~= "table" then
      error(errors.TypeError("starmap: item " .. i .. " is a " .. type(v) ..
        ", not a table of arguments"), level + 1)
    end
    rows[i] = table.pack(table.unpack(v, 1, v.n or #v))
  end
  return rows
end

-- The list in chunks {n =, ...}; Python's default chunksize: about four
-- chunks per worker. bytes: map's chunks of a plain list are {n =, bytes =
-- core.dumps_slice(...)} (16 items or more), which the worker loads: no
-- table of each chunk's items is made here (a map of 100 000 made 1.6 MB
-- of them, for the caller's collector), and the call queue copies bytes.
-- Items that cannot be bytes (conc objects, for a ThreadPool) go in
-- tables.
local function chunks_of(list, chunksize, nworkers, level, bytes)
  local n = #list
  if chunksize == nil then
    local c, extra = n // (nworkers * 4), n % (nworkers * 4)
    chunksize = c + ((extra > 0 or c == 0) and 1 or 0)
  elseif math.type(chunksize) ~= "integer" or chunksize < 1 then
    error(errors.ValueError("Chunksize must be 1+, not " .. tostring(chunksize)), level + 1)
  end
  local chunks = {}
  local plain = getmetatable(list) == nil
  local move = plain and core.rawmove or table.move
  bytes = bytes and plain and chunksize >= 16  -- below, bytes cost more
  for i = 1, n, chunksize do
    local m = math.min(chunksize, n - i + 1)
    local c
    if bytes then
      local ok, s = pcall(core.dumps_slice, list, i, i + m - 1)
      if ok then c = {n = m, bytes = s} else bytes = false end
    end
    if c == nil then
      c = move(list, i, i + m - 1, 1, core.newtable(m, 1))
      c.n = m
    end
    chunks[#chunks + 1] = c
  end
  return chunks
end

-- Python's callbacks run in the pool's result thread: here, in the
-- manager thread, copied there as the Future's callbacks are. total: a
-- list job's length (its result is assembled, see assemble).
local function with_callbacks(future, callback, error_callback, total)
  if callback ~= nil then check_callable(callback, "callback", 3) end
  if error_callback ~= nil then check_callable(error_callback, "error_callback", 3) end
  local finish = total and function(parts) return assemble(parts, total) end
  if callback ~= nil or error_callback ~= nil then
    future:add_done_callback(function(f)
      local err = f:exception()
      if err == nil then
        if callback == nil then return end
        if finish then callback(finish(f:result())) else callback(f:result()) end
      elseif error_callback then
        error_callback(err)
      end
    end)
  end
  return AsyncResult(future, finish)
end

function Pool:apply_async(func, args, kwds, callback, error_callback)
  self:_check_running(2)
  check_callable(func, "func", 2)
  args = args or {}
  if kwds ~= nil then
    args = table.move(args, 1, args.n or #args, 1, {})
    args[#args + 1] = kwds
  end
  local row = table.pack(table.unpack(args, 1, args.n or #args))
  return with_callbacks(self._engine:job("one", func, {{row}}), callback,
    error_callback)
end

function Pool:apply(func, args, kwds)
  return self:apply_async(func, args, kwds):get()
end

function Pool:map_async(func, iterable, chunksize, callback, error_callback)
  self:_check_running(2)
  check_callable(func, "func", 2)
  local chunks = chunks_of(check_iterable(iterable, 2), chunksize,
    self._processes, 2, true)
  return with_callbacks(self._engine:job("list", func, chunks, nil, true),
    callback, error_callback, #iterable)
end

-- map(func, iterable, chunksize) -> a Lua sequence of the results
function Pool:map(func, iterable, chunksize)
  return self:map_async(func, iterable, chunksize):get()
end

function Pool:starmap_async(func, iterable, chunksize, callback, error_callback)
  self:_check_running(2)
  check_callable(func, "func", 2)
  local chunks = chunks_of(star_rows(iterable, 2), chunksize,
    self._processes, 2)
  return with_callbacks(self._engine:job("list", func, chunks), callback,
    error_callback, #iterable)
end

function Pool:starmap(func, iterable, chunksize)
  return self:starmap_async(func, iterable, chunksize):get()
end

-- imap / imap_unordered: generic-for iterators over the results, in
-- input order or as they come; a task's error is raised where its result
-- would be.
local function stream(self, func, iterable, chunksize, ordered)
  self:_check_running(3)
  check_callable(func, "func", 3)
  local chunks = chunks_of(check_iterable(iterable, 3), chunksize or 1,
    self._processes, 3, true)
  local q = core.SimpleQueue()
  self._engine:job("stream", func, chunks, q, true)
  local total = #iterable
  local got, ready, nextpos = 0, {}, 1
  local buffered = {}   -- unordered: results not yet yielded
  local function take()
    local msg = q:get()
    if msg == STOP then return false end
    local first, res = msg[1], msg[2]
    if first == 0 then error(res[1][2], 0) end  -- the pool broke
    res = chunk_of(res)
    if res.single then res = single_rows(res) end
    for i, r in ipairs(res) do
      if ordered then ready[first + i - 1] = r else buffered[#buffered + 1] = r end
    end
    return true
  end
  local function value(r)
    if not r[1] then error(r[2], 0) end
    return r[2]
  end
  return function()
    if got >= total then return nil end
    if ordered then
      while ready[nextpos] == nil do
        if not take() then return nil end
      end
      local r = ready[nextpos]
      ready[nextpos] = nil
      nextpos = nextpos + 1
      got = got + 1
      return value(r)
    end
    while #buffered == 0 do
      if not take() then return nil end
    end
    got = got + 1
    return value(table.remove(buffered, 1))
  end
end

function Pool:imap(func, iterable, chunksize)
  return stream(self, func, iterable, chunksize, true)
end

function Pool:imap_unordered(func, iterable, chunksize)
  return stream(self, func, iterable, chunksize, false)
end

-- close(): no more tasks; the workers end once the queued ones are done.
function Pool:close()
  if self._state == RUN then
    rawset(self, "_state", CLOSE)
    self._engine:tell("stop")
  end
end

-- terminate(): the workers stop now; results still pending fail.
function Pool:terminate()
  if self._state ~= TERMINATE then
    rawset(self, "_state", TERMINATE)
    self._engine:tell("terminate")
  end
end

function Pool:join()
  if self._state == RUN then
    error(errors.ValueError("Pool is still running"), 2)
  end
  self._engine:join()
end

-- `local pool <close> = mp.Pool(4)`: Python's `with Pool(4) as pool:`,
-- which terminates.
function Pool:__close()
  self:terminate()
  self._engine:join()
end

function Pool:__tostring()
  return string.format("<%s state=%s pool_size=%d>",
    getmetatable(self).__name, self._state, self._processes)
end

-- multiprocessing.pool.ThreadPool: the same over threads.
local ThreadPool = Pool:extend("ThreadPool")
ThreadPool._kind = "thread"
M.ThreadPool = ThreadPool

return M
