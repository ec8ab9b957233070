-- conc.asyncio's synchronization primitives and queues (conc.asyncio.locks,
-- conc.asyncio.queues) against Python 3.13's asyncio.Lock, Event,
-- Condition, Semaphore, BoundedSemaphore, Barrier, Queue, PriorityQueue and
-- LifoQueue.
--
-- Each case runs its own loop (asyncio.run). Nothing depends on time: a
-- case lets the other tasks run with sleep(0) (the loop runs ready tasks
-- in the order they became ready), and every wait that could hang is
-- bounded by wait_for(x, WAIT).
--
-- Translation (DESIGN.md): `async with lock:` is
-- `await(lock:acquire()); local _ <close> = lock` or
-- `local _ <close> = await(lock:enter())`.
local asyncio = require "conc.asyncio"
local errors = require "conc.errors"
local support = require "support"

local async, await = asyncio.async, asyncio.await
local isinstance = errors.isinstance
local sleep, wait_for, gather = asyncio.sleep, asyncio.wait_for, asyncio.gather

local WAIT = 5  -- seconds: the bound on every wait that could hang

local function run(fn) return asyncio.run(async(fn)()) end

-- Lets every ready task run a few steps.
local function settle(n)
  for _ = 1, n or 5 do await(sleep(0)) end
end

-- await(aw) under pcall: ok, result or error.
local function try_await(aw) return pcall(await, aw) end

