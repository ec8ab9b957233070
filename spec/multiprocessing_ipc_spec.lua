-- conc.multiprocessing's inter-process objects against Python's documented
-- behaviour: Queue, JoinableQueue, SimpleQueue, Pipe and Connection, and
-- the shared Event, Semaphore, BoundedSemaphore, Condition, Barrier, Lock
-- and RLock, used across forked children (fork start method: every object
-- is made before the child that uses it starts).
--
-- Children report through the objects under test or through a second
-- queue, and through their exit code (0: the target returned; 1: it
-- raised, e.g. a failed assert(), with the traceback on stderr). Every
-- wait is bounded; where one process must wait for another it waits on an
-- event, a semaphore, a queue or a join, never on a sleep. A child still
-- running when a case ends is killed (after_each).

local conc = require "conc"
local mp = require "conc.multiprocessing"
local errors = require "conc.errors"
local threading = require "conc.threading"

local isinstance = conc.isinstance

local WAIT = 30  -- seconds: the bound on every wait (sanitizer builds are slow)

-- busted runs this file with an _ENV of its own, whose metamethods reach all
-- of busted (see transfer_spec.lua): a function that crosses a queue and
-- reads globals is made under the real ones, `local _ENV = G`.
local G = _G

local support = require "support"
-- Cases that fork: pending under ThreadSanitizer (support.forks says why).
local forks = support.forks(it, function(why) pending(why) end)

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- Calls fn(...), which must raise an instance of cls; returns the error.
local raises = support.raises

-- The processes a case starts: any still running when it ends is killed
-- (after_each).
local kids = support.children(WAIT)
local start, spawn, finish, in_child =
  kids.start, kids.spawn, kids.finish, kids.in_child

-- A child that never ends by itself (it is killed).
local function sleeper()
  require("conc.time").sleep(WAIT)
end

-- The class name of an error, for a child's report.
local function class_of(e)
  for _, c in ipairs{"BrokenBarrierError", "ValueError", "RuntimeError",
                     "OSError", "EOFError", "Empty", "Full"} do
    if isinstance(e, errors[c]) then return c end
  end
  return errors.tostring(e)
end

after_each(kids.cleanup)

---------------------------------------------------------------------------
-- Queue
---------------------------------------------------------------------------

