-- conc.pool's engine through its three faces: multiprocessing.Pool,
-- multiprocessing.pool.ThreadPool and concurrent.futures'
-- ProcessPoolExecutor, against Python's documented behaviour, and the
-- dead-worker rules beyond it (docs/futures.md).
--
-- The workers are started by the pool's manager thread. Under the
-- sanitizers they are spawned, not forked: ThreadSanitizer supports no fork
-- of a threaded process, and gcc 12's ASan runtime deadlocks a child forked
-- while another thread is inside its allocator (see proc_spec.lua). The
-- tasks are functions of spec/fixtures/pool_tasks.lua, which a spawned
-- worker finds by name. Every wait is bounded.

local conc = require "conc"
local errors = require "conc.errors"
local futures = require "conc.futures"
local mp = require "conc.multiprocessing"
local support = require "support"
local tasks = require "fixtures.pool_tasks"

local isinstance = conc.isinstance
local raises = support.raises

local WAIT = 60  -- seconds: the bound on every wait (sanitizer builds are slow)
local SAN = (os.getenv("CONC_SANITIZE") or "") ~= ""
local METHOD = SAN and "spawn" or "fork"
local ctx = mp.get_context(METHOD)

local function new_pool(n, ...)
  return ctx.Pool(n, ...)
end

local function ppe(opts)
  opts = opts or {}
  opts.mp_context = ctx
  return futures.ProcessPoolExecutor(opts)
end

