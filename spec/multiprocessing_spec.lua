-- conc.multiprocessing against Python's documented multiprocessing
-- behaviour: Process (fork start method), the shared Lock and RLock, Value,
-- Array, RawValue and RawArray, and what the host does with children at
-- the end of a script.
--
-- A child is a forked copy of this busted process. It reports back through
-- its exit code (0: its target returned; 1: it raised, e.g. a failed plain
-- assert(); n: os.exit(n)) or through a shared Value or Array, so that these
-- cases need nothing but what they test. Every join is bounded, and a child
-- still running when a case ends is killed (after_each). Where a case needs
-- one process to wait for another, it waits on a shared Value's state,
-- polling it with a bound, never on a sleep.

local conc = require "conc"
local core = require "conc.core"
local errors = require "conc.errors"
local mp = require "conc.multiprocessing"
local threading = require "conc.threading"
local time = require "conc.time"
local support = require "support"

local isinstance = conc.isinstance
local slurp, spit, q = support.slurp, support.spit, support.q

local WAIT = 30  -- seconds: the bound on every wait (sanitizer builds are slow)

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (os.getenv("PWD") or ".") .. "/" .. path
end

local HOST = absolute(os.getenv("CONC_HOST") or "build/conc")
local LUA = os.getenv("CONC_LUA") or "lua5.4"
local UNDER_HOST = package.preload["conc.threading"] ~= nil

-- Cases that fork: pending under ThreadSanitizer (support.forks says why).
local TSAN = support.TSAN
local forks = support.forks(it, function(why) pending(why) end)

-- Child scripts start through /bin/sh, which inherits LD_PRELOAD: with the
-- TSan runtime preloaded the uninstrumented shell crashes (see
-- threading_spec.lua). Those scripts fork too, so they are pending under
-- TSan whichever interpreter runs this spec.
local NO_SHELL = (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) ~= nil

local function script_it(name, fn)
  it(name, function()
    if TSAN or NO_SHELL then
      pending("no fork (and no /bin/sh) under TSan")
      return
    end
    fn()
  end)
end

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local temps = {}

