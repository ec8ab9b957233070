-- conc.asyncio: coroutines, tasks, the loop, timeouts, task groups and the
-- bridge to threads. Each case runs its own loop (asyncio.run) and bounds
-- every wait; nothing asserts on time except orderings the loop
-- guarantees (timers due earlier run first).
local asyncio = require "conc.asyncio"
local errors = require "conc.errors"
local threading = require "conc.threading"
local queue = require "conc.queue"
local futures = require "conc.futures"
local core = require "conc.core"
local support = require "support"

local async, await = asyncio.async, asyncio.await
local isinstance = errors.isinstance

local function run(fn) return asyncio.run(async(fn)()) end

describe("conc.asyncio", function()
  describe("coroutines", function()
    it("an async function's call does nothing until awaited", function()
      local ran = false
      local f = async(function(x) ran = true return x * 2 end)
      local c = f(21)
      assert.is_true(asyncio.iscoroutine(c))
      assert.is_false(ran)
      assert.equal(42, run(function() return await(c) end))
      assert.is_true(ran)
    end)

    it("await outside a task is a RuntimeError", function()
      local e = support.raises(errors.RuntimeError, await, asyncio.sleep(0))
      assert.matches("await outside an async function", tostring(e))
    end)

    it("await works at any depth of plain calls inside a task", function()
      local function deep(n)
        if n == 0 then return await(asyncio.sleep(0, "bottom")) end
        return deep(n - 1)
      end
      assert.equal("bottom", run(function() return deep(50) end))
    end)

    it("a coroutine object is awaited once", function()
      run(function()
        local c = async(function() return 1 end)()
        await(c)
        support.raises(errors.RuntimeError, await, c)
      end)
    end)

    it("await of a non-awaitable is a TypeError", function()
      run(function() support.raises(errors.TypeError, await, 42) end)
    end)

    it("asyncio.run inside a running loop raises RuntimeError", function()
      run(function()
        support.raises(errors.RuntimeError, asyncio.run, async(function() end)())
      end)
    end)
  end)

  describe("tasks and sleep", function()
    it("sleep-based tasks finish in the order of their delays", function()
      local order = {}
      run(function()
        local function after(d, name)
          return asyncio.create_task(async(function()
            await(asyncio.sleep(d))
            order[#order + 1] = name
          end)())
        end
        local c, a, b = after(0.03, "c"), after(0.01, "a"), after(0.02, "b")
        await(asyncio.gather(a, b, c))
      end)
      assert.same({"a", "b", "c"}, order)
    end)

    it("sleep(0) lets every other ready task run", function()
      local log = {}
      run(function()
        local w = async(function(n)
          for i = 1, 3 do
            log[#log + 1] = n .. i
            await(asyncio.sleep(0))
          end
        end)
        await(asyncio.gather(w("a"), w("b")))
      end)
      assert.same({"a1", "b1", "a2", "b2", "a3", "b3"}, log)
    end)

    it("a task has a name, a result, callbacks, and is in all_tasks while it runs", function()
      run(function()
        local t = asyncio.create_task(async(function() await(asyncio.sleep(0)) return 7 end)(),
          {name = "seven"})
        assert.equal("seven", t:get_name())
        assert.is_true(asyncio.all_tasks()[t])
        local seen
        t:add_done_callback(function(f) seen = f:result() end)
        assert.equal(7, await(t))
        assert.is_true(t:done())
        assert.equal(7, t:result())
        await(asyncio.sleep(0))
        assert.equal(7, seen)
        assert.is_nil(asyncio.all_tasks()[t])
        assert.is_nil(t:exception())
      end)
    end)

    it("a task's error comes out of await with its value", function()
      run(function()
        local t = asyncio.create_task(async(function() error(errors.ValueError("bad")) end)())
        local ok, e = pcall(await, t)
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.ValueError))
        assert.is_true(isinstance(t:exception(), errors.ValueError))
      end)
    end)

    it("a task returning several values gives them all to await and result()", function()
      run(function()
        local two = async(function() await(asyncio.sleep(0)) return "out", "err" end)
        local t = asyncio.create_task(two())
        local a, b = await(t)
        assert.same({"out", "err"}, {a, b})
        assert.same({"out", "err"}, {t:result()})
        local c, d = await(asyncio.wait_for(two(), 5))
        assert.same({"out", "err"}, {c, d})
      end)
    end)

    it("current_task is the running task", function()
      run(function()
        local me = asyncio.current_task()
        assert.is_not_nil(me)
        local t = asyncio.create_task(async(function() return asyncio.current_task() end)())
        assert.equal(t, await(t))
        assert.not_equal(me, t)
      end)
      assert.is_nil(asyncio.current_task())
    end)
  end)

  describe("cancellation", function()
    it("a task cancelled in sleep sees CancelledError there and closes its <close> variables", function()
      local closed, caught = false, nil
      run(function()
        local started = asyncio.Future()
        local t = asyncio.create_task(async(function()
          local _ <close> = setmetatable({}, {__close = function() closed = true end})
          started:set_result(true)
          local ok, e = pcall(await, asyncio.sleep(10))
          caught = e
          error(e, 0)
        end)())
        await(started)
        assert.is_true(t:cancel("stop"))
        local ok, e = pcall(await, t)
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.CancelledError))
        assert.is_true(t:cancelled())
      end)
      assert.is_true(isinstance(caught, errors.CancelledError))
      assert.equal("stop", caught.message)
      assert.is_true(closed)
    end)

    it("a task cancelled before it starts never runs", function()
      local ran = false
      run(function()
        local t = asyncio.create_task(async(function() ran = true end)())
        t:cancel()
        pcall(await, t)
        assert.is_true(t:cancelled())
      end)
      assert.is_false(ran)
    end)

    it("a task may catch CancelledError and go on", function()
      run(function()
        local t = asyncio.create_task(async(function()
          local ok = pcall(await, asyncio.sleep(10))
          return ok and "slept" or "caught"
        end)())
        await(asyncio.sleep(0))
        t:cancel()
        assert.equal("caught", await(t))
        assert.is_false(t:cancelled())
      end)
    end)

    it("shield keeps the inner work going", function()
      run(function()
        local inner = asyncio.create_task(async(function() await(asyncio.sleep(0.01)) return "inner" end)())
        local outer = asyncio.create_task(async(function() return await(asyncio.shield(inner)) end)())
        await(asyncio.sleep(0))
        outer:cancel()
        pcall(await, outer)
        assert.is_true(outer:cancelled())
        assert.equal("inner", await(inner))
      end)
    end)
  end)

  describe("gather", function()
    it("gives results in argument order", function()
      run(function()
        local f = async(function(d, v) await(asyncio.sleep(d)) return v end)
        assert.same({"a", "b", "c"}, await(asyncio.gather(f(0.02, "a"), f(0, "b"), f(0.01, "c"))))
        assert.same({}, await(asyncio.gather()))
      end)
    end)

    it("raises the first error, or returns errors with return_exceptions", function()
      run(function()
        local ok_ = async(function() return 1 end)
        local bad = async(function() error(errors.ValueError("x")) end)
        local ok, e = pcall(await, asyncio.gather(ok_(), bad()))
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.ValueError))
        local r = await(asyncio.gather(ok_(), bad(), {return_exceptions = true}))
        assert.equal(1, r[1])
        assert.is_true(isinstance(r[2], errors.ValueError))
      end)
    end)

    it("cancelling the gather cancels its children", function()
      run(function()
        local child = asyncio.create_task(async(function() await(asyncio.sleep(10)) end)())
        local g = asyncio.gather(child)
        await(asyncio.sleep(0))
        g:cancel()
        pcall(await, g)
        await(asyncio.sleep(0))
        assert.is_true(child:cancelled())
      end)
    end)
  end)

  describe("timeouts", function()
    it("wait_for raises TimeoutError and cancels the inner work", function()
      run(function()
        local inner_cancelled = false
        local slow = async(function()
          local ok, e = pcall(await, asyncio.sleep(10))
          if not ok then inner_cancelled = isinstance(e, errors.CancelledError) error(e, 0) end
        end)
        local t = asyncio.create_task(slow())
        local ok, e = pcall(await, asyncio.wait_for(t, 0.01))
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.TimeoutError))
        assert.is_true(inner_cancelled)
        assert.is_true(t:cancelled())
        assert.equal(5, await(asyncio.wait_for(asyncio.sleep(0, 5), 1)))
      end)
    end)

    it("timeout() bounds a block, usable as <close>", function()
      run(function()
        local ok, e = pcall(function()
          local _ <close> = asyncio.timeout(0.01)
          await(asyncio.sleep(10))
        end)
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.TimeoutError))
        -- the task is not left cancelled
        assert.equal(0, asyncio.current_task():cancelling())
        -- a block that ends in time raises nothing
        do
          local cm <close> = asyncio.timeout(5)
          await(asyncio.sleep(0))
          assert.is_false(cm:expired())
        end
        local ok2, e2 = pcall(function()
          local _ <close> = asyncio.timeout_at(asyncio.get_running_loop():time() + 0.01)
          await(asyncio.sleep(10))
        end)
        assert.is_false(ok2)
        assert.is_true(isinstance(e2, errors.TimeoutError))
      end)
    end)

    it("wait() returns done and pending sets", function()
      run(function()
        local quick = asyncio.create_task(asyncio.sleep(0, "q"))
        local slow = asyncio.create_task(asyncio.sleep(10))
        local done, pending = await(asyncio.wait({quick, slow}, {return_when = asyncio.FIRST_COMPLETED}))
        assert.is_true(done[quick])
        assert.is_true(pending[slow])
        done, pending = await(asyncio.wait({slow}, {timeout = 0.01}))
        assert.is_nil(next(done))
        assert.is_true(pending[slow])
        slow:cancel()
      end)
    end)

    it("as_completed yields results as they come", function()
      run(function()
        local f = async(function(d, v) await(asyncio.sleep(d)) return v end)
        local got = {}
        for aw in asyncio.as_completed({f(0.03, 3), f(0.01, 1), f(0.02, 2)}) do
          got[#got + 1] = await(aw)
        end
        assert.same({1, 2, 3}, got)
      end)
    end)
  end)

  describe("TaskGroup", function()
    it("awaits its tasks at the end of the block", function()
      run(function()
        local a, b
        do
          local tg <close> = asyncio.TaskGroup()
          a = tg:create_task(asyncio.sleep(0.01, "a"))
          b = tg:create_task(asyncio.sleep(0, "b"))
        end
        assert.equal("a", a:result())
        assert.equal("b", b:result())
      end)
    end)

    it("cancels the siblings when one fails and raises an ExceptionGroup", function()
      run(function()
        local sibling
        local ok, e = pcall(function()
          local tg <close> = asyncio.TaskGroup()
          sibling = tg:create_task(asyncio.sleep(10))
          tg:create_task(async(function() await(asyncio.sleep(0)) error(errors.ValueError("boom")) end)())
          await(asyncio.sleep(10))  -- the body is cancelled too
        end)
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.ExceptionGroup))
        assert.equal(1, #e.exceptions)
        assert.is_true(isinstance(e.exceptions[1], errors.ValueError))
        assert.is_true(sibling:cancelled())
        assert.equal(0, asyncio.current_task():cancelling())
      end)
    end)
  end)

  describe("the loop", function()
    it("get_event_loop and run_until_complete, call_soon, call_later, call_at", function()
      local loop = asyncio.new_event_loop()
      local log = {}
      loop:call_later(0.02, function() log[#log + 1] = "later" end)
      loop:call_at(loop:time() + 0.01, function() log[#log + 1] = "at" end)
      loop:call_soon(function(x) log[#log + 1] = x end, "soon")
      local h = loop:call_later(0.005, function() log[#log + 1] = "cancelled" end)
      h:cancel()
      assert.equal(9, loop:run_until_complete(async(function()
        await(asyncio.sleep(0.03))
        return 9
      end)()))
      assert.same({"soon", "at", "later"}, log)
      assert.is_false(loop:is_running())
      loop:close()
      assert.is_true(loop:is_closed())
      support.raises(errors.RuntimeError, loop.call_soon, loop, print)
    end)

    it("add_reader and add_writer call back when an fd is ready; remove_* stop them", function()
      local a, b = core.fd_pair()
      run(function()
        local loop = asyncio.get_running_loop()
        local got, writable = loop:create_future(), loop:create_future()
        loop:add_reader(a, function(x) if not got:done() then got:set_result(x) end end, "read")
        loop:add_writer(a, function() if not writable:done() then writable:set_result(true) end end)
        assert.is_true(await(asyncio.wait_for(writable, 5)))
        assert.is_true(loop:remove_writer(a))
        core.fd_write(b, "x")
        assert.equal("read", await(asyncio.wait_for(got, 5)))
        assert.equal("x", core.fd_read(a, 10))
        assert.is_true(loop:remove_reader(a))
        assert.is_false(loop:remove_reader(a))
      end)
      core.fd_close(a)
      core.fd_close(b)
    end)

    it("stop ends run_forever", function()
      local loop = asyncio.new_event_loop()
      local n = 0
      local function tick()
        n = n + 1
        if n == 3 then loop:stop() else loop:call_soon(tick) end
      end
      loop:call_soon(tick)
      loop:run_forever()
      assert.equal(3, n)
      loop:close()
    end)

    it("an error in a callback goes to the exception handler, the loop goes on", function()
      local loop = asyncio.new_event_loop()
      local got
      loop:set_exception_handler(function(_, ctx) got = ctx.exception end)
      loop:call_soon(function() error(errors.ValueError("in callback")) end)
      loop:run_until_complete(asyncio.sleep(0.001))
      assert.is_true(isinstance(got, errors.ValueError))
      loop:close()
    end)

    it("every OS thread may run its own loop", function()
      local results = queue.Queue()
      local ts = {}
      for i = 1, 2 do
        ts[i] = threading.Thread{target = function(n)
          local aio = require "conc.asyncio"
          results:put(aio.run(aio.async(function()
            aio.await(aio.sleep(0.01))
            return n * 10
          end)()))
        end, args = {i}}
        ts[i]:start()
      end
      for i = 1, 2 do ts[i]:join(10) end
      local got = {results:get(true, 5), results:get(true, 5)}
      table.sort(got)
      assert.same({10, 20}, got)
    end)
  end)

  describe("threads and the loop", function()
    it("to_thread runs in parallel with the loop", function()
      run(function()
        local started = threading.Event()
        local go = threading.Event()
        local t = asyncio.create_task(asyncio.to_thread(function(s, g)
          s:set()
          assert(g:wait(10), "never released")
          return "from the thread"
        end, started, go))
        -- the loop runs while the thread blocks: wrap() waits for its event
        assert.is_true(await(asyncio.wait_for(asyncio.wrap(started), 10)))
        go:set()
        assert.equal("from the thread", await(asyncio.wait_for(t, 10)))
      end)
    end)

    it("run_in_executor takes an executor, and wrap_future a conc future", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local ex <close> = futures.ThreadPoolExecutor{max_workers = 1}
        assert.equal(6, await(loop:run_in_executor(ex, function(a, b) return a * b end, 2, 3)))
        local cf = ex:submit(function() return "cf" end)
        assert.equal("cf", await(asyncio.wrap_future(cf)))
        local bad = ex:submit(function() error(errors.KeyError("k")) end)
        local ok, e = pcall(await, bad)  -- a conc future is awaitable as it is
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.KeyError))
      end)
    end)

    it("run_coroutine_threadsafe from a conc thread gives a conc future", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local result = queue.Queue()
        local t = threading.Thread{target = function(lp, out)
          local aio = require "conc.asyncio"
          local cf = aio.run_coroutine_threadsafe(aio.async(function(x)
            aio.await(aio.sleep(0))
            return x + 1
          end)(41), lp)
          out:put(cf:result(10))
          lp:call_soon_threadsafe(function() end)
        end, args = {loop, result}}
        t:start()
        assert.equal(42, await(asyncio.wait_for(asyncio.wrap(result), 10)))
        t:join(10)
      end)
    end)

    it("call_soon_threadsafe from a thread runs the callback on the loop", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local box = queue.Queue()
        local t = threading.Thread{target = function(lp, q)
          lp:call_soon_threadsafe(function(qq, v) qq:put(v) end, q, "called")
        end, args = {loop, box}}
        t:start()
        assert.equal("called", await(asyncio.wait_for(asyncio.wrap(box), 10)))
        t:join(10)
      end)
    end)

    it("a task awaits a thread's queue items without blocking the loop", function()
      run(function()
        local q = queue.Queue()
        local go = threading.Event()
        local n = 1000
        -- half the items, then the producer waits for another task of the
        -- loop: the consumer's await must leave the loop free to run it
        local t = threading.Thread{target = function(qq, g, count)
          for i = 1, count // 2 do qq:put(i) end
          assert(g:wait(10), "the loop never ran the other task")
          for i = count // 2 + 1, count do qq:put(i) end
        end, args = {q, go, n}}
        t:start()
        local releaser = asyncio.create_task(async(function()
          await(asyncio.sleep(0))
          go:set()
        end)())
        local sum = 0
        for _ = 1, n do sum = sum + await(asyncio.wait_for(asyncio.wrap(q), 10)) end
        await(releaser)
        t:join(10)
        assert.equal(n * (n + 1) // 2, sum)
      end)
    end)

    it("wrap serves a queue in a new loop after a loop closed with a task waiting on it", function()
      local q = queue.Queue()
      run(function()
        local waiting = asyncio.create_task(async(function() return await(asyncio.wrap(q)) end)())
        await(asyncio.sleep(0))
        assert.is_false(waiting:done())
      end)  -- run() cancels the waiting task and closes the loop
      q:put("second loop")
      assert.equal("second loop", run(function()
        return await(asyncio.wait_for(asyncio.wrap(q), 5))
      end))
    end)

    it("wrap rejects what it cannot await", function()
      run(function() support.raises(errors.TypeError, asyncio.wrap, {}) end)
    end)

    it("the loop's methods refuse another thread, naming the thread-safe one", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local out = queue.Queue()
        local t = threading.Thread{target = function(lp, o)
          local ok, e = pcall(lp.call_soon, lp, print)
          o:put(tostring(e))
        end, args = {loop, out}}
        t:start()
        local msg = await(asyncio.wait_for(asyncio.wrap(out), 10))
        t:join(10)
        assert.matches("another thread", msg)
      end)
    end)
  end)

  -- these start the host through /bin/sh, which inherits LD_PRELOAD: with
  -- the TSan runtime preloaded (stock lua5.4 in a TSan build) the shell
  -- crashes; the host's flavour of this spec runs them
  local NO_SHELL = (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) ~= nil
  local it = NO_SHELL and function(name)
    pending(name .. ": no /bin/sh with the TSan runtime preloaded")
  end or it

  describe("debug mode", function()
    local function run_host(code, env)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(code)
      f:close()
      local host = os.getenv("CONC_HOST")
      local cmd = (env or "") .. " " .. host .. " " .. path .. " 2>&1"
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      os.remove(path)
      return out
    end

    it("reports a task step that blocks the loop, with its name and traceback", function()
      local out = run_host([[
        local asyncio = require "conc.asyncio"
        local time = require "conc.time"
        local function blocker() time.sleep(0.15) end
        asyncio.run(asyncio.async(function()
          local t = asyncio.create_task(asyncio.async(function() blocker() end)(), {name = "sleepy"})
          asyncio.await(t)
        end)(), {debug = true})
      ]])
      assert.matches("Executing <Task .-name='sleepy'.-took 0%.1%d+ seconds", out)
      assert.matches("blocker", out)
    end)

    it("CONC_ASYNCIO_DEBUG=1 reports never-awaited coroutines", function()
      local out = run_host([[
        local asyncio = require "conc.asyncio"
        local f = asyncio.async(function() end, "forgotten")
        asyncio.run(asyncio.async(function()
          f()
          collectgarbage() collectgarbage()
        end)())
      ]], "CONC_ASYNCIO_DEBUG=1")
      assert.matches("coroutine 'forgotten' was never awaited", out)
    end)
  end)
end)