describe("conc.asyncio locks", function()
  describe("Lock", function()
    it("is reachable as asyncio.Lock and names its module", function()
      local locks = require "conc.asyncio.locks"
      assert.equal(locks.Lock, asyncio.Lock)
      assert.equal("conc.asyncio.locks", asyncio.Lock.__module)
      run(function()
        local lock = asyncio.Lock()
        assert.is_false(lock:locked())
        assert.is_true(await(lock:acquire()))
        assert.is_true(lock:locked())
        assert.matches("%[locked%]", tostring(lock))
        lock:release()
        assert.is_false(lock:locked())
      end)
    end)

    it("release of an unlocked lock is a RuntimeError", function()
      run(function()
        local lock = asyncio.Lock()
        local e = support.raises(errors.RuntimeError, lock.release, lock)
        assert.equal("Lock is not acquired.", e.message)
      end)
    end)

    it("excludes: one task at a time inside, waiters served FIFO", function()
      run(function()
        local lock = asyncio.Lock()
        local inside, max_inside, order = 0, 0, {}
        local worker = async(function(i)
          await(lock:acquire())
          local _ <close> = lock
          inside = inside + 1
          if inside > max_inside then max_inside = inside end
          order[#order + 1] = i
          await(sleep(0))
          await(sleep(0))
          inside = inside - 1
        end)
        await(lock:acquire())  -- hold it so every worker queues up
        local tasks = {}
        for i = 1, 5 do tasks[i] = asyncio.create_task(worker(i)) end
        settle()
        assert.same({}, order)
        assert.matches("waiters:5", tostring(lock))
        lock:release()
        await(wait_for(gather(table.unpack(tasks)), WAIT))
        assert.equal(1, max_inside)
        assert.same({1, 2, 3, 4, 5}, order)
        assert.is_false(lock:locked())
      end)
    end)

    it("a cancelled waiting acquire leaves the lock usable", function()
      run(function()
        local lock = asyncio.Lock()
        await(lock:acquire())
        local got = {}
        local waiter = async(function(i)
          await(lock:acquire())
          got[#got + 1] = i
          lock:release()
        end)
        local t1 = asyncio.create_task(waiter(1))
        local t2 = asyncio.create_task(waiter(2))
        settle()
        t1:cancel()
        settle()
        assert.is_true(t1:cancelled())
        lock:release()
        await(wait_for(t2, WAIT))
        assert.same({2}, got)
        assert.is_false(lock:locked())
        -- and usable again
        await(wait_for(lock:acquire(), WAIT))
        lock:release()
      end)
    end)

    it("a waiter cancelled after release woke it passes the lock on", function()
      run(function()
        local lock = asyncio.Lock()
        await(lock:acquire())
        local got = {}
        local waiter = async(function(i)
          await(lock:acquire())
          got[#got + 1] = i
          lock:release()
        end)
        local t1 = asyncio.create_task(waiter(1))
        local t2 = asyncio.create_task(waiter(2))
        settle()
        lock:release()   -- wakes t1 ...
        t1:cancel()      -- ... which is cancelled before it runs
        await(wait_for(t2, WAIT))
        assert.is_true(t1:cancelled())
        assert.same({2}, got)
        assert.is_false(lock:locked())
      end)
    end)

    it("<close> releases on error, and enter() acquires", function()
      run(function()
        local lock = asyncio.Lock()
        local ok, e = pcall(function()
          await(lock:acquire())
          local _ <close> = lock
          error(errors.ValueError("boom"))
        end)
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.ValueError))
        assert.is_false(lock:locked())
        ok, e = pcall(function()
          local l <close> = await(lock:enter())
          assert.equal(lock, l)
          assert.is_true(lock:locked())
          error(errors.ValueError("again"))
        end)
        assert.is_false(ok)
        assert.is_false(lock:locked())
      end)
    end)

    it("binds to one event loop", function()
      local lock = asyncio.Lock()
      run(function()
        await(lock:acquire())
        local t = asyncio.create_task(lock:acquire())
        settle()
        t:cancel()
        settle()
        lock:release()
      end)
      run(function()
        await(lock:acquire())
        support.raises(errors.RuntimeError, await, lock:acquire())
        lock:release()
      end)
    end)
  end)

  describe("Event", function()
    it("wait blocks until set; set wakes every waiter", function()
      run(function()
        local ev = asyncio.Event()
        assert.is_false(ev:is_set())
        local woke = 0
        local waiter = async(function()
          assert.is_true(await(ev:wait()))
          woke = woke + 1
        end)
        local tasks = {}
        for i = 1, 3 do tasks[i] = asyncio.create_task(waiter()) end
        settle()
        assert.equal(0, woke)
        ev:set()
        assert.is_true(ev:is_set())
        await(wait_for(gather(table.unpack(tasks)), WAIT))
        assert.equal(3, woke)
        -- set: wait returns at once; clear: it blocks again
        assert.is_true(await(ev:wait()))
        ev:clear()
        assert.is_false(ev:is_set())
        local t = asyncio.create_task(ev:wait())
        settle()
        assert.is_false(t:done())
        ev:set()
        assert.is_true(await(wait_for(t, WAIT)))
      end)
    end)

    it("a cancelled wait leaves the others waiting", function()
      run(function()
        local ev = asyncio.Event()
        local t1 = asyncio.create_task(ev:wait())
        local t2 = asyncio.create_task(ev:wait())
        settle()
        t1:cancel()
        settle()
        assert.is_true(t1:cancelled())
        assert.is_false(t2:done())
        ev:set()
        assert.is_true(await(wait_for(t2, WAIT)))
      end)
    end)
  end)

  describe("Condition", function()
    it("notify(n) wakes n waiters, in order, each holding the lock", function()
      run(function()
        local cond = asyncio.Condition()
        local woke = {}
        local waiter = async(function(i)
          local _ <close> = await(cond:enter())
          assert.is_true(await(cond:wait()))
          assert.is_true(cond:locked())
          woke[#woke + 1] = i
        end)
        local tasks = {}
        for i = 1, 4 do tasks[i] = asyncio.create_task(waiter(i)) end
        settle()
        assert.is_false(cond:locked())
        do
          local _ <close> = await(cond:enter())
          cond:notify()
        end
        settle()
        assert.same({1}, woke)
        do
          local _ <close> = await(cond:enter())
          cond:notify(2)
        end
        settle()
        assert.same({1, 2, 3}, woke)
        do
          local _ <close> = await(cond:enter())
          cond:notify_all()
        end
        await(wait_for(gather(table.unpack(tasks)), WAIT))
        assert.same({1, 2, 3, 4}, woke)
      end)
    end)

    it("notify_all wakes all; wait and notify need the lock", function()
      run(function()
        local cond = asyncio.Condition(asyncio.Lock())
        support.raises(errors.RuntimeError, await, cond:wait())
        support.raises(errors.RuntimeError, cond.notify, cond)
        support.raises(errors.RuntimeError, cond.notify_all, cond)
        local n = 0
        local waiter = async(function()
          await(cond:acquire())
          local _ <close> = cond
          await(cond:wait())
          n = n + 1
        end)
        local tasks = {}
        for i = 1, 5 do tasks[i] = asyncio.create_task(waiter()) end
        settle()
        await(cond:acquire())
        cond:notify_all()
        cond:release()
        await(wait_for(gather(table.unpack(tasks)), WAIT))
        assert.equal(5, n)
      end)
    end)

    it("wait_for returns once the predicate holds", function()
      run(function()
        local cond = asyncio.Condition()
        local value = 0
        local checks = 0
        local waiter = asyncio.create_task(async(function()
          local _ <close> = await(cond:enter())
          return await(cond:wait_for(function()
            checks = checks + 1
            return value >= 3 and value
          end))
        end)())
        for _ = 1, 3 do
          settle()
          local _ <close> = await(cond:enter())
          value = value + 1
          cond:notify_all()
        end
        assert.equal(3, await(wait_for(waiter, WAIT)))
        assert.equal(4, checks)  -- once at first, once per notify
        assert.is_false(cond:locked())
      end)
    end)

    it("a cancelled wait takes the lock again before raising", function()
      run(function()
        local cond = asyncio.Condition()
        local held
        local t = asyncio.create_task(async(function()
          await(cond:acquire())
          local ok, e = pcall(await, cond:wait())
          held = cond:locked()
          cond:release()
          error(e, 0)
        end)())
        settle()
        await(cond:acquire())  -- so the cancelled wait must queue for it
        t:cancel()
        settle()
        assert.is_false(t:done())
        cond:release()
        local ok, e = try_await(wait_for(t, WAIT))
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.CancelledError))
        assert.is_true(held)
        assert.is_false(cond:locked())
      end)
    end)
  end)

  describe("Semaphore", function()
    it("limits how many run at once", function()
      run(function()
        local sem = asyncio.Semaphore(3)
        local inside, max_inside, done = 0, 0, 0
        local worker = async(function()
          local _ <close> = await(sem:enter())
          inside = inside + 1
          if inside > max_inside then max_inside = inside end
          settle(3)
          inside = inside - 1
          done = done + 1
        end)
        local tasks = {}
        for i = 1, 10 do tasks[i] = asyncio.create_task(worker()) end
        await(wait_for(gather(table.unpack(tasks)), WAIT))
        assert.equal(3, max_inside)
        assert.equal(10, done)
        assert.is_false(sem:locked())
      end)
    end)

    it("is locked at 0, serves waiters FIFO, survives a cancelled waiter", function()
      run(function()
        local sem = asyncio.Semaphore(1)
        support.raises(errors.ValueError, asyncio.Semaphore, -1)
        assert.is_true(await(sem:acquire()))
        assert.is_true(sem:locked())
        local order = {}
        local waiter = async(function(i)
          await(sem:acquire())
          order[#order + 1] = i
        end)
        local t1 = asyncio.create_task(waiter(1))
        local t2 = asyncio.create_task(waiter(2))
        local t3 = asyncio.create_task(waiter(3))
        settle()
        t2:cancel()
        settle()
        sem:release()
        settle()
        assert.same({1}, order)
        sem:release()
        await(wait_for(t3, WAIT))
        assert.same({1, 3}, order)
        assert.is_true(t1:done() and t2:cancelled())
        sem:release()
        assert.is_false(sem:locked())
      end)
    end)

    it("a plain Semaphore may be released above its start value", function()
      run(function()
        local sem = asyncio.Semaphore(1)
        sem:release()
        await(sem:acquire())
        await(sem:acquire())
        assert.is_true(sem:locked())
      end)
    end)

    it("BoundedSemaphore refuses to be released too many times", function()
      run(function()
        local sem = asyncio.BoundedSemaphore(2)
        await(sem:acquire())
        sem:release()
        local e = support.raises(errors.ValueError, sem.release, sem)
        assert.equal("BoundedSemaphore released too many times", e.message)
        assert.is_true(isinstance(sem, asyncio.Semaphore))
      end)
    end)
  end)

  describe("Barrier", function()
    it("lets 3 tasks through together with indices 0, 1, 2", function()
      run(function()
        local barrier = asyncio.Barrier(3)
        assert.equal(3, barrier.parties)
        local after = 0
        local party = async(function()
          local i = await(barrier:wait())
          after = after + 1
          return i
        end)
        local t1 = asyncio.create_task(party())
        local t2 = asyncio.create_task(party())
        settle()
        assert.equal(2, barrier.n_waiting)
        assert.equal(0, after)
        local t3 = asyncio.create_task(party())
        local r = await(wait_for(gather(t1, t2, t3), WAIT))
        table.sort(r)
        assert.same({0, 1, 2}, r)
        assert.equal(3, after)
        assert.equal(0, barrier.n_waiting)
        assert.is_false(barrier.broken)
        -- and again: it refills
        r = await(wait_for(gather(party(), party(), party()), WAIT))
        table.sort(r)
        assert.same({0, 1, 2}, r)
      end)
    end)

    it("abort breaks it for waiting and later tasks", function()
      run(function()
        local barrier = asyncio.Barrier(3)
        local t1 = asyncio.create_task(barrier:wait())
        local t2 = asyncio.create_task(barrier:wait())
        settle()
        await(barrier:abort())
        assert.is_true(barrier.broken)
        for _, t in ipairs({t1, t2}) do
          local ok, e = try_await(wait_for(t, WAIT))
          assert.is_false(ok)
          assert.is_true(isinstance(e, errors.BrokenBarrierError))
        end
        support.raises(errors.BrokenBarrierError, await, barrier:wait())
        assert.equal(asyncio.BrokenBarrierError, errors.BrokenBarrierError)
      end)
    end)

    it("reset breaks the waiting tasks and makes it usable again", function()
      run(function()
        local barrier = asyncio.Barrier(2)
        local t1 = asyncio.create_task(barrier:wait())
        settle()
        assert.equal(1, barrier.n_waiting)
        await(barrier:reset())
        local ok, e = try_await(wait_for(t1, WAIT))
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.BrokenBarrierError))
        assert.is_false(barrier.broken)
        assert.equal(0, barrier.n_waiting)
        local r = await(wait_for(gather(barrier:wait(), barrier:wait()), WAIT))
        table.sort(r)
        assert.same({0, 1}, r)
      end)
    end)

    it("parties must be at least 1", function()
      support.raises(errors.ValueError, asyncio.Barrier, 0)
    end)
  end)