local function tmpname()
  local p = os.tmpname()
  temps[#temps + 1] = p
  return p
end

local raises = support.raises

-- The processes a case starts: any still running when it ends is killed
-- (after_each). wait_for runs in children too (they get it as an upvalue).
local kids = support.children(WAIT)
local start, finish, in_child, wait_for =
  kids.start, kids.finish, kids.in_child, kids.wait_for

local put_str, get_str = support.put_str, support.get_str

local function contains(list, x)
  for _, v in ipairs(list) do
    if rawequal(v, x) then return true end
  end
  return false
end

local function sleeper()
  require("conc.time").sleep(WAIT)
end

after_each(function()
  kids.cleanup()
  for _, path in ipairs(temps) do os.remove(path) end
  temps = {}
end)

---------------------------------------------------------------------------
-- Process
---------------------------------------------------------------------------

describe("multiprocessing.Process", function()
  forks("runs target with args in another process, exit code 0", function()
    local out = mp.Array("q", 3)
    local p = mp.Process{target = function(a, b)
      out[1] = a + b
      out[2] = core.getpid()
      out[3] = core.getppid()
    end, args = {2, 3}}
    start(p)
    assert.are.equal(0, finish(p))
    assert.are.equal(5, out[1])
    assert.are.equal(p.pid, out[2])
    assert.are.equal(core.getpid(), out[3])
    assert.are_not.equal(core.getpid(), out[2])
  end)

  forks("has exit code 1 when the target raises, after 'Process NAME:' and the traceback on stderr", function()
    local log = tmpname()
    local p = mp.Process{name = "bad-one", target = function(path)
      io.stderr = assert(io.open(path, "w"))  -- this child's stderr only
      local function explode() error("boom in child") end
      explode()
    end, args = {log}}
    start(p)
    assert.are.equal(1, finish(p))
    local err = assert(slurp(log))
    assert.are.equal(1, err:find("Process bad-one:\n", 1, true))
    assert.truthy(err:find("boom in child", 1, true), err)
    assert.truthy(err:find("stack traceback:", 1, true), err)
    assert.truthy(err:find("explode", 1, true), err)
  end)

  forks("has exit code 1 for a typed error too", function()
    assert.are.equal(1, in_child(function()
      io.stderr = assert(io.open("/dev/null", "w"))
      error(conc.ValueError("bad value"))
    end))
  end)

  forks("has exit code n after os.exit(n), 0 for os.exit(true) and 1 for os.exit(false)", function()
    assert.are.equal(7, in_child(function() os.exit(7) end))
    assert.are.equal(0, in_child(function() os.exit(0) end))
    assert.are.equal(255, in_child(function() os.exit(255) end))
    assert.are.equal(0, in_child(function() os.exit(true) end))
    assert.are.equal(1, in_child(function() os.exit(false) end))
  end)

  forks("join(timeout) returns with exitcode nil while the child runs; kill() gives -9", function()
    local p = start(mp.Process{target = sleeper})
    assert.is_true(p:is_alive())
    p:join(0.05)
    assert.is_nil(p.exitcode)
    assert.is_true(p:is_alive())
    p:join(0)
    assert.is_nil(p.exitcode)
    p:kill()
    assert.are.equal(-9, finish(p))
    assert.is_false(p:is_alive())
  end)

  forks("terminate() sends SIGTERM: exit code -15", function()
    local ready = mp.Value("i", 0)
    local p = start(mp.Process{target = function()
      ready.value = 1
      sleeper()
    end})
    assert.is_true(wait_for(function() return ready.value == 1 end))
    p:terminate()
    assert.are.equal(-15, finish(p))
  end)

  forks("is_alive: false before start, true while running, false once ended", function()
    local go = mp.Value("i", 0)
    local p = mp.Process{target = function()
      assert(wait_for(function() return go.value == 1 end))
    end}
    assert.is_false(p:is_alive())
    start(p)
    assert.is_true(p:is_alive())
    go.value = 1
    assert.are.equal(0, finish(p))
    assert.is_false(p:is_alive())
    assert.is_false(p:is_alive())  -- asked again, after it was reaped
    assert.are.equal(0, p.exitcode)
  end)

  forks("has pid nil before start, then pid == ident, and a sentinel that is an fd", function()
    local p = mp.Process{target = function() end}
    assert.is_nil(p.pid)
    assert.is_nil(p.ident)
    assert.is_nil(p.exitcode)
    start(p)
    assert.are.equal("integer", math.type(p.pid))
    assert.is_true(p.pid > 0)
    assert.are.equal(p.pid, p.ident)
    local s = p.sentinel
    assert.are.equal("integer", math.type(s))
    assert.is_true(s >= 0)
    assert.are.equal(s, p.sentinel)
    assert.are.equal(0, finish(p))
    assert.are.equal(s, p.sentinel)
    assert.truthy(p.pid)
  end)

  it("names itself Process-N, counting up, unless given a name", function()
    local a, b = mp.Process{}, mp.Process{}
    local na = tonumber(a.name:match("^Process%-(%d+)$"))
    local nb = tonumber(b.name:match("^Process%-(%d+)$"))
    assert.truthy(na, a.name)
    assert.truthy(nb, b.name)
    assert.is_true(nb > na)
    assert.are.equal("worker", mp.Process{name = "worker"}.name)
  end)

  it("is not a daemon unless made one, and daemon can be set before start", function()
    assert.is_false(mp.Process{}.daemon)
    assert.is_true(mp.Process{daemon = true}.daemon)
    local p = mp.Process{}
    p.daemon = true
    assert.is_true(p.daemon)
    p.daemon = false
    assert.is_false(p.daemon)
  end)

  forks("passes kwargs as one table after all of args", function()
    local out = mp.Array("q", 4)
    local p = mp.Process{target = function(a, b, c, kw)
      out[1], out[2], out[3] = a, b, c
      out[4] = kw.x * 10 + kw.y
    end, args = {1, 2, 3}, kwargs = {x = 4, y = 5}}
    start(p)
    assert.are.equal(0, finish(p))
    assert.are.same({1, 2, 3, 45}, {out[1], out[2], out[3], out[4]})
  end)

  forks("passes args with holes (args.n)", function()
    local out = mp.Array("i", 3)
    local p = mp.Process{target = function(a, b, c)
      out[1] = a
      out[2] = b == nil and 1 or 0
      out[3] = c
    end, args = table.pack(7, nil, 9)}
    start(p)
    assert.are.equal(0, finish(p))
    assert.are.same({7, 1, 9}, {out[1], out[2], out[3]})
  end)

  forks("runs with no target and exits 0", function()
    local p = start(mp.Process{})
    assert.are.equal(0, finish(p))
  end)

  forks("Process:extend() with run(): the class form, reading self's fields", function()
    local Worker = mp.Process:extend("Worker")
    function Worker:__init(n, out)
      mp.Process.__init(self)
      self.n = n
      self.out = out
    end
    function Worker:run()
      self.out[1] = self.n * 2
      self.out[2] = #self.name
      self.out[3] = rawequal(mp.current_process(), self) and 1 or 0
    end
    local out = mp.Array("i", 3)
    local w = Worker(21, out)
    assert.truthy(w.name:match("^Worker%-%d+$"), w.name)
    assert.is_true(isinstance(w, mp.Process))
    start(w)
    assert.are.equal(0, finish(w))
    assert.are.equal(42, out[1])
    assert.are.equal(#w.name, out[2])
    assert.are.equal(1, out[3])
  end)

  forks("a subclass without its own __init takes Process's options", function()
    local Sub = mp.Process:extend()
    local out = mp.Value("i", 0)
    function Sub:run() out.value = #self.name end
    local s = Sub{name = "sub-name"}
    assert.are.equal("sub-name", s.name)
    start(s)
    assert.are.equal(0, finish(s))
    assert.are.equal(#"sub-name", out.value)
  end)

  forks("a subclass's run() raising gives exit code 1", function()
    local Bad = mp.Process:extend()
    function Bad:run()
      io.stderr = assert(io.open("/dev/null", "w"))
      error("no")
    end
    local b = Bad()
    start(b)
    assert.are.equal(1, finish(b))
  end)

  forks("sees the parent's globals and upvalues as they were at start()", function()
    local upvalue = {n = 41}
    MP_SPEC_GLOBAL = "spec env"
    rawset(_G, "MP_SPEC_G", 12)
    local out = mp.Array("i", 3)
    local p = mp.Process{target = function()
      out[1] = upvalue.n + 1
      out[2] = MP_SPEC_GLOBAL == "spec env" and 1 or 0
      out[3] = rawget(_G, "MP_SPEC_G")
    end}
    upvalue.n = 99  -- changed before start: the child sees it
    start(p)
    upvalue.n = 0   -- after: it does not
    assert.are.equal(0, finish(p))
    MP_SPEC_GLOBAL = nil
    rawset(_G, "MP_SPEC_G", nil)
    assert.are.same({100, 1, 12}, {out[1], out[2], out[3]})
  end)

  forks("a child's change to a plain table is not seen here; an mp.Value's is", function()
    local plain = {n = 1}
    local v = mp.Value("i", 1)
    local p = mp.Process{target = function()
      plain.n = 2
      plain.added = true
      v.value = 2
    end}
    start(p)
    assert.are.equal(0, finish(p))
    assert.are.same({n = 1}, plain)
    assert.are.equal(2, v.value)
  end)

  forks("a Value incremented under get_lock() by 10 processes x 1000 ends at 10000", function()
    local v = mp.Value("i", 0)
    local ps = {}
    for i = 1, 10 do
      ps[i] = start(mp.Process{target = function(n)
        for _ = 1, n do
          local _ <close> = v:get_lock():enter()
          v.value = v.value + 1
        end
      end, args = {1000}})
    end
    for i = 1, 10 do assert.are.equal(0, finish(ps[i])) end
    assert.are.equal(10000, v.value)
  end)

  forks("an Array written by children is read by the parent", function()
    local a = mp.Array("d", 8)
    local ps = {}
    for i = 1, 8 do
      ps[i] = start(mp.Process{target = function(k) a[k] = k * k + 0.5 end,
                               args = {i}})
    end
    for i = 1, 8 do assert.are.equal(0, finish(ps[i])) end
    local seen = {}
    for i, x in ipairs(a) do seen[i] = x end
    assert.are.same({1.5, 4.5, 9.5, 16.5, 25.5, 36.5, 49.5, 64.5}, seen)
  end)

  forks("current_process() is the child's own object, parent_process() the parent", function()
    local text = mp.Array("c", 200)
    local pids = mp.Array("q", 3)
    local p
    p = mp.Process{name = "kid", target = function()
      local me, parent = mp.current_process(), mp.parent_process()
      pids[1] = me.pid
      pids[2] = parent.pid
      pids[3] = rawequal(me, p) and 1 or 0
      put_str(text, table.concat({me.name, parent.name,
        tostring(parent:is_alive()), tostring(me:is_alive())}, "|"))
    end}
    start(p)
    assert.are.equal(0, finish(p))
    assert.are.equal("kid|MainProcess|true|true", get_str(text))
    assert.are.equal(p.pid, pids[1])
    assert.are.equal(core.getpid(), pids[2])
    assert.are.equal(1, pids[3])
  end)

  forks("names a child's children Process-N:M, and their parent is the child", function()
    local text = mp.Array("c", 200)
    local p = mp.Process{target = function()
      local inner = mp.Process{target = function()
        put_str(text, mp.current_process().name .. "|" .. mp.parent_process().name)
      end}
      inner:start()
      inner:join(WAIT)
      assert(inner.exitcode == 0, "inner exit code " .. tostring(inner.exitcode))
    end}
    start(p)
    assert.are.equal(0, finish(p))
    local n = p.name:match("^Process%-(%d+)$")
    assert.truthy(n, p.name)
    local inner, parent = get_str(text):match("^(.*)|(.*)$")
    assert.are.equal(p.name, parent)
    assert.truthy(inner:match("^Process%-" .. n .. ":%d+$"), inner)
  end)

  it("in the main process: current_process() is MainProcess, parent_process() nil", function()
    local me = mp.current_process()
    assert.are.equal("MainProcess", me.name)
    assert.are.equal(core.getpid(), me.pid)
    assert.is_true(me:is_alive())
    assert.is_nil(mp.parent_process())
    assert.is_true(rawequal(me, mp.current_process()))
  end)

  forks("active_children() lists a running child and not a joined one", function()
    local done = start(mp.Process{target = function() end})
    assert.are.equal(0, finish(done))
    local running = start(mp.Process{target = sleeper})
    local kids = mp.active_children()
    assert.is_true(contains(kids, running))
    assert.is_false(contains(kids, done))
    running:kill()
    assert.are.equal(-9, finish(running))
    kids = mp.active_children()
    assert.is_false(contains(kids, running))
    assert.is_false(contains(kids, done))
  end)

  forks("a child's non-daemon threads are waited for before it exits", function()
    local v = mp.Value("i", 0)
    local p = start(mp.Process{target = function()
      threading.Thread{target = function(val)
        require("conc.time").sleep(0.2)  -- a child that did not wait is gone
        val.value = 5
      end, args = {v}}:start()
    end})
    assert.are.equal(0, finish(p))
    assert.are.equal(5, v.value)
  end)

  forks("a child's daemon children are stopped when it exits", function()
    local pid = mp.Value("q", 0)
    local p = start(mp.Process{target = function()
      local d = mp.Process{daemon = true, target = sleeper}
      d:start()
      pid.value = d.pid
    end})
    assert.are.equal(0, finish(p))
    assert.is_true(pid.value > 0)
    local gone = wait_for(function()
      return os.execute("kill -0 " .. pid.value .. " 2>/dev/null") ~= true
    end)
    if not gone then os.execute("kill -KILL " .. pid.value) end
    assert.is_true(gone, "the daemon grandchild is still running")
  end)

  forks("a daemon process may not start children (AssertionError)", function()
    assert.are.equal(3, finish(start(mp.Process{daemon = true, target = function()
      local ok, e = pcall(function() mp.Process{target = function() end}:start() end)
      os.exit((not ok and isinstance(e, errors.AssertionError)) and 3 or 4)
    end})))
  end)

  forks("a child cannot join its sibling (AssertionError), and sees no active children", function()
    local a = start(mp.Process{target = sleeper})
    local out = mp.Array("i", 2)
    local b = start(mp.Process{target = function()
      local ok, e = pcall(a.join, a, 0.01)
      out[1] = (not ok and isinstance(e, errors.AssertionError)) and 1 or 0
      out[2] = #mp.active_children()
    end})
    assert.are.equal(0, finish(b))
    assert.are.same({1, 0}, {out[1], out[2]})
    a:kill()
    assert.are.equal(-9, finish(a))
  end)

  forks("terminate() and kill() after the child was reaped do nothing", function()
    local p = start(mp.Process{target = function() end})
    assert.are.equal(0, finish(p))
    p:terminate()
    p:kill()
    assert.are.equal(0, p.exitcode)
  end)

  it("cpu_count() is a positive integer", function()
    local n = mp.cpu_count()
    assert.are.equal("integer", math.type(n))
    assert.is_true(n >= 1)
  end)

  describe("misuse", function()
    forks("start() twice raises AssertionError", function()
      local p = start(mp.Process{target = function() end})
      local e = raises(errors.AssertionError, p.start, p)
      assert.are.equal("cannot start a process twice", e.message)
      assert.are.equal(0, finish(p))
      e = raises(conc.AssertionError, p.start, p)
      assert.are.equal("cannot start a process twice", e.message)
    end)

    it("join() before start() raises AssertionError", function()
      local p = mp.Process{}
      local e = raises(errors.AssertionError, p.join, p)
      assert.are.equal("can only join a started process", e.message)
      raises(errors.AssertionError, p.join, p, 0.01)
    end)

    forks("after close(): start, join, is_alive, pid and exitcode raise ValueError", function()
      local p = start(mp.Process{target = function() end})
      assert.are.equal(0, finish(p))
      p:close()
      p:close()  -- again: nothing
      for what, f in pairs{
        start = function() p:start() end,
        join = function() p:join(0) end,
        is_alive = function() return p:is_alive() end,
        pid = function() return p.pid end,
        exitcode = function() return p.exitcode end,
      } do
        local e = raises(errors.ValueError, f)
        assert.are.equal("process object is closed", e.message, what)
      end
    end)

    it("close() before start is allowed, and then start raises ValueError", function()
      local p = mp.Process{}
      p:close()
      raises(errors.ValueError, p.start, p)
    end)

    forks("close() while the child runs raises ValueError, and the child runs on", function()
      local p = start(mp.Process{target = sleeper})
      raises(errors.ValueError, p.close, p)
      assert.is_true(p:is_alive())
      p:kill()
      assert.are.equal(-9, finish(p))
      p:close()
    end)

    forks("setting daemon after start raises AssertionError", function()
      local p = start(mp.Process{target = function() end})
      raises(errors.AssertionError, function() p.daemon = true end)
      assert.is_false(p.daemon)
      assert.are.equal(0, finish(p))
      raises(errors.AssertionError, function() p.daemon = true end)
    end)

    forks("pid and exitcode are read-only (AttributeError)", function()
      local p = mp.Process{target = function() end}
      raises(errors.AttributeError, function() p.pid = 1 end)
      raises(errors.AttributeError, function() p.exitcode = 0 end)
      start(p)
      raises(errors.AttributeError, function() p.pid = 1 end)
      raises(errors.AttributeError, function() p.exitcode = 0 end)
      assert.are.equal(0, finish(p))
      assert.are.equal(0, p.exitcode)
    end)

    it("sentinel before start raises ValueError", function()
      local p = mp.Process{}
      raises(errors.ValueError, function() return p.sentinel end)
    end)
  end)
end)

---------------------------------------------------------------------------
-- Lock and RLock in shared memory
---------------------------------------------------------------------------

describe("multiprocessing.Lock", function()
  it("acquires, releases and reports locked(), as threading.Lock does", function()
    local l = mp.Lock()
    assert.is_false(l:locked())
    assert.is_true(l:acquire())
    assert.is_true(l:locked())
    assert.is_false(l:acquire(false))
    assert.is_false(l:acquire(true, 0.01))
    l:release()
    assert.is_false(l:locked())
    do
      local _ <close> = l:enter()
      assert.is_true(l:locked())
    end
    assert.is_false(l:locked())
  end)

  it("is released by enter()'s close on error too", function()
    local l = mp.Lock()
    local ok = pcall(function()
      local _ <close> = l:enter()
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_false(l:locked())
  end)

  forks("held by the parent blocks a child's acquire; once released a child gets it", function()
    local l = mp.Lock()
    assert.is_true(l:acquire())
    -- 2: timed out, 3: acquired
    local function try(timeout)
      local got = l:acquire(true, timeout)
      if got then l:release() end
      os.exit(got and 3 or 2)
    end
    assert.are.equal(2, in_child(try, 0.05))
    assert.is_true(l:locked())
    l:release()
    assert.are.equal(3, in_child(try, WAIT))
    assert.is_false(l:locked())
    assert.is_true(l:acquire(false))
    l:release()
  end)

  forks("held by a child blocks the parent until the child releases it", function()
    local l = mp.Lock()
    local state = mp.Value("i", 0)  -- 1: child holds it; 2: let it go
    local p = start(mp.Process{target = function()
      assert(l:acquire(true, WAIT))
      state.value = 1
      assert(wait_for(function() return state.value == 2 end))
      l:release()
    end})
    assert.is_true(wait_for(function() return state.value == 1 end))
    assert.is_true(l:locked())
    assert.is_false(l:acquire(false))
    assert.is_false(l:acquire(true, 0.05))
    state.value = 2
    assert.is_true(l:acquire(true, WAIT))
    l:release()
    assert.are.equal(0, finish(p))
  end)

  forks("may be released by another process, as a semaphore-based lock may", function()
    local l = mp.Lock()
    assert.is_true(l:acquire())
    assert.are.equal(0, in_child(function() l:release() end))
    assert.is_false(l:locked())
    assert.is_true(l:acquire(false))
    l:release()
  end)

  forks("held by a process that was killed is taken over by a waiter", function()
    local l = mp.Lock()
    local state = mp.Value("i", 0)
    local p = start(mp.Process{target = function()
      assert(l:acquire(true, WAIT))
      state.value = 1
      sleeper()
    end})
    assert.is_true(wait_for(function() return state.value == 1 end))
    assert.is_false(l:acquire(false))
    p:kill()
    assert.are.equal(-9, finish(p))
    assert.is_true(l:acquire(true, WAIT))
    l:release()
  end)

  it("rejects a timeout with blocking false (ValueError)", function()
    local l = mp.Lock()
    raises(errors.ValueError, l.acquire, l, false, 1)
    assert.is_false(l:locked())
  end)
end)

describe("multiprocessing.RLock", function()
  it("is re-entrant for its owner", function()
    local r = mp.RLock()
    assert.is_true(r:acquire())
    assert.is_true(r:acquire())
    assert.is_true(r:acquire(false))
    r:release()
    r:release()
    r:release()
    raises(errors.RuntimeError, r.release, r)
    do
      local _ <close> = r:enter()
      local _ <close> = r:enter()
    end
    assert.is_true(r:acquire(false))
    r:release()
  end)

  forks("a child holds it through re-entrance, and others wait until the last release", function()
    local r = mp.RLock()
    local state = mp.Value("i", 0)  -- 1: held twice, released once; 2: go on
    local p = start(mp.Process{target = function()
      assert(r:acquire(true, WAIT))
      assert(r:acquire(false))  -- again: its own
      r:release()
      state.value = 1
      assert(wait_for(function() return state.value == 2 end))
      r:release()
    end})
    assert.is_true(wait_for(function() return state.value == 1 end))
    assert.is_false(r:acquire(false))
    assert.is_false(r:acquire(true, 0.05))
    raises(errors.RuntimeError, r.release, r)  -- not ours
    state.value = 2
    assert.is_true(r:acquire(true, WAIT))
    r:release()
    assert.are.equal(0, finish(p))
  end)

  forks("held by the parent at the fork is not the child's (Python's child cannot take it)", function()
    local r = mp.RLock()
    assert.is_true(r:acquire())
    assert.is_true(r:acquire())
    -- 2: refused, 3: taken
    assert.are.equal(2, in_child(function() os.exit(r:acquire(false) and 3 or 2) end))
    assert.are.equal(2, in_child(function() os.exit(r:acquire(true, 0.05) and 3 or 2) end))
    assert.are.equal(1, in_child(function()
      io.stderr = assert(io.open("/dev/null", "w"))
      r:release()  -- not the child's: RuntimeError
    end))
    r:release()
    r:release()
    -- all released here: another thread can take it
    local out = mp.Value("i", 0)
    local t = threading.Thread{target = function(l, o)
      o.value = l:acquire(false) and 1 or 2
      if o.value == 1 then l:release() end
    end, args = {r, out}}
    t:start()
    t:join(WAIT)
    assert.are.equal(1, out.value)
  end)

  forks("a Value's lock held by the parent at the fork blocks the child", function()
    local v = mp.Value("i", 0)
    local held <close> = v:get_lock():enter()
    assert.are.equal(2, in_child(function()
      os.exit(v:get_lock():acquire(true, 0.05) and 3 or 2)
    end))
  end)

  forks("is usable by a child when free at the fork", function()
    local r = mp.RLock()
    assert.are.equal(0, in_child(function()
      assert(r:acquire(true, WAIT))
      assert(r:acquire(false))
      r:release()
      r:release()
    end))
    assert.is_true(r:acquire(false))
    r:release()
  end)
end)

---------------------------------------------------------------------------
-- Value, Array, RawValue, RawArray
---------------------------------------------------------------------------

local INT_CODES = {"b", "B", "h", "H", "i", "I", "l", "L", "q", "Q"}

describe("multiprocessing.Value", function()
  it("holds a value of each typecode, 0 by default", function()
    for _, tc in ipairs(INT_CODES) do
      local v = mp.Value(tc)
      assert.are.equal(0, v.value, tc)
      assert.are.equal("integer", math.type(v.value), tc)
      v.value = 100
      assert.are.equal(100, v.value, tc)
      assert.are.equal(tc, v.typecode)
    end
    assert.are.equal(0.0, mp.Value("d").value)
    assert.are.equal("float", math.type(mp.Value("d").value))
    assert.are.equal(0.0, mp.Value("f").value)
    assert.are.equal(2.5, mp.Value("d", 2.5).value)
    assert.are.equal(2.5, mp.Value("f", 2.5).value)
    assert.are.equal(0.1, mp.Value("d", 0.1).value)
    assert.are.equal("x", mp.Value("c", "x").value)
    assert.are.equal("\0", mp.Value("c").value)
  end)

  it("wraps integers to the type's width, as ctypes does", function()
    assert.are.equal(-56, mp.Value("b", 200).value)
    assert.are.equal(127, mp.Value("b", 127).value)
    assert.are.equal(-128, mp.Value("b", 128).value)
    assert.are.equal(255, mp.Value("B", -1).value)
    assert.are.equal(0, mp.Value("B", 256).value)
    assert.are.equal(-32768, mp.Value("h", 32768).value)
    assert.are.equal(65535, mp.Value("H", -1).value)
    assert.are.equal(1, mp.Value("H", 65537).value)
    assert.are.equal(-2147483648, mp.Value("i", 2147483648).value)
    assert.are.equal(4294967295, mp.Value("I", -1).value)
    assert.are.equal(0, mp.Value("I", 4294967296).value)
    assert.are.equal(math.maxinteger, mp.Value("q", math.maxinteger).value)
    assert.are.equal(math.mininteger, mp.Value("q", math.mininteger).value)
    assert.are.equal(math.mininteger, mp.Value("l", math.mininteger).value)
    local v = mp.Value("b", 0)
    v.value = 300
    assert.are.equal(44, v.value)
  end)

  it("rounds 'f' to float precision, keeps 'd' exact", function()
    local f32 = string.unpack("f", string.pack("f", 0.1))
    assert.are.equal(f32, mp.Value("f", 0.1).value)
    assert.are_not.equal(0.1, mp.Value("f", 0.1).value)
    assert.are.equal(0.1, mp.Value("d", 0.1).value)
    assert.are.equal(3.0, mp.Value("d", 3).value)  -- an integer into a float
    assert.are.equal("float", math.type(mp.Value("d", 3).value))
  end)

  it("takes a float with an integral value for an integer type", function()
    local v = mp.Value("i", 2.0)
    assert.are.equal(2, v.value)
    assert.are.equal("integer", math.type(v.value))
    v.value = -7.0
    assert.are.equal(-7, v.value)
  end)

  it("rejects a non-integral float or a string for an integer type (TypeError)", function()
    raises(errors.TypeError, mp.Value, "i", 1.5)
    raises(errors.TypeError, mp.Value, "i", "1")
    raises(errors.TypeError, mp.Value, "q", true)
    raises(errors.TypeError, mp.Value, "d", "1.5")
    local v = mp.Value("i", 5)
    raises(errors.TypeError, function() v.value = 0.5 end)
    raises(errors.TypeError, function() v.value = "6" end)
    raises(errors.TypeError, function() v.value = {} end)
    assert.are.equal(5, v.value)  -- nothing stored
    -- the lock was not left held by the failed store
    assert.is_true(v:get_lock():acquire(false))
    v:get_lock():release()
  end)

  it("takes one-character strings for 'c'", function()
    local v = mp.Value("c", "a")
    v.value = "z"
    assert.are.equal("z", v.value)
    raises(errors.TypeError, function() v.value = "zz" end)
    raises(errors.TypeError, function() v.value = "" end)
    raises(errors.TypeError, function() v.value = 65 end)
    raises(errors.TypeError, mp.Value, "c", "ab")
    assert.are.equal("z", v.value)
  end)

  it("rejects an unknown typecode with TypeError", function()
    raises(errors.TypeError, mp.Value, "z", 1)
    raises(errors.TypeError, mp.Value, "ii", 1)
    raises(errors.TypeError, mp.Value, "", 1)
    raises(errors.TypeError, mp.Array, "z", 3)
    raises(errors.TypeError, mp.RawValue, "x", 0)
  end)

  it("has an RLock by default: get_lock() can be taken twice", function()
    local v = mp.Value("i", 0)
    local l = v:get_lock()
    assert.is_true(l:acquire(false))
    assert.is_true(l:acquire(false))
    v.value = v.value + 1  -- reads and writes re-enter it
    l:release()
    l:release()
    assert.are.equal(1, v.value)
    do
      local _ <close> = v:get_lock():enter()
      v.value = v.value + 1
    end
    assert.are.equal(2, v.value)
  end)

  it("with lock = false has none: get_lock raises AttributeError", function()
    local v = mp.Value("i", 3, {lock = false})
    raises(errors.AttributeError, v.get_lock, v)
    v.value = 4
    assert.are.equal(4, v.value)
    local r = mp.RawValue("d", 1.5)
    raises(errors.AttributeError, r.get_lock, r)
    assert.are.equal(1.5, r.value)
  end)

  it("uses a given mp.Lock or mp.RLock as its lock", function()
    local l = mp.Lock()
    local v = mp.Value("i", 1, {lock = l})
    assert.is_true(v:get_lock():acquire(false))
    assert.is_true(l:locked())  -- the same lock
    assert.is_false(l:acquire(false))
    v:get_lock():release()
    assert.is_false(l:locked())
    local r = mp.RLock()
    local w = mp.Value("i", 1, {lock = r})
    assert.is_true(r:acquire())
    w.value = 2  -- re-enters r
    assert.are.equal(2, w.value)
    r:release()
    assert.is_true(w:get_lock():acquire(false))
    w:get_lock():release()
  end)

  it("rejects a threading (non-shared) lock, or anything else, with TypeError", function()
    raises(errors.TypeError, mp.Value, "i", 0, {lock = threading.Lock()})
    raises(errors.TypeError, mp.Value, "i", 0, {lock = threading.RLock()})
    raises(errors.TypeError, mp.Value, "i", 0, {lock = "yes"})
    raises(errors.TypeError, mp.Array, "i", 2, {lock = threading.Lock()})
  end)

  it("get_obj() gives the value's object, with .value", function()
    local v = mp.Value("i", 9)
    local o = v:get_obj()
    assert.are.equal(9, o.value)
    o.value = 10
    assert.are.equal(10, v.value)
  end)

  it("has no fields but value, and refuses to set others (AttributeError)", function()
    local v = mp.Value("i", 1)
    assert.is_nil(v.other)
    raises(errors.AttributeError, function() v.other = 1 end)
    raises(errors.AttributeError, function() v[1] = 1 end)
  end)

  it("is usable from conc threads: 4 threads x 1000 increments under its lock", function()
    local v = mp.Value("i", 0)
    local a = mp.Array("i", 4)
    local ts = {}
    for i = 1, 4 do
      ts[i] = threading.Thread{target = function(val, arr, k, n)
        for _ = 1, n do
          local _ <close> = val:get_lock():enter()
          val.value = val.value + 1
        end
        arr[k] = k * 10
      end, args = {v, a, i, 1000}}
      ts[i]:start()
    end
    for i = 1, 4 do
      ts[i]:join(WAIT)
      assert.is_false(ts[i]:is_alive())
    end
    assert.are.equal(4000, v.value)
    assert.are.same({10, 20, 30, 40}, {a[1], a[2], a[3], a[4]})
  end)
end)

describe("multiprocessing.Array", function()
  it("is made zeroed from a size, or from a table; # and 1-based indexing", function()
    local a = mp.Array("i", 3)
    assert.are.equal(3, #a)
    assert.are.same({0, 0, 0}, {a[1], a[2], a[3]})
    local b = mp.Array("d", {1.5, 2.5, 3.5})
    assert.are.equal(3, #b)
    assert.are.equal(2.5, b[2])
    b[2] = 9
    assert.are.equal(9.0, b[2])
    assert.are.equal(0, #mp.Array("i", 0))
    assert.are.equal(0, #mp.Array("i", {}))
  end)

  it("works with ipairs", function()
    local a = mp.Array("h", {5, 6, 7})
    local seen = {}
    for i, x in ipairs(a) do seen[i] = x end
    assert.are.same({5, 6, 7}, seen)
  end)

  it("reads nil out of range, and raises IndexError writing out of range", function()
    local a = mp.Array("i", {1, 2})
    assert.is_nil(a[0])
    assert.is_nil(a[3])
    assert.is_nil(a[-1])
    assert.is_nil(a[1.5])
    raises(errors.IndexError, function() a[0] = 1 end)
    raises(errors.IndexError, function() a[3] = 1 end)
    raises(errors.IndexError, function() a[-1] = 1 end)
    assert.are.same({1, 2}, {a[1], a[2]})
  end)

  it("'c' arrays are made from a string and hold 1-char strings", function()
    local a = mp.Array("c", "hello")
    assert.are.equal(5, #a)
    assert.are.equal("h", a[1])
    assert.are.equal("o", a[5])
    a[1] = "j"
    assert.are.equal("jello", get_str(a))
    raises(errors.TypeError, function() a[2] = "ab" end)
    local z = mp.Array("c", 2)
    assert.are.equal("\0", z[1])
    local t = mp.Array("c", {"a", "b"})
    assert.are.equal("b", t[2])
  end)

  it("wraps and type-checks its elements as Value does", function()
    local a = mp.Array("b", {200, -1})
    assert.are.same({-56, -1}, {a[1], a[2]})
    raises(errors.TypeError, mp.Array, "i", {1, 2.5})
    raises(errors.TypeError, mp.Array, "i", {1, "2"})
    raises(errors.TypeError, function() a[1] = 0.5 end)
    assert.are.equal(-56, a[1])
    local f = mp.Array("f", {0.1})
    assert.are.equal(string.unpack("f", string.pack("f", 0.1)), f[1])
  end)

  it("rejects a bad size with TypeError or ValueError", function()
    raises(errors.TypeError, mp.Array, "i", "3")
    raises(errors.TypeError, mp.Array, "i", 2.5)
    raises(errors.TypeError, mp.Array, "i", nil)
    raises(errors.ValueError, mp.Array, "i", -1)
  end)

  it("has a lock unless made with lock = false, or raw", function()
    local a = mp.Array("i", 2)
    local l = a:get_lock()
    assert.is_true(l:acquire(false))
    assert.is_true(l:acquire(false))  -- an RLock
    a[1] = 5
    l:release()
    l:release()
    assert.are.equal(5, a[1])
    local n = mp.Array("i", 2, {lock = false})
    raises(errors.AttributeError, n.get_lock, n)
    local r = mp.RawArray("i", {1, 2, 3})
    raises(errors.AttributeError, r.get_lock, r)
    assert.are.equal(3, #r)
    r[3] = 4
    assert.are.equal(4, r[3])
    local g = mp.Lock()
    local w = mp.Array("i", 1, {lock = g})
    assert.is_true(w:get_lock():acquire(false))
    assert.is_true(g:locked())
    g:release()
  end)

  it("get_obj() gives an array with the same elements", function()
    local a = mp.Array("i", {1, 2})
    local o = a:get_obj()
    assert.are.equal(2, #o)
    o[1] = 7
    assert.are.equal(7, a[1])
  end)

  forks("RawValue and RawArray are shared with children too", function()
    local v = mp.RawValue("i", 0)
    local a = mp.RawArray("c", 8)
    assert.are.equal(0, in_child(function()
      v.value = 77
      put_str(a, "raw")
    end))
    assert.are.equal(77, v.value)
    assert.are.equal("raw", get_str(a))
  end)
end)

---------------------------------------------------------------------------
-- The spawn start method: a fresh host runs the target. The targets are in
-- spec/fixtures/spawn_targets.lua (it says why). Nothing here forks, so
-- these cases run under TSan too.
---------------------------------------------------------------------------

describe("multiprocessing with the spawn start method", function()
  local T = require "fixtures.spawn_targets"
  local ctx = mp.get_context("spawn")

  local function spawned(fn, ...)
    return finish(start(ctx.Process{target = fn, args = table.pack(...)}))
  end

  it("is one of the start methods, and its context's Process is SpawnProcess", function()
    assert.are.same({"fork", "spawn"}, mp.get_all_start_methods())
    assert.are.equal("spawn", ctx.get_start_method())
    assert.are.equal("fork", mp.get_context("fork").get_start_method())
    assert.are.equal(mp.SpawnProcess, ctx.Process)
    assert.are.equal(mp.ForkProcess, mp.get_context("fork").Process)
    assert.truthy(ctx.Process{}.name:match("^SpawnProcess%-%d+$"))
    assert.truthy(mp.get_context("fork").Process{}.name:match("^ForkProcess%-%d+$"))
    assert.are.equal(mp.Queue, ctx.Queue)
  end)

  it("runs target with args in a new program, which names itself and its parent", function()
    local out, names = mp.Array("q", 3), mp.Array("c", 64)
    local p = start(ctx.Process{name = "spawned-one", target = T.report,
      args = {out, names, 2, 3}})
    assert.are.equal(0, finish(p))
    assert.are.equal(5, out[1])
    assert.are.equal(p.pid, out[2])
    assert.are.equal(core.getpid(), out[3])
    assert.are.equal("spawned-one|MainProcess|" .. core.getpid(), get_str(names))
  end)

  it("carries a closure's upvalues, modules, kwargs and holes in args", function()
    local out = mp.Array("q", 6)
    assert.are.equal(0, finish(start(ctx.Process{target = T.adder({10, 20}),
      args = table.pack(out, 1, nil, 3), kwargs = {x = 4}})))
    assert.are.same({31, 1, 3, 4, 1, 1},
      {out[1], out[2], out[3], out[4], out[5], out[6]})
  end)

  it("has exit code 1 and prints the traceback when the target raises, n after os.exit(n)", function()
    local log = tmpname()
    local p = start(ctx.Process{name = "bad-spawn", target = T.explode, args = {log}})
    assert.are.equal(1, finish(p))
    local err = assert(slurp(log))
    assert.are.equal(1, err:find("Process bad-spawn:\n", 1, true), err)
    assert.truthy(err:find("boom in spawned child", 1, true), err)
    assert.truthy(err:find("stack traceback:", 1, true), err)
    assert.are.equal(7, spawned(T.exit_with, 7))
    assert.are.equal(3, spawned(T.system_exit, 3))
  end)

  it("is joined with a timeout, terminated (-15) and killed (-9)", function()
    local ready = mp.Event()
    local p = start(ctx.Process{target = T.set_then_sleep, args = {ready}})
    assert.is_true(ready:wait(WAIT))
    p:join(0.01)
    assert.is_nil(p.exitcode)
    assert.is_true(p:is_alive())
    p:terminate()
    assert.are.equal(-15, finish(p))
    local k = start(ctx.Process{target = T.sleeper})
    k:kill()
    assert.are.equal(-9, finish(k))
    assert.is_false(k:is_alive())
  end)

  it("runs the class form: an extended SpawnProcess with its own fields and run", function()
    local out = mp.Array("i", 2)
    local w = T.Worker(out, 21)
    assert.truthy(w.name:match("^Worker%-%d+$"), w.name)
    start(w)
    assert.are.equal(0, finish(w))
    assert.are.same({42, 1}, {out[1], out[2]})
  end)

  it("passes every shared object by reference", function()
    local o = {lock = mp.Lock(), rlock = mp.RLock(), sem = mp.Semaphore(0),
      bsem = mp.BoundedSemaphore(1), ev = mp.Event(), cond = mp.Condition(),
      bar = mp.Barrier(2), v = mp.Value("d", 1.5), a = mp.Array("i", {1, 2, 0}),
      ra = mp.RawArray("b", 2), mq = mp.Queue(), jq = mp.JoinableQueue(),
      sq = mp.SimpleQueue()}
    local here
    here, o.there = mp.Pipe()
    o.lock:acquire()
    local p = start(ctx.Process{target = T.use_all, args = {o}})
    assert.is_true(o.sem:acquire(true, WAIT))
    o.lock:release()
    assert.are.same({from = "child", n = 1}, o.mq:get(true, WAIT))
    assert.are.equal("job", o.jq:get(true, WAIT))
    o.jq:task_done()
    assert.are.equal("simple", o.sq:get())
    assert.is_true(here:poll(WAIT))
    assert.are.same({"over", "the", "pipe"}, here:recv())
    here:send("reply")
    assert.is_true(o.ev:wait(WAIT))
    o.cond:acquire()  -- the child waits on cond once it has set ev
    o.cond:notify()
    o.cond:release()
    assert.is_true(o.bar:wait(WAIT) ~= nil)
    assert.are.equal(0, finish(p))
    assert.are.equal(3.0, o.v.value)
    assert.are.same({1, 2, 3}, {o.a[1], o.a[2], o.a[3]})
    assert.are.equal(-1, o.ra[1])
    assert.is_false(o.bsem:acquire(false))  -- the child took it and ended
  end)

  it("refuses what cannot cross, naming it, and starts nothing", function()
    local before = #mp.active_children()
    local e = raises(errors.TypeError, function()
      ctx.Process{target = T.noop, args = {threading.Lock()}}:start()
    end)
    assert.truthy(errors.tostring(e):find("Lock", 1, true), errors.tostring(e))
    e = raises(errors.TypeError, function()
      ctx.Process{target = T.noop, args = {mp.Barrier(2, T.noop)}}:start()
    end)
    assert.truthy(errors.tostring(e):find("action", 1, true), errors.tostring(e))
    local ok, err = pcall(function()
      ctx.Process{target = T.noop, args = {coroutine.create(T.noop)}}:start()
    end)
    assert.is_false(ok)
    assert.truthy(errors.tostring(err):find("args[1]: cannot transfer coroutine", 1, true),
      errors.tostring(err))
    assert.are.equal(before, #mp.active_children())
    local p = ctx.Process{target = T.noop}  -- a later one starts
    assert.are.equal(0, finish(start(p)))
  end)

  it("raises FileNotFoundError for a missing executable; get_executable is this program", function()
    local exe = mp.get_executable()
    assert.are.equal("string", type(exe))
    assert.truthy(io.open(exe, "rb")):close()
    local p = ctx.Process{target = T.noop}
    mp.set_executable("/nonexistent/conc-host")
    local ok, err = pcall(p.start, p)
    mp.set_executable(exe)
    assert.is_false(ok)
    assert.is_true(isinstance(err, errors.FileNotFoundError), errors.tostring(err))
    assert.truthy(errors.tostring(err):find("/nonexistent/conc-host", 1, true))
    assert.is_false(p:is_alive())
    raises(errors.TypeError, mp.set_executable, 42)
  end)

  it("set_start_method('spawn') makes mp.Process spawn", function()
    local old = mp.get_start_method(true)
    mp.set_start_method("spawn", true)
    local out = mp.Array("q", 1)
    local ok, err = pcall(function()
      local p = mp.Process{target = T.global_into, args = {out, "describe"}}
      assert.are.equal(0, finish(start(p)))
    end)
    mp.set_start_method(old, true)
    assert(ok, err)
    assert.are.equal(0, out[1])  -- a fresh program: busted's globals are not there
    raises(errors.ValueError, mp.set_start_method, "forkserver", true)
  end)

  it("a spawned child starts its own children, named under its own", function()
    local names = mp.Array("c", 128)
    assert.are.equal(0, spawned(T.grandchildren, names))
    local me, a, b = get_str(names):match("^(%S+) (%S+) (%S+)$")
    assert.truthy(me, get_str(names))
    local n = me:match("^SpawnProcess%-(%d+)$")
    assert.truthy(n, me)
    assert.truthy(a:match("^SpawnProcess%-" .. n .. ":1$"), a)
    assert.truthy(b:match("^ForkProcess%-" .. n .. ":2$"), b)
  end)

  it("has a sentinel, a pidfd that stays the same once it ended", function()
    local p = start(ctx.Process{target = T.noop})
    local s = p.sentinel
    assert.are.equal("integer", math.type(s))
    assert.is_true(s >= 0)
    assert.are.equal(0, finish(p))
    assert.are.equal(s, p.sentinel)
  end)

  it("10 processes x 1000 increments of one Value under get_lock() make 10 000", function()
    local v = mp.Value("i", 0)
    local ps = {}
    for i = 1, 10 do ps[i] = start(ctx.Process{target = T.increment, args = {v, 1000}}) end
    for i = 1, 10 do assert.are.equal(0, finish(ps[i])) end
    assert.are.equal(10000, v.value)
  end)

  it("a child SIGKILLed holding an mp.Lock: the parent acquires it within 5 s", function()
    local lock, ev = mp.Lock(), mp.Event()
    local p = start(ctx.Process{target = T.hold, args = {lock, ev}})
    assert.is_true(ev:wait(WAIT))
    assert.is_false(lock:acquire(false))
    p:kill()
    assert.are.equal(-9, finish(p))
    assert.is_true(lock:acquire(true, 5))
    lock:release()
  end)

  it("8 producers and 8 consumers move 200 000 items through one Queue(100), none lost or twice", function()
    local N, q, done = 200000, mp.Queue(100), mp.SimpleQueue()
    local seen = mp.RawArray("B", N)
    local ps = {}
    for i = 1, 8 do
      ps[#ps + 1] = start(ctx.Process{target = T.consume, args = {q, seen, done}})
    end
    for i = 1, 8 do
      ps[#ps + 1] = start(ctx.Process{target = T.produce,
        args = {q, (i - 1) * N // 8 + 1, i * N // 8}})
    end
    for i = 9, 16 do assert.are.equal(0, finish(ps[i])) end
    for _ = 1, 8 do q:put(nil) end
    for i = 1, 8 do assert.are.equal(0, finish(ps[i])) end
    local total = 0
    for _ = 1, 8 do total = total + done:get() end
    assert.are.equal(N, total)
    local ones = 0
    for i = 1, N do if seen[i] == 1 then ones = ones + 1 end end
    assert.are.equal(N, ones)  -- with total == N: each exactly once
  end)

  it("a daemon crosses as one, and may have no children", function()
    local out = mp.Array("i", 2)
    local p = ctx.Process{daemon = true, target = T.daemon_check, args = {out}}
    assert.are.equal(0, finish(start(p)))
    assert.are.same({1, 1}, {out[1], out[2]})
  end)
end)

---------------------------------------------------------------------------
-- Scripts run by the host (and by lua5.4 + conc.core when that runs this
-- spec): exit-time handling of children and the report of a failed one.
---------------------------------------------------------------------------

local interpreters = {{"conc host", q(HOST)}}
if not UNDER_HOST then interpreters[2] = {"lua5.4 + conc.core", LUA} end

-- Runs the script under `timeout`, stdout and stderr together (2>&1);
-- returns the exit code (124: timed out) and the output.
local function run_script(interp, source, limit)
  local script = tmpname()
  spit(script, source)
  local h = assert(io.popen(string.format("timeout -k 5 %d %s %s 2>&1 </dev/null",
    limit or WAIT, interp, q(script))))
  local out = h:read("a")
  local ok, how, code = h:close()
  if ok then code = 0 elseif how == "signal" then code = 128 + code end
  return code, out
end

-- The same with the output to a file: returns once the interpreter ended,
-- whatever its children still hold.
local function run_script_detached(interp, source, limit)
  local script, out = tmpname(), tmpname()
  spit(script, source)
  local ok, how, code = os.execute(string.format(
    "timeout -k 5 %d %s %s >%s 2>&1 </dev/null", limit or WAIT, interp, q(script), q(out)))
  if ok then code = 0 elseif how == "signal" then code = 128 + code end
  return code, slurp(out)
end

local function pid_exists(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

describe("multiprocessing in a script", function()
  for _, interp in ipairs(interpreters) do
    local label, exe = interp[1], interp[2]

    script_it("a raising target prints 'Process NAME:' and its traceback, exit code 1 ("
       .. label .. ")", function()
      local code, out = run_script(exe, [[
local mp = require "conc.multiprocessing"
local function explode() error("boom in process") end
local p = mp.Process{name = "failing-worker", target = function() explode() end}
p:start()
p:join(20)
print("exitcode", p.exitcode)
local ok = mp.Process{target = function() os.exit(5) end}
ok:start()
ok:join(20)
print("exitcode", ok.exitcode)
print("main done")
]])
      assert.are.equal(0, code, out)
      assert.truthy(out:find("Process failing-worker:\n", 1, true), out)
      assert.truthy(out:find("boom in process", 1, true), out)
      assert.truthy(out:find("stack traceback:", 1, true), out)
      assert.truthy(out:find("explode", 1, true), out)
      assert.truthy(out:find("exitcode\t1\nexitcode\t5\nmain done\n", 1, true), out)
    end)

    script_it("a child's stdin is /dev/null under both start methods; the parent's is its own ("
       .. label .. ")", function()
      local script = tmpname()
      spit(script, [[
local mp = require "conc.multiprocessing"
for _, m in ipairs({"fork", "spawn"}) do
  local p = mp.get_context(m).Process{target = function()
    os.exit(io.read("l") == nil and 0 or 3)
  end}
  p:start()
  p:join(20)
  print(m, p.exitcode)
end
print("parent", io.read("l"))
]])
      local h = assert(io.popen(string.format(
        "printf 'hello\\n' | timeout -k 5 %d %s %s 2>&1", WAIT, exe, q(script))))
      local out = h:read("a")
      h:close()
      assert.are.equal("fork\t0\nspawn\t0\nparent\thello\n", out)
    end)

    script_it("spawn: the script's globals do not reach the child; upvalues and arg do ("
       .. label .. ")", function()
      local code, out = run_script(exe, [[
local mp = require "conc.multiprocessing"
X = 1
local y = 2
local function f(q) q:put({x = X, y = y, arg0 = arg and arg[0]}) end
local q = mp.Queue()
local p = mp.get_context("spawn").Process{target = f, args = {q}}
p:start()
local r = q:get(true, 20)
p:join(20)
print("got", tostring(r.x), r.y, r.arg0 == arg[0], p.exitcode)
]])
      assert.are.equal(0, code, out)
      assert.truthy(out:find("got\tnil\t2\ttrue\t0\n", 1, true), out)
    end)

    script_it("joins a non-daemon child still running when the script ends ("
       .. label .. ")", function()
      local gate, done = tmpname(), tmpname()
      local code, out = run_script_detached(exe, string.format([[
local mp = require "conc.multiprocessing"
local time = require "conc.time"
local gate, done = %q, %q
local p = mp.Process{target = function()
  local deadline = time.monotonic() + 20
  while time.monotonic() < deadline do
    local f = io.open(gate, "rb")
    local s = f and f:read("a")
    if f then f:close() end
    if s == "open" then break end
    time.sleep(0.005)
  end
  time.sleep(0.2)  -- a host that did not wait is gone by now
  local f = io.open(done, "wb") f:write("child done") f:close()
  print("child output")
end}
p:start()
print("main body ends")
local f = io.open(gate, "wb") f:write("open") f:close()
]], gate, done))
      assert.are.equal(0, code, out)
      -- the host returned only once the child had finished
      assert.are.equal("child done", slurp(done))
      assert.truthy(out:find("main body ends\n", 1, true), out)
      assert.truthy(out:find("child output\n", 1, true), out)
    end)

    script_it("terminates a daemon child still running when the script ends ("
       .. label .. ")", function()
      local marker, late = tmpname(), tmpname()
      local code, out = run_script_detached(exe, string.format([[
local mp = require "conc.multiprocessing"
local time = require "conc.time"
local marker, late = %q, %q
local p = mp.Process{daemon = true, target = function()
  local f = io.open(marker, "wb") f:write("running") f:close()
  time.sleep(60)
  f = io.open(late, "wb") f:write("daemon survived") f:close()
end}
p:start()
local deadline = time.monotonic() + 20
while time.monotonic() < deadline do
  local f = io.open(marker, "rb")
  local s = f and f:read("a")
  if f then f:close() end
  if s == "running" then break end
  time.sleep(0.005)
end
print("pid", p.pid)
]], marker, late), 30)
      assert.are.equal(0, code, out)  -- 124: the host waited for the daemon
      assert.are.equal("running", slurp(marker))
      local pid = assert(tonumber(out:match("pid\t(%d+)")), out)
      local gone = wait_for(function() return not pid_exists(pid) end)
      if not gone then os.execute("kill -KILL " .. pid) end
      assert.is_true(gone, "the daemon child is still running")
      assert.are.equal("", slurp(late))
    end)
  end
end)
