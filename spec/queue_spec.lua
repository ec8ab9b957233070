-- conc.queue against Python 3.13's documented queue behaviour, and
-- conc.select.
--
-- Translation (DESIGN.md): q.put(x, timeout=1) is q:put(x, true, 1); an
-- exception is caught with pcall and tested with conc.isinstance. Threads
-- report back through a results queue. Every wait is bounded: a blocking get
-- or put in a test carries a generous timeout (WAIT), threads are joined with
-- one, and an Event says when a thread has reached the point a test needs.
-- Where a test wants a thread to be asleep in a call before acting, it may
-- sleep a moment first, but that sleep only makes the sleeping path likelier:
-- the outcome checked does not depend on it.

local conc = require "conc"
local errors = require "conc.errors"
local queue = require "conc.queue"
local threading = require "conc.threading"
local time = require "conc.time"
local support = require "support"

local isinstance = conc.isinstance

local WAIT = 20    -- seconds: the bound on every wait for another thread
-- A blocking call given WAIT as its timeout that returns sooner than this was
-- ended by a wake, not by the timeout. (A timed get that misses its wake
-- still finds the item on its last look, so the time is what tells.)
local WOKEN = WAIT / 2

-- busted runs this file with an _ENV of its own whose metamethods reach all
-- of busted: a function defined here that names a global carries it as its
-- _ENV upvalue, and sent to a thread it would copy busted along. Everything
-- that crosses to a thread is defined below under the real globals.
local G = _G

local W = {}  -- thread bodies

do
  local _ENV = G

  -- Runs f(...) under pcall and puts {ok, result or error text, is ShutDown,
  -- is Empty, is Full, seconds taken} on `results`.
  local function report(results, f, ...)
    local t0 = time.monotonic()
    local ok, r = pcall(f, ...)
    local took = time.monotonic() - t0
    local shut = not ok and conc.isinstance(r, queue.ShutDown)
    local empty = not ok and conc.isinstance(r, queue.Empty)
    local full = not ok and conc.isinstance(r, queue.Full)
    if not ok then r = errors.tostring(r) end
    results:put({ok, r, shut, empty, full, took})
  end

  -- Sets `started`, then does q:get(true, timeout) and reports it.
  function W.getter(q, started, results, timeout)
    started:set()
    report(results, q.get, q, true, timeout)
  end

  -- Sets `started`, then does q:put(item, true, timeout) and reports it.
  function W.putter(q, item, started, results, timeout)
    started:set()
    report(results, q.put, q, item, true, timeout)
  end

  -- The moment a thread gives the main state to reach a wait before it acts
  -- (the outcome does not depend on it, only which path is taken).
  local function settle() time.sleep(0.05) end

  -- Waits for `go`, then puts item on q.
  function W.put_after(go, q, item, timeout)
    if go:wait(timeout) then settle() q:put(item) end
  end

  -- Waits for `go`, then sets ev.
  function W.set_after(go, ev, timeout)
    if go:wait(timeout) then settle() ev:set() end
  end

  -- Waits for `go`, then shuts q down.
  function W.shutdown_after(go, q, timeout)
    if go:wait(timeout) then settle() q:shutdown() end
  end

  -- Sets `started`, joins q, sets `done`.
  function W.joiner(q, started, done)
    started:set()
    q:join()
    done:set()
  end

  -- Gets n items, calling task_done after each; reports their sum.
  function W.worker(q, n, results, timeout)
    report(results, function()
      local sum = 0
      for _ = 1, n do
        sum = sum + q:get(true, timeout)
        q:task_done()
      end
      return sum
    end)
  end

  -- Gets one item off `inbox` and puts it, as it arrived, on `outbox`.
  function W.echo(inbox, outbox, timeout)
    outbox:put(inbox:get(true, timeout))
  end

  -- Puts its queue argument itself on `back`.
  function W.send_self(q, back)
    back:put(q)
  end

  -- Makes a lock (held by nothing else), puts it on q inside a table, ends.
  function W.make_lock(q)
    q:put({lock = threading.Lock(), tag = "from thread"})
  end

  -- Stress: puts first .. last on q.
  function W.produce(q, first, last, timeout)
    for i = first, last do q:put(i, true, timeout) end
  end

  -- Stress: gets until ShutDown, then sends every item it got on results.
  -- An Empty (the timeout) is reported as a failure.
  function W.consume(q, results, timeout)
    local got, n = {}, 0
    while true do
      local ok, v = pcall(q.get, q, true, timeout)
      if not ok then
        if conc.isinstance(v, queue.ShutDown) then break end
        results:put({false, errors.tostring(v)})
        return
      end
      n = n + 1
      got[n] = v
    end
    results:put({true, got})
  end

  -- Puts q.maxsize, as this thread reads it, on `back`.
  function W.send_maxsize(q, back)
    back:put(q.maxsize)
  end

  -- Sets q.maxsize to n here, then sets `done`.
  function W.set_maxsize(q, n, done)
    q.maxsize = n
    done:set()
  end

  -- Stress for select: puts 1 .. n on q, then false as an end mark.
  function W.produce_marked(q, n, timeout)
    for i = 1, n do q:put(i, true, timeout) end
    q:put(false, true, timeout)
  end
end

---------------------------------------------------------------------------
-- Helpers (main state only)
---------------------------------------------------------------------------

-- Starts a thread (daemon: a test that fails must not hang the exit).
local function spawn(target, ...)
  local t = threading.Thread{target = target, args = table.pack(...), daemon = true}
  t:start()
  return t
end

local function joined(t)
  t:join(WAIT)
  assert.is_false(t:is_alive(), "thread still running after " .. WAIT .. " s")
end