-- The live worker process whose pid is pid (the pool's children are this
-- process's).
local function child(pid)
  for _, p in ipairs(mp.active_children()) do
    if p.pid == pid then return p end
  end
end

describe("multiprocessing.Pool", function()
  it("maps in input order and returns a sequence", function()
    local pool <close> = new_pool(2)
    local xs = {}
    for i = 1, 50 do xs[i] = i end
    local r = pool:map(tasks.square, xs)
    assert.are.equal(50, #r)
    for i = 1, 50 do assert.are.equal(i * i, r[i]) end
    -- chunks of 16 items or more go as bytes, both ways
    assert.are.same(r, pool:map(tasks.square, xs, 20))
    local k = 0
    for v in pool:imap(tasks.square, xs, 20) do
      k = k + 1
      assert.are.equal(k * k, v)
    end
    assert.are.equal(50, k)
    -- a chunk with nil results keeps them in their places
    local evens = pool:map(tasks.even_or_nil, xs, 20)
    for i = 1, 50 do assert.are.equal(i % 2 == 0 and i or nil, evens[i]) end
    -- a list with metamethods is read through them
    local proxy = setmetatable({}, {__index = function(_, i) return xs[i] end,
      __len = function() return #xs end})
    assert.are.same(r, pool:map(tasks.square, proxy, 20))
    assert.are.same({1, 4, 9}, pool:map(tasks.square, {1, 2, 3}, 1))
    assert.are.same({}, pool:map(tasks.square, {}))
  end)

  it("applies, starmaps and runs async calls with callbacks", function()
    local pool <close> = new_pool(2)
    assert.are.equal(7, pool:apply(tasks.add, {3, 4}))
    assert.are.same({3, 7}, pool:starmap(tasks.add, {{1, 2}, {3, 4}}))
    local got = mp.Queue()
    local r = pool:apply_async(tasks.add, {1, 1}, nil, tasks.putter(got))
    assert.are.equal(2, r:get(WAIT))
    assert.are.equal(2, got:get(true, WAIT))
    assert.is_true(r:ready())
    assert.is_true(r:successful())
    local m = pool:map_async(tasks.square, {2, 3}, nil, tasks.putter(got))
    m:wait(WAIT)
    assert.are.same({4, 9}, m:get(WAIT))
    assert.are.same({4, 9}, got:get(true, WAIT))
    local s = pool:starmap_async(tasks.add, {{5, 5}})
    assert.are.same({10}, s:get(WAIT))
  end)

  it("raises a task's error from get, and calls error_callback", function()
    local pool <close> = new_pool(2)
    local got = mp.Queue()
    local r = pool:apply_async(tasks.fail, {"boom"}, nil, nil,
      tasks.message_putter(got))
    local e = raises(errors.ValueError, r.get, r, WAIT)
    assert.are.equal("boom", e.message)
    assert.are.equal(42, e.code)  -- a table error keeps its fields
    assert.is_false(r:successful())
    assert.are.equal("boom", got:get(true, WAIT))
  end)

  it("map reports the first failing item's error", function()
    local pool <close> = new_pool(2)
    local ok, err = pcall(pool.starmap, pool, tasks.fail_if, {{1, 2}, {2, 2}, {3, 2}})
    assert.is_false(ok)
    assert.is_true(isinstance(err, errors.ValueError))
    assert.are.equal("bad 2", err.message)
  end)

  it("imap keeps input order, imap_unordered gives every result once", function()
    local pool <close> = new_pool(2)
    local xs = {}
    for i = 1, 20 do xs[i] = i end
    local got = {}
    for v in pool:imap(tasks.square, xs, 3) do got[#got + 1] = v end
    assert.are.equal(20, #got)
    for i = 1, 20 do assert.are.equal(i * i, got[i]) end
    local seen, n = {}, 0
    for v in pool:imap_unordered(tasks.square, xs) do
      assert.is_nil(seen[v])
      seen[v] = true
      n = n + 1
    end
    assert.are.equal(20, n)
    for i = 1, 20 do assert.is_true(seen[i * i]) end
  end)

  it("imap raises a task's error where its result would be", function()
    local pool <close> = new_pool(2)
    local it = pool:imap(tasks.fail_on_2, {1, 2, 3}, 1)
    assert.are.equal(1, it())
    local ok, err = pcall(it)
    assert.is_false(ok)
    assert.are.equal("bad 2", err.message)
  end)

  it("AsyncResult.get times out on a task still running", function()
    local ev = mp.Event()
    local pool <close> = new_pool(1, tasks.setup, {mp.Event(), ev})
    local r = pool:apply_async(tasks.wait_then, {"late"})
    raises(errors.TimeoutError, r.get, r, 0.05)
    assert.is_false(r:ready())
    raises(errors.ValueError, r.successful, r)
    ev:set()
    assert.are.equal("late", r:get(WAIT))
  end)

  it("runs the initializer once in each worker", function()
    local counter = mp.Value("i", 0)
    local pool <close> = new_pool(3, tasks.init, {counter, "tagged"})
    assert.are.same({"tagged", "tagged"}, pool:map(tasks.tag, {1, 2}))
    pool:close()
    pool:join()
    assert.are.equal(3, counter.value)
  end)

  it("replaces a worker after maxtasksperchild tasks", function()
    local pool <close> = new_pool(1, nil, nil, 2)
    local pids = {}
    for _ = 1, 6 do pids[pool:apply(tasks.pid)] = true end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.are.equal(3, n)
  end)

  it("a worker killed in a task fails that task only, and is replaced", function()
    local started, release = mp.Event(), mp.Event()
    local pid = mp.RawValue("q", 0)
    local pool <close> = new_pool(2, tasks.setup, {started, release, pid})
    local held = pool:apply_async(tasks.hold)
    assert.is_true(started:wait(WAIT))
    local others = {}
    for i = 1, 8 do others[i] = pool:apply_async(tasks.square, {i}) end
    local victim = assert(child(pid.value), "the worker is a child of this process")
    victim:kill()
    local e = raises(errors.ProcessError, held.get, held, WAIT)
    assert.truthy(e.message:find("died with exit code %-9"))
    for i = 1, 8 do assert.are.equal(i * i, others[i]:get(WAIT)) end
    -- the replacement works
    assert.are.same({1, 4}, pool:map(tasks.square, {1, 2}))
    release:set()
  end)

  it("a task calling os.exit fails with a clear error; the pool goes on", function()
    local pool <close> = new_pool(2)
    local r = pool:apply_async(tasks.exit_now, {3})
    local e = raises(errors.ProcessError, r.get, r, WAIT)
    assert.truthy(e.message:find("exit code 3", 1, true))
    assert.are.same({9, 16}, pool:map(tasks.square, {3, 4}))
  end)

  it("its workers end when their parent is killed (no orphans)", function()
    local time = require "conc.time"
    local pids, ready = mp.Array("q", 2), mp.Event()
    local parent = ctx.Process{target = tasks.pool_parent,
      args = {pids, ready, METHOD}}
    parent:start()
    local ok, err = pcall(function()
      assert.is_true(ready:wait(WAIT))
      assert.is_true(pids[1] > 0 and pids[2] > 0)
    end)
    parent:kill()
    parent:join(WAIT)
    assert(ok, err)
    -- dead, or a zombie that nobody reaps in this container
    local function running(pid)
      local f = io.open("/proc/" .. pid .. "/stat")
      if not f then return false end
      local stat = f:read("a")
      f:close()
      return stat:match("^%d+ %(.-%) ([A-Z])") ~= "Z"
    end
    local deadline = time.monotonic() + WAIT
    while (running(pids[1]) or running(pids[2])) and time.monotonic() < deadline do
      time.sleep(0.01)
    end
    assert.is_false(running(pids[1]))
    assert.is_false(running(pids[2]))
  end)

  it("close refuses new work; join waits; terminate fails what waits", function()
    local pool = new_pool(1)
    assert.are.equal(4, pool:apply(tasks.square, {2}))
    raises(errors.ValueError, pool.join, pool)  -- still running
    pool:close()
    raises(errors.ValueError, pool.apply, pool, tasks.square, {1})
    pool:join()
    local ev = mp.Event()
    local p2 = new_pool(1, tasks.setup, {mp.Event(), ev})
    local r = p2:apply_async(tasks.wait_then, {1})
    p2:terminate()
    p2:join()
    raises(errors.RuntimeError, r.get, r, WAIT)
    ev:set()
  end)

  it("checks its arguments", function()
    raises(errors.ValueError, ctx.Pool, 0)
    raises(errors.TypeError, ctx.Pool, "2")
    raises(errors.ValueError, ctx.Pool, 1, nil, nil, 0)
    raises(errors.TypeError, ctx.Pool, 1, 5)
    local pool <close> = new_pool(1)
    raises(errors.TypeError, pool.map, pool, 5, {1})
    raises(errors.TypeError, pool.map, pool, tasks.square, 5)
    raises(errors.ValueError, pool.map, pool, tasks.square, {1}, 0)
    raises(errors.TypeError, pool.starmap, pool, tasks.add, {1})
    -- a result that cannot come back is that task's error
    local ok, err = pcall(pool.apply, pool, tasks.coroutine, {})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("coroutine", 1, true))
    ok, err = pcall(pool.map, pool, tasks.coroutine, {1, 2})  -- map's too
    assert.is_false(ok)
    assert.truthy(tostring(err):find("coroutine", 1, true))
    local items = {}
    for i = 1, 20 do items[i] = i end
    items[7] = coroutine.create(print)  -- an item that cannot go
    ok, err = pcall(pool.map, pool, tasks.square, items, 20)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("coroutine", 1, true))
    assert.are.equal(4, pool:apply(tasks.square, {2}))  -- still usable
  end)

  it("the Options form and tostring", function()
    local pool <close> = mp.get_context(METHOD).Pool{processes = 2}
    assert.truthy(tostring(pool):find("state=RUN pool_size=2", 1, true))
    assert.are.same({4}, pool:map(tasks.square, {2}))
    assert.truthy(pool:apply(tasks.name):find("PoolWorker", 1, true))
  end)
end)

describe("the pools' manager", function()
  it("breaks the pool with its error when it fails, instead of hanging", function()
    local started, release = mp.Event(), mp.Event()
    local pool <close> = mp.pool.ThreadPool(1, tasks.setup, {started, release})
    local r = pool:apply_async(tasks.hold)
    assert.is_true(started:wait(WAIT))
    -- a message no worker sends: handling it fails in the manager
    pool._engine._cfg.box:put({"exit", "no such slot"})
    local e = raises(errors.RuntimeError, r.get, r, WAIT)
    assert.truthy(tostring(e):find("the pool's manager failed", 1, true))
    release:set()
  end)
end)

describe("multiprocessing.pool.ThreadPool", function()
  it("has Pool's API over threads", function()
    local pool <close> = mp.pool.ThreadPool(3)
    assert.are.same({1, 4, 9}, pool:map(tasks.square, {1, 2, 3}))
    assert.are.equal(5, pool:apply(tasks.add, {2, 3}))
    local seen = 0
    for v in pool:imap_unordered(tasks.square, {1, 2, 3, 4}) do seen = seen + v end
    assert.are.equal(30, seen)
    local r = pool:apply_async(tasks.fail, {"t"})
    assert.are.equal("t", raises(errors.ValueError, r.get, r, WAIT).message)
    -- workers are threads of this process: they share its pid
    assert.are.equal(mp.current_process().pid, pool:apply(tasks.pid))
    -- a result that cannot be dumped to bytes (a conc object) comes back
    local evs = pool:map(tasks.event, {1, 2})
    assert.are.equal(2, #evs)
    evs[2]:set()
    assert.is_true(evs[2]:is_set())
    assert.is_false(evs[1]:is_set())
  end)
end)

describe("futures.ProcessPoolExecutor", function()
  it("submits, maps (also in chunks) and gives several values back", function()
    local ex <close> = ppe{max_workers = 2}
    local a, b = ex:submit(tasks.pair, 3, 4):result(WAIT)
    assert.are.equal(7, a)
    assert.are.equal(12, b)
    assert.are.same({1, 4, 9, 16}, conc.list(ex:map(tasks.square, {1, 2, 3, 4})))
    local xs = {}
    for i = 1, 25 do xs[i] = i end
    local got = conc.list(ex:map(tasks.square, xs, {chunksize = 4}))
    assert.are.equal(25, #got)
    for i = 1, 25 do assert.are.equal(i * i, got[i]) end
    assert.are.same({3, 5}, conc.list(ex:map(tasks.add, {1, 2}, {2, 3})))
  end)

  it("raises a task's error with its fields and a remote traceback", function()
    local ex <close> = ppe{max_workers = 1}
    local f = ex:submit(tasks.fail, "remote")
    local e = raises(errors.ValueError, f.result, f, WAIT)
    assert.are.equal(42, e.code)
    assert.truthy(tostring(e.traceback):find("pool_tasks", 1, true))
    assert.are.equal("remote", f:exception(WAIT).message)
    local it = ex:map(tasks.fail_if, {1, 2, 3}, {2, 2, 2}, {chunksize = 2})
    assert.are.equal(1, it())
    local ok, err = pcall(it)
    assert.is_false(ok)
    assert.are.equal("bad 2", err.message)
  end)

  it("runs every task that waited for a busy worker", function()
    local started, release = mp.Event(), mp.Event()
    local ex <close> = ppe{max_workers = 1, initializer = tasks.setup,
      initargs = {started, release}}
    local running = ex:submit(tasks.hold)
    assert.is_true(started:wait(WAIT))
    -- one goes to the call queue, two wait in the manager's list; when the
    -- first of those went, the last was lost (# of the list, its front
    -- taken, said 0)
    local fs = {}
    for i = 1, 3 do fs[i] = ex:submit(tasks.square, i) end
    release:set()
    assert.are.equal("released", running:result(WAIT))
    for i = 1, 3 do assert.are.equal(i * i, fs[i]:result(WAIT)) end
    -- and in many orders of arrivals and results
    for n = 1, 12 do
      local more = {}
      for i = 1, n do more[i] = ex:submit(tasks.square, i) end
      if n % 2 == 0 then more[0] = ex:submit(tasks.square, 0) end
      for i = 1, n do assert.are.equal(i * i, more[i]:result(WAIT)) end
    end
  end)

  it("cancels what waits, not what runs", function()
    local started, release = mp.Event(), mp.Event()
    local ex <close> = ppe{max_workers = 1, initializer = tasks.setup,
      initargs = {started, release}}
    local running = ex:submit(tasks.hold)
    assert.is_true(started:wait(WAIT))
    -- the call queue holds at most one task per worker ahead: the rest wait
    local queued = {}
    for i = 1, 5 do queued[i] = ex:submit(tasks.square, i) end
    assert.is_false(running:cancel())
    raises(errors.TimeoutError, running.result, running, 0.05)
    raises(errors.TimeoutError, running.exception, running, 0.05)
    assert.is_true(running:running())
    assert.is_true(queued[5]:cancel())
    assert.is_true(queued[5]:cancelled())
    release:set()
    assert.are.equal("released", running:result(WAIT))
    for i = 1, 4 do
      local ok, v = pcall(queued[i].result, queued[i], WAIT)
      assert.is_true(not ok and isinstance(v, errors.CancelledError) or v == i * i)
    end
    raises(errors.CancelledError, queued[5].result, queued[5], WAIT)
  end)

  it("shutdown(true, {cancel_futures = true}) cancels queued work", function()
    local started, release = mp.Event(), mp.Event()
    local ex = ppe{max_workers = 1, initializer = tasks.setup,
      initargs = {started, release}}
    local running = ex:submit(tasks.hold)
    assert.is_true(started:wait(WAIT))
    local queued = {}
    for i = 1, 6 do queued[i] = ex:submit(tasks.square, i) end
    -- cancelled while the worker still holds: released first, the worker
    -- could take the queued calls before the cancel reaches the manager
    ex:shutdown(false, {cancel_futures = true})
    release:set()
    ex:shutdown(true)
    assert.are.equal("released", running:result(0))
    local cancelled = 0
    for i = 1, 6 do
      assert.is_true(queued[i]:done())
      if queued[i]:cancelled() then cancelled = cancelled + 1 end
    end
    assert.is_true(cancelled >= 4)  -- all but what was on the call queue
    raises(errors.RuntimeError, ex.submit, ex, tasks.square, 1)
  end)

  it("a worker that dies breaks the pool: BrokenProcessPool, no hang", function()
    local ev = mp.Event()
    local ex <close> = ppe{max_workers = 2, initializer = tasks.setup,
      initargs = {mp.Event(), ev}}
    local fs = {ex:submit(tasks.exit_now, 5)}
    for i = 2, 5 do fs[i] = ex:submit(tasks.wait_then, i) end
    for i = 1, 5 do
      local ok, err = pcall(fs[i].result, fs[i], WAIT)
      assert.is_false(ok)
      assert.is_true(isinstance(err, errors.BrokenProcessPool))
    end
    raises(errors.BrokenProcessPool, ex.submit, ex, tasks.square, 1)
    ev:set()
  end)

  it("a worker killed by SIGKILL breaks the pool too", function()
    local started, release = mp.Event(), mp.Event()
    local pid = mp.RawValue("q", 0)
    local ex <close> = ppe{max_workers = 1, initializer = tasks.setup,
      initargs = {started, release, pid}}
    local f = ex:submit(tasks.hold)
    assert.is_true(started:wait(WAIT))
    assert(child(pid.value)):kill()
    raises(errors.BrokenProcessPool, f.result, f, WAIT)
    release:set()
  end)

  it("runs the initializer once per worker; a failing one breaks the pool", function()
    local counter = mp.Value("i", 0)
    do
      local ex <close> = ppe{max_workers = 2, initializer = tasks.init,
        initargs = {counter, "x"}}
      assert.are.equal("x", ex:submit(tasks.tag):result(WAIT))
    end
    assert.are.equal(2, counter.value)
    local ex <close> = ppe{max_workers = 1, initializer = tasks.bad_init}
    local f = ex:submit(tasks.square, 2)
    raises(errors.BrokenProcessPool, f.result, f, WAIT)
  end)

  it("max_tasks_per_child replaces workers", function()
    local ex <close> = ppe{max_workers = 1, max_tasks_per_child = 2}
    local pids, n = {}, 0
    for _ = 1, 6 do
      local pid = ex:submit(tasks.pid):result(WAIT)
      if not pids[pid] then n = n + 1 end
      pids[pid] = true
    end
    assert.are.equal(3, n)
  end)

  it("refuses bad input and stays usable", function()
    raises(errors.ValueError, futures.ProcessPoolExecutor, {max_workers = 0})
    raises(errors.TypeError, futures.ProcessPoolExecutor, {max_workers = 1.5})
    raises(errors.ValueError, futures.ProcessPoolExecutor, {max_tasks_per_child = 0})
    raises(errors.TypeError, futures.ProcessPoolExecutor, {initializer = 5})
    local ex <close> = ppe{max_workers = 1}
    raises(errors.TypeError, ex.submit, ex, 5)
    -- a conc object cannot go to a worker process in a task's arguments
    -- (Python's RuntimeError for a Lock too): that future's error, the
    -- executor usable after
    local f = ex:submit(tasks.square, require("conc.threading").Lock())
    assert.is_false((pcall(f.result, f, WAIT)))
    assert.are.equal(9, ex:submit(tasks.square, 3):result(WAIT))
  end)
end)
