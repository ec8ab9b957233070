-- conc.multiprocessing.Manager: dict, list and Namespace in shared memory
-- that every process forked after the Manager sees, its queues and
-- synchronization objects, shutdown and `<close>`, and what happens when a
-- process is killed holding a container's lock (docs/multiprocessing.md,
-- "Manager").
--
-- Children report through their exit code (an assert that fails exits 1)
-- or through the containers themselves. Every join is bounded, and a child
-- still running when a case ends is killed (after_each).

local conc = require "conc"
local core = require "conc.core"
local errors = require "conc.errors"
local mp = require "conc.multiprocessing"
local shared = require "conc.shared"
local threading = require "conc.threading"
local time = require "conc.time"
local support = require "support"

local isinstance = conc.isinstance
local forks = support.forks(it, function(why) pending(why) end)

local WAIT = 30  -- seconds: the bound on every wait (sanitizer builds are slow)

local raises = support.raises
local kids = support.children(WAIT)
local start, finish, in_child, wait_for =
  kids.start, kids.finish, kids.in_child, kids.wait_for
after_each(kids.cleanup)

local REFUSED = "conc objects (locks, queues, ...) should only be shared " ..
                "between processes through inheritance"

describe("multiprocessing.Manager", function()
  forks("dict and list updated by 8 processes at once lose nothing", function()
    local m <close> = mp.Manager()
    local d, l = m:dict(), m:list()
    local go = m:Event()
    local ps = {}
    for w = 1, 8 do
      ps[w] = start(mp.Process{target = function()
        assert(go:wait(WAIT))
        for i = 1, 1000 do
          local k = w * 10000 + i
          l:append(k)
          d[k] = {w = w, i = i}
        end
      end})
    end
    go:set()
    for w = 1, 8 do assert.are.equal(0, finish(ps[w])) end
    assert.are.equal(8000, #l)
    assert.are.equal(8000, #d)
    local seen = {}
    for _, k in ipairs(l:copy()) do
      assert.is_nil(seen[k], "item twice: " .. k)
      seen[k] = true
    end
    for w = 1, 8 do
      for i = 1, 1000 do
        local k = w * 10000 + i
        assert.is_true(seen[k], "lost " .. k)
        local v = d[k]
        assert.are.same({w = w, i = i}, v)
      end
    end
  end)

  forks("a counter incremented under a Manager's Lock by 8 processes", function()
    local m <close> = mp.Manager()
    local d, lock = m:dict{n = 0}, m:Lock()
    local ps = {}
    for w = 1, 8 do
      ps[w] = start(mp.Process{target = function()
        for _ = 1, 500 do
          local _ <close> = lock:enter()
          d.n = d.n + 1
        end
      end})
    end
    for w = 1, 8 do assert.are.equal(0, finish(ps[w])) end
    assert.are.equal(4000, d.n)
  end)

  forks("threads and processes work on the same containers", function()
    local m <close> = mp.Manager()
    local l, d = m:list(), m:dict()
    local function work(tag)
      for i = 1, 300 do
        l:append(tag .. i)
        d[tag .. i] = i
      end
    end
    -- the processes first: forked while threads allocate, a child of gcc
    -- 12's ASan can inherit its allocator's lock held (docs/architecture.md)
    local ps = {}
    for p = 1, 2 do ps[p] = start(mp.Process{target = work, args = {"p" .. p .. ":"}}) end
    local ts = {}
    for t = 1, 2 do
      ts[t] = threading.Thread{target = work, args = {"t" .. t .. ":"}}
      ts[t]:start()
    end
    for t = 1, 2 do ts[t]:join() end
    for p = 1, 2 do assert.are.equal(0, finish(ps[p])) end
    assert.are.equal(1200, #l)
    assert.are.equal(1200, #d)
    assert.are.equal(300, d["p2:300"])
    assert.are.equal(300, d["t1:300"])
    -- a thread the parent starts after the children sees their items
    local got = shared.list()
    local t = threading.Thread{target = function() got:append(#l, d["p1:7"]) end}
    t:start(); t:join()
    assert.are.equal(1200, got[1])
  end)

  forks("a child sees the parent's items and the parent the child's", function()
    local m <close> = mp.Manager()
    local d = m:dict{from = "parent"}
    assert.are.equal(0, in_child(function()
      assert(d.from == "parent")
      d.child = "was here"
      d.from = nil
    end))
    assert.are.equal("was here", d.child)
    assert.is_nil(d.from)
    assert.are.same({"child"}, d:keys())
  end)

  forks("values with nested tables, long strings and floats round-trip", function()
    local m <close> = mp.Manager()
    local d, l = m:dict(), m:list()
    local long = string.rep("0123456789", 1000)
    local nested = {a = {b = {c = {1, 2.5, "three", true}}}, list = {1, 2, 3}}
    local cyc = {name = "cycle"}
    cyc.self = cyc
    d.nested, d.long, d.f, d.cyc = nested, long, 0.1, cyc
    l:append(nested); l:append(long)
    assert.are.equal(0, in_child(function()
      assert(d.nested.a.b.c[3] == "three" and d.nested.a.b.c[2] == 2.5)
      assert(d.long == long and d.f == 0.1)
      local c = d.cyc
      assert(c.self == c and c.name == "cycle")
      assert(l[1].list[3] == 3 and l[2] == long)
      d.back = {deep = {{{"x"}}}, n = 2 ^ 53}
      l[1] = {changed = true}
    end))
    assert.are.same(nested, d.nested)
    assert.are.equal("x", d.back.deep[1][1][1])
    assert.are.equal(2 ^ 53, d.back.n)
    assert.is_true(l[1].changed)
    -- what is read is a copy, as with Python's proxies
    d.nested.a = nil
    assert.is_not_nil(d.nested.a)
  end)

  it("refuses conc objects in values, with a clear error", function()
    local m <close> = mp.Manager()
    local d, l = m:dict(), m:list()
    local lock = threading.Lock()
    for _, f in ipairs{
      function() d.lock = lock end,
      function() d:update{x = {inner = mp.Lock()}} end,
      function() d:setdefault("q", mp.Queue()) end,
      function() l:append({lock = lock}) end,
      function() l[1] = lock end,
      function() l:insert(1, m:dict()) end,
      function() l:extend{1, lock} end,
      function() m:dict{a = lock} end,
      function() m:list(shared.list{lock}) end,
      function() m:dict(shared.dict{a = lock}) end,
    } do
      local err = raises(errors.RuntimeError, f)
      assert.are.equal(REFUSED, err.message)
    end
    assert.are.equal(0, #d)
    assert.are.equal(0, #l)
    -- a thread container still holds objects by reference
    local t = shared.dict{lock = lock}
    assert.are.equal(lock, t.lock)
    -- and plain values from a thread container are fine
    assert.are.equal(2, m:list(shared.list{1, 2})[2])
  end)

  it("lists index from 1, negative indices count from the end, as conc.shared's", function()
    local m <close> = mp.Manager()
    local l = m:list{"a", "b", "c"}
    assert.are.equal("a", l[1])
    assert.are.equal("c", l[3])
    assert.are.equal("c", l[-1])
    assert.are.equal("a", l[-3])
    assert.is_nil(l[0])
    assert.is_nil(l[4])
    assert.is_nil(l[-4])
    l[4] = "d"                                  -- #l + 1 appends
    assert.are.equal(4, #l)
    raises(errors.IndexError, function() l[6] = "x" end)
    raises(errors.IndexError, function() l[-5] = "x" end)
    raises(errors.TypeError, function() return l[1.5] end)
    raises(errors.ValueError, function() l[1] = nil end)
    l[-1] = "D"
    l:insert(-1, "before D")
    assert.are.same({"a", "b", "c", "before D", "D"}, l:copy())
    l:insert(0, "front"); l:insert(100, "back")
    assert.are.equal("front", l:pop(1))
    assert.are.equal("back", l:pop())
    assert.are.equal("b", l:pop(-4))
    assert.are.equal(2, l:index("c"))
    assert.are.equal(1, l:count("a"))
    l:remove("a")
    raises(errors.ValueError, l.remove, l, "zz")
    raises(errors.IndexError, l.pop, l, 9)
    local seen = {}
    for i, v in ipairs(l) do seen[i] = v end
    assert.are.same({"c", "before D", "D"}, seen)
    l:clear()
    raises(errors.IndexError, l.pop, l)
  end)

  it("dicts have conc.shared's methods", function()
    local m <close> = mp.Manager()
    local d = m:dict()
    d.a = 1; d.b = 2  -- in this order (a table's pairs have none)
    assert.are.equal(2, #d)
    assert.are.equal(1, d:get("a"))
    assert.are.equal("dflt", d:get("zz", "dflt"))
    assert.are.equal(3, d:setdefault("c", 3))
    assert.are.equal(3, d:setdefault("c", 4))
    d:update{a = 10, d = 4}
    assert.are.same({"a", "b", "c", "d"}, d:keys())
    assert.are.same({10, 2, 3, 4}, d:values())
    assert.are.same({{"a", 10}, {"b", 2}, {"c", 3}, {"d", 4}}, d:items())
    assert.are.equal(2, d:pop("b"))
    assert.are.equal("none", d:pop("b", "none"))
    raises(errors.KeyError, d.pop, d, "b")
    assert.are.same({a = 10, c = 3, d = 4}, d:copy())
    local n = 0
    for k, v in pairs(d) do n = n + 1; assert.are.equal(d[k], v) end
    assert.are.equal(3, n)
    raises(errors.TypeError, function() d[{}] = 1 end)
    d[1.0] = "one"
    assert.are.equal("one", d[1])
    d:clear()
    assert.are.equal(0, #d)
    assert.matches("^conc.shared.dict: ", tostring(d))
  end)

  it("passes its dict, list, Namespace and Lock to a spawned child", function()
    local T = require "fixtures.spawn_targets"
    local m <close> = mp.Manager()
    local d, l, ns, lock = m:dict(), m:list(), m:Namespace(), m:Lock()
    d.from_parent = "hello"
    l:append(1)
    local p = start(mp.get_context("spawn").Process{target = T.use_manager,
      args = {d, l, ns, lock}})
    assert.are.equal(0, finish(p))
    assert.are.same({n = 42, s = string.rep("x", 1000)}, d.from_child)
    assert.are.same({1, "from the child"}, l:copy())
    assert.is_true(ns.flag)
  end)

  forks("Namespace: attributes every process sees", function()
    local m <close> = mp.Manager()
    local ns = m:Namespace()
    ns.x = 1
    ns.name = "main"
    assert.is_nil(ns.missing)
    assert.are.equal(0, in_child(function()
      assert(ns.x == 1 and ns.name == "main")
      ns.y = {1, 2}
      ns.x = ns.x + 1
      ns.name = nil
    end))
    assert.are.equal(2, ns.x)
    assert.are.same({1, 2}, ns.y)
    assert.is_nil(ns.name)
    ns.keys = "a key, not a method"
    assert.are.equal("a key, not a method", ns.keys)
    local fields = {}
    for k in pairs(ns) do fields[#fields + 1] = k end
    table.sort(fields)
    assert.are.same({"keys", "x", "y"}, fields)
    ns.y = nil
    assert.are.equal("Namespace(keys='a key, not a method', x=2)", tostring(ns))
  end)

  forks("makes multiprocessing's queues and synchronization objects", function()
    local m <close> = mp.Manager()
    assert.are.equal(m, m:start())
    local q, v, a = m:Queue(), m:Value("i", 5), m:Array("d", {1.5, 2.5})
    local ev, sem = m:Event(), m:Semaphore(2)
    assert.is_true(sem:acquire())
    assert.are.equal(0, in_child(function()
      q:put({from = "child"})
      v.value = v.value + 1
      a[2] = 9.5
      ev:set()
      sem:release()
    end))
    assert.are.equal("child", q:get(true, WAIT).from)
    assert.are.equal(6, v.value)
    assert.are.equal(9.5, a[2])
    assert.is_true(ev:is_set())
    assert.is_true(sem:acquire(false) and sem:acquire(false))
    assert.is_false(sem:acquire(false))
    for _, name in ipairs{"JoinableQueue", "Lock", "RLock", "BoundedSemaphore",
                          "Condition", "Barrier"} do
      local arg = name == "Barrier" and 1 or nil
      assert.is_not_nil(m[name](m, arg), name)
    end
  end)

  it("is closable: `local m <close>` shuts it down at the end of the block", function()
    local d, l, ns, m2
    do
      local m <close> = mp.Manager()
      d, l, ns, m2 = m:dict{a = 1}, m:list{1}, m:Namespace(), m
      assert.are.equal(1, d.a)
    end
    for _, f in ipairs{
      function() return d.a end, function() d.a = 2 end, function() return #d end,
      function() return d:keys() end, function() return pairs(d) end,
      function() return l[1] end, function() l:append(2) end,
      function() return #l end, function() return ns.x end,
      function() ns.x = 1 end,
      function() return m2:dict() end, function() return m2:list() end,
      function() return m2:Lock() end, function() return m2:Namespace() end,
      function() return shared.dict(d) end,
    } do
      local err = raises(errors.ConnectionRefusedError, f)
      assert.are.equal("the Manager has been shut down", err.message)
      assert.is_true(isinstance(err, errors.OSError))
    end
    m2:shutdown()  -- again: nothing happens
  end)

  forks("shutdown() in the parent stops the children's containers; in a child it does nothing", function()
    local m = mp.Manager()
    local d = m:dict{n = 1}
    local state = m:Value("i", 0)
    assert.are.equal(0, in_child(function()
      m:shutdown()   -- not the process that made it: ignored, as in Python
      assert(d.n == 1)
    end))
    assert.are.equal(1, d.n)
    local p = start(mp.Process{target = function()
      state.value = 1
      assert(wait_for(function() return state.value == 2 end))
      local ok, err = pcall(function() return d.n end)
      assert(not ok and isinstance(err, errors.ConnectionRefusedError))
    end})
    assert.is_true(wait_for(function() return state.value == 1 end))
    m:shutdown()
    state.value = 2
    assert.are.equal(0, finish(p))
    raises(errors.ConnectionRefusedError, function() return d.n end)
  end)

  forks("a child killed holding a container's lock: the lock is taken over, the items kept", function()
    local m <close> = mp.Manager()
    local d, l = m:dict{kept = "yes"}, m:list{1, 2, 3}
    for _, c in ipairs{d, l} do
      local state = m:Value("i", 0)
      local p = start(mp.Process{target = function()
        core._shared_hold(c)       -- as if it died inside a call
        state.value = 1
        time.sleep(WAIT)
      end})
      assert.is_true(wait_for(function() return state.value == 1 end))
      p:kill()
      assert.are.equal(-9, finish(p))
      -- the next call waits for the dead holder, then takes its lock over
      -- (in a child: if it hung, finish() would end it and fail the case)
      assert.are.equal(0, in_child(function()
        if c == d then d.after = true else l:append(4) end
      end))
    end
    assert.are.same({kept = "yes", after = true}, d:copy())
    assert.are.same({1, 2, 3, 4}, l:copy())
  end)

  forks("a child killed while updating: the containers stay whole and usable", function()
    local m <close> = mp.Manager()
    local d, l = m:dict(), m:list()
    local long = string.rep("v", 200)
    local state = m:Value("i", 0)
    for round = 1, 5 do
      state.value = 0
      local p = start(mp.Process{target = function()
        local i = 0
        while true do
          i = i + 1
          d[i % 50] = {i % 50, long}
          l:append(i % 7 == 0 and long or i)
          l:insert(1, -i)
          if #l > 60 then l:pop(1); l:pop(); l:pop(5) end
          if i % 13 == 0 then d[(i + 1) % 50] = nil end
          state.value = i
        end
      end})
      assert.is_true(wait_for(function() return state.value > 200 * round end))
      p:kill()
      assert.are.equal(-9, finish(p))
      for k, v in pairs(d) do
        assert.are.equal(k, v[1])
        assert.are.equal(long, v[2])
      end
      for _, v in ipairs(l:copy()) do
        assert.is_true(v == long or math.type(v) == "integer", tostring(v))
      end
      d.check = {round, long}
      l:append(round)
      assert.are.equal(round, l[-1])
      assert.are.equal(round, d.check[1])
      d.check = nil
      l:pop()
    end
  end)

  it("lives in anonymous shared memory: nothing in /dev/shm", function()
    local function count()
      local p = io.popen("ls -A /dev/shm 2>/dev/null | wc -l")
      local n = tonumber(p:read("a"))
      p:close()
      return n
    end
    local before = count()
    do
      local m <close> = mp.Manager()
      m:dict{a = string.rep("x", 100000)}
      assert.are.equal(before, count())
    end
    collectgarbage()
    assert.are.equal(before, count())
  end)

  it("frees a Manager's containers and mapping once nothing holds them", function()
    collectgarbage(); collectgarbage()
    local before = core.live_objects()
    do
      local m = mp.Manager()
      local d = m:dict{a = {1, 2}}
      m:list{d.a}
      m:Namespace().x = 1
    end
    collectgarbage(); collectgarbage()
    local after = core.live_objects()
    for _, kind in ipairs{"conc.Manager", "conc.shared.dict", "conc.shared.list",
                          "conc.Namespace"} do
      assert.are.equal(before[kind] or 0, after[kind] or 0, kind)
    end
  end)
end)