local function raises(cls, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected " .. tostring(cls.__qualname) .. ", got no error")
  assert.is_true(isinstance(err, cls),
                 "expected " .. tostring(cls.__qualname) .. ", got " .. errors.tostring(err))
  return err
end

-- A plain Lua error (not a crash, not a conc exception) whose text has `what`.
local function lua_error(what, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  local msg = errors.tostring(err)
  if what then assert.truthy(msg:find(what, 1, true), msg) end
  return msg
end

local function timed(fn, ...)
  local t0 = time.monotonic()
  local r = table.pack(pcall(fn, ...))
  return time.monotonic() - t0, table.unpack(r, 1, r.n)
end

local function drain(q)
  local out = {}
  while not q:empty() do out[#out + 1] = q:get_nowait() end
  return out
end

-- The report a thread put on `results` (see report() above).
local function result(results)
  local r = results:get(true, WAIT)
  return {ok = r[1], value = r[2], shutdown = r[3], empty = r[4], full = r[5],
          took = r[6]}
end

-- That a thread's call (see report()) was ended by a wake.
local function woken(r)
  assert.is_true(r.took < WOKEN, string.format(
    "released after %.1f s: by its timeout, not by a wake", r.took))
end

-- conc.select(objs, WAIT), checked to be ended by a wake.
local function select_woken(objs)
  local t0 = time.monotonic()
  local obj, i = conc.select(objs, WAIT)
  local took = time.monotonic() - t0
  assert.is_true(took < WOKEN, string.format(
    "select returned after %.1f s: by its timeout, not by a wake", took))
  return obj, i
end

-- A moment for a thread that said it is about to block to reach the sleep.
local function settle()
  time.sleep(0.05)
end

---------------------------------------------------------------------------
-- Order
---------------------------------------------------------------------------

describe("conc.queue order", function()
  it("Queue is FIFO", function()
    local q = queue.Queue()
    for i = 1, 40 do q:put(i) end  -- more than the first array, so it grows
    assert.are.same((function() local t = {} for i = 1, 40 do t[i] = i end return t end)(),
                    drain(q))
  end)

  it("Queue stays FIFO when the ring wraps and grows", function()
    local q = queue.Queue()
    local want, n = {}, 0
    for i = 1, 10 do q:put(i) end
    for i = 1, 8 do assert.are.equal(i, q:get()) end  -- head moves on
    for i = 11, 30 do q:put(i) end                    -- wraps, then grows
    for i = 9, 30 do n = n + 1 want[n] = i end
    assert.are.same(want, drain(q))
  end)

  it("LifoQueue is LIFO", function()
    local q = queue.LifoQueue()
    for i = 1, 20 do q:put(i) end
    local got = drain(q)
    for i = 1, 20 do assert.are.equal(21 - i, got[i]) end
    q:put("a") q:put("b") assert.are.equal("b", q:get()) q:put("c")
    assert.are.same({"c", "a"}, drain(q))
  end)

  it("PriorityQueue gives the least number first, ints and floats together", function()
    local q = queue.PriorityQueue()
    for _, v in ipairs{5, 2, 1.5, 9, 1, -3, 2.25, 0.5} do q:put(v) end
    assert.are.same({-3, 0.5, 1, 1.5, 2, 2.25, 5, 9}, drain(q))
    -- exact across int and float beyond 2^53, as Python compares them
    q:put(2 ^ 53)           -- float 9007199254740992.0
    q:put((1 << 53) + 1)    -- int, greater
    q:put((1 << 53) - 1)    -- int, less
    local got = drain(q)
    assert.are.equal((1 << 53) - 1, got[1])
    assert.are.equal("float", math.type(got[2]))
    assert.are.equal((1 << 53) + 1, got[3])
  end)

  it("PriorityQueue orders strings bytewise, a prefix first", function()
    local q = queue.PriorityQueue()
    for _, v in ipairs{"b", "abc", "ab", "", "a\0z", "a", "B"} do q:put(v) end
    assert.are.same({"", "B", "a", "a\0z", "ab", "abc", "b"}, drain(q))
  end)

  it("PriorityQueue orders tables as tuples, element by element", function()
    local q = queue.PriorityQueue()
    q:put({2, "b"}) q:put({1, "z"}) q:put({2, "a"}) q:put({1, "a"})
    q:put({1}) q:put({}) q:put({1, "a", 0}) q:put({0.5, "q"})
    assert.are.same({{}, {0.5, "q"}, {1}, {1, "a"}, {1, "a", 0}, {1, "z"},
                     {2, "a"}, {2, "b"}}, drain(q))
    -- nested tuples, and the payload beyond the deciding element
    q:put({{2, 1}, "x"}) q:put({{1, 9}, "y"}) q:put({{1, 9}, "a", {k = "v"}})
    local got = drain(q)
    assert.are.same({{1, 9}, "a", {k = "v"}}, got[1])
    assert.are.same({{1, 9}, "y"}, got[2])
    assert.are.same({{2, 1}, "x"}, got[3])
  end)

  it("PriorityQueue gives equal items in the order they went in", function()
    -- 1 and 1.0 compare equal but stay apart by math.type
    local q = queue.PriorityQueue()
    local pattern = {}
    for i = 1, 100 do
      local float = i % 3 == 0 or i % 7 == 0
      pattern[i] = float and "float" or "integer"
      q:put(float and 5.0 or 5)
      if i % 10 == 0 then q:put(9) q:put(1) end  -- others around them
    end
    local got = drain(q)
    assert.are.equal(120, #got)
    for i = 1, 10 do assert.are.equal(1, got[i]) end
    for i = 1, 100 do
      assert.are.equal(pattern[i], math.type(got[10 + i]), "tie #" .. i)
    end
    -- ties inside tuples too
    q:put({1, 2.0}) q:put({1, 2}) q:put({1.0, 2})
    got = drain(q)
    assert.are.equal("float", math.type(got[1][2]))
    assert.are.equal("integer", math.type(got[2][1]))
    assert.are.equal("float", math.type(got[3][1]))
  end)

  it("PriorityQueue raises TypeError for items < cannot order, and keeps the queue as it was", function()
    local q = queue.PriorityQueue()
    q:put(1)
    local err = raises(errors.TypeError, q.put, q, "a")
    assert.are.equal("TypeError: '<' not supported between instances of 'string' and 'number'",
                     tostring(err))
    -- unchanged: size, unfinished tasks, contents. (Python's heappush has
    -- already appended the item when the comparison fails, so there the bad
    -- item stays in the queue; conc's documented behaviour is the cleaner one.)
    assert.are.equal(1, q:qsize())
    assert.are.equal(1, q.unfinished_tasks)
    raises(errors.TypeError, q.put, q, {1})
    raises(errors.TypeError, q.put, q, true)
    raises(errors.TypeError, q.put_nowait, q, {k = 1})
    assert.are.equal(1, q:qsize())
    assert.are.equal(1, q:get())
    raises(errors.Empty, q.get_nowait, q)

    q:put({1, "a"})
    err = raises(errors.TypeError, q.put, q, {1, 2})
    assert.are.equal("TypeError: '<' not supported between instances of 'number' and 'string'",
                     tostring(err))
    q:put({1, "b"})
    assert.are.same({{1, "a"}, {1, "b"}}, drain(q))

    q:put(nil)  -- a first item is compared with nothing
    raises(errors.TypeError, q.put, q, nil)
    assert.are.equal(1, q:qsize())
  end)

  it("PriorityQueue with a bound is full like the others", function()
    local q = queue.PriorityQueue(2)
    q:put(3) q:put(1)
    assert.is_true(q:full())
    raises(errors.Full, q.put_nowait, q, 0)
    assert.are.same({1, 3}, drain(q))
  end)
end)

---------------------------------------------------------------------------
-- Size, Full and Empty, timeouts
---------------------------------------------------------------------------

describe("conc.queue bounds and timeouts", function()
  it("qsize, empty, full and maxsize follow the items", function()
    local q = queue.Queue(2)
    assert.are.equal(2, q.maxsize)
    assert.is_true(q:empty())
    assert.is_false(q:full())
    assert.are.equal(0, q:qsize())
    q:put("a")
    assert.is_false(q:empty())
    assert.is_false(q:full())
    q:put_nowait("b")
    assert.is_true(q:full())
    assert.are.equal(2, q:qsize())
    q:get()
    assert.is_false(q:full())
    assert.are.equal(1, q:qsize())
    assert.are.equal(0, queue.Queue().maxsize)
    assert.are.equal(7, queue.LifoQueue(7).maxsize)
    assert.are.equal(7, queue.PriorityQueue(7).maxsize)
  end)

  it("put_nowait and put(x, false) raise Full at once on a full queue", function()
    local q = queue.Queue(1)
    q:put(1)
    raises(queue.Full, q.put_nowait, q, 2)
    local took, ok, err = timed(q.put, q, 2, false, 5)  -- timeout ignored
    assert.is_false(ok)
    assert.is_true(isinstance(err, queue.Full), errors.tostring(err))
    assert.is_true(took < 1, "put(x, false) waited " .. took .. " s")
    assert.are.equal("queue.Full", tostring(err))
    assert.is_true(isinstance(err, errors.Exception))
    assert.are.equal(1, q:qsize())
    assert.are.equal(1, q.unfinished_tasks)
  end)

  it("put(x, true, t) raises Full after about t seconds", function()
    local q = queue.Queue(1)
    q:put(1)
    local took, ok, err = timed(q.put, q, 2, true, 0.05)
    assert.is_false(ok)
    assert.is_true(isinstance(err, queue.Full), errors.tostring(err))
    assert.is_true(took >= 0.045, "gave up after " .. took .. " s")
    assert.is_true(took < WAIT)
    took, ok, err = timed(q.put, q, 2, true, 0)  -- 0: no wait at all
    assert.is_false(ok)
    assert.is_true(isinstance(err, queue.Full))
    assert.are.same({1}, drain(q))
  end)

  it("maxsize 0 or negative is unbounded", function()
    for _, m in ipairs{0, -1, -100} do
      local q = queue.Queue(m)
      for i = 1, 1000 do q:put_nowait(i) end
      assert.is_false(q:full())
      assert.are.equal(1000, q:qsize())
    end
    local q = queue.Queue()
    for i = 1, 100 do q:put(i, true, 0) end
    assert.is_false(q:full())
  end)

  it("keeps maxsize as given, as Python does", function()
    assert.are.equal(-3, queue.Queue(-3).maxsize)
    assert.are.equal(0, queue.Queue().maxsize)
    assert.are.equal(7, queue.LifoQueue(7).maxsize)
    assert.are.equal("integer", math.type(queue.Queue(7.0).maxsize))
  end)

  it("takes a float maxsize, full once qsize() >= maxsize", function()
    local q = queue.Queue(1.5)
    assert.are.equal(1.5, q.maxsize)
    q:put_nowait(1)
    assert.is_false(q:full())
    q:put_nowait(2)
    assert.is_true(q:full())
    raises(queue.Full, q.put_nowait, q, 3)
  end)

  it("get_nowait and get(false) raise Empty on an empty queue", function()
    local q = queue.Queue()
    local err = raises(queue.Empty, q.get_nowait, q)
    assert.are.equal("queue.Empty", tostring(err))
    assert.is_true(isinstance(err, errors.Exception))  -- as in Python
    assert.is_false(isinstance(err, queue.Full))
    local took = timed(function() raises(queue.Empty, q.get, q, false, 5) end)
    assert.is_true(took < 1, "get(false) waited " .. took .. " s")
    raises(queue.Empty, queue.LifoQueue().get_nowait, queue.LifoQueue())
    raises(queue.Empty, queue.PriorityQueue().get_nowait, queue.PriorityQueue())
  end)

  it("get(true, t) raises Empty after about t seconds", function()
    local q = queue.Queue()
    local took, ok, err = timed(q.get, q, true, 0.05)
    assert.is_false(ok)
    assert.is_true(isinstance(err, queue.Empty), errors.tostring(err))
    assert.is_true(took >= 0.045, "gave up after " .. took .. " s")
    assert.is_true(took < WAIT)
    raises(queue.Empty, q.get, q, true, 0)
  end)

  it("a negative timeout raises ValueError where the call could wait", function()
    local q = queue.Queue(1)
    local err = raises(errors.ValueError, q.get, q, true, -1)
    assert.are.equal("ValueError: 'timeout' must be a non-negative number", tostring(err))
    q:put(1)
    raises(errors.ValueError, q.get, q, true, -0.5)   -- even with an item
    assert.are.equal(1, q:qsize())
    q:get()
    raises(errors.ValueError, q.put, q, 1, true, -1)  -- bounded, even with room
    assert.are.equal(0, q:qsize())
    assert.are.equal(1, q.unfinished_tasks)  -- the first put's, no more
    raises(errors.ValueError, queue.SimpleQueue().get, queue.SimpleQueue(), true, -1)
  end)

  it("ignores the timeout where Python does", function()
    -- block false: get(False, -1) is get_nowait
    local q = queue.Queue(1)
    raises(queue.Empty, q.get, q, false, -1)
    q:put("x")
    assert.are.equal("x", q:get(false, -1))
    q:put("y")
    raises(queue.Full, q.put, q, "z", false, -1)
    raises(queue.Empty, queue.Queue().get, queue.Queue(), false, "not a number")
    -- an unbounded queue's put never waits, so never looks at the timeout
    local u = queue.Queue()
    u:put(1, true, -1)
    assert.are.equal(1, u:get())
    local s = queue.SimpleQueue()
    s:put(1, true, -1)
    s:put(2, false, -1)
    assert.are.same({1, 2}, drain(s))
    -- a shut-down queue raises ShutDown before looking at the timeout
    q:shutdown(true)
    raises(queue.ShutDown, q.get, q, true, -1)
    raises(queue.ShutDown, q.put, q, 1, true, -1)
  end)

  it("block nil means true: nil stands for the default", function()
    local q = queue.Queue()
    q:put(1, nil, nil)
    assert.are.equal(1, q:get(nil, 1))
    local took, ok, err = timed(q.get, q, nil, 0.05)
    assert.is_false(ok)
    assert.is_true(isinstance(err, queue.Empty))
    assert.is_true(took >= 0.045)
  end)
end)

---------------------------------------------------------------------------
-- Timeouts: the one reading every blocking call shares
---------------------------------------------------------------------------

-- NaN raises ValueError, a non-number (a numeric string too) TypeError, nil
-- waits for good, a negative one raises ValueError for get and put and means
-- no wait for select, as in Python. Each call runs in a thread on an object
-- in the state where it blocks; a call that waits is freed by the case's
-- unstick(), so an implementation that hangs fails in bounded time.
describe("conc.queue timeouts", function()
  local NAN = 0 / 0

  -- The blocking calls the timeout cases make, each as call(obj, timeout).
  local CALLS = {
    get = function(q, t) return q:get(true, t) end,
    put = function(q, t) return q:put("new", true, t) end,
    select = function(q, t) return select(2, conc.select({q}, t)) end,  -- the index
  }

  local show = support.show
  local function outcome(case, timeout, blocks)
    return support.outcome(case, timeout, blocks, WAIT)
  end

  -- neg: "error" (ValueError) or "nowait" (returns nowait at once); woken:
  -- what the call returns once unstick() let it complete.
  local cases = {
    {name = "Queue:get on an empty Queue", call = CALLS.get, neg = "error", woken = "x",
     make = function()
       local q = queue.Queue()
       return q, function() q:put("x") end
     end},
    {name = "SimpleQueue:get on an empty SimpleQueue", call = CALLS.get, neg = "error",
     woken = "x",
     make = function()
       local q = queue.SimpleQueue()
       return q, function() q:put("x") end
     end},
    {name = "Queue:put on a full Queue(1)", call = CALLS.put, neg = "error", woken = nil,
     make = function()
       local q = queue.Queue(1)
       q:put("old")
       return q, function() assert.are.equal("old", q:get(true, WAIT)) end
     end},
    {name = "conc.select on an empty Queue", call = CALLS.select, neg = "nowait",
     woken = 1, nowait = nil,
     make = function()
       local q = queue.Queue()
       return q, function() q:put("x") end
     end},
  }

  for _, case in ipairs(cases) do
    describe(case.name, function()
      it("raises ValueError for NaN, at once", function()
        local r = outcome(case, NAN, false)
        assert.is_false(r.ok, show(r))
        assert.are.equal("ValueError", r.class, show(r))
        assert.are.equal("Invalid value NaN (not a number)", r.message)
        assert.is_true(r.took < WOKEN, "raised after " .. r.took .. " s")
      end)

      it("raises TypeError for a timeout that is not a number, a numeric string too", function()
        for _, bad in ipairs{"0.1", "1", {}, true} do
          local r = outcome(case, bad, false)
          assert.is_false(r.ok, tostring(bad) .. ": " .. show(r))
          assert.are.equal("TypeError", r.class, show(r))
          assert.matches("^timeout must be a number", r.message)
        end
      end)

      it("waits for good with a nil timeout, until freed", function()
        local r = outcome(case, nil, true)
        assert.is_true(r.ok, show(r))
        assert.are.equal(case.woken, r.value)
      end)

      it("takes a negative timeout as Python does", function()
        for _, neg in ipairs{-1, -0.5, -math.huge} do
          local r = outcome(case, neg, false)
          if case.neg == "error" then
            assert.is_false(r.ok, neg .. ": " .. show(r))
            assert.are.equal("ValueError", r.class, show(r))
            assert.are.equal("'timeout' must be a non-negative number", r.message)
          else
            assert.is_true(r.ok, neg .. ": " .. show(r))
            assert.are.equal(case.nowait, r.value)
          end
          assert.is_true(r.took < WOKEN, "returned after " .. r.took .. " s")
        end
      end)
    end)
  end

  it("a put refused for its timeout stores nothing and counts no task", function()
    local q = queue.Queue(1)
    q:put(1)
    local err = raises(errors.ValueError, q.put, q, 2, true, NAN)
    assert.are.equal("Invalid value NaN (not a number)", err.message)
    raises(errors.TypeError, q.put, q, 2, true, "0.1")
    assert.are.same({1}, drain(q))
    assert.are.equal(1, q.unfinished_tasks)  -- the failed puts added no task
  end)
end)

---------------------------------------------------------------------------
-- Fields backed by the queue's C state
---------------------------------------------------------------------------

describe("conc.queue fields", function()
  it("maxsize writes through: the new bound holds here and in another thread", function()
    local q = queue.Queue(1)
    q.maxsize = 2
    assert.are.equal(2, q.maxsize)
    assert.is_nil(rawget(q, "maxsize"), "maxsize was stored on the proxy")
    local back = queue.Queue()
    local t = spawn(W.send_maxsize, q, back)
    assert.are.equal(2, back:get(true, WAIT))
    joined(t)
    q:put_nowait(1)
    q:put_nowait(2)
    raises(queue.Full, q.put_nowait, q, 3)
    assert.is_true(q:full())
    assert.are.same({1, 2}, drain(q))
  end)

  it("maxsize set in another thread is what main sees and what puts obey", function()
    local q, done = queue.Queue(5), threading.Event()
    local t = spawn(W.set_maxsize, q, 1, done)
    assert.is_true(done:wait(WAIT))
    joined(t)
    assert.are.equal(1, q.maxsize)
    q:put_nowait("a")
    raises(queue.Full, q.put_nowait, q, "b")
  end)

  it("maxsize 0 makes a bounded queue unbounded", function()
    local q = queue.Queue(1)
    q:put(1)
    raises(queue.Full, q.put_nowait, q, 2)
    q.maxsize = 0
    assert.are.equal(0, q.maxsize)
    for i = 2, 100 do q:put_nowait(i) end
    assert.is_false(q:full())
    assert.are.equal(100, q:qsize())
  end)

  it("raising maxsize wakes a put blocked on the full queue", function()
    local q, results, started = queue.Queue(1), queue.Queue(), threading.Event()
    q:put("first")
    local t = spawn(W.putter, q, "second", started, results, WAIT)
    assert.is_true(started:wait(WAIT))
    settle()
    q.maxsize = 2
    local r = result(results)
    woken(r)
    joined(t)
    assert.is_true(r.ok, tostring(r.value))
    assert.are.same({"first", "second"}, drain(q))
  end)

  it("maxsize that is not a number raises TypeError and keeps the bound", function()
    local q = queue.Queue(1)
    for _, bad in ipairs{"3", true, {}} do
      raises(errors.TypeError, function() q.maxsize = bad end)
    end
    assert.are.equal(1, q.maxsize)
    assert.is_nil(rawget(q, "maxsize"))
    q:put_nowait(1)
    raises(queue.Full, q.put_nowait, q, 2)
  end)

  it("unfinished_tasks and is_shutdown are read-only: AttributeError, the C state unchanged", function()
    local q = queue.Queue()
    q:put("a")
    raises(errors.AttributeError, function() q.unfinished_tasks = 5 end)
    raises(errors.AttributeError, function() q.is_shutdown = true end)
    assert.is_nil(rawget(q, "unfinished_tasks"))
    assert.is_nil(rawget(q, "is_shutdown"))
    assert.are.equal(1, q.unfinished_tasks)
    assert.is_false(q.is_shutdown)
    q:get()
    q:task_done()
    assert.are.equal(0, q.unfinished_tasks)
    q:put_nowait("b")  -- not shut down, whatever was assigned
    q:shutdown()
    assert.is_true(q.is_shutdown)
    raises(errors.AttributeError, function() q.is_shutdown = false end)
    assert.is_true(q.is_shutdown)
    raises(queue.ShutDown, q.put_nowait, q, "c")
  end)

  it("a SimpleQueue has no maxsize and the others to set: AttributeError", function()
    local s = queue.SimpleQueue()
    for k, v in pairs{maxsize = 3, unfinished_tasks = 1, is_shutdown = true} do
      raises(errors.AttributeError, function() s[k] = v end)
      assert.is_nil(rawget(s, k))
      assert.is_nil(s[k])
    end
    for i = 1, 10 do s:put_nowait(i) end  -- still unbounded
    assert.are.equal(10, s:qsize())
  end)

  it("other keys are the proxy's own, as before", function()
    local q, s = queue.Queue(), queue.SimpleQueue()
    q.foo = 1
    s.foo = 2
    assert.are.equal(1, q.foo)
    assert.are.equal(2, s.foo)
    assert.are.equal(1, rawget(q, "foo"))
    q.foo = nil
    assert.is_nil(q.foo)
    q:put(1)
    assert.are.equal(1, q:get())
  end)

  it("conc.core.live_objects() counts live queues under conc.Queue", function()
    local core = require "conc.core"
    collectgarbage()
    collectgarbage()
    local before = core.live_objects()["conc.Queue"]
    assert.are.equal("integer", math.type(before),
                     "live_objects() has no conc.Queue entry")
    local q = queue.Queue()
    q:put(1)
    assert.are.equal(before + 1, core.live_objects()["conc.Queue"])
    q = nil
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, core.live_objects()["conc.Queue"])
  end)
end)

---------------------------------------------------------------------------
-- Blocking across threads
---------------------------------------------------------------------------

describe("conc.queue blocking", function()
  it("a blocked get is woken by a put from another thread", function()
    local q, results, started = queue.Queue(), queue.Queue(), threading.Event()
    local t = spawn(W.getter, q, started, results, WAIT)
    assert.is_true(started:wait(WAIT))
    settle()
    q:put({msg = "hello"})
    local r = result(results)
    woken(r)
    joined(t)
    assert.is_true(r.ok, tostring(r.value))
    assert.are.same({msg = "hello"}, r.value)
    assert.is_true(q:empty())
  end)

  it("a blocked put on a full queue is woken by a get", function()
    local q, results, started = queue.Queue(1), queue.Queue(), threading.Event()
    q:put("first")
    local t = spawn(W.putter, q, "second", started, results, WAIT)
    assert.is_true(started:wait(WAIT))
    settle()
    assert.are.equal("first", q:get(true, WAIT))
    local r = result(results)
    woken(r)
    joined(t)
    assert.is_true(r.ok, tostring(r.value))
    assert.are.equal("second", q:get(true, WAIT))
    assert.are.equal(0, q:qsize())
  end)

  it("each put wakes one of several blocked getters, and each item goes once", function()
    local q, results = queue.Queue(), queue.Queue()
    local ts = {}
    for i = 1, 4 do
      local started = threading.Event()
      ts[i] = spawn(W.getter, q, started, results, WAIT)
      assert.is_true(started:wait(WAIT))
    end
    settle()
    for i = 1, 4 do q:put(i) end
    local seen = {}
    for _ = 1, 4 do
      local r = result(results)
      woken(r)
      assert.is_true(r.ok, tostring(r.value))
      assert.is_nil(seen[r.value])
      seen[r.value] = true
    end
    for i = 1, 4 do joined(ts[i]) assert.is_true(seen[i]) end
  end)

  it("a huge timeout waits (it is not taken as already past)", function()
    for _, secs in ipairs{1e300, math.huge, 2 ^ 63} do
      local q, results, started = queue.Queue(1), queue.Queue(), threading.Event()
      local t = spawn(W.getter, q, started, results, secs)
      assert.is_true(started:wait(WAIT))
      settle()
      q:put("got")
      local r = result(results)
      joined(t)
      assert.is_true(r.ok, tostring(r.value) .. " with timeout " .. secs)
      -- and a put on a full queue
      q:put("full")
      started = threading.Event()
      t = spawn(W.putter, q, "in", started, results, secs)
      assert.is_true(started:wait(WAIT))
      settle()
      assert.are.equal("full", q:get(true, WAIT))
      r = result(results)
      joined(t)
      assert.is_true(r.ok, tostring(r.value) .. " with timeout " .. secs)
      assert.are.equal("in", q:get_nowait())
    end
  end)

  it("a timed get in another thread still gives up with Empty", function()
    local q, results, started = queue.Queue(), queue.Queue(), threading.Event()
    local t = spawn(W.getter, q, started, results, 0.05)
    local r = result(results)
    joined(t)
    assert.is_false(r.ok)
    assert.is_true(r.empty, r.value)
    assert.is_true(r.took >= 0.045)
  end)
end)

---------------------------------------------------------------------------
-- task_done and join
---------------------------------------------------------------------------

describe("conc.queue task_done and join", function()
  it("counts unfinished tasks: put adds one, task_done takes one, get none", function()
    local q = queue.Queue()
    assert.are.equal(0, q.unfinished_tasks)
    q:put(1) q:put(2) q:put_nowait(3)
    assert.are.equal(3, q.unfinished_tasks)
    q:get() q:get()
    assert.are.equal(3, q.unfinished_tasks)
    q:task_done()
    assert.are.equal(2, q.unfinished_tasks)
    q:task_done() q:task_done()
    assert.are.equal(0, q.unfinished_tasks)
    q:join()  -- nothing unfinished: returns at once
  end)

  it("task_done called too many times raises ValueError", function()
    local q = queue.Queue()
    local err = raises(errors.ValueError, q.task_done, q)
    assert.are.equal("ValueError: task_done() called too many times", tostring(err))
    q:put(1)
    q:task_done()
    raises(errors.ValueError, q.task_done, q)
    assert.are.equal(0, q.unfinished_tasks)
  end)

  it("join blocks until every item is marked done", function()
    local q, started, done = queue.Queue(), threading.Event(), threading.Event()
    q:put(1) q:put(2)
    local t = spawn(W.joiner, q, started, done)
    assert.is_true(started:wait(WAIT))
    assert.is_false(done:wait(0.1), "join returned with tasks unfinished")
    q:get() q:get()
    q:task_done()
    assert.is_false(done:wait(0.05), "join returned with one task unfinished")
    q:task_done()
    assert.is_true(done:wait(WAIT), "join did not return after the last task_done")
    joined(t)
  end)

  it("join in the main thread returns once a worker thread has done every task", function()
    local q, results = queue.Queue(), queue.Queue()
    for i = 1, 50 do q:put(i) end
    local t = spawn(W.worker, q, 50, results, WAIT)
    -- bounded by the worker: if it fails it reports, and the main state
    -- would then block here only if join were broken
    local r = result(results)
    assert.is_true(r.ok, tostring(r.value))
    q:join()
    joined(t)
    assert.are.equal(50 * 51 // 2, r.value)
    assert.are.equal(0, q.unfinished_tasks)
  end)
end)

---------------------------------------------------------------------------
-- shutdown (Python 3.13)
---------------------------------------------------------------------------

describe("conc.queue shutdown", function()
  it("put raises ShutDown; get gives what is left, then raises ShutDown", function()
    local q = queue.Queue(5)
    q:put(1) q:put(2) q:put(3)
    assert.is_false(q.is_shutdown)
    q:shutdown()
    assert.is_true(q.is_shutdown)
    local err = raises(queue.ShutDown, q.put, q, 4)
    assert.are.equal("queue.ShutDown", tostring(err))
    assert.is_true(isinstance(err, errors.Exception))
    raises(queue.ShutDown, q.put_nowait, q, 4)
    raises(queue.ShutDown, q.put, q, 4, false)
    assert.are.equal(3, q:qsize())
    assert.are.equal(1, q:get())
    assert.are.equal(2, q:get_nowait())
    assert.are.equal(3, q:get(true, WAIT))
    raises(queue.ShutDown, q.get, q)          -- would block for good otherwise
    raises(queue.ShutDown, q.get_nowait, q)   -- ShutDown, not Empty
    raises(queue.ShutDown, q.get, q, false)
    raises(queue.ShutDown, q.get, q, true, 5)
    assert.are.equal(3, q.unfinished_tasks)   -- plain shutdown drops nothing
    q:shutdown()  -- again: no error
    assert.is_true(q.is_shutdown)
  end)

  it("put on a full, shut-down queue raises ShutDown, not Full", function()
    local q = queue.Queue(1)
    q:put(1)
    q:shutdown()
    raises(queue.ShutDown, q.put_nowait, q, 2)
    raises(queue.ShutDown, q.put, q, 2, true, 0.05)
  end)

  it("shutdown(true) drops the items: get raises ShutDown at once", function()
    local q = queue.LifoQueue()
    q:put(1) q:put(2) q:put(3)
    q:get()  -- taken but not done: still unfinished
    q:shutdown(true)
    assert.is_true(q.is_shutdown)
    assert.are.equal(0, q:qsize())
    assert.is_true(q:empty())
    raises(queue.ShutDown, q.get, q)
    raises(queue.ShutDown, q.get_nowait, q)
    -- the dropped ones count as done, as in Python; the taken one does not
    assert.are.equal(1, q.unfinished_tasks)
    q:task_done()
    assert.are.equal(0, q.unfinished_tasks)
  end)

  it("shutdown releases a blocked getter with ShutDown", function()
    local q, results, started = queue.Queue(), queue.Queue(), threading.Event()
    local t = spawn(W.getter, q, started, results, WAIT)
    assert.is_true(started:wait(WAIT))
    settle()
    q:shutdown()
    local r = result(results)
    woken(r)
    joined(t)
    assert.is_false(r.ok)
    assert.is_true(r.shutdown, r.value)
  end)

  it("shutdown releases a blocked putter with ShutDown", function()
    local q, results, started = queue.Queue(1), queue.Queue(), threading.Event()
    q:put("x")
    local t = spawn(W.putter, q, "y", started, results, WAIT)
    assert.is_true(started:wait(WAIT))
    settle()
    q:shutdown()
    local r = result(results)
    woken(r)
    joined(t)
    assert.is_false(r.ok)
    assert.is_true(r.shutdown, r.value)
    assert.are.same({"x"}, drain(q))
  end)

  it("shutdown releases many blocked getters and putters at once", function()
    local getq, putq, results = queue.Queue(), queue.Queue(1), queue.Queue()
    putq:put(0)
    local ts = {}
    for i = 1, 3 do
      local s1, s2 = threading.Event(), threading.Event()
      ts[#ts + 1] = spawn(W.getter, getq, s1, results, WAIT)
      ts[#ts + 1] = spawn(W.putter, putq, i, s2, results, WAIT)
      assert.is_true(s1:wait(WAIT))
      assert.is_true(s2:wait(WAIT))
    end
    settle()
    getq:shutdown()
    putq:shutdown()
    for _ = 1, 6 do
      local r = result(results)
      woken(r)
      assert.is_true(r.shutdown, tostring(r.value))
    end
    for _, t in ipairs(ts) do joined(t) end
  end)

  it("shutdown(true) lets a blocked join return", function()
    local q, started, done = queue.Queue(), threading.Event(), threading.Event()
    for i = 1, 5 do q:put(i) end
    local t = spawn(W.joiner, q, started, done)
    assert.is_true(started:wait(WAIT))
    assert.is_false(done:wait(0.05))
    q:shutdown(true)
    assert.is_true(done:wait(WAIT), "join still blocked after shutdown(true)")
    joined(t)
    assert.are.equal(0, q.unfinished_tasks)
  end)

  it("shutdown() without immediate leaves join waiting", function()
    local q, started, done = queue.Queue(), threading.Event(), threading.Event()
    q:put(1)
    local t = spawn(W.joiner, q, started, done)
    assert.is_true(started:wait(WAIT))
    q:shutdown()
    assert.is_false(done:wait(0.1), "join returned with a task unfinished")
    q:get()
    q:task_done()
    assert.is_true(done:wait(WAIT))
    joined(t)
  end)
end)

---------------------------------------------------------------------------
-- Items cross as copies
---------------------------------------------------------------------------

describe("conc.queue items", function()
  it("are copies taken at put", function()
    local q = queue.Queue()
    local t = {1, {2, {3}}, name = "n", [true] = false, [2.5] = "f"}
    t.self = t  -- a cycle
    q:put(t)
    t[1] = "changed"
    t[2][2][1] = "changed"
    local got = q:get()
    assert.are_not.equal(t, got)
    assert.are.equal(1, got[1])
    assert.are.equal(3, got[2][2][1])
    assert.are.equal("n", got.name)
    assert.are.equal(false, got[true])
    assert.are.equal("f", got[2.5])
    assert.are.equal(got, got.self)
  end)

  it("carry nil, booleans, numbers of both kinds and binary strings", function()
    local q = queue.Queue()
    local vals = {false, true, 0, -7, math.maxinteger, math.mininteger, 1.5,
                  -0.0, math.huge, "", "a\0b\0", string.rep("\0", 100)}
    q:put(nil)
    for _, v in ipairs(vals) do q:put(v) end
    assert.is_nil(q:get())
    for _, v in ipairs(vals) do
      local got = q:get()
      assert.are.equal(v, got)
      assert.are.equal(math.type(v), math.type(got))
    end
    q:put(0 / 0)
    local nan = q:get()
    assert.is_true(nan ~= nan)
  end)

  it("carry a 1 MB string intact", function()
    local q = queue.Queue()
    local parts = {}
    for i = 0, 255 do parts[#parts + 1] = string.char(i) end
    local big = string.rep(table.concat(parts), 4096)  -- 1 MiB, every byte
    assert.are.equal(1 << 20, #big)
    q:put(big)
    q:put({big, big})
    local got = q:get()
    assert.are.equal(#big, #got)
    assert.is_true(got == big)
    local pair = q:get()
    assert.is_true(pair[1] == big and pair[2] == big)
  end)

  it("carry functions with their upvalues", function()
    local q = queue.Queue()
    local k = 10
    q:put(function(x) return x + k end)
    q:put({fn = function(a, b) return a * b end})
    k = 99  -- the copy was taken at put
    assert.are.equal(11, q:get()(1))
    assert.are.equal(6, q:get().fn(2, 3))
  end)

  it("carry conc objects by reference: a Lock arrives as the same lock", function()
    local q = queue.Queue()
    local l = threading.Lock()
    q:put({lock = l, list = {l}})
    local got = q:get()
    assert.is_true(rawequal(l, got.lock))
    assert.is_true(rawequal(l, got.list[1]))
    -- and through another thread and back
    local inbox, outbox = queue.Queue(), queue.Queue()
    inbox:put({lock = l})
    local t = spawn(W.echo, inbox, outbox, WAIT)
    local back = outbox:get(true, WAIT)
    joined(t)
    assert.is_true(rawequal(l, back.lock))
    l:acquire()
    assert.is_true(back.lock:locked())
    l:release()
  end)

  it("keep the conc objects in them alive while queued", function()
    local q = queue.Queue()
    q:put({lock = threading.Lock()})  -- nothing else holds the lock
    collectgarbage("collect") collectgarbage("collect")
    local got = q:get()
    assert.is_true(got.lock:acquire(false))
    assert.is_true(got.lock:locked())
    got.lock:release()
    -- made in a thread that has ended (its state is gone) before the get
    local t = spawn(W.make_lock, q)
    joined(t)
    collectgarbage("collect")
    got = q:get(true, WAIT)
    assert.are.equal("from thread", got.tag)
    assert.is_true(got.lock:acquire(false))
    got.lock:release()
  end)

  it("a queue dropped with items holding objects frees them (checked by the sanitizers)", function()
    do
      local q = queue.Queue()
      q:put({threading.Lock(), string.rep("x", 1000)})
      q:put(threading.Event())
      local p = queue.PriorityQueue()
      p:put({1, threading.Lock()})
      p:put({0, string.rep("y", 100)})
    end
    collectgarbage("collect") collectgarbage("collect")
  end)

  it("refuse what cannot cross, naming `item`, and leave the queue unchanged", function()
    for _, q in ipairs{queue.Queue(), queue.PriorityQueue(), queue.SimpleQueue()} do
      q:put({1})
      local co = coroutine.create(function() end)
      local msg = lua_error("cannot transfer", q.put, q, {1, {co}})
      assert.truthy(msg:find("item", 1, true), msg)
      assert.truthy(msg:find("coroutine", 1, true), msg)
      lua_error("item", q.put_nowait, q, co)
      lua_error("item", q.put, q, io.stdout)  -- foreign userdata
      assert.are.equal(1, q:qsize())
      if q.unfinished_tasks then assert.are.equal(1, q.unfinished_tasks) end
      assert.are.same({1}, q:get())
    end
  end)
end)

---------------------------------------------------------------------------
-- Sharing between threads
---------------------------------------------------------------------------

describe("conc.queue sharing", function()
  it("a queue passed to a thread is the same queue", function()
    local q, back = queue.Queue(), queue.Queue()
    local t = spawn(W.send_self, q, back)
    local got = back:get(true, WAIT)
    joined(t)
    assert.is_true(rawequal(q, got))
    got:put("via the copy")
    assert.are.equal("via the copy", q:get_nowait())
  end)

  it("items put in one thread are got in another, in order", function()
    local q = queue.Queue(3)
    local t = spawn(W.produce, q, 1, 100, WAIT)
    local got = {}
    for i = 1, 100 do got[i] = q:get(true, WAIT) end
    joined(t)
    for i = 1, 100 do assert.are.equal(i, got[i]) end
  end)
end)

---------------------------------------------------------------------------
-- SimpleQueue
---------------------------------------------------------------------------

describe("conc.queue.SimpleQueue", function()
  it("is FIFO with put, get, put_nowait, get_nowait, empty and qsize", function()
    local s = queue.SimpleQueue()
    assert.is_true(s:empty())
    assert.are.equal(0, s:qsize())
    for i = 1, 30 do s:put(i) end
    s:put_nowait("last")
    assert.is_false(s:empty())
    assert.are.equal(31, s:qsize())
    assert.are.equal(1, s:get())
    assert.are.equal(2, s:get_nowait())
    assert.are.equal(3, s:get(true, 1))
    assert.are.equal(4, s:get(false))
    local rest = drain(s)
    assert.are.equal(27, #rest)
    assert.are.equal("last", rest[27])
    raises(queue.Empty, s.get_nowait, s)
    raises(queue.Empty, s.get, s, false)
    local took, ok, err = timed(s.get, s, true, 0.05)
    assert.is_false(ok)
    assert.is_true(isinstance(err, queue.Empty))
    assert.is_true(took >= 0.045)
  end)

  it("lacks task_done, join, shutdown, full and the Queue fields", function()
    local s = queue.SimpleQueue()
    assert.is_nil(s.task_done)
    assert.is_nil(s.join)
    assert.is_nil(s.shutdown)
    assert.is_nil(s.full)
    assert.is_nil(s.maxsize)
    assert.is_nil(s.unfinished_tasks)
    assert.is_nil(s.is_shutdown)
    s:put(1)  -- and puts count no tasks anywhere visible
    assert.are.equal(1, s:get())
  end)

  it("raises AttributeError for Queue methods reached through the metatable", function()
    local s = queue.SimpleQueue()
    s:put(1)  -- a task a Queue's join would wait for
    local methods = getmetatable(s)
    for _, name in ipairs{"task_done", "join", "shutdown", "full"} do
      local err = raises(errors.AttributeError, methods[name], s)
      assert.are.equal("AttributeError: 'SimpleQueue' object has no attribute '"
                       .. name .. "'", tostring(err))
    end
    assert.are.equal(1, s:get())
  end)

  it("is woken by a put from another thread", function()
    local s, results, started = queue.SimpleQueue(), queue.Queue(), threading.Event()
    local t = spawn(W.getter, s, started, results, WAIT)
    assert.is_true(started:wait(WAIT))
    settle()
    s:put("woken")
    local r = result(results)
    woken(r)
    joined(t)
    assert.is_true(r.ok, tostring(r.value))
    assert.are.equal("woken", r.value)
  end)
end)

---------------------------------------------------------------------------
-- Bad arguments
---------------------------------------------------------------------------

describe("conc.queue bad arguments", function()
  it("raise Lua errors and never crash", function()
    local q = queue.Queue()
    lua_error("number expected", queue.Queue, "x")
    lua_error(nil, queue.Queue, {})
    lua_error(nil, queue.LifoQueue, "x")
    lua_error(nil, queue.PriorityQueue, true)
    lua_error("conc.Queue expected", q.get, nil)
    lua_error("conc.Queue expected", q.get, {})
    -- a timeout that is no number: TypeError, as every blocking call's
    raises(errors.TypeError, q.get, q, "a", "b")
    raises(errors.TypeError, q.put, queue.Queue(1), 1, true, "b")
    lua_error("conc.Queue expected", q.put, {}, 1)
    lua_error("conc.Queue expected", q.put)
    lua_error("conc.Queue expected", q.put, threading.Lock(), 1)
    lua_error(nil, q.put, q)  -- no item at all (nil is an item; none is not)
    lua_error("conc.Queue expected", q.qsize, 5)
    lua_error("conc.Queue expected", q.task_done, "q")
    lua_error("conc.Queue expected", q.shutdown, nil)
    lua_error("conc.Queue expected", q.get_nowait, threading.Event())
    assert.are.equal(0, q:qsize())
    assert.is_nil(q.no_such_method)
  end)

  it("a string maxsize such as \"5\" converts as Lua numbers do", function()
    assert.are.equal(5, queue.Queue("5").maxsize)
  end)
end)

---------------------------------------------------------------------------
-- conc.select
---------------------------------------------------------------------------

describe("conc.select", function()
  it("returns a ready queue and its index at once, leaving its item", function()
    local a, b, c = queue.Queue(), queue.Queue(), queue.Queue()
    b:put("x")
    c:put("y")
    local obj, i = conc.select({a, b, c}, 0)
    assert.is_true(rawequal(b, obj))
    assert.are.equal(2, i)
    assert.are.equal(1, b:qsize())  -- select takes nothing
    obj, i = conc.select({a, c})    -- no timeout: ready at once anyway
    assert.is_true(rawequal(c, obj))
    assert.are.equal(2, i)
  end)

  it("returns a set Event", function()
    local q, ev = queue.Queue(), threading.Event()
    ev:set()
    local obj, i = conc.select({q, ev}, 0)
    assert.is_true(rawequal(ev, obj))
    assert.are.equal(2, i)
  end)

  it("returns nil after the timeout when nothing is ready", function()
    local q, ev = queue.Queue(), threading.Event()
    local t0 = time.monotonic()
    local obj, i = conc.select({q, ev}, 0.05)
    local took = time.monotonic() - t0
    assert.is_nil(obj)
    assert.is_nil(i)
    assert.is_true(took >= 0.045, "gave up after " .. took .. " s")
    assert.is_true(took < WAIT)
    assert.is_nil((conc.select({q}, 0)))
    assert.is_nil((conc.select({q}, -1)))
  end)

  it("is woken by a put in another thread", function()
    local a, b, go = queue.Queue(), queue.Queue(), threading.Event()
    local t = spawn(W.put_after, go, b, "late", WAIT)
    go:set()
    local obj, i = select_woken({a, b})
    joined(t)
    assert.is_true(rawequal(b, obj))
    assert.are.equal(2, i)
    assert.are.equal("late", b:get_nowait())
  end)

  it("is woken by an Event set in another thread", function()
    local q, ev, go = queue.Queue(), threading.Event(), threading.Event()
    local t = spawn(W.set_after, go, ev, WAIT)
    go:set()
    local obj, i = select_woken({q, ev})
    joined(t)
    assert.is_true(rawequal(ev, obj))
    assert.are.equal(2, i)
  end)

  it("counts a shut-down queue as ready (its get will not block)", function()
    local a, b = queue.Queue(), queue.Queue()
    b:shutdown()
    local obj, i = conc.select({a, b}, WAIT)
    assert.is_true(rawequal(b, obj))
    assert.are.equal(2, i)
    raises(queue.ShutDown, b.get_nowait, b)
  end)

  it("is woken by a shutdown while waiting", function()
    local q, go = queue.Queue(), threading.Event()
    local t = spawn(W.shutdown_after, go, q, WAIT)
    go:set()
    local obj = select_woken({q})
    joined(t)
    assert.is_true(rawequal(q, obj))
  end)

  it("takes the same object listed twice", function()
    local q, go = queue.Queue(), threading.Event()
    assert.is_nil((conc.select({q, q}, 0.01)))
    local t = spawn(W.put_after, go, q, 1, WAIT)
    go:set()
    local obj, i = select_woken({q, q})
    joined(t)
    assert.is_true(rawequal(q, obj))
    assert.are.equal(1, i)
    -- the links are gone afterwards: a later put and select still work
    q:get()
    q:put(2)
    assert.are.equal(1, select(2, conc.select({q, q}, 0)))
  end)

  it("with a huge timeout still waits for a put", function()
    local q, go = queue.Queue(), threading.Event()
    local t = spawn(W.put_after, go, q, 1, WAIT)
    go:set()
    local obj = conc.select({q}, 1e300)
    joined(t)
    assert.is_true(rawequal(q, obj))
  end)

  it("works on SimpleQueues and on more objects than fit inline", function()
    local objs = {}
    for i = 1, 40 do objs[i] = i % 2 == 0 and queue.SimpleQueue() or threading.Event() end
    objs[37]:set()
    objs[30]:put(1)
    local obj, i = conc.select(objs, 0)
    assert.are.equal(30, i)
    assert.is_true(rawequal(objs[30], obj))
    objs[30]:get()
    obj, i = conc.select(objs, 0)
    assert.are.equal(37, i)
  end)

  it("raises TypeError for what it cannot wait on, ValueError for no objects", function()
    local err = raises(errors.TypeError, conc.select, {queue.Queue(), 5})
    assert.truthy(tostring(err):find("objs[2]", 1, true), tostring(err))
    raises(errors.TypeError, conc.select, {threading.Lock()})
    raises(errors.TypeError, conc.select, {{}})
    raises(errors.ValueError, conc.select, {})
    lua_error(nil, conc.select, nil)
    lua_error("list of objects expected", conc.select, queue.Queue())
    lua_error(nil, conc.select, {queue.Queue()}, "soon")
  end)
end)

---------------------------------------------------------------------------
-- Stress (bounded in time)
---------------------------------------------------------------------------

describe("conc.queue stress", function()
  -- The figures of the issue, in every build: under TSan each spec takes
  -- about 6 s on two cores (1-1.5 s in the plain build), so none is scaled.
  local ITEMS = 200000
  local SELECT_ITEMS = 10000

  it("8 producers and 8 consumers move every item through Queue(100) exactly once", function()
    local q, results = queue.Queue(100), queue.Queue()
    local P, C = 8, 8
    local per = ITEMS // P
    local t0 = time.monotonic()
    local producers, consumers = {}, {}
    for c = 1, C do consumers[c] = spawn(W.consume, q, results, WAIT) end
    for p = 1, P do
      producers[p] = spawn(W.produce, q, (p - 1) * per + 1, p * per, WAIT)
    end
    for p = 1, P do joined(producers[p]) end
    q:shutdown()  -- consumers drain what is left, then meet ShutDown
    local seen, count, counts = {}, 0, {}
    for c = 1, C do
      local r = results:get(true, WAIT)
      assert.is_true(r[1], tostring(r[2]))
      counts[c] = #r[2]
      for _, v in ipairs(r[2]) do
        assert.is_nil(seen[v], "item " .. tostring(v) .. " got twice")
        seen[v] = true
        count = count + 1
      end
    end
    for c = 1, C do joined(consumers[c]) end
    local took = time.monotonic() - t0
    assert.are.equal(per * P, count)
    for v = 1, per * P do
      if not seen[v] then error("item " .. v .. " lost") end
    end
    assert.are.equal(0, q:qsize())
    assert.are.equal(per * P, q.unfinished_tasks)
    print(string.format("\n  [queue stress] %d items, 8x8 threads: %.2f s", per * P, took))
  end)

  it("select over 4 queues fed by 4 threads gets every item exactly once", function()
    local qs, ts = {}, {}
    for i = 1, 4 do
      qs[i] = queue.Queue(i == 1 and 0 or 50)  -- one unbounded, three bounded
      ts[i] = spawn(W.produce_marked, qs[i], SELECT_ITEMS, WAIT)
    end
    local t0 = time.monotonic()
    local live = {qs[1], qs[2], qs[3], qs[4]}
    local which = {1, 2, 3, 4}   -- live[k] is qs[which[k]]
    local next_of = {1, 1, 1, 1} -- the item each queue must give next
    local total = 0
    while #live > 0 do
      local obj, k = conc.select(live, WAIT)
      assert.is_not_nil(obj, "select timed out")
      assert.is_true(rawequal(live[k], obj))
      local idx = which[k]
      local v = obj:get_nowait()  -- ready, and no one else gets from it
      if v == false then
        assert.are.equal(SELECT_ITEMS + 1, next_of[idx])
        table.remove(live, k)
        table.remove(which, k)
      else
        assert.are.equal(next_of[idx], v, "queue " .. idx .. " out of order or duplicated")
        next_of[idx] = v + 1
        total = total + 1
      end
    end
    local took = time.monotonic() - t0
    for i = 1, 4 do joined(ts[i]) assert.is_true(qs[i]:empty()) end
    assert.are.equal(4 * SELECT_ITEMS, total)
    print(string.format("\n  [select stress] %d items over 4 queues: %.2f s", total, took))
  end)
end)