end)

describe("conc.asyncio queues", function()
  it("Queue: producer and consumer, put blocks when full", function()
    run(function()
      local q = asyncio.Queue(2)
      assert.equal(2, q.maxsize)
      assert.is_true(q:empty())
      local produced = 0
      local producer = asyncio.create_task(async(function()
        for i = 1, 10 do
          await(q:put(i))
          produced = i
        end
      end)())
      settle()
      assert.equal(2, produced)  -- the third put waits
      assert.is_true(q:full())
      assert.equal(2, q:qsize())
      local got = {}
      for _ = 1, 10 do got[#got + 1] = await(wait_for(q:get(), WAIT)) end
      await(wait_for(producer, WAIT))
      assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, got)
      assert.is_true(q:empty())
    end)
  end)

  it("get waits for a put; waiting getters are served in order", function()
    run(function()
      local q = asyncio.Queue()
      local got = {}
      local getter = async(function(i)
        local v = await(q:get())
        got[#got + 1] = {i, v}
      end)
      local tasks = {}
      for i = 1, 3 do tasks[i] = asyncio.create_task(getter(i)) end
      settle()
      assert.same({}, got)
      for _, v in ipairs({"a", "b", "c"}) do q:put_nowait(v) end
      await(wait_for(gather(table.unpack(tasks)), WAIT))
      assert.same({{1, "a"}, {2, "b"}, {3, "c"}}, got)
    end)
  end)

  it("a cancelled get loses no item", function()
    run(function()
      local q = asyncio.Queue()
      local t1 = asyncio.create_task(q:get())
      local t2 = asyncio.create_task(q:get())
      settle()
      q:put_nowait("x")  -- wakes t1 ...
      t1:cancel()        -- ... which is cancelled before it takes it
      assert.equal("x", await(wait_for(t2, WAIT)))
      assert.is_true(t1:cancelled())
    end)
  end)

  it("put_nowait raises QueueFull, get_nowait QueueEmpty", function()
    run(function()
      local q = asyncio.Queue(1)
      local e = support.raises(asyncio.QueueEmpty, q.get_nowait, q)
      assert.equal("asyncio.QueueEmpty", tostring(e))
      q:put_nowait(1)
      e = support.raises(asyncio.QueueFull, q.put_nowait, q, 2)
      assert.equal("asyncio.QueueFull", tostring(e))
      assert.equal(1, q:get_nowait())
      -- unbounded
      local u = asyncio.Queue(0)
      for i = 1, 1000 do u:put_nowait(i) end
      assert.is_false(u:full())
      assert.equal(1000, u:qsize())
      for i = 1, 1000 do assert.equal(i, u:get_nowait()) end
      assert.is_true(u:empty())
    end)
  end)

  it("PriorityQueue gives the smallest first, tables as tuples", function()
    run(function()
      local q = asyncio.PriorityQueue()
      for _, v in ipairs({5, 1, 4, 2, 3}) do await(q:put(v)) end
      local got = {}
      for _ = 1, 5 do got[#got + 1] = await(q:get()) end
      assert.same({1, 2, 3, 4, 5}, got)
      local tq = asyncio.PriorityQueue()
      tq:put_nowait({2, "b"})
      tq:put_nowait({1, "z"})
      tq:put_nowait({2, "a"})
      tq:put_nowait({1, "y", 0})
      tq:put_nowait({1, "y"})
      got = {}
      for _ = 1, 5 do got[#got + 1] = tq:get_nowait() end
      assert.same({{1, "y"}, {1, "y", 0}, {1, "z"}, {2, "a"}, {2, "b"}}, got)
      local sq = asyncio.PriorityQueue()
      for _, v in ipairs({"pear", "apple", "fig"}) do sq:put_nowait(v) end
      assert.equal("apple", sq:get_nowait())
      assert.equal("fig", sq:get_nowait())
      assert.equal("pear", sq:get_nowait())
      -- many, in random order
      local rq = asyncio.PriorityQueue()
      local rng = {}
      for i = 1, 200 do rng[i] = (i * 7919) % 211 end
      for i = 1, 200 do rq:put_nowait({rng[i], i}) end
      local prev
      for _ = 1, 200 do
        local v = rq:get_nowait()
        if prev then
          assert.is_true(prev[1] < v[1] or (prev[1] == v[1] and prev[2] < v[2]))
        end
        prev = v
      end
      assert.is_true(rq:empty())
    end)
  end)

  it("LifoQueue gives the last first", function()
    run(function()
      local q = asyncio.LifoQueue(3)
      for i = 1, 3 do await(q:put(i)) end
      assert.is_true(q:full())
      local got = {}
      for _ = 1, 3 do got[#got + 1] = await(q:get()) end
      assert.same({3, 2, 1}, got)
      assert.is_true(isinstance(q, asyncio.Queue))
    end)
  end)

  it("task_done and join", function()
    run(function()
      local q = asyncio.Queue()
      await(wait_for(q:join(), WAIT))  -- nothing unfinished: returns at once
      support.raises(errors.ValueError, q.task_done, q)
      for i = 1, 3 do q:put_nowait(i) end
      local joined = false
      local joiner = asyncio.create_task(async(function()
        await(q:join())
        joined = true
      end)())
      local worker = asyncio.create_task(async(function()
        while true do
          await(q:get())
          await(sleep(0))
          q:task_done()
        end
      end)())
      await(wait_for(joiner, WAIT))
      assert.is_true(joined)
      assert.is_true(q:empty())
      worker:cancel()
      local ok, e = try_await(wait_for(worker, WAIT))
      assert.is_false(ok)
      assert.is_true(isinstance(e, errors.CancelledError))
      local e2 = support.raises(errors.ValueError, q.task_done, q)
      assert.equal("task_done() called too many times", e2.message)
    end)
  end)

  it("shutdown(): put raises, get drains then raises, waiters wake", function()
    run(function()
      local q = asyncio.Queue(1)
      local getq = asyncio.Queue()
      local getter = asyncio.create_task(getq:get())
      q:put_nowait("a")
      local putter = asyncio.create_task(q:put("b"))
      settle()
      assert.is_false(putter:done())
      q:shutdown()
      getq:shutdown()
      -- the blocked putter and getter wake to QueueShutDown
      for _, t in ipairs({putter, getter}) do
        local ok, e = try_await(wait_for(t, WAIT))
        assert.is_false(ok)
        assert.is_true(isinstance(e, asyncio.QueueShutDown))
      end
      support.raises(asyncio.QueueShutDown, q.put_nowait, q, "c")
      support.raises(asyncio.QueueShutDown, await, q:put("c"))
      -- what is in it still comes out
      assert.equal("a", await(q:get()))
      support.raises(asyncio.QueueShutDown, await, q:get())
      support.raises(asyncio.QueueShutDown, q.get_nowait, q)
      q:task_done()
      await(wait_for(q:join(), WAIT))
    end)
  end)

  it("shutdown(true) drains the queue and releases join", function()
    run(function()
      local q = asyncio.Queue()
      for i = 1, 3 do q:put_nowait(i) end
      local joiner = asyncio.create_task(q:join())
      local getq = asyncio.Queue()
      local getter = asyncio.create_task(getq:get())
      settle()
      assert.is_false(joiner:done())
      q:shutdown(true)
      getq:shutdown(true)
      assert.is_true(q:empty())
      await(wait_for(joiner, WAIT))
      support.raises(asyncio.QueueShutDown, await, q:get())
      local ok, e = try_await(wait_for(getter, WAIT))
      assert.is_false(ok)
      assert.is_true(isinstance(e, asyncio.QueueShutDown))
      support.raises(asyncio.QueueShutDown, q.put_nowait, q, 1)
    end)
  end)
end)
