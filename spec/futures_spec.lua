-- conc.futures against Python 3.13's documented concurrent.futures
-- behaviour: the Future on its own (as a custom executor uses it), wait(),
-- as_completed() and ThreadPoolExecutor.
--
-- Translation (DESIGN.md): wait() returns two sets (tables keyed by
-- future), map() and as_completed() are generic-for iterators, keyword-only
-- parameters are a trailing options table (shutdown(true, {cancel_futures =
-- true}), map(fn, t, {timeout = 1})). A callback added to a pending future
-- runs, copied, in the thread that settles it: what it saw comes back
-- through a conc Queue. Every wait is bounded (WAIT); the order of events
-- is forced with Events and Queues, never with sleeps, and no case looks
-- at how long anything took.

local conc = require "conc"
local errors = require "conc.errors"
local futures = require "conc.futures"
local queue = require "conc.queue"
local threading = require "conc.threading"
local time = require "conc.time"
local support = require "support"

local isinstance = conc.isinstance
local Future = futures.Future

local WAIT = 20  -- seconds: the bound on every wait for another thread

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (os.getenv("PWD") or ".") .. "/" .. path
end

local HOST = absolute(os.getenv("CONC_HOST") or "build/conc")

-- Child processes start through /bin/sh, which inherits LD_PRELOAD; with the
-- TSan runtime preloaded (stock lua5.4 in a TSan build) the uninstrumented
-- shell crashes. The host's flavour of this spec runs those cases instead.
local NO_SHELL = (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) ~= nil

-- it() for a case that runs a child process.
local function child_it(name, fn)
  if NO_SHELL then
    pending(name .. ": no /bin/sh with the TSan runtime preloaded")
  else
    it(name, fn)
  end
end

-- busted runs this file with an _ENV of its own whose metamethods reach all
-- of busted: a function defined here that names a global carries it as its
-- _ENV upvalue, and sent to a thread (as a target, a task, a callback or
-- an initializer) it would copy busted along. Everything that crosses is
-- defined below under the real globals.
local G = _G

local W = {}  -- thread targets, tasks, callbacks and initializers