describe("multiprocessing.Queue", function()
  it("is made with a smaller ring when the address space is limited", function()
    -- a ulimit -v stands in for strict overcommit (vm.overcommit_memory=2),
    -- where the RAM-sized reservation is charged in full; the sanitizers'
    -- shadow memory needs more address space than any such limit leaves
    if (os.getenv("CONC_SANITIZE") or "") ~= "" then
      pending("no address-space limit under a sanitizer")
      return
    end
    local host = os.getenv("CONC_HOST") or "build/conc"
    local h = assert(io.popen("ulimit -v 3000000 && " .. support.q(host) ..
      [[ -e 'local mp = require "conc.multiprocessing"
local q = mp.Queue(); q:put(string.rep("x", 100000)); print(#q:get(), "ok")' 2>&1]]))
    local out = h:read("a")
    h:close()
    assert.are.equal("100000\tok\n", out)
  end)

  forks("carries items from a producer process to a consumer process", function()
    local q, results = mp.Queue(), mp.Queue()
    local producer = spawn(function()
      for i = 1, 1000 do q:put(i) end
      q:put("done")
    end)
    local consumer = spawn(function()
      local n, sum, last = 0, 0, 0
      while true do
        local v = q:get(true, WAIT)
        if v == "done" then break end
        assert(v == last + 1, "out of order: " .. tostring(v) .. " after " .. last)
        last, n, sum = v, n + 1, sum + v
      end
      results:put({n = n, sum = sum})
    end)
    assert.are.equal(0, finish(producer))
    assert.are.equal(0, finish(consumer))
    local r = results:get(true, WAIT)
    assert.are.equal(1000, r.n)
    assert.are.equal(1000 * 1001 // 2, r.sum)
    assert.is_true(q:empty())
    assert.are.equal(0, q:qsize())
  end)

  forks("moves 200000 integers from 8 producers to 8 consumers through Queue(100), none lost or duplicated", function()
    local N, P = 200000, 8
    local q, results = mp.Queue(100), mp.Queue()
    local producers, consumers = {}, {}
    for k = 1, P do
      producers[k] = spawn(function(first)
        for v = first, N, P do q:put(v, true, WAIT) end
      end, k)
    end
    for k = 1, P do
      consumers[k] = spawn(function()
        local got, sum, bad = {}, 0, 0
        local last = {}  -- per producer: its items come in its order
        while true do
          local v = q:get(true, WAIT)
          if v == false then break end
          local from = v % P
          if last[from] and v <= last[from] then bad = bad + 1 end
          last[from] = v
          got[#got + 1] = v
          sum = sum + v
        end
        results:put({got = got, sum = sum, bad = bad})
      end)
    end
    for k = 1, P do assert.are.equal(0, finish(producers[k])) end
    for _ = 1, P do q:put(false, true, WAIT) end  -- one stop for each consumer
    local seen, n, sum = {}, 0, 0
    for _ = 1, P do
      local r = results:get(true, WAIT)
      assert.are.equal(0, r.bad, "a consumer saw a producer's items out of order")
      local s = 0
      for _, v in ipairs(r.got) do
        if seen[v] then error("item " .. tostring(v) .. " received twice") end
        seen[v] = true
        s = s + v
      end
      assert.are.equal(s, r.sum)
      n, sum = n + #r.got, sum + s
    end
    for k = 1, P do assert.are.equal(0, finish(consumers[k])) end
    assert.are.equal(N, n)
    assert.are.equal(N * (N + 1) // 2, sum)
    for v = 1, N do
      if not seen[v] then error("item " .. v .. " lost") end
    end
    assert.is_true(q:empty())
  end)

  forks("carries a 100 MB string intact", function()
    local q = mp.Queue()
    local big = string.rep("0123456789abcdef", 100 * 1024 * 1024 // 16) .. "tail"
    local p = spawn(function() q:put(big) end)
    local got = q:get(true, WAIT)
    assert.are.equal(0, finish(p))
    assert.are.equal(#big, #got)
    assert.are.equal("0123", got:sub(1, 4))
    assert.are.equal("89ab", got:sub(50 * 1024 * 1024 + 9, 50 * 1024 * 1024 + 12))
    assert.are.equal("tail", got:sub(-4))
    assert.is_true(got == big, "the string changed on the way")
    assert.is_true(q:empty())
  end)

  it("keeps order and bytes while its ring grows (wrapped) and shrinks again", function()
    local q = mp.Queue()
    -- round the ring's first 256 KiB a few times: it has wrapped
    for _ = 1, 200 do
      q:put(string.rep("w", 5000))
      q:get(true, WAIT)
    end
    -- 4.8 MB held: the ring doubles five times, past what it keeps once empty
    local items = {}
    for i = 1, 600 do items[i] = string.rep(string.char(65 + i % 26), 8000) .. i end
    for i = 1, 600 do q:put(items[i]) end
    for i = 1, 600 do assert.are.equal(items[i], q:get(true, WAIT)) end
    assert.is_true(q:empty())
    q:put("after")  -- small again
    assert.are.equal("after", q:get(true, WAIT))
  end)

  it("raises queue.Empty from get on an empty queue: nowait, non-blocking and on a timeout", function()
    local q = mp.Queue()
    raises(conc.Empty, q.get_nowait, q)
    raises(conc.Empty, q.get, q, false)
    raises(conc.Empty, q.get, q, true, 0.05)
    raises(conc.Empty, q.get, q, true, 0)
    q:put("x")
    assert.are.equal("x", q:get(true, 0))
    raises(conc.Empty, q.get, q, false)
  end)

  it("raises queue.Full from put on a full bounded queue: nowait, non-blocking and on a timeout", function()
    local q = mp.Queue(2)
    assert.is_false(q:full())
    q:put(1)
    q:put_nowait(2)
    assert.is_true(q:full())
    assert.are.equal(2, q:qsize())
    raises(conc.Full, q.put_nowait, q, 3)
    raises(conc.Full, q.put, q, 3, false)
    raises(conc.Full, q.put, q, 3, true, 0.05)
    assert.are.equal(2, q:qsize(), "a refused put stored its item")
    assert.are.equal(1, q:get())
    assert.is_false(q:full())
    q:put(3, true, 0)
    assert.are.equal(2, q:get_nowait())
    assert.are.equal(3, q:get_nowait())
    assert.is_true(q:empty())
  end)

  forks("a put blocked on a full queue in a child is freed by the parent's get; a child's get on an empty one times out with Empty", function()
    local q, report = mp.Queue(1), mp.Queue()
    local taken = mp.Event()
    local p = spawn(function()
      q:put(1)
      q:put(2, true, WAIT)  -- waits for the parent's first get
      assert(taken:wait(WAIT), "the parent did not take both")
      local ok, e = pcall(q.get, q, true, 0.05)  -- nothing for this child
      report:put(ok and "no error" or class_of(e))
    end)
    assert.are.equal(1, q:get(true, WAIT))
    assert.are.equal(2, q:get(true, WAIT))
    taken:set()
    assert.are.equal("Empty", report:get(true, WAIT))
    assert.are.equal(0, finish(p))
    assert.is_true(q:empty())
  end)

  forks("carries nested tables, shared references, cycles and functions both ways", function()
    local q, back = mp.Queue(), mp.Queue()
    local p = spawn(function()
      local k = 7
      local shared = {"s"}
      local item = {
        n = 1, f = 2.5, s = "a\0b", t = true,
        list = {1, 2, 3, {4, {5}}},
        deep = {a = {b = {c = {d = "deep"}}}},
        one = shared, two = shared,
        times_k = function(x) return x * k end,
      }
      do
        local _ENV = G  -- reads a global: string
        item.fmt = function(x) return string.format("<%d>", x) end
      end
      item.self = item
      q:put(item)
      -- and a function from the parent, called here
      local g = back:get(true, WAIT)
      q:put(g(5))
    end)
    local item = q:get(true, WAIT)
    assert.are.equal(1, item.n)
    assert.are.equal(2.5, item.f)
    assert.are.equal("a\0b", item.s)
    assert.is_true(item.t)
    assert.are.same({1, 2, 3, {4, {5}}}, item.list)
    assert.are.equal("deep", item.deep.a.b.c.d)
    assert.are.equal("s", item.one[1])
    assert.is_true(rawequal(item.one, item.two), "a shared reference was split")
    assert.is_true(rawequal(item, item.self), "a cycle was not kept")
    assert.are.equal(21, item.times_k(3))
    assert.are.equal("<9>", item.fmt(9))
    local base = 100
    back:put(function(x) return base + x end)
    assert.are.equal(105, q:get(true, WAIT))
    assert.are.equal(0, finish(p))
  end)

  it("refuses an item holding a conc object with RuntimeError at put, and stays usable", function()
    local q = mp.Queue()
    local err = raises(conc.RuntimeError, q.put, q, mp.Lock())
    assert.truthy(err.message:find("inheritance", 1, true), err.message)
    raises(conc.RuntimeError, q.put, q, {a = {b = mp.Queue()}})
    raises(conc.RuntimeError, q.put_nowait, q, {mp.Event()})
    raises(conc.RuntimeError, q.put, q, threading.Lock())
    assert.is_true(q:empty(), "a refused item was stored")
    q:put("fine")
    assert.are.equal("fine", q:get(true, WAIT))
  end)

  forks("close() ends this process's puts and gets with ValueError, not another process's", function()
    local q, report = mp.Queue(), mp.Queue()
    local go = mp.Event()
    local p = spawn(function()
      assert(go:wait(WAIT), "never told to go")
      -- the parent closed q: this process's q is open
      q:put("child's")
      report:put(q:get(true, WAIT))
      q:close()
      local ok, e = pcall(q.put, q, 1)
      report:put(ok and "no error" or class_of(e))
    end)
    q:close()
    local e = raises(conc.ValueError, q.put, q, 1)
    assert.are.equal("Queue is closed", e.message)
    raises(conc.ValueError, q.get, q, false)
    raises(conc.ValueError, q.get_nowait, q)
    raises(conc.ValueError, q.put_nowait, q, 1)
    q:close()  -- again: no error
    go:set()
    assert.are.equal("child's", report:get(true, WAIT))
    assert.are.equal("ValueError", report:get(true, WAIT))
    assert.are.equal(0, finish(p))
  end)

  it("has join_thread and cancel_join_thread, which do nothing", function()
    local q = mp.Queue()
    q:put(1)
    q:cancel_join_thread()
    q:join_thread()
    assert.are.equal(1, q:get(true, WAIT))
  end)

  forks("stays usable after a process is killed in the middle of a put loop: items in order, no gap", function()
    for _, maxsize in ipairs{0, 10} do
      local q = mp.Queue(maxsize)
      local going = mp.Event()
      local pad = string.rep("x", 1000)
      local p = spawn(function()
        local i = 0
        while true do
          i = i + 1
          q:put({i, pad}, true, WAIT)
          if i == 200 then going:set() end
        end
      end)
      local last = 0
      if maxsize > 0 then
        -- take some while the child puts, so that it is killed mid-stream
        for _ = 1, 195 do
          local item = q:get(true, WAIT)
          assert.are.equal(last + 1, item[1])
          last = item[1]
        end
      end
      assert.is_true(going:wait(WAIT), "the child never put 200 items")
      p:kill()
      assert.are.equal(-9, finish(p))
      while true do
        local ok, item = pcall(q.get_nowait, q)
        if not ok then
          assert.is_true(isinstance(item, conc.Empty), errors.tostring(item))
          break
        end
        assert.are.equal(last + 1, item[1], "a gap or a repeat after " .. last)
        assert.are.equal(pad, item[2])
        last = item[1]
      end
      assert.is_true(last >= 200, "only " .. last .. " items")
      q:put("after", true, WAIT)
      assert.are.equal(1, q:qsize())
      assert.are.equal("after", q:get(true, WAIT))
      assert.is_true(q:empty())
    end
  end)
end)

---------------------------------------------------------------------------
-- JoinableQueue and SimpleQueue
---------------------------------------------------------------------------

describe("conc.select over multiprocessing's objects", function()
  forks("wakes for an mp.Queue put and an mp.Event set in another process", function()
    local mq, ev, go = mp.Queue(), mp.Event(), mp.Event()
    local tq = require("conc.queue").Queue()  -- this process's: never ready
    local p = spawn(function()
      assert(go:wait(WAIT))
      mq:put("from the child")
      assert(go:wait(WAIT))
      ev:set()
    end)
    go:set()  -- the child puts while the select below waits (or before it)
    local obj, i = conc.select({tq, mq}, WAIT)
    assert.are.equal(2, i)
    assert.are.equal(mq, obj)
    assert.are.equal("from the child", mq:get_nowait())
    obj, i = conc.select({tq, ev}, WAIT)
    assert.are.equal(2, i)
    assert.are.equal(0, finish(p))
    assert.is_nil(conc.select({mq}, 0))  -- empty again
  end)
end)

describe("multiprocessing.JoinableQueue", function()
  forks("join() returns once a worker process has called task_done for every item", function()
    local q, results = mp.JoinableQueue(), mp.Queue()
    local worker = spawn(function()
      while true do
        local v = q:get(true, WAIT)
        if v == nil then q:task_done() break end
        results:put(v * v)
        q:task_done()
      end
    end)
    for i = 1, 20 do q:put(i) end
    q:put(nil)
    -- join() takes no timeout: it runs in a thread, bounded from here
    local joined = threading.Event()
    local t = threading.Thread{target = function(jq, ev)
      jq:join()
      ev:set()
    end, args = {q, joined}, daemon = true}
    t:start()
    assert.is_true(joined:wait(WAIT), "join() did not return")
    t:join(WAIT)
    -- every result was put before its task_done
    local sum = 0
    for _ = 1, 20 do sum = sum + results:get(false) end
    assert.are.equal(20 * 21 * 41 // 6, sum)
    assert.is_true(results:empty())
    assert.are.equal(0, finish(worker))
    q:join()  -- nothing unfinished: returns at once
  end)

  it("raises ValueError when task_done is called more times than items were put", function()
    local q = mp.JoinableQueue()
    local e = raises(conc.ValueError, q.task_done, q)
    assert.are.equal("task_done() called too many times", e.message)
    q:put(1)
    q:put(2)
    q:get()
    q:task_done()
    q:get()
    q:task_done()
    raises(conc.ValueError, q.task_done, q)
    q:join()
  end)

  forks("raises ValueError for one task_done too many in a child", function()
    local q, report = mp.JoinableQueue(), mp.Queue()
    q:put("a")
    q:put("b")
    local p = spawn(function()
      q:get(true, WAIT)
      q:get(true, WAIT)
      q:task_done()
      q:task_done()
      local ok, e = pcall(q.task_done, q)
      report:put(ok and "no error" or class_of(e))
    end)
    assert.are.equal("ValueError", report:get(true, WAIT))
    assert.are.equal(0, finish(p))
    raises(conc.ValueError, q.task_done, q)
  end)

  it("is a Queue too: put, get, qsize, Empty and Full", function()
    local q = mp.JoinableQueue(1)
    q:put("x")
    assert.is_true(q:full())
    raises(conc.Full, q.put_nowait, q, "y")
    assert.are.equal(1, q:qsize())
    assert.are.equal("x", q:get_nowait())
    raises(conc.Empty, q.get, q, true, 0.01)
  end)
end)

describe("multiprocessing.SimpleQueue", function()
  forks("has get, put, empty and close, carrying items between processes", function()
    local q, back = mp.SimpleQueue(), mp.SimpleQueue()
    assert.is_true(q:empty())
    local p = spawn(function()
      for i = 1, 100 do q:put({i = i}) end
      back:put(back:get() .. "!")
    end)
    for i = 1, 100 do
      assert.are.equal(i, q:get().i)
    end
    back:put("ping")
    -- the child takes "ping" and puts "ping!" back; once it has ended,
    -- back holds exactly that
    assert.are.equal(0, finish(p))
    assert.is_false(back:empty())
    assert.are.equal("ping!", back:get())
    assert.is_true(q:empty())
    assert.is_true(back:empty())
  end)

  it("lacks Queue's other methods, as Python's does", function()
    local q = mp.SimpleQueue()
    assert.is_nil(q.qsize)
    assert.is_nil(q.put_nowait)
    assert.is_nil(q.get_nowait)
    assert.is_nil(q.full)
    assert.is_nil(q.task_done)
    assert.is_nil(q.join)
    assert.is_function(q.put)
    assert.is_function(q.get)
  end)

  it("refuses conc objects, and raises ValueError after close", function()
    local q = mp.SimpleQueue()
    raises(conc.RuntimeError, q.put, q, {mp.Lock()})
    assert.is_true(q:empty())
    q:put(1)
    q:close()
    local e = raises(conc.ValueError, q.put, q, 2)
    assert.are.equal("Queue is closed", e.message)
    raises(conc.ValueError, q.get, q)
  end)
end)

---------------------------------------------------------------------------
-- Pipe and Connection
---------------------------------------------------------------------------

describe("multiprocessing.Pipe", function()
  forks("carries values both ways between parent and child", function()
    local a, b = mp.Pipe()
    local p = spawn(function()
      a:close()  -- the parent's end
      while true do
        local msg = b:recv()
        if msg == "stop" then break end
        b:send({echo = msg, n = #msg.list})
      end
      b:send("bye")
      b:close()
    end)
    b:close()  -- the child's end
    for i = 1, 50 do
      a:send({list = {i, i + 1, i + 2}, s = ("x"):rep(i)})
      assert.is_true(a:poll(WAIT), "no answer")
      local r = a:recv()
      assert.are.equal(3, r.n)
      assert.are.equal(i + 2, r.echo.list[3])
      assert.are.equal(i, #r.echo.s)
    end
    a:send("stop")
    assert.is_true(a:poll(WAIT))
    assert.are.equal("bye", a:recv())
    assert.are.equal(0, finish(p))
    a:close()
  end)

  forks("raises EOFError once the other end is closed in every process", function()
    local a, b = mp.Pipe()
    local p = spawn(function()
      a:close()
      b:send("last")
      b:close()
    end)
    b:close()
    assert.is_true(a:poll(WAIT))
    assert.are.equal("last", a:recv())
    assert.is_true(a:poll(WAIT), "the end of the stream did not make the pipe readable")
    raises(conc.EOFError, a.recv, a)
    raises(conc.EOFError, a.recv_bytes, a)
    assert.are.equal(0, finish(p))
    a:close()
  end)

  forks("sees EOF only when the child that inherited the other end has ended, if it kept it", function()
    local a, b = mp.Pipe()
    local go = mp.Event()
    local p = spawn(function()
      -- keeps both ends, as a careless child does
      assert(go:wait(WAIT), "never told to go")
    end)
    b:close()  -- here only: the child still holds b
    assert.is_false(a:poll(0), "EOF seen while the child holds the other end")
    go:set()
    assert.are.equal(0, finish(p))
    assert.is_true(a:poll(WAIT))
    raises(conc.EOFError, a.recv, a)
    a:close()
  end)

  forks("Pipe(false) gives (reader, writer): data flows from writer to reader; the wrong way raises OSError", function()
    local r, w = mp.Pipe(false)
    assert.is_true(r.readable)
    assert.is_false(r.writable)
    assert.is_false(w.readable)
    assert.is_true(w.writable)
    raises(conc.OSError, r.send, r, 1)
    raises(conc.OSError, r.send_bytes, r, "x")
    raises(conc.OSError, w.recv, w)
    raises(conc.OSError, w.recv_bytes, w)
    raises(conc.OSError, w.poll, w)
    local p = spawn(function()
      r:close()
      for i = 1, 10 do w:send(i) end
      w:send_bytes("raw")
      w:close()
    end)
    w:close()
    for i = 1, 10 do
      assert.is_true(r:poll(WAIT))
      assert.are.equal(i, r:recv())
    end
    assert.is_true(r:poll(WAIT))
    assert.are.equal("raw", r:recv_bytes())
    assert.is_true(r:poll(WAIT))
    raises(conc.EOFError, r.recv, r)
    assert.are.equal(0, finish(p))
    r:close()
  end)

  forks("poll: false without data (at once, or after a timeout), true once data comes, and does not consume it", function()
    local a, b = mp.Pipe()
    local go = mp.Event()
    local p = spawn(function()
      assert(go:wait(WAIT), "never told to go")
      b:send("data")
    end)
    assert.is_false(a:poll())
    assert.is_false(a:poll(0))
    assert.is_false(a:poll(0.05))
    assert.is_false(a:poll(-1))  -- a negative timeout does not wait
    go:set()
    assert.is_true(a:poll(WAIT))
    assert.is_true(a:poll())
    assert.is_true(a:poll(nil))  -- nil waits for good: data is there
    assert.are.equal("data", a:recv())
    assert.is_false(a:poll(0))
    assert.are.equal(0, finish(p))
    a:close()
    b:close()
  end)

  it("close() while another thread waits in recv: that recv ends on the pipe, not on a file given its number", function()
    local queue = require "conc.queue"
    local a, b = mp.Pipe()
    local ready, got = threading.Event(), queue.Queue()
    local t = threading.Thread{target = function(conn, ev, out)
      ev:set()
      local ok, v = pcall(conn.recv, conn)
      out:put({ok, ok and v or tostring(v)})
    end, args = {a, ready, got}}
    t:start()
    assert.is_true(ready:wait(WAIT))
    -- time for the thread to block in recv: without it the case could pass
    -- with the thread not yet there, never fail
    require("conc.time").sleep(0.05)
    a:close()
    -- files opened now take the lowest free numbers: the one close freed
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(string.rep("x", 64))
    f:close()
    local files = {}
    for i = 1, 4 do files[i] = assert(io.open(path, "r")) end
    b:send("after close")
    local r = got:get(true, WAIT)
    t:join(WAIT)
    for _, h in ipairs(files) do h:close() end
    os.remove(path)
    assert.are.same({true, "after close"}, r)
    raises(errors.OSError, a.recv, a)  -- "handle is closed", as in Python
  end)

  forks("a child forked while a thread waits in recv on an end can recv on that end", function()
    local queue = require "conc.queue"
    local a, b = mp.Pipe()
    local ready, got, go = threading.Event(), queue.Queue(), mp.Event()
    local t = threading.Thread{target = function(conn, ev, out)
      ev:set()
      out:put(conn:recv())  -- holds the end's read mutex while it waits
    end, args = {a, ready, got}}
    t:start()
    assert.is_true(ready:wait(WAIT))
    -- time for the thread to block in recv: without it the case could pass
    -- with the mutex not yet taken, never fail
    require("conc.time").sleep(0.05)
    local p = spawn(function()
      assert(go:wait(WAIT))
      assert(a:recv() == "for the child")  -- the parent's thread is not here
    end)
    b:send("for the thread")
    assert.are.equal("for the thread", got:get(true, WAIT))
    t:join(WAIT)
    go:set()
    b:send("for the child")
    assert.are.equal(0, finish(p))
  end)

  forks("send_bytes(buf, offset, size) sends a slice; recv_bytes returns the raw string", function()
    local a, b = mp.Pipe()
    local p = spawn(function()
      a:close()
      b:send_bytes("hello world")
      b:send_bytes("hello world", 6)
      b:send_bytes("hello world", 6, 3)
      b:send_bytes("hello world", 0, 5)
      b:send_bytes("hello", 5)  -- empty, at the end
      b:send_bytes(("\0\1\2\255"):rep(100000))  -- binary, large
      b:close()
    end)
    b:close()
    assert.are.equal("hello world", a:recv_bytes())
    assert.are.equal("world", a:recv_bytes())
    assert.are.equal("wor", a:recv_bytes())
    assert.are.equal("hello", a:recv_bytes())
    assert.are.equal("", a:recv_bytes())
    assert.are.equal(("\0\1\2\255"):rep(100000), a:recv_bytes(400000))
    raises(conc.EOFError, a.recv_bytes, a)
    assert.are.equal(0, finish(p))
    a:close()
  end)

  it("send_bytes rejects an offset or size outside the buffer with ValueError", function()
    local a, b = mp.Pipe()
    raises(conc.ValueError, b.send_bytes, b, "abc", 4)
    raises(conc.ValueError, b.send_bytes, b, "abc", -1)
    raises(conc.ValueError, b.send_bytes, b, "abc", 0, 4)
    raises(conc.ValueError, b.send_bytes, b, "abc", 2, 2)
    raises(conc.ValueError, b.send_bytes, b, "abc", 0, -1)
    assert.is_false(a:poll(0), "a refused send_bytes sent something")
    b:send_bytes("abc", 3)
    assert.are.equal("", a:recv_bytes())
    a:close()
    b:close()
  end)

  it("recv_bytes(maxlength) takes a message up to maxlength and raises OSError for a longer one", function()
    local a, b = mp.Pipe()
    b:send_bytes("12345")
    assert.are.equal("12345", a:recv_bytes(5))
    b:send_bytes("123456")
    local e = raises(conc.OSError, a.recv_bytes, a, 5)
    assert.are.equal("bad message length", e.message)
    raises(conc.ValueError, a.recv_bytes, a, -1)
    a:close()
    b:close()
  end)

  it("after a message too long for recv_bytes, the end does not misread the stream", function()
    -- Python's Connection stops reading then (readable false; a one-way
    -- reader is closed); either that, or the long message skipped, is fine:
    -- reading its bytes as the next frame is not.
    local a, b = mp.Pipe()
    b:send_bytes("hello world")
    raises(conc.OSError, a.recv_bytes, a, 5)
    b:send_bytes("after")
    b:close()  -- bounds a read that went out of step: it meets the end
    local ok, r = pcall(a.recv_bytes, a)
    if ok then
      assert.are.equal("after", r)
    else
      assert.is_true(isinstance(r, conc.OSError),
                     "the next read went out of step: " .. errors.tostring(r))
    end
    a:close()
  end)

  it("raises OSError 'handle is closed' for every use after close, and close twice is fine", function()
    local a, b = mp.Pipe()
    assert.is_false(a.closed)
    assert.is_number(a:fileno())
    assert.is_true(a:fileno() >= 0)
    a:close()
    assert.is_true(a.closed)
    for name, call in pairs{
      send = function() a:send(1) end,
      recv = function() a:recv() end,
      send_bytes = function() a:send_bytes("x") end,
      recv_bytes = function() a:recv_bytes() end,
      poll = function() a:poll() end,
      fileno = function() a:fileno() end,
    } do
      local ok, e = pcall(call)
      assert.is_false(ok, name .. " after close did not raise")
      assert.is_true(isinstance(e, conc.OSError), name .. ": " .. errors.tostring(e))
      assert.are.equal("handle is closed", e.message, name)
    end
    a:close()
    -- the other end sees the end of the stream
    assert.is_true(b:poll(WAIT))
    raises(conc.EOFError, b.recv, b)
    b:close()
  end)

  it("closes both ends with <close>", function()
    local x, y
    do
      -- one to-be-closed variable per local statement (Lua 5.4's rule)
      local a0, b0 = mp.Pipe()
      local a <close> = a0
      local b <close> = b0
      x, y = a, b
      a:send("v")
      assert.are.equal("v", b:recv())
    end
    assert.is_true(x.closed)
    assert.is_true(y.closed)
  end)

  it("refuses a message holding a conc object with RuntimeError", function()
    local a, b = mp.Pipe()
    raises(conc.RuntimeError, a.send, a, mp.Lock())
    raises(conc.RuntimeError, a.send, a, {x = {mp.Queue()}})
    assert.is_false(b:poll(0), "a refused message was sent")
    a:send("ok")
    assert.are.equal("ok", b:recv())
    a:close()
    b:close()
  end)
end)

---------------------------------------------------------------------------
-- Event, Semaphore, BoundedSemaphore
---------------------------------------------------------------------------

describe("multiprocessing.Event", function()
  forks("set in a child wakes the parent's wait; set in the parent wakes the child's", function()
    local to_parent, to_child = mp.Event(), mp.Event()
    local p = spawn(function()
      assert(to_child:wait(WAIT), "the parent's set did not wake this wait")
      assert(to_child:is_set())
      to_parent:set()
    end)
    assert.is_false(to_parent:is_set())
    assert.is_false(to_parent:wait(0.01))
    to_child:set()
    assert.is_true(to_parent:wait(WAIT))
    assert.is_true(to_parent:is_set())
    assert.are.equal(0, finish(p))
    to_parent:clear()
    assert.is_false(to_parent:is_set())
    assert.are.equal(0, in_child(function()
      assert(not to_parent:is_set(), "the child sees a cleared event set")
    end))
  end)
end)

describe("multiprocessing.Semaphore", function()
  forks("released by 3 children, acquired 3 times by the parent", function()
    local s = mp.Semaphore(0)
    assert.is_false(s:acquire(false))
    local ps = {}
    for i = 1, 3 do ps[i] = spawn(function() s:release() end) end
    for i = 1, 3 do
      assert.is_true(s:acquire(true, WAIT), "acquire " .. i .. " timed out")
    end
    for i = 1, 3 do assert.are.equal(0, finish(ps[i])) end
    assert.is_false(s:acquire(false))
    assert.is_false(s:acquire(true, 0.01))
  end)

  forks("a value taken in a child is gone for the parent until the child releases it", function()
    local s = mp.Semaphore(1)
    local taken, give = mp.Event(), mp.Event()
    local p = spawn(function()
      assert(s:acquire(true, WAIT))
      taken:set()
      assert(give:wait(WAIT))
      s:release()
    end)
    assert.is_true(taken:wait(WAIT))
    assert.is_false(s:acquire(false))
    give:set()
    assert.is_true(s:acquire(true, WAIT))
    assert.are.equal(0, finish(p))
    s:release()
  end)
end)

describe("multiprocessing.BoundedSemaphore", function()
  forks("raises ValueError when released past its initial value, in the parent or a child", function()
    local s = mp.BoundedSemaphore(2)
    local e = raises(conc.ValueError, s.release, s)
    assert.are.equal("Semaphore released too many times", e.message)
    assert.is_true(s:acquire(false))
    local report = mp.Queue()
    local p = spawn(function()
      s:release()  -- the parent's acquire: back at 2
      local ok, err = pcall(s.release, s)
      report:put(ok and "no error" or class_of(err))
    end)
    assert.are.equal("ValueError", report:get(true, WAIT))
    assert.are.equal(0, finish(p))
    assert.is_true(s:acquire(false))
    assert.is_true(s:acquire(false))
    assert.is_false(s:acquire(false))
  end)
end)

---------------------------------------------------------------------------
-- Condition
---------------------------------------------------------------------------

describe("multiprocessing.Condition", function()
  -- Starts k children that each take cond's lock, say so on `ready` (while
  -- holding it), wait(WAIT) and report {i, wait's result, held} on `woke`
  -- (held: the lock is theirs again: another process cannot take it).
  -- Returns once all k are inside wait(), with the lock held here.
  local function start_waiters(cond, k)
    local ready, woke, ps = mp.Semaphore(0), mp.Queue(), {}
    for i = 1, k do
      ps[i] = spawn(function()
        assert(cond:acquire(true, WAIT))
        ready:release()
        local ok = cond:wait(WAIT)
        woke:put({i, ok})
        cond:release()
      end)
    end
    for i = 1, k do
      assert.is_true(ready:acquire(true, WAIT), "waiter " .. i .. " did not start")
    end
    -- each waiter holds the lock from its ready:release() to its wait()
    assert.is_true(cond:acquire(true, WAIT), "a waiter never released the lock")
    return woke, ps
  end

  forks("notify_all wakes every waiting child", function()
    local cond = mp.Condition()
    local woke, ps = start_waiters(cond, 3)
    cond:notify_all()
    cond:release()
    local who = {}
    for _ = 1, 3 do
      local r = woke:get(true, WAIT)
      assert.is_true(r[2], "a wait timed out")
      who[r[1]] = true
    end
    assert.are.same({true, true, true}, who)
    for i = 1, 3 do assert.are.equal(0, finish(ps[i])) end
  end)

  forks("notify(1) wakes exactly one of three waiting children", function()
    local cond = mp.Condition(mp.Lock())
    local woke, ps = start_waiters(cond, 3)
    cond:notify(1)
    cond:release()
    local first = woke:get(true, WAIT)
    assert.is_true(first[2])
    -- the two others still wait: nothing more comes
    raises(conc.Empty, woke.get, woke, true, 0.2)
    assert.is_true(cond:acquire(true, WAIT))
    cond:notify(1)
    cond:release()
    local second = woke:get(true, WAIT)
    assert.is_true(second[2])
    assert.are_not.equal(first[1], second[1])
    raises(conc.Empty, woke.get, woke, true, 0.2)
    assert.is_true(cond:acquire(true, WAIT))
    cond:notify_all()
    cond:release()
    local third = woke:get(true, WAIT)
    assert.is_true(third[2])
    assert.are.equal(6, first[1] + second[1] + third[1])
    for i = 1, 3 do assert.are.equal(0, finish(ps[i])) end
  end)

  forks("wait_for in a child returns once the parent makes the predicate true and notifies", function()
    local cond = mp.Condition(mp.RLock())
    local flag = mp.Value("i", 0)
    local report, ready = mp.Queue(), mp.Event()
    local p = spawn(function()
      cond:acquire()
      ready:set()
      local r = cond:wait_for(function() return flag.value == 1 end, WAIT)
      report:put(r)
      cond:release()
    end)
    assert.is_true(ready:wait(WAIT))
    assert.is_true(cond:acquire(true, WAIT))  -- the child is waiting
    flag.value = 1
    cond:notify()
    cond:release()
    assert.is_true(report:get(true, WAIT))
    assert.are.equal(0, finish(p))
  end)

  it("wait and notify without the lock raise RuntimeError; wait times out with false", function()
    local cond = mp.Condition()
    raises(conc.RuntimeError, cond.wait, cond, 0)
    raises(conc.RuntimeError, cond.notify, cond)
    raises(conc.RuntimeError, cond.notify_all, cond)
    assert.is_true(cond:acquire())
    assert.is_false(cond:wait(0.01))
    cond:notify()  -- nobody waits: nothing kept for later
    assert.is_false(cond:wait(0.01))
    cond:release()
  end)

  it("needs a multiprocessing Lock or RLock", function()
    raises(conc.TypeError, mp.Condition, threading.Lock())
    raises(conc.TypeError, mp.Condition, "lock")
  end)
end)

---------------------------------------------------------------------------
-- Barrier
---------------------------------------------------------------------------

describe("multiprocessing.Barrier", function()
  forks("releases 2 children and the parent together, indices a permutation of 0, 1, 2, twice; the action runs once each time", function()
    local rounds = mp.Value("i", 0)
    local b = mp.Barrier(3, function() rounds.value = rounds.value + 1 end)
    local report = mp.Queue()
    local ps = {}
    for i = 1, 2 do
      ps[i] = spawn(function()
        local first = b:wait(WAIT)
        local second = b:wait(WAIT)
        report:put({first, second})
      end)
    end
    local mine = {b:wait(WAIT), b:wait(WAIT)}
    local cycles = {{[mine[1]] = true}, {[mine[2]] = true}}
    for _ = 1, 2 do
      local r = report:get(true, WAIT)
      for c = 1, 2 do
        assert.is_nil(cycles[c][r[c]], "index " .. tostring(r[c]) .. " twice in cycle " .. c)
        cycles[c][r[c]] = true
      end
    end
    for c = 1, 2 do
      assert.are.same({[0] = true, [1] = true, [2] = true}, cycles[c])
    end
    for i = 1, 2 do assert.are.equal(0, finish(ps[i])) end
    assert.are.equal(2, rounds.value)
    assert.are.equal(3, b.parties)
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
  end)

  forks("abort() in a child breaks it for the parent: BrokenBarrierError", function()
    local b = mp.Barrier(2)
    assert.are.equal(0, in_child(function() b:abort() end))
    assert.is_true(b.broken)
    raises(conc.BrokenBarrierError, b.wait, b, WAIT)
    b:reset()
    assert.is_false(b.broken)
  end)

  forks("a timeout in the parent breaks it for a waiting child", function()
    local b = mp.Barrier(3)
    local report, ready = mp.Queue(), mp.Event()
    local p = spawn(function()
      ready:set()
      local ok, e = pcall(b.wait, b, WAIT)
      report:put(ok and "no error" or class_of(e))
    end)
    assert.is_true(ready:wait(WAIT))
    -- whether or not the child waits yet, the barrier ends up broken
    raises(conc.BrokenBarrierError, b.wait, b, 0.05)
    assert.are.equal("BrokenBarrierError", report:get(true, WAIT))
    assert.are.equal(0, finish(p))
  end)
end)

---------------------------------------------------------------------------
-- Lock, RLock: a holder killed
---------------------------------------------------------------------------

describe("multiprocessing locks held by a process that is killed", function()
  forks("an mp.Lock whose holder was SIGKILLed is taken by the next acquirer", function()
    local lock = mp.Lock()
    local held = mp.Event()
    local p = spawn(function()
      assert(lock:acquire())
      held:set()
      sleeper()
    end)
    assert.is_true(held:wait(WAIT))
    assert.is_false(lock:acquire(false), "the child's lock is free here")
    p:kill()
    assert.are.equal(-9, finish(p))
    assert.is_true(lock:acquire(true, 5), "the dead holder's lock was not taken over")
    assert.is_true(lock:locked())
    lock:release()
    assert.is_false(lock:locked())
    assert.are.equal(0, in_child(function()
      assert(lock:acquire(false), "the lock is not free after the takeover")
      lock:release()
    end))
  end)

  forks("a process blocked on an mp.Lock gets it when the holder is SIGKILLed", function()
    local lock = mp.Lock()
    local held, got = mp.Event(), mp.Queue()
    local holder = spawn(function()
      assert(lock:acquire())
      held:set()
      sleeper()
    end)
    assert.is_true(held:wait(WAIT))
    local waiter = spawn(function()
      got:put(lock:acquire(true, WAIT))
      lock:release()
    end)
    holder:kill()
    assert.are.equal(-9, finish(holder))
    assert.is_true(got:get(true, WAIT))
    assert.are.equal(0, finish(waiter))
    assert.is_true(lock:acquire(true, 5))
    lock:release()
  end)

  forks("an mp.RLock held twice by a SIGKILLed process is taken by the next acquirer, with a count of its own", function()
    local lock = mp.RLock()
    local held = mp.Event()
    local p = spawn(function()
      assert(lock:acquire())
      assert(lock:acquire())
      held:set()
      sleeper()
    end)
    assert.is_true(held:wait(WAIT))
    assert.is_false(lock:acquire(false), "the child's lock is free here")
    p:kill()
    assert.are.equal(-9, finish(p))
    assert.is_true(lock:acquire(true, 5), "the dead holder's lock was not taken over")
    lock:release()  -- once: this process's one acquire
    raises(conc.RuntimeError, lock.release, lock)
    assert.are.equal(0, in_child(function()
      assert(lock:acquire(false), "the lock is not free after one release")
      lock:release()
    end))
  end)
end)

---------------------------------------------------------------------------
-- What is left behind
---------------------------------------------------------------------------

describe("multiprocessing's shared memory", function()
  forks("leaves no entry with 'conc' in its name in /dev/shm", function()
    local f = assert(io.popen("ls -a /dev/shm"))
    local listing = f:read("a")
    f:close()
    for name in listing:gmatch("[^\n]+") do
      assert.is_nil(name:lower():find("conc", 1, true), "left in /dev/shm: " .. name)
    end
  end)
end)
