-- conc.shared.list and conc.shared.dict against Python's documented list and
-- dict behaviour (shifted to Lua's 1-based indices; docs/shared.md), and
-- shared between threads.
--
-- Workers that run in threads are defined under the real globals (busted
-- runs this file with an _ENV of its own, which would be copied along). A
-- worker's error is appended to a shared list the test checks, and every
-- join is bounded.

local conc = require "conc"
local core = require "conc.core"
local errors = require "conc.errors"
local shared = require "conc.shared"
local threading = require "conc.threading"

local isinstance = conc.isinstance
local WAIT = 60  -- seconds: the bound on every join (sanitizer builds are slow)

local function raises(cls, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(isinstance(err, cls), "expected " .. tostring(cls.__qualname)
                 .. ", got " .. errors.tostring(err))
  return tostring(err)
end

-- A Lua error that is not a crash: a plain message or a conc error.
local function fails(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return errors.tostring(err)
end

local function seq(l)
  return l:copy()
end

-- ======================================================================
-- What runs in threads
-- ======================================================================

local W = {}
do
  local _ENV = _G

  -- Thread body: runs f(...), and records its error in `failures`.
  function W.guard(failures, f, ...)
    local ok, err = pcall(f, ...)
    if not ok then failures:append(tostring(err)) end
  end

  function W.append_range(l, from, to)
    for i = from, to do l:append(i) end
  end

  function W.increment(d, lock, n)
    for _ = 1, n do
      local _ <close> = lock:enter()
      d.n = d.n + 1
    end
  end

  function W.use_nested(d)
    d.inner:append("from thread")
    d.lock:acquire()
    d.seen = require("conc").isinstance(d.lock, nil) == false
  end

  function W.report_lock(d, lock)
    d.same = rawequal(d.lock, lock)
    d.locked = d.lock:locked()
  end
end

-- Runs f(...) in n threads at once and joins them all; raises with the
-- first error a thread met.
local function in_threads(n, f, ...)
  local failures = shared.list()
  local ts = {}
  for i = 1, n do
    ts[i] = threading.Thread{target = W.guard, args = table.pack(failures, f, ...)}
    ts[i]:start()
  end
  for i = 1, n do
    ts[i]:join(WAIT)
    assert.is_false(ts[i]:is_alive(), "thread still running after " .. WAIT .. " s")
  end
  assert.are.same({}, failures:copy())
end

-- ======================================================================
-- shared.list
-- ======================================================================

describe("conc.shared.list", function()
  it("is made empty or from a sequence, which is copied", function()
    assert.equal(0, #shared.list())
    local t = {1, "two", 3.5, true}
    local l = shared.list(t)
    t[1] = "changed"
    assert.are.same({1, "two", 3.5, true}, seq(l))
    assert.are.same({1, "two", 3.5, true}, seq(shared.list(l)))
    assert.equal(math.type(3.5), math.type(l[3]))
  end)

  it("is reached by require 'conc' too, and prints its kind", function()
    assert.equal(shared, conc.shared)
    assert.truthy(tostring(shared.list()):match("^conc%.shared%.list: "))
    assert.truthy(tostring(shared.dict()):match("^conc%.shared%.dict: "))
  end)

  it("indexes from 1, negative from the end, nil outside", function()
    local l = shared.list{"a", "b", "c"}
    assert.equal(3, #l)
    assert.equal("a", l[1])
    assert.equal("c", l[3])
    assert.equal("c", l[-1])
    assert.equal("a", l[-3])
    assert.is_nil(l[4])
    assert.is_nil(l[0])
    assert.is_nil(l[-4])
    assert.equal("b", l[2.0])
    raises(errors.TypeError, function() return l[1.5] end)
    raises(errors.TypeError, function() return l[{}] end)
    assert.is_nil(l.nosuchmethod)
  end)

  it("assigns in range, appends at #l + 1, raises IndexError elsewhere", function()
    local l = shared.list{1, 2}
    l[1] = "one"
    l[-1] = "two"
    l[3] = "three"
    assert.are.same({"one", "two", "three"}, seq(l))
    local msg = raises(errors.IndexError, function() l[5] = 1 end)
    assert.equal("IndexError: list assignment index out of range", msg)
    raises(errors.IndexError, function() l[0] = 1 end)
    raises(errors.IndexError, function() l[-4] = 1 end)
    raises(errors.TypeError, function() l.x = 1 end)
    raises(errors.ValueError, function() l[1] = nil end)
    assert.are.same({"one", "two", "three"}, seq(l))
  end)

  it("append, extend from a table, a shared.list or itself", function()
    local l = shared.list()
    l:append(1)
    l:append({x = 1})
    l:extend{2, 3}
    l:extend(shared.list{4})
    l:extend{}
    assert.equal(5, #l)
    l:extend(l)
    assert.equal(10, #l)
    assert.are.same({x = 1}, l[7])
    raises(errors.TypeError, l.extend, l, 5)
    raises(errors.TypeError, l.extend, l)
    raises(errors.TypeError, l.extend, l, shared.dict())
    raises(errors.ValueError, l.append, l, nil)
    raises(errors.ValueError, l.extend, l, setmetatable({}, {__len = function() return 2 end}))
    assert.equal(10, #l, "a failed extend adds nothing")
  end)

  it("insert(i, v) inserts before item i, clamped as Python's insert", function()
    local l = shared.list{"b", "d"}
    l:insert(1, "a")
    l:insert(3, "c")
    l:insert(#l + 1, "e")
    l:insert(100, "f")
    assert.are.same({"a", "b", "c", "d", "e", "f"}, seq(l))
    l:insert(-1, "before f")
    assert.equal("before f", l[-2])
    l:insert(-100, "first")
    l:insert(0, "zeroth")
    assert.are.same({"zeroth", "first", "a"}, {l[1], l[2], l[3]})
    fails(l.insert, l, "x", 1)
    raises(errors.ValueError, l.insert, l, 1)
  end)

  it("pop([i]) removes the last or item i, with Python's IndexErrors", function()
    local l = shared.list{1, 2, 3, 4}
    assert.equal(4, l:pop())
    assert.equal(1, l:pop(1))
    assert.equal(2, l:pop(-2))
    assert.equal(3, l:pop(-1))
    assert.equal("IndexError: pop from empty list", raises(errors.IndexError, l.pop, l))
    l:append(1)
    assert.equal("IndexError: pop index out of range", raises(errors.IndexError, l.pop, l, 2))
    raises(errors.IndexError, l.pop, l, 0)
    raises(errors.IndexError, l.pop, l, -2)
    assert.is_true(isinstance(select(2, pcall(l.pop, l, 9)), errors.LookupError))
    fails(l.pop, l, "last")
    assert.equal(1, #l)
  end)

  it("remove, index, count by equal encoding; 1 equals 1.0", function()
    local l = shared.list{"a", 1, {1, 2}, "a", 2.0, true}
    assert.equal(2, l:index(1))
    assert.equal(2, l:index(1.0))
    assert.equal(5, l:index(2))
    assert.equal(3, l:index({1, 2}))
    assert.equal(2, l:count("a"))
    assert.equal(1, l:count(2))
    assert.equal(0, l:count("zz"))
    assert.equal(0, l:count(nil))
    assert.equal("ValueError: zz is not in list", raises(errors.ValueError, l.index, l, "zz"))
    l:remove("a")
    assert.are.same({1, {1, 2}, "a", 2.0, true}, seq(l))
    l:remove(2)
    assert.are.same({1, {1, 2}, "a", true}, seq(l))
    raises(errors.ValueError, l.remove, l, false)
    fails(l.index, l)
  end)

  it("clear() empties; copy() is a plain snapshot", function()
    local l = shared.list{1, 2, 3}
    local c = l:copy()
    assert.is_nil(getmetatable(c))
    l:append(4)
    assert.are.same({1, 2, 3}, c)
    l:clear()
    assert.equal(0, #l)
    assert.are.same({}, l:copy())
    l:append("again")
    assert.equal("again", l[1])
  end)

  it("gives copies: changing a table read from it changes nothing stored", function()
    local l = shared.list{{x = 1}}
    l[1].x = 2
    assert.equal(1, l[1].x)
    assert.is_false(rawequal(l[1], l[1]))
  end)

  it("pairs() walks a snapshot taken when the loop starts", function()
    local l = shared.list{"a", "b", "c"}
    local got = {}
    for i, v in pairs(l) do
      got[i] = v
      l:append("more")
      l[1] = "changed"
    end
    assert.are.same({"a", "b", "c"}, got)
    assert.equal(6, #l)
  end)

  it("ipairs() reads live, one item at a time, to the first index past the end", function()
    local l = shared.list{1, 2, 3}
    local got = {}
    for i, v in ipairs(l) do
      got[i] = v
      if i == 1 then l:pop() end
    end
    assert.are.same({1, 2}, got)
  end)

  it("holds big values and conc objects", function()
    local big = ("x"):rep(1000)
    local lock = threading.Lock()
    local l = shared.list{big, {big, n = 1}, lock}
    assert.equal(big, l[1])
    assert.equal(big, l[2][1])
    assert.is_true(rawequal(lock, l[3]))
    assert.equal(3, l:index(lock))
    assert.equal(2, l:index({big, n = 1}))
    raises(errors.ValueError, l.index, l, threading.Lock())
    assert.equal(lock, l:pop())
  end)

  it("refuses what cannot cross, naming it, and keeps its items", function()
    local l = shared.list{1}
    assert.truthy(fails(l.append, l, coroutine.create(print)):find("cannot transfer coroutine"))
    assert.truthy(fails(l.extend, l, {2, io.stdout}):find("cannot transfer userdata"))
    assert.truthy(fails(function() l[1] = {io.stdout} end):find("cannot transfer userdata"))
    assert.are.same({1}, seq(l))
  end)

  it("names the expected type when called on something else", function()
    local l = shared.list()
    assert.truthy(fails(l.append, {}, 1):find("conc.shared.list expected", 1, true))
    assert.truthy(fails(l.copy, shared.dict()):find("conc.shared.list expected", 1, true))
  end)
end)

-- ======================================================================
-- shared.dict
-- ======================================================================

describe("conc.shared.dict", function()
  it("is made empty or from a table, which is copied", function()
    assert.equal(0, #shared.dict())
    local t = {a = 1, b = {c = 2}}
    local d = shared.dict(t)
    t.a = 100
    assert.equal(1, d.a)
    assert.are.same({c = 2}, d.b)
    assert.are.same({a = 1, b = {c = 2}}, shared.dict(d):copy())
    raises(errors.TypeError, shared.dict, 5)
    raises(errors.TypeError, shared.dict, shared.list())
  end)

  it("reads nil for a missing key, writes, and deletes on nil", function()
    local d = shared.dict()
    assert.is_nil(d.x)
    d.x = 1
    d[1] = "one"
    d[true] = "yes"
    d[2.5] = "two and a half"
    assert.equal(4, #d)
    assert.equal(1, d.x)
    assert.equal("one", d[1])
    assert.equal("yes", d[true])
    assert.equal("two and a half", d[2.5])
    d.x = nil
    d.missing = nil
    assert.is_nil(d.x)
    assert.equal(3, #d)
  end)

  it("keys 1.0 and 1 alike, as Lua tables do; refuses NaN and unhashable keys", function()
    local d = shared.dict{[1.0] = "a"}
    assert.equal("a", d[1])
    d[2] = "b"
    assert.equal("b", d[2.0])
    assert.are.same({1, 2}, d:keys())
    assert.equal("integer", math.type(d:keys()[1]))
    raises(errors.ValueError, function() d[0 / 0] = 1 end)
    raises(errors.ValueError, function() return d[0 / 0] end)
    local msg = raises(errors.TypeError, function() return d[{}] end)
    assert.equal("TypeError: unhashable type: 'table'", msg)
    raises(errors.TypeError, function() d[print] = 1 end)
    raises(errors.TypeError, function() d[threading.Lock()] = 1 end)
    raises(errors.TypeError, d.get, d, nil)
    raises(errors.TypeError, shared.dict, {[{}] = 1})
  end)

  it("get(k, default) and setdefault(k, default)", function()
    local d = shared.dict{a = 1}
    assert.equal(1, d:get("a"))
    assert.is_nil(d:get("b"))
    assert.equal(0, d:get("b", 0))
    assert.equal(1, d:setdefault("a", 5))
    assert.equal(5, d:setdefault("b", 5))
    assert.equal(5, d.b)
    assert.is_nil(d:setdefault("c"))
    assert.is_nil(d:setdefault("c", nil))
    assert.equal(2, #d, "a nil default stores nothing")
    assert.are.same({1}, d:setdefault("t", {1}))
  end)

  it("update() from a table or another shared.dict; later keys win", function()
    local d = shared.dict{a = 1}
    d:update{a = 2, b = 3}
    d:update(shared.dict{c = 4})
    d:update(d)
    d:update()
    assert.are.same({a = 2, b = 3, c = 4}, d:copy())
    raises(errors.TypeError, d.update, d, "x")
    raises(errors.TypeError, d.update, d, {[{}] = 1})
    assert.are.same({a = 2, b = 3, c = 4}, d:copy(), "a failed update sets nothing")
  end)

  it("pop(k[, default]) removes; KeyError when absent and no default", function()
    local d = shared.dict{a = 1, [3] = "c"}
    assert.equal(1, d:pop("a"))
    assert.is_nil(d.a)
    assert.equal("dflt", d:pop("a", "dflt"))
    assert.is_nil(d:pop("a", nil))
    assert.equal("KeyError: 'a'", raises(errors.KeyError, d.pop, d, "a"))
    assert.equal("KeyError: 4", raises(errors.KeyError, d.pop, d, 4))
    assert.is_true(isinstance(select(2, pcall(d.pop, d, "a")), errors.LookupError))
    assert.equal("c", d:pop(3.0))
    assert.equal(0, #d)
  end)

  it("keys(), values(), items() are sequences in insertion order", function()
    local d = shared.dict()
    d.z = 1
    d.a = 2
    d[10] = 3
    d.m = 4
    d.a = nil
    d.a = 5
    assert.are.same({"z", 10, "m", "a"}, d:keys())
    assert.are.same({1, 3, 4, 5}, d:values())
    assert.are.same({{"z", 1}, {10, 3}, {"m", 4}, {"a", 5}}, d:items())
    local order = {}
    for k, v in pairs(d) do
      order[#order + 1] = k
      d[k] = nil  -- the loop walks its snapshot
      d.new = v
    end
    assert.are.same({"z", 10, "m", "a"}, order)
    assert.are.same({new = 5}, d:copy())
  end)

  it("clear(), copy(), #d", function()
    local d = shared.dict{a = 1, b = 2}
    local c = d:copy()
    assert.is_nil(getmetatable(c))
    d.c = 3
    assert.are.same({a = 1, b = 2}, c)
    assert.equal(3, #d)
    d:clear()
    assert.equal(0, #d)
    assert.are.same({}, d:copy())
    d.x = 1
    assert.are.same({"x"}, d:keys())
  end)

  it("lets method names win over keys: d:get('keys') reads such a key", function()
    local d = shared.dict()
    d.keys = "stored"
    d.__index = "dunder"
    assert.equal("function", type(d.keys))
    assert.equal("stored", d:get("keys"))
    assert.equal("dunder", d.__index)
    assert.are.same({"keys", "__index"}, d:keys())
  end)

  -- __index skips the method lookup for names no method has (a mask of
  -- the method names); a method a script adds must still be found
  it("finds methods a script adds to the metatable", function()
    local d = shared.dict{peek = "key"}
    local mt = getmetatable(d)
    local names = {"peek", "size", "drain", "stats", "zq", "n"}
    for _, name in ipairs(names) do
      mt[name] = function(self) return "method " .. name end
    end
    for _, name in ipairs(names) do
      assert.equal("method " .. name, d[name](d))
    end
    assert.equal("key", d:get("peek"))
    for _, name in ipairs(names) do mt[name] = nil end
    assert.equal("key", d.peek)
  end)

  it("gives copies: d.t.x = 1 does not change the stored table", function()
    local d = shared.dict{t = {x = 0}}
    d.t.x = 1
    assert.equal(0, d.t.x)
    local t = d.t
    t.x = 1
    d.t = t
    assert.equal(1, d.t.x)
  end)

  it("holds long keys, big values and conc objects by reference", function()
    local d = shared.dict()
    local long = ("k"):rep(300)
    local lock = threading.Lock()
    d[long] = ("v"):rep(5000)
    d.lock = lock
    d.inner = shared.list{1}
    assert.equal(("v"):rep(5000), d[long])
    assert.is_true(rawequal(lock, d.lock))
    d.inner:append(2)
    assert.are.same({1, 2}, d.inner:copy())
    assert.equal(("v"):rep(5000), d:pop(long))
    assert.is_nil(d[long])
  end)

  it("keeps up with a plain table through many random changes", function()
    local d, model = shared.dict(), {}
    local keys = {}
    for i = 1, 60 do keys[i] = i % 3 == 0 and i or ("key" .. i) end
    keys[61] = ("long key "):rep(10)
    local seed = 12345
    local function rand(n)  -- deterministic
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    for step = 1, 5000 do
      local k = keys[rand(#keys)]
      local r = rand(10)
      if r <= 5 then
        d[k] = step
        model[k] = step
      elseif r <= 8 then
        d[k] = nil
        model[k] = nil
      elseif r == 9 then
        assert.equal(model[k], d:pop(k, nil))
        model[k] = nil
      else
        assert.equal(model[k], d[k])
      end
    end
    assert.are.same(model, d:copy())
    local n = 0
    for _ in pairs(model) do n = n + 1 end
    assert.equal(n, #d)
  end)

  it("names the expected type when called on something else", function()
    local d = shared.dict()
    assert.truthy(fails(d.get, shared.list(), "a"):find("conc.shared.dict expected", 1, true))
    assert.truthy(fails(d.keys, nil):find("conc.shared.dict expected", 1, true))
  end)
end)

-- ======================================================================
-- Between threads
-- ======================================================================

describe("shared containers between threads", function()
  it("are the same container in a thread: what it appends, main sees", function()
    local l = shared.list{"main"}
    in_threads(1, W.append_range, l, 1, 3)
    assert.are.same({"main", 1, 2, 3}, seq(l))
  end)

  it("cross as upvalues and inside tables, with nested conc objects", function()
    local d = shared.dict{inner = shared.list(), lock = threading.Lock()}
    local box = {d = d}
    local f
    do
      local _ENV = _G
      f = function() W.use_nested(box.d) end
    end
    in_threads(1, f)
    assert.are.same({"from thread"}, d.inner:copy())
    assert.is_true(d.seen)
    assert.is_true(d.lock:locked(), "the thread took the very lock")
    d.lock:release()
  end)

  it("give back a stored Lock as the same lock, in every thread", function()
    local lock = threading.Lock()
    local d = shared.dict{lock = lock}
    lock:acquire()
    in_threads(1, W.report_lock, d, lock)
    assert.is_true(d.same)
    assert.is_true(d.locked)
    lock:release()
  end)

  it("count exactly: 4 threads x 100 000 increments under a Lock", function()
    local d = shared.dict{n = 0}
    in_threads(4, W.increment, d, threading.Lock(), 100000)
    assert.equal(400000, d.n)
  end)

  it("lose nothing: 4 threads append 10 000 items each, no lock", function()
    local l = shared.list()
    local failures = shared.list()
    local ts = {}
    for t = 1, 4 do
      ts[t] = threading.Thread{target = W.guard,
        args = {failures, W.append_range, l, t * 100000 + 1, t * 100000 + 10000}}
      ts[t]:start()
    end
    for t = 1, 4 do
      ts[t]:join(WAIT)
      assert.is_false(ts[t]:is_alive())
    end
    assert.are.same({}, failures:copy())
    assert.equal(40000, #l)
    local seen, last = {}, {}
    for _, v in pairs(l) do
      local t = v // 100000
      assert.is_nil(seen[v], "twice: " .. v)
      seen[v] = true
      assert.is_true(v > (last[t] or 0), "one thread's items keep their order")
      last[t] = v
    end
    for t = 1, 4 do assert.equal(t * 100000 + 10000, last[t]) end
  end)

  it("are freed with their last reference", function()
    collectgarbage()
    collectgarbage()
    local before = core.live_objects()
    do
      local d = shared.dict{l = shared.list{threading.Lock()}}
      in_threads(1, W.append_range, d.l, 1, 2)
    end
    collectgarbage()
    collectgarbage()
    local after = core.live_objects()
    assert.equal(before["conc.shared.list"], after["conc.shared.list"])
    assert.equal(before["conc.shared.dict"], after["conc.shared.dict"])
    assert.equal(before["conc.Lock"], after["conc.Lock"])
  end)
end)