do
  local _ENV = G

  -- Thread target: sets f's result to the values after it.
  function W.set_result(f, ...)
    f:set_result(...)
  end

  -- Thread target: sets f's error to e.
  function W.set_exception(f, e)
    f:set_exception(e)
  end

  -- Thread target: puts f back on q (identity check), then sets its result.
  function W.echo_then_set(f, q, v)
    q:put(f)
    f:set_result(v)
  end

  -- Thread target: once `go` is set, sets f's result to v.
  function W.set_after(go, f, v)
    if go:wait(WAIT) then f:set_result(v) end
  end

  -- Thread target: cancels f.
  function W.cancel(f)
    f:cancel()
  end

  -- Callback: puts {the future's result, the name of the running thread}.
  function W.report_result(q)
    return function(f)
      q:put({f:result(), threading.current_thread().name})
    end
  end

  -- Callback: puts {tag, whether the future is cancelled}.
  function W.report_tag(q, tag)
    return function(f)
      q:put({tag, f:cancelled()})
    end
  end

  -- Callback: raises.
  function W.raise_in_callback()
    error("callback raised on purpose (this spec expects this message)")
  end

  -- Task: x * 10.
  -- Task: the identity of the closure that runs it.
  function W.self_id()
    return tostring(debug.getinfo(1, "f").func)
  end

  function W.times10(x)
    return x * 10
  end

  -- Task: its arguments back, plus their count.
  function W.echo(...)
    return select("#", ...), ...
  end

  -- Task: the name of the worker thread running it.
  function W.thread_name()
    return threading.current_thread().name
  end

  -- Task: raises a ValueError when x == bad.
  function W.fail_on(bad)
    return function(x)
      if x == bad then error(errors.ValueError("bad item " .. tostring(x))) end
      return x
    end
  end

  -- Task: raises a table error of a conc class.
  function W.raise_value_error()
    error(errors.ValueError("task failed"))
  end

  -- Task: waits for `mine`, puts i on `order`, then sets `nxt` (false for
  -- none): the tasks finish in the order their events are set.
  function W.chain(i, mine, nxt, order)
    if not mine:wait(WAIT) then error("never released") end
    order:put(i)
    if nxt then nxt:set() end
    return i * 10
  end

  -- Task: sets `started`, then waits for `go`; returns v.
  function W.hold(started, go, v)
    started:set()
    go:wait(WAIT)
    return v
  end

  -- Task: sets `started`, takes a future from fq and waits until it is
  -- done (cancelled, in the case that uses it).
  function W.hold_until_done(started, fq)
    started:set()
    local other = fq:get(true, WAIT)
    conc.select({other}, WAIT)
    return other:cancelled()
  end

  -- Task: a short nap, so a shutdown that did not wait would see it
  -- pending.
  function W.nap(v)
    time.sleep(0.05)
    return v
  end

  -- Initializer: puts the name of the worker thread on q.
  function W.init_report(q)
    q:put(threading.current_thread().name)
  end

  -- Initializer: waits for `go`, then raises.
  function W.init_fail(go)
    go:wait(WAIT)
    error("initializer raised on purpose (this spec expects this message)")
  end
end

---------------------------------------------------------------------------
-- Helpers (main state only)
---------------------------------------------------------------------------

-- Starts a thread (daemon: a case that fails must not hang the exit).
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

-- The keys of a set, counted.
local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- That `set` holds exactly the futures of `list`.
local function same_set(list, set, what)
  for _, f in ipairs(list) do
    assert.is_true(set[f] == true, what .. " lacks " .. tostring(f))
  end
  assert.are.equal(#list, count(set), what .. " has other futures")
end

-- Runs `source` under the host in a child process (bounded by `timeout`);
-- returns its exit code and its stderr.
local function host_stderr(source)
  local script, err = os.tmpname(), os.tmpname()
  support.spit(script, source)
  local ok, _, code = os.execute(string.format("timeout %d %s %s >/dev/null 2>%s </dev/null",
    WAIT, support.q(HOST), support.q(script), support.q(err)))
  local text = support.slurp(err) or ""
  os.remove(script)
  os.remove(err)
  return ok and 0 or code, text
end

local function finished(v)
  local f = Future()
  f:set_result(v)
  return f
end

---------------------------------------------------------------------------
-- Future on its own
---------------------------------------------------------------------------

describe("Future", function()
  it("moves pending -> running -> finished", function()
    local f = Future()
    assert.is_false(f:done())
    assert.is_false(f:running())
    assert.is_false(f:cancelled())
    assert.is_true(f:set_running_or_notify_cancel())
    assert.is_true(f:running())
    assert.is_false(f:done())
    f:set_result("v")
    assert.is_true(f:done())
    assert.is_false(f:running())
    assert.is_false(f:cancelled())
    assert.are.equal("v", f:result())
    assert.is_nil(f:exception())
  end)

  it("result() returns every value set, nils included", function()
    local f = Future()
    f:set_result(1, "two", nil, {4})
    local r = table.pack(f:result())
    assert.are.equal(4, r.n)
    assert.are.equal(1, r[1])
    assert.are.equal("two", r[2])
    assert.is_nil(r[3])
    assert.are.same({4}, r[4])
    local g = Future()
    g:set_result()
    assert.are.equal(0, select("#", g:result()))
  end)

  it("set_exception: result() raises it, exception() returns it", function()
    local f = Future()
    assert.is_true(f:set_running_or_notify_cancel())
    f:set_exception(errors.ValueError("nope"))
    assert.is_true(f:done())
    assert.is_false(f:cancelled())
    local e = raises(errors.ValueError, f.result, f)
    assert.are.equal("nope", e.message)
    local e2 = f:exception()
    assert.is_true(isinstance(e2, errors.ValueError))
    assert.are.equal("nope", e2.message)
    assert.are.equal("ValueError: nope", tostring(e2))
  end)

  it("a table error keeps its fields through set_exception and result", function()
    local f = Future()
    f:set_exception({code = 7, detail = {where = "here"}, list = {1, 2}})
    local ok, e = pcall(f.result, f)
    assert.is_false(ok)
    assert.are.same({code = 7, detail = {where = "here"}, list = {1, 2}}, e)
    assert.are.same(e, f:exception())
    -- and from another thread
    local g = Future()
    joined(spawn(W.set_exception, g, {code = 8, nested = {deep = true}}))
    ok, e = pcall(g.result, g, WAIT)
    assert.is_false(ok)
    assert.are.same({code = 8, nested = {deep = true}}, e)
  end)

  it("result(timeout) and exception(timeout) raise TimeoutError while pending", function()
    local f = Future()
    raises(errors.TimeoutError, f.result, f, 0.01)
    raises(errors.TimeoutError, f.exception, f, 0.01)
    raises(errors.TimeoutError, f.result, f, 0)
    assert.is_false(f:done())
    f:set_running_or_notify_cancel()
    raises(errors.TimeoutError, f.result, f, 0.01)
    f:set_result(1)
    assert.are.equal(1, f:result(0))
  end)

  it("cancel() of a pending future: true, cancelled, result raises CancelledError", function()
    local f = Future()
    assert.is_true(f:cancel())
    assert.is_true(f:cancelled())
    assert.is_true(f:done())
    assert.is_false(f:running())
    assert.is_true(f:cancel())  -- again: still cancelled
    raises(errors.CancelledError, f.result, f, 0)
    raises(errors.CancelledError, f.exception, f, 0)
    -- an executor that then picks it up is told not to run it
    assert.is_false(f:set_running_or_notify_cancel())
    assert.is_true(f:cancelled())
    raises(errors.InvalidStateError, f.set_result, f, 1)
  end)

  it("cancel() of a running or finished future returns false", function()
    local f = Future()
    assert.is_true(f:set_running_or_notify_cancel())
    assert.is_false(f:cancel())
    assert.is_true(f:running())
    assert.is_false(f:cancelled())
    f:set_result(1)
    assert.is_false(f:cancel())
    assert.is_false(f:cancelled())
    assert.are.equal(1, f:result())
  end)

  it("set_result or set_exception on a done future raises InvalidStateError", function()
    local f = Future()
    f:set_result(1)
    raises(errors.InvalidStateError, f.set_result, f, 2)
    raises(errors.InvalidStateError, f.set_exception, f, errors.ValueError("x"))
    assert.are.equal(1, f:result())  -- the first outcome stands
    local g = Future()
    g:set_exception("first")
    raises(errors.InvalidStateError, g.set_result, g, 2)
    assert.are.equal("first", g:exception())
  end)

  it("set_running_or_notify_cancel on a running or finished future raises RuntimeError", function()
    local f = Future()
    assert.is_true(f:set_running_or_notify_cancel())
    raises(errors.RuntimeError, f.set_running_or_notify_cancel, f)
    assert.is_true(f:running())
    f:set_result(1)
    raises(errors.RuntimeError, f.set_running_or_notify_cancel, f)
  end)

  it("add_done_callback on a done future calls it at once, with the future", function()
    local f = finished(5)
    local seen = {}
    f:add_done_callback(function(fut) seen[#seen + 1] = fut end)
    assert.are.equal(1, #seen)
    assert.is_true(rawequal(f, seen[1]))
    local c = Future()
    c:cancel()
    c:add_done_callback(function(fut) seen[#seen + 1] = fut:cancelled() end)
    assert.are.equal(true, seen[2])
  end)

  it("a callback added to a pending future runs in the thread that sets it", function()
    local f = Future()
    local q = queue.Queue()
    f:add_done_callback(W.report_result(q))
    assert.is_true(q:empty())  -- not called yet
    local t = threading.Thread{target = W.set_result, args = {f, 42},
                               name = "setter", daemon = true}
    t:start()
    local r = q:get(true, WAIT)
    assert.are.same({42, "setter"}, r)
    joined(t)
  end)

  it("callbacks of a pending future run in order when it is cancelled", function()
    local f = Future()
    local q = queue.Queue()
    f:add_done_callback(W.report_tag(q, "a"))
    f:add_done_callback(W.report_tag(q, "b"))
    joined(spawn(W.cancel, f))
    assert.are.same({"a", true}, q:get(true, WAIT))
    assert.are.same({"b", true}, q:get(true, WAIT))
  end)

  it("a callback that raises does not stop the next", function()
    local f = Future()
    local q = queue.Queue()
    f:add_done_callback(W.raise_in_callback)
    f:add_done_callback(W.report_tag(q, "after"))
    f:set_result(1)  -- the error is reported on stderr, not raised
    assert.are.same({"after", false}, q:get(true, WAIT))
    -- on a done future too
    local seen = false
    f:add_done_callback(W.raise_in_callback)
    f:add_done_callback(function() seen = true end)
    assert.is_true(seen)
  end)

  child_it("a raising callback is reported on stderr with its error and traceback", function()
    local code, err = host_stderr([[
local futures = require "conc.futures"
local f = futures.Future()
f:add_done_callback(function() error("pending-callback-boom") end)
f:add_done_callback(function() io.stderr:write("second ran\n") end)
f:set_result(1)
f:add_done_callback(function() error("done-callback-boom") end)
io.stderr:write("script ended\n")
]])
    assert.are.equal(0, code, err)
    assert.matches("exception calling callback for <Future at [^ ]+ state=finished returned number>\n"
                   .. "[^\n]*pending%-callback%-boom\nstack traceback:", err)
    assert.matches("done%-callback%-boom\nstack traceback:", err)
    assert.matches("second ran", err)
    assert.matches("script ended", err)
    assert.is_nil(err:find("(null)", 1, true), err)
  end)

  it("add_done_callback of a non-callable raises TypeError", function()
    local f = Future()
    raises(errors.TypeError, f.add_done_callback, f, 5)
    raises(errors.TypeError, f.add_done_callback, f, {})
    raises(errors.TypeError, finished(1).add_done_callback, finished(1), "x")
    -- a callable table is a callback
    local q = queue.Queue()
    local calls = setmetatable({}, {__call = function() end})
    f:add_done_callback(calls)
    f:add_done_callback(W.report_tag(q, "ok"))
    f:set_result(1)
    assert.are.same({"ok", false}, q:get(true, WAIT))
  end)

  it("is the same future in a thread it is passed to", function()
    local f = Future()
    local q = queue.Queue()
    local t = spawn(W.echo_then_set, f, q, "from thread")
    assert.are.equal("from thread", f:result(WAIT))
    assert.is_true(rawequal(f, q:get(true, WAIT)))
    joined(t)
    -- a thread that waits for the main thread's word before it sets
    local go, h = threading.Event(), Future()
    t = spawn(W.set_after, go, h, "later")
    assert.is_false(h:done())
    go:set()
    assert.are.equal("later", h:result(WAIT))
    joined(t)
  end)

  it("conc.select waits on futures mixed with a Queue", function()
    local q = queue.Queue()
    local f, g = Future(), Future()
    assert.is_nil((conc.select({q, f, g}, 0)))
    assert.is_nil((conc.select({q, f, g}, 0.01)))
    g:set_result(1)
    local obj, i = conc.select({q, f, g}, 0)
    assert.is_true(rawequal(g, obj))
    assert.are.equal(3, i)
    q:put("x")
    obj, i = conc.select({q, f, g}, 0)
    assert.is_true(rawequal(q, obj))
    assert.are.equal(1, i)
    -- woken by another thread settling the future
    local h = Future()
    local t = spawn(W.set_result, h, "done")
    obj, i = conc.select({queue.Queue(), h}, WAIT)
    assert.is_true(rawequal(h, obj))
    assert.are.equal(2, i)
    joined(t)
    -- a cancelled future is ready too
    local c = Future()
    c:cancel()
    obj, i = conc.select({queue.Queue(), c}, 0)
    assert.is_true(rawequal(c, obj))
    f:cancel()
  end)

  it("tostring shows the state, and what a finished future holds", function()
    local f = Future()
    assert.matches("^<Future at [^ ]+ state=pending>$", tostring(f))
    f:set_running_or_notify_cancel()
    assert.matches("^<Future at [^ ]+ state=running>$", tostring(f))
    f:set_result(3)
    assert.matches("^<Future at [^ ]+ state=finished returned number>$", tostring(f))
    local e = Future()
    e:set_exception(errors.ValueError("x"))
    assert.matches("^<Future at [^ ]+ state=finished raised ValueError>$", tostring(e))
    local s = Future()
    s:set_exception("plain")
    assert.matches("^<Future at [^ ]+ state=finished raised string>$", tostring(s))
    local c = Future()
    c:cancel()
    assert.matches("^<Future at [^ ]+ state=cancelled>$", tostring(c))
    assert.are_not.equal(tostring(c), tostring(s))  -- the address differs
  end)
end)

---------------------------------------------------------------------------
-- wait
---------------------------------------------------------------------------

describe("futures.wait", function()
  it("ALL_COMPLETED (the default) waits for every future", function()
    local a, b, c = finished(1), Future(), Future()
    local t1 = spawn(W.set_result, b, 2)
    local t2 = spawn(W.set_exception, c, errors.ValueError("c"))
    local done, not_done = futures.wait({a, b, c}, WAIT)
    same_set({a, b, c}, done, "done")
    same_set({}, not_done, "not_done")
    joined(t1)
    joined(t2)
    done, not_done = futures.wait({a, b, c}, WAIT, futures.ALL_COMPLETED)
    same_set({a, b, c}, done, "done")
    assert.are.equal(0, count(not_done))
  end)

  it("FIRST_COMPLETED returns once one is done", function()
    local a, b = Future(), Future()
    local t = spawn(W.set_result, b, "b")
    local done, not_done = futures.wait({a, b}, WAIT, futures.FIRST_COMPLETED)
    same_set({b}, done, "done")
    same_set({a}, not_done, "not_done")
    joined(t)
    -- a cancelled future counts as done
    local c = Future()
    c:cancel()
    done, not_done = futures.wait({a, c}, WAIT, futures.FIRST_COMPLETED)
    same_set({c}, done, "done")
    same_set({a}, not_done, "not_done")
    a:cancel()
  end)

  it("FIRST_EXCEPTION returns at the first error, past plain results", function()
    local a, b, c = finished(1), Future(), Future()
    local t = spawn(W.set_exception, c, errors.ValueError("c failed"))
    local done, not_done = futures.wait({a, b, c}, WAIT, futures.FIRST_EXCEPTION)
    same_set({a, c}, done, "done")
    same_set({b}, not_done, "not_done")
    joined(t)
    -- with no error it waits for all, as ALL_COMPLETED
    local d, e = Future(), Future()
    local t1 = spawn(W.set_result, d, 1)
    local t2 = spawn(W.set_result, e, 2)
    done, not_done = futures.wait({a, d, e}, WAIT, futures.FIRST_EXCEPTION)
    same_set({a, d, e}, done, "done")
    assert.are.equal(0, count(not_done))
    joined(t1)
    joined(t2)
    b:cancel()
  end)

  it("returns the futures still pending as not_done when the timeout passes", function()
    local a, b = finished(1), Future()
    local done, not_done = futures.wait({a, b}, 0.01)
    same_set({a}, done, "done")
    same_set({b}, not_done, "not_done")
    done, not_done = futures.wait({b}, 0)
    assert.are.equal(0, count(done))
    same_set({b}, not_done, "not_done")
    b:cancel()
  end)

  it("accepts a set as wait returns", function()
    local a, b, c = finished(1), Future(), Future()
    local done, not_done = futures.wait({a, b, c}, 0)
    same_set({b, c}, not_done, "not_done")
    local t = spawn(W.set_result, c, 3)
    local d2, nd2 = futures.wait(not_done, WAIT, futures.FIRST_COMPLETED)
    same_set({c}, d2, "done")
    same_set({b}, nd2, "not_done")
    joined(t)
    local d3, nd3 = futures.wait(done, 0)
    same_set({a}, d3, "done")
    assert.are.equal(0, count(nd3))
    b:cancel()
  end)

  it("a bad return_when raises ValueError", function()
    raises(errors.ValueError, futures.wait, {finished(1)}, 0, "SOMETIMES")
  end)
end)

---------------------------------------------------------------------------
-- as_completed
---------------------------------------------------------------------------

describe("futures.as_completed", function()
  it("yields each future once, those already done first", function()
    local a, b, c = finished("a"), Future(), finished("c")
    local go = threading.Event()
    local t = spawn(W.set_after, go, b, "b")
    local got = {}
    for f in futures.as_completed({a, b, c, a, b}, WAIT) do
      got[#got + 1] = f
      if #got == 2 then go:set() end  -- b is done only after a and c came
    end
    assert.are.equal(3, #got)
    local firsts = {[got[1]] = true, [got[2]] = true}
    assert.is_true(firsts[a] and firsts[c], "the done futures did not come first")
    assert.is_true(rawequal(b, got[3]))
    joined(t)
  end)

  it("raises TimeoutError when the timeout passes with futures pending", function()
    local a, b = finished(1), Future()
    local got = {}
    local ok, err = pcall(function()
      for f in futures.as_completed({a, b}, 0.01) do got[#got + 1] = f end
    end)
    assert.is_false(ok)
    assert.is_true(isinstance(err, errors.TimeoutError), errors.tostring(err))
    assert.are.equal(1, #got)
    assert.is_true(rawequal(a, got[1]))
    b:cancel()
  end)

  it("accepts a set and yields nothing for none", function()
    local a, b = finished(1), finished(2)
    local set = {[a] = true, [b] = true}
    local n = 0
    for f in futures.as_completed(set) do
      assert.is_true(set[f])
      n = n + 1
    end
    assert.are.equal(2, n)
    for _ in futures.as_completed({}) do error("yielded from nothing") end
  end)
end)

---------------------------------------------------------------------------
-- ThreadPoolExecutor
---------------------------------------------------------------------------

describe("ThreadPoolExecutor", function()
  it("submit returns a future of the task's values", function()
    local ex <close> = futures.ThreadPoolExecutor{max_workers = 2}
    local f = ex:submit(W.times10, 4)
    assert.are.equal(40, f:result(WAIT))
    local g = ex:submit(W.echo, "a", nil, 3)
    local r = table.pack(g:result(WAIT))
    assert.are.same({n = 4, 3, "a", nil, 3}, r)
    assert.is_true(f:done())
    assert.is_false(f:cancelled())
  end)

  it("map yields the results in input order, whatever order the tasks end in", function()
    local ex <close> = futures.ThreadPoolExecutor(3)
    local e1, e2, e3 = threading.Event(), threading.Event(), threading.Event()
    local order = queue.Queue()
    local iter = ex:map(W.chain, {1, 2, 3}, {e1, e2, e3}, {false, e1, e2},
                      {order, order, order})
    e3:set()  -- 3 ends first, then releases 2, which releases 1
    assert.are.same({10, 20, 30}, conc.list(iter))
    assert.are.same({3, 2, 1}, {order:get(true, WAIT), order:get(true, WAIT),
                                order:get(true, WAIT)})
  end)

  it("map raises a task's error at its place", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    local got = {}
    local ok, err = pcall(function()
      for r in ex:map(W.fail_on(2), {1, 2, 3}) do got[#got + 1] = r end
    end)
    assert.is_false(ok)
    assert.is_true(isinstance(err, errors.ValueError), errors.tostring(err))
    assert.are.equal("bad item 2", err.message)
    assert.are.same({1}, got)
  end)

  it("map sends many calls in chunks, in order, errors at their place", function()
    local ex <close> = futures.ThreadPoolExecutor(2)
    local xs = {}
    for i = 1, 1000 do xs[i] = i end
    local got = conc.list(ex:map(W.times10, xs))  -- 1000 > 32 per worker
    assert.are.equal(1000, #got)
    for i = 1, 1000 do assert.are.equal(i * 10, got[i]) end
    -- an explicit chunksize on a short map
    assert.are.same({10, 20, 30}, conc.list(ex:map(W.times10, {1, 2, 3},
                                                   {chunksize = 2})))
    local seen = {}
    local ok, err = pcall(function()
      for r in ex:map(W.fail_on(500), xs) do seen[#seen + 1] = r end
    end)
    assert.is_false(ok)
    assert.are.equal("bad item 500", err.message)
    assert.are.equal(499, #seen)
    assert.are.equal(499, seen[499])
    local bad = pcall(ex.map, ex, W.times10, {1}, {chunksize = 0})
    assert.is_false(bad)
    assert.are.same({10}, conc.list(ex:map(W.times10, {1})))  -- still usable
  end)

  it("a worker loads a function it is sent again once", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    local first = ex:submit(W.self_id):result(WAIT)
    for _ = 1, 3 do
      assert.are.equal(first, ex:submit(W.self_id):result(WAIT))
    end
  end)

  it("a loop that leaves map early cancels the calls not yet started", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    local s1, s2, s3 = threading.Event(), threading.Event(), threading.Event()
    local go1, go2 = threading.Event(), threading.Event()
    local got = {}
    go1:set()  -- the first call returns at once; the second waits for go2
    for r in ex:map(W.hold, {s1, s2, s3}, {go1, go2, go2}, {"a", "b", "c"}) do
      got[#got + 1] = r
      -- the only worker is on the second call: the third has not started,
      -- and the break cancels it
      assert.is_true(s2:wait(WAIT))
      break
    end
    go2:set()
    ex:shutdown(true)
    assert.are.same({"a"}, got)
    assert.is_false(s3:is_set())
  end)

  it("map with {timeout=} raises TimeoutError", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    local started, go = threading.Event(), threading.Event()
    local iter = ex:map(W.hold, {started}, {go}, {"v"}, {timeout = 0.01})
    local ok, err = pcall(function() for _ in iter do end end)
    go:set()
    assert.is_false(ok)
    assert.is_true(isinstance(err, errors.TimeoutError), errors.tostring(err))
  end)

  it("shutdown(true, {cancel_futures = true}) cancels the queued work", function()
    local ex = futures.ThreadPoolExecutor(1)
    local started, fq = threading.Event(), queue.Queue()
    local f1 = ex:submit(W.hold_until_done, started, fq)
    assert.is_true(started:wait(WAIT))  -- the only worker is busy
    local f2 = ex:submit(W.times10, 2)
    local f3 = ex:submit(W.times10, 3)
    -- f1 ends once f3, the last queued, is cancelled: the worker is busy
    -- until shutdown has taken every item (freed by f2's cancel, it would
    -- run f3)
    fq:put(f3)
    ex:shutdown(true, {cancel_futures = true})
    assert.is_true(f1:done())
    assert.is_true(f1:result(0))  -- it saw f3 cancelled
    assert.is_true(f2:cancelled())
    assert.is_true(f3:cancelled())
    raises(errors.CancelledError, f3.result, f3, 0)
  end)

  it("submit after shutdown raises RuntimeError", function()
    local ex = futures.ThreadPoolExecutor(1)
    assert.are.equal(10, ex:submit(W.times10, 1):result(WAIT))
    ex:shutdown()
    raises(errors.RuntimeError, ex.submit, ex, W.times10, 2)
    ex:shutdown()  -- again: nothing to do
  end)

  it("<close> shuts the executor down and waits for its work", function()
    local f, ex2
    do
      local ex <close> = futures.ThreadPoolExecutor(1)
      ex2 = ex
      f = ex:submit(W.nap, "slept")
    end
    assert.is_true(f:done())
    assert.are.equal("slept", f:result(0))
    raises(errors.RuntimeError, ex2.submit, ex2, W.times10, 1)
  end)

  it("runs the initializer once in each worker", function()
    local inits = queue.Queue()
    local started, go = threading.Event(), threading.Event()
    local started2 = threading.Event()
    local ex <close> = futures.ThreadPoolExecutor{
      max_workers = 2, initializer = W.init_report, initargs = {inits}}
    -- two held tasks make two workers; the rest find no idle one and queue
    local fs = {ex:submit(W.hold, started, go, 1), ex:submit(W.hold, started2, go, 2)}
    assert.is_true(started:wait(WAIT))
    assert.is_true(started2:wait(WAIT))
    for i = 3, 6 do fs[i] = ex:submit(W.times10, i) end
    go:set()
    for i = 1, 6 do fs[i]:result(WAIT) end
    ex:shutdown(true)
    local names = {}
    while not inits:empty() do names[#names + 1] = inits:get_nowait() end
    assert.are.equal(2, #names)
    assert.are_not.equal(names[1], names[2])
  end)

  it("a failing initializer breaks the pool: BrokenThreadPool from pending futures and submit", function()
    local go = threading.Event()
    local ex <close> = futures.ThreadPoolExecutor{
      max_workers = 1, initializer = W.init_fail, initargs = {go}}
    local f1 = ex:submit(W.times10, 1)
    local f2 = ex:submit(W.times10, 2)
    go:set()  -- now the initializer raises (reported on stderr)
    for _, f in ipairs({f1, f2}) do
      local e = f:exception(WAIT)
      assert.is_true(isinstance(e, errors.BrokenThreadPool), errors.tostring(e))
      assert.is_true(isinstance(e, errors.BrokenExecutor))
      raises(errors.BrokenThreadPool, f.result, f, 0)
    end
    raises(errors.BrokenThreadPool, ex.submit, ex, W.times10, 3)
  end)

  it("max_workers must be a positive integer", function()
    raises(errors.ValueError, futures.ThreadPoolExecutor, {max_workers = 0})
    raises(errors.ValueError, futures.ThreadPoolExecutor, {max_workers = -1})
    raises(errors.ValueError, futures.ThreadPoolExecutor, 0)
    raises(errors.TypeError, futures.ThreadPoolExecutor, {max_workers = 1.5})
    raises(errors.TypeError, futures.ThreadPoolExecutor, {max_workers = "2"})
  end)

  it("submit of a non-callable raises TypeError and leaves the executor usable", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    raises(errors.TypeError, ex.submit, ex, 5)
    raises(errors.TypeError, ex.submit, ex, {})
    assert.are.equal(70, ex:submit(W.times10, 7):result(WAIT))
  end)

  it("an argument that cannot cross fails at submit, and the executor stays usable", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    local co = coroutine.create(function() end)
    local ok, err = pcall(ex.submit, ex, W.echo, 1, co)
    assert.is_false(ok)
    assert.matches("cannot transfer", errors.tostring(err))
    assert.are.equal(80, ex:submit(W.times10, 8):result(WAIT))
  end)

  it("names its worker threads after thread_name_prefix", function()
    local ex <close> = futures.ThreadPoolExecutor{max_workers = 1,
                                                 thread_name_prefix = "spec-pool"}
    local name = ex:submit(W.thread_name):result(WAIT)
    assert.are.equal("spec-pool", name:sub(1, #"spec-pool"))
    local dflt <close> = futures.ThreadPoolExecutor(1)
    name = dflt:submit(W.thread_name):result(WAIT)
    assert.matches("^ThreadPoolExecutor%-", name)
  end)

  it("starts at most max_workers threads", function()
    local before = threading.active_count()
    local go = threading.Event()
    local ex <close> = futures.ThreadPoolExecutor{max_workers = 2,
                                                 thread_name_prefix = "capped"}
    local fs, starts = {}, {}
    for i = 1, 6 do
      starts[i] = threading.Event()
      fs[i] = ex:submit(W.hold, starts[i], go, i)
    end
    assert.is_true(starts[1]:wait(WAIT))
    assert.is_true(starts[2]:wait(WAIT))
    assert.are.equal(before + 2, threading.active_count())
    local names = {}
    for _, t in ipairs(threading.enumerate()) do
      if t.name:sub(1, 6) == "capped" then names[#names + 1] = t.name end
    end
    assert.are.equal(2, #names)
    go:set()
    for i = 1, 6 do assert.are.equal(i, fs[i]:result(WAIT)) end
    assert.are.equal(before + 2, threading.active_count())
  end)

  it("a task's table error carries a traceback", function()
    local ex <close> = futures.ThreadPoolExecutor(1)
    local f = ex:submit(W.raise_value_error)
    local e = f:exception(WAIT)
    assert.is_true(isinstance(e, errors.ValueError), errors.tostring(e))
    assert.are.equal("task failed", e.message)
    assert.are.equal("string", type(e.traceback))
    assert.matches("stack traceback", e.traceback)
    local ok, e2 = pcall(f.result, f, 0)
    assert.is_false(ok)
    assert.are.equal("string", type(e2.traceback))
  end)
end)
