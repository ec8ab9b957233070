-- conc.threading against Python's documented threading behaviour.
--
-- Threads run in their own lua_State, so a test cannot look at a thread's
-- tables. What a thread sees travels back through a file: run_in_thread()
-- has the thread write its results as a Lua chunk, and the main state loads
-- it after join. A thread that must stay alive while the main state looks at
-- it waits on a gate (a file the main state writes), so no test relies on
-- scheduling order, and every wait is bounded. Host-level behaviour (waiting
-- for non-daemon threads at exit, excepthook output, Ctrl-C) runs a child
-- process under `timeout`.

local conc = require "conc"
local errors = require "conc.errors"
local threading = require "conc.threading"
local time = require "conc.time"

local isinstance = conc.isinstance

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (os.getenv("PWD") or ".") .. "/" .. path
end

local HOST = absolute(os.getenv("CONC_HOST") or "build/conc")
local LUA = os.getenv("CONC_LUA") or "lua5.4"
-- Under the host the facades are built in; under stock lua5.4 they come from
-- LUA_PATH/LUA_CPATH, which a child lua5.4 inherits.
local UNDER_HOST = package.preload["conc.threading"] ~= nil

local WAIT = 20  -- seconds: the bound on every wait for a thread

-- Child processes start through /bin/sh, which inherits LD_PRELOAD; with the
-- TSan runtime preloaded (stock lua5.4 in a TSan build) the uninstrumented
-- shell crashes. The host's flavour of this spec runs those tests instead.
local NO_SHELL = (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) ~= nil

-- it() for a test that runs a child process.
local function child_it(name, fn)
  if NO_SHELL then
    pending(name .. ": no /bin/sh with the TSan runtime preloaded")
  else
    it(name, fn)
  end
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

local support = require "support"
local slurp, spit, q = support.slurp, support.spit, support.q

-- A value as a Lua expression: enough for what the tests send back.
local function dump(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v)
  elseif t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = "[" .. dump(k) .. "]=" .. dump(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "nil" or t == "boolean" then return tostring(v)
  else return string.format("%q", tostring(v)) end
end

-- Runs fn(...) in a new thread and returns what it returned (packed), or
-- raises with the thread's error. opts go to Thread{} (name, daemon).
local function run_in_thread(fn, opts, ...)
  local out = tmpname()
  opts = opts or {}
  local t = threading.Thread{
    target = function(path, f, ...)
      local r = table.pack(pcall(f, ...))
      if not r[1] then r[2] = tostring(r[2]) end
      local h = io.open(path, "wb")
      h:write("return ", dump(r))
      h:close()
    end,
    args = table.pack(out, fn, ...),
    name = opts.name, daemon = opts.daemon,
  }
  t:start()
  t:join(WAIT)
  assert.is_false(t:is_alive(), "thread still running after " .. WAIT .. " s")
  local r = assert(load(assert(slurp(out), "thread wrote nothing")))()
  if not r[1] then error("in thread: " .. r[2], 2) end
  return table.unpack(r, 2, r.n)
end

-- A gate: a file a thread polls until the main state opens it.
local function new_gate()
  return tmpname()  -- os.tmpname made it empty: closed
end

local function open_gate(path)
  spit(path, "open")
end

-- Runs in threads (crosses as an upvalue): waits for the gate, bounded.
local function wait_gate(path)
  local deadline = time.monotonic() + WAIT
  while time.monotonic() < deadline do
    local f = io.open(path, "rb")
    local s = f and f:read("a")
    if f then f:close() end
    if s == "open" then return true end
    time.sleep(0.005)
  end
  return false
end

-- Starts a thread that waits on a fresh gate, then calls after(...) if given.
-- Returns the thread and a function that opens the gate and joins it.
local function parked(opts, after)
  local gate = new_gate()
  opts = opts or {}
  opts.target = function(g, f)
    wait_gate(g)
    if f then f() end
  end
  opts.args = {gate, after}
  local t = threading.Thread(opts)
  t:start()
  return t, function()
    open_gate(gate)
    t:join(WAIT)
    assert.is_false(t:is_alive(), "thread still running after " .. WAIT .. " s")
  end
end

local function raises(cls, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(isinstance(err, cls),
                 "expected " .. tostring(cls.__qualname) .. ", got " .. errors.tostring(err))
  return err
end

local function contains(list, x)
  for _, v in ipairs(list) do
    if rawequal(v, x) then return true end
  end
  return false
end

-- Runs `interp script` in a child process under `timeout`, stdout and stderr
-- to files. opts.limit: seconds (default WAIT); opts.signal: what timeout
-- sends then (the exit status is then the child's own). Returns the exit
-- code (124: timed out), stdout, stderr, seconds taken.
local function child(interp, source, opts)
  opts = opts or {}
  local script, out, err = tmpname(), tmpname(), tmpname()
  spit(script, source)
  -- a child that ignores the signal is killed 5 s later
  local how_to_stop = opts.signal and ("--preserve-status -k 5 -s " .. opts.signal .. " ") or ""
  local cmd = string.format("timeout %s%s %s %s >%s 2>%s </dev/null",
    how_to_stop, opts.limit or WAIT, interp, q(script), q(out), q(err))
  local t0 = time.monotonic()
  local ok, how, code = os.execute(cmd)
  local elapsed = time.monotonic() - t0
  if how == "signal" then code = 128 + code end
  if ok then code = 0 end
  return code, slurp(out), slurp(err), elapsed
end

-- The interpreters a child script runs under: the host always, and the
-- stock lua5.4 with the module when that is what runs this spec.
local interpreters = {{"conc host", q(HOST)}}
if not UNDER_HOST then interpreters[2] = {"lua5.4 + conc.core", LUA} end

after_each(function()
  for _, p in ipairs(temps) do os.remove(p) end
  temps = {}
end)

---------------------------------------------------------------------------
-- Thread objects
---------------------------------------------------------------------------

describe("threading.Thread", function()
  it("runs target with args in another OS thread", function()
    local function add(a, b) return a + b, threading.get_ident() end
    local sum, ident = run_in_thread(add, nil, 2, 3)
    assert.are.equal(5, sum)
    assert.is_not.equal(threading.get_ident(), ident)
  end)

  it("passes args with holes (args.n) and kwargs as a last table", function()
    local out = tmpname()
    local function target(a, b, c, kw)
      local h = io.open(out, "wb")
      h:write("return ", dump({a = a, b = b, c = c, kw = kw}))
      h:close()
    end
    local t = threading.Thread{target = target, args = table.pack(1, nil, 3),
                               kwargs = {sep = "-"}}
    t:start()
    t:join(WAIT)
    assert.is_false(t:is_alive())
    local r = load(slurp(out))()
    assert.are.same({a = 1, c = 3, kw = {sep = "-"}}, r)
  end)

  it("copies args: the thread's changes do not reach the caller", function()
    local data = {1, 2, {x = 1}}
    local n = run_in_thread(function(d)
      d[3].x = 99
      d[4] = 4
      return #d
    end, nil, data)
    assert.are.equal(4, n)
    assert.are.same({1, 2, {x = 1}}, data)
  end)

  it("takes a library C function as target", function()
    local path = tmpname()
    local t = threading.Thread{target = os.remove, args = {path}}
    t:start()
    t:join(WAIT)
    assert.is_false(t:is_alive())
    assert.is_nil(io.open(path, "rb"))
  end)

  it("passed to another thread is the same thread there: name, is_alive, join", function()
    local a, finish = parked({name = "passed"})
    local seen = tmpname()
    local b = threading.Thread{target = function(t, out)
      local h = io.open(out, "wb")
      h:write("return ", dump({name = t.name, alive = t:is_alive()}), ",")
      h:close()
      t:join(20)
      h = io.open(out, "ab")
      h:write(dump({alive = t:is_alive(), ident = t.ident}))
      h:close()
    end, args = {a, seen}}
    b:start()
    -- b reports a alive, then blocks in a:join until the gate opens
    local deadline = time.monotonic() + WAIT
    while not (slurp(seen) or ""):find("},$") and time.monotonic() < deadline do
      time.sleep(0.005)
    end
    assert.is_true(b:is_alive())
    finish()
    b:join(WAIT)
    assert.is_false(b:is_alive())
    local before, after = load(slurp(seen))()
    assert.are.same({name = "passed", alive = true}, before)
    assert.are.same({alive = false, ident = a.ident}, after)
  end)

  it("runs a thread with no target and does nothing", function()
    local t = threading.Thread()
    t:start()
    t:join(WAIT)
    assert.is_false(t:is_alive())
  end)

  it("gives the thread the standard libraries, conc modules and package paths", function()
    local r = run_in_thread(function()
      return {
        libs = type(string.format) .. type(table.concat) .. type(math.floor)
          .. type(io.open) .. type(os.time) .. type(coroutine.wrap)
          .. type(utf8.char) .. type(debug.traceback),
        conc = type(require("conc").threading) .. type(require("conc.time").sleep),
        path = package.path, cpath = package.cpath,
      }
    end)
    assert.are.equal(string.rep("function", 8), r.libs)
    assert.are.equal("tablefunction", r.conc)
    assert.are.equal(package.path, r.path)
    assert.are.equal(package.cpath, r.cpath)
  end)

  it("opens the thread's libraries on first use, looking whole from the start", function()
    -- a thread's state opens math, io, os, table, ... on their first lookup
    local r = run_in_thread(function(floor, unpack)
      local n = 0
      for _ in pairs(os) do n = n + 1 end  -- pairs before any lookup
      return {
        pairs_first = n > 5,
        crossed = floor(2.5) == 2 and unpack({7, 8}) == 7,
        require_same = require("math") == math and package.loaded.io == io,
        fields = math.pi > 3 and type(io.write) == "function",
      }
    end, nil, math.floor, table.unpack)
    assert.is_true(r.pairs_first)
    assert.is_true(r.crossed)
    assert.is_true(r.require_same)
    assert.is_true(r.fields)
  end)

  it("lets an error class made on first use cross, isinstance intact", function()
    local r = run_in_thread(function(E)
      local ok, err = pcall(error, E("x"))
      return require("conc").isinstance(err, require("conc.errors").ValueError)
        and not ok
    end, nil, errors.ValueError)
    assert.is_true(r)
  end)

  it("sets the stack size of new threads with stack_size, as Python", function()
    assert.are.equal(0, threading.stack_size())         -- the default
    assert.are.equal(0, threading.stack_size(256 * 1024))
    assert.are.equal(256 * 1024, threading.stack_size())
    -- a thread still runs (and recurses through C) on the smaller stack
    local r = run_in_thread(function()
      local function deep(n) if n == 0 then return 0 end
        return select(2, pcall(deep, n - 1)) + 1 end
      return deep(150)
    end)
    assert.are.equal(150, r)
    assert.are.equal(256 * 1024, threading.stack_size(0))
    raises(errors.ValueError, threading.stack_size, 1000)
    assert.are.equal(0, threading.stack_size())
  end)

  describe("start", function()
    it("raises RuntimeError when called a second time", function()
      local t = threading.Thread{target = function() end}
      t:start()
      raises(errors.RuntimeError, t.start, t)
      t:join(WAIT)
      assert.is_false(t:is_alive())
      raises(errors.RuntimeError, t.start, t)
    end)
  end)

  describe("join", function()
    it("waits for the thread to finish", function()
      local t = threading.Thread{target = function() time.sleep(0.05) end}
      t:start()
      t:join(WAIT)
      assert.is_false(t:is_alive())
    end)

    it("with a timeout returns while the thread is still alive", function()
      local t, finish = parked()
      local t0 = time.monotonic()
      assert.is_nil(t:join(0.1))
      assert.is_true(time.monotonic() - t0 < 5)
      assert.is_true(t:is_alive())
      t:join(0)
      assert.is_true(t:is_alive())
      finish()
    end)

    it("with a negative timeout does not wait (as a timeout of 0)", function()
      local t, finish = parked()
      local t0 = time.monotonic()
      t:join(-1)
      assert.is_true(time.monotonic() - t0 < 5)
      assert.is_true(t:is_alive())
      finish()
    end)

    it("on a finished thread returns at once, any number of times", function()
      local t = threading.Thread{target = function() end}
      t:start()
      t:join(WAIT)
      t:join()
      t:join(0)
      assert.is_false(t:is_alive())
    end)

    it("returns normally when the thread's target raised", function()
      local saved = threading.excepthook
      threading.excepthook = function() end  -- keep the spec's stderr clean
      local ok, err = pcall(function()
        local t = threading.Thread{target = function() error("expected") end}
        t:start()
        t:join(WAIT)
        assert.is_false(t:is_alive())
      end)
      threading.excepthook = saved
      assert.is_true(ok, err)
    end)

    it("before start raises RuntimeError", function()
      local t = threading.Thread{target = function() end}
      raises(errors.RuntimeError, t.join, t)
      raises(errors.RuntimeError, t.join, t, 0.1)
    end)

    it("of the current thread raises RuntimeError, in main and in a thread", function()
      local main = threading.current_thread()
      raises(errors.RuntimeError, main.join, main)
      local r = run_in_thread(function()
        local me = threading.current_thread()
        local ok, err = pcall(me.join, me, 1)
        return {ok = ok, runtime = require("conc").isinstance(err, errors.RuntimeError)}
      end)
      assert.are.same({ok = false, runtime = true}, r)
    end)

    it("of the main thread from a thread times out while main runs", function()
      local alive = run_in_thread(function()
        local m = threading.main_thread()
        m:join(0.05)
        return m:is_alive()
      end)
      assert.is_true(alive)
    end)

    it("rejects a timeout that is not a number", function()
      local t = threading.Thread{target = function() end}
      t:start()
      assert.has_error(function() t:join("soon") end)
      t:join(WAIT)
    end)
  end)

  describe("is_alive", function()
    it("is false before start, true while running, false after", function()
      local t, finish = parked()
      assert.is_true(t:is_alive())
      finish()
      assert.is_false(t:is_alive())
      local u = threading.Thread{target = function() end}
      assert.is_false(u:is_alive())
    end)
  end)

  describe("name", function()
    local function number(name)
      return tonumber(name:match("^Thread%-(%d+)"))
    end

    it("defaults to 'Thread-N (target)' with N increasing", function()
      local function worker() end
      local a = threading.Thread{target = worker}
      local b = threading.Thread{target = worker}
      assert.matches("^Thread%-%d+ %(worker%)$", a.name)
      assert.matches("^Thread%-%d+ %(worker%)$", b.name)
      assert.is_true(number(b.name) > number(a.name))
    end)

    it("is 'Thread-N' with no target, '(<lambda>)' for an anonymous one", function()
      assert.matches("^Thread%-%d+$", threading.Thread().name)
      assert.matches("^Thread%-%d+$", threading.Thread{}.name)
      local t = threading.Thread{target = function() end}
      assert.matches("^Thread%-%d+ %(.+%)$", t.name)
    end)

    it("is the given name, in the thread too", function()
      local t = threading.Thread{target = function() end, name = "worker-1"}
      assert.are.equal("worker-1", t.name)
      local name = run_in_thread(function()
        return threading.current_thread().name
      end, {name = "inside"})
      assert.are.equal("inside", name)
    end)

    it("can be assigned before and after start; the thread sees it", function()
      local out = tmpname()
      local t, finish = parked({name = "first"}, function()
        local h = io.open(out, "wb")
        h:write(threading.current_thread().name)
        h:close()
      end)
      assert.are.equal("first", t.name)
      t.name = "second"
      assert.are.equal("second", t.name)
      finish()
      assert.are.equal("second", slurp(out))
      local u = threading.Thread{}
      u.name = 42
      assert.are.equal("42", u.name)
      u:setName("set")
      assert.are.equal("set", u:getName())
    end)
  end)

  describe("ident and native_id", function()
    it("are nil before start and integers after", function()
      local t = threading.Thread{target = function() end}
      assert.is_nil(t.ident)
      assert.is_nil(t.native_id)
      t:start()
      assert.are.equal("integer", math.type(t.ident))
      assert.are.equal("integer", math.type(t.native_id))
      t:join(WAIT)
      assert.are.equal("integer", math.type(t.ident))  -- kept after the end
      assert.are.equal("integer", math.type(t.native_id))
    end)

    it("are what get_ident()/get_native_id() return in the thread", function()
      local t_ident, t_native
      local out = tmpname()
      local t, finish = parked(nil, function()
        local h = io.open(out, "wb")
        h:write("return ", threading.get_ident(), ",", threading.get_native_id())
        h:close()
      end)
      t_ident, t_native = t.ident, t.native_id
      finish()
      local ident, native = load(slurp(out))()
      assert.are.equal(t_ident, ident)
      assert.are.equal(t_native, native)
    end)

    it("differ between threads alive at the same time, and from main", function()
      local a, finish_a = parked()
      local b, finish_b = parked()
      local ids = {a.ident, b.ident, threading.main_thread().ident}
      local natives = {a.native_id, b.native_id, threading.main_thread().native_id}
      finish_a()
      finish_b()
      assert.is_true(ids[1] ~= ids[2] and ids[1] ~= ids[3] and ids[2] ~= ids[3])
      assert.is_true(natives[1] ~= natives[2] and natives[1] ~= natives[3]
                     and natives[2] ~= natives[3])
    end)

    it("are read-only (AttributeError)", function()
      local t = threading.Thread{}
      raises(errors.AttributeError, function() t.ident = 1 end)
      raises(errors.AttributeError, function() t.native_id = 1 end)
    end)
  end)

  describe("daemon", function()
    it("inherits from the creating thread (the main thread is not daemonic)", function()
      assert.is_false(threading.main_thread().daemon)
      assert.is_false(threading.Thread{}.daemon)
      local in_daemon = run_in_thread(function()
        return threading.Thread{}.daemon, threading.current_thread().daemon
      end, {daemon = true})
      assert.is_true(in_daemon)
      local in_plain = run_in_thread(function()
        return threading.Thread{}.daemon
      end, {daemon = false})
      assert.is_false(in_plain)
      -- an explicit value wins over inheritance
      assert.is_true(run_in_thread(function()
        return threading.Thread{daemon = true}.daemon
      end))
    end)

    it("is settable before start", function()
      local t = threading.Thread{target = function() end}
      t.daemon = true
      assert.is_true(t.daemon)
      t:setDaemon(false)
      assert.is_false(t:isDaemon())
      t.daemon = true
      local seen = run_in_thread(function() return threading.current_thread().daemon end,
                                 {daemon = true})
      assert.is_true(seen)
    end)

    it("raises RuntimeError when set after start, and keeps its value", function()
      local t, finish = parked({daemon = false})
      raises(errors.RuntimeError, function() t.daemon = true end)
      assert.is_false(t.daemon)
      finish()
      raises(errors.RuntimeError, function() t.daemon = true end)
      assert.is_false(t.daemon)
    end)
  end)

  describe("tostring", function()
    it("reads like Python's repr through the thread's life", function()
      local t, finish = parked({name = "r", daemon = true})
      assert.matches("^<Thread%(r, started daemon %d+%)>$", tostring(t))
      finish()
      assert.matches("^<Thread%(r, stopped daemon %d+%)>$", tostring(t))
      assert.are.equal("<Thread(s, initial)>", tostring(threading.Thread{name = "s",
                                                                          daemon = false}))
    end)
  end)
end)

---------------------------------------------------------------------------
-- Subclassing
---------------------------------------------------------------------------

describe("a Thread subclass", function()
  it("runs its run method, with fields set before start, in the new state", function()
    local Worker = threading.Thread:extend("Worker")
    function Worker:__init(n, out)
      threading.Thread.__init(self, {name = "worker"})
      self.n = n
      self.out = out
    end
    function Worker:run()
      local h = io.open(self.out, "wb")
      h:write("return ", dump({
        n = self.n, extra = self.extra, name = self.name,
        me = rawequal(threading.current_thread(), self),
        ident = threading.get_ident() == self.ident,
        main = threading.get_ident() ~= threading.main_thread().ident,
      }))
      h:close()
    end
    local out = tmpname()
    local w = Worker(21, out)
    w.extra = {list = {1, 2, 3}}
    assert.is_true(isinstance(w, threading.Thread))
    assert.is_true(isinstance(w, Worker))
    assert.matches("^<Worker%(worker, initial%)>$", tostring(w))
    w:start()
    w:join(WAIT)
    assert.is_false(w:is_alive())
    assert.are.same({n = 21, extra = {list = {1, 2, 3}}, name = "worker",
                     me = true, ident = true, main = true}, load(slurp(out))())
  end)

  it("works without its own __init (Thread's defaults apply)", function()
    local Plain = threading.Thread:extend()
    function Plain:run()
      local h = io.open(self.out, "wb")
      h:write("return ", dump({v = self.v, name = self.name, daemon = self.daemon}))
      h:close()
    end
    local out = tmpname()
    local p = Plain()
    p.v = 7
    p.out = out
    p:start()
    p:join(WAIT)
    assert.is_false(p:is_alive())
    local r = load(slurp(out))()
    assert.are.equal(7, r.v)
    assert.matches("^Thread%-%d+$", r.name)
    assert.is_false(r.daemon)
  end)

  it("can call the inherited run, which calls the target", function()
    local Wrapped = threading.Thread:extend()
    function Wrapped:run()
      local h = io.open(self.out, "wb")
      h:write("before;")
      h:close()
      threading.Thread.run(self)
    end
    local out = tmpname()
    local w = Wrapped{target = function(path)
      local h = io.open(path, "ab")
      h:write("target")
      h:close()
    end, args = {out}}
    w.out = out
    w:start()
    w:join(WAIT)
    assert.is_false(w:is_alive())
    assert.are.equal("before;target", slurp(out))
  end)
end)

---------------------------------------------------------------------------
-- Module functions
---------------------------------------------------------------------------

describe("threading module functions", function()
  it("current_thread() is MainThread in the main thread", function()
    local me = threading.current_thread()
    assert.are.equal("MainThread", me.name)
    assert.is_true(rawequal(me, threading.main_thread()))
    assert.is_true(me:is_alive())
    assert.are.equal(threading.get_ident(), me.ident)
    assert.are.equal(threading.get_native_id(), me.native_id)
    assert.are.equal(threading.current_thread, threading.currentThread)
  end)

  it("current_thread()/main_thread() stay one object, attributes kept, across GC", function()
    threading.current_thread().spec_mark = "kept"
    local addr = string.format("%p", threading.main_thread())
    collectgarbage()
    collectgarbage()
    assert.are.equal("kept", threading.current_thread().spec_mark)
    assert.are.equal(addr, string.format("%p", threading.main_thread()))
    local main_in_list
    for _, t in ipairs(threading.enumerate()) do
      if rawequal(t, threading.main_thread()) then main_in_list = t end
    end
    assert.are.equal("kept", main_in_list and main_in_list.spec_mark)
    threading.current_thread().spec_mark = nil
  end)

  it("current_thread() in a thread is its own Thread object", function()
    local r = run_in_thread(function()
      local me = threading.current_thread()
      return {name = me.name, alive = me:is_alive(), ident = me.ident == threading.get_ident(),
              same = rawequal(me, threading.current_thread()),
              is_thread = require("conc").isinstance(me, threading.Thread)}
    end, {name = "curr"})
    assert.are.same({name = "curr", alive = true, ident = true, same = true,
                     is_thread = true}, r)
  end)

  it("main_thread() is MainThread from any thread", function()
    local main_ident = threading.main_thread().ident
    local r = run_in_thread(function()
      local m = threading.main_thread()
      return {name = m.name, ident = m.ident, daemon = m.daemon,
              not_me = m.ident ~= threading.get_ident()}
    end)
    assert.are.same({name = "MainThread", ident = main_ident, daemon = false,
                     not_me = true}, r)
  end)

  it("get_ident()/get_native_id() are integers that differ in a thread", function()
    assert.are.equal("integer", math.type(threading.get_ident()))
    assert.are.equal("integer", math.type(threading.get_native_id()))
    local ident, native = run_in_thread(function()
      return threading.get_ident(), threading.get_native_id()
    end)
    assert.is_not.equal(threading.get_ident(), ident)
    assert.is_not.equal(threading.get_native_id(), native)
  end)

  it("enumerate() holds the main thread and the started live threads", function()
    local before = threading.enumerate()
    assert.is_true(contains(before, threading.main_thread()))
    local new = threading.Thread{target = function() end}
    local t, finish = parked()
    local during = threading.enumerate()
    assert.is_true(contains(during, t))                       -- the very object
    assert.is_true(contains(during, threading.main_thread()))
    assert.is_false(contains(during, new))                    -- not started
    assert.are.equal(#before + 1, #during)
    for _, x in ipairs(during) do
      assert.is_true(isinstance(x, threading.Thread))
      assert.is_true(x:is_alive())
    end
    finish()
    assert.is_false(contains(threading.enumerate(), t))       -- finished
    assert.are.equal(#before, #threading.enumerate())
  end)

  it("enumerate() in a thread holds that thread's own object and the main thread", function()
    local r = run_in_thread(function()
      local me, main = threading.current_thread(), threading.main_thread()
      local found_me, found_main = false, false
      for _, x in ipairs(threading.enumerate()) do
        if rawequal(x, me) then found_me = true end
        if x.ident == main.ident then found_main = true end
      end
      return {me = found_me, main = found_main}
    end)
    assert.are.same({me = true, main = true}, r)
  end)

  it("active_count() is the length of enumerate(), counting live threads", function()
    local base = threading.active_count()
    assert.are.equal(#threading.enumerate(), base)
    assert.is_true(base >= 1)
    local a, finish_a = parked()
    local b, finish_b = parked()
    assert.is_true(a:is_alive() and b:is_alive())
    assert.are.equal(base + 2, threading.active_count())
    assert.are.equal(base + 2, #threading.enumerate())
    finish_a()
    assert.are.equal(base + 1, threading.active_count())
    finish_b()
    assert.are.equal(base, threading.active_count())
    assert.are.equal(threading.active_count, threading.activeCount)
  end)

  it("active_count() in a thread counts it and the main thread", function()
    local n = run_in_thread(function() return threading.active_count() end)
    assert.is_true(n >= 2)
  end)
end)

---------------------------------------------------------------------------
-- threading.local
---------------------------------------------------------------------------

describe("threading.local", function()
  it("is reachable as threading['local'] and threading.Local", function()
    assert.is_not_nil(threading["local"]())
    assert.is_not_nil(threading.Local())
  end)

  it("keeps fields per thread: main's are not seen by a thread, and back", function()
    local data = threading["local"]()
    data.x = 1
    data.shared = "main"
    local r = run_in_thread(function(d)
      local seen = {x = d.x, shared = d.shared}
      d.x = 2
      d.y = "thread"
      seen.after = d.x
      return seen
    end, nil, data)
    assert.are.same({after = 2}, r)
    assert.are.equal(1, data.x)
    assert.are.equal("main", data.shared)
    assert.is_nil(data.y)
  end)

  it("keeps fields apart between two threads using the same object", function()
    local data = threading.Local()
    local function use(d, v)
      local before = d.v
      d.v = v
      time.sleep(0.01)
      return before, d.v
    end
    local b1, v1 = run_in_thread(use, nil, data, "one")
    local b2, v2 = run_in_thread(use, nil, data, "two")
    assert.is_nil(b1)
    assert.is_nil(b2)
    assert.are.equal("one", v1)
    assert.are.equal("two", v2)
    assert.is_nil(data.v)
  end)

  it("two local objects are independent", function()
    local a, b = threading["local"](), threading["local"]()
    a.x = 1
    assert.is_nil(b.x)
    b.x = 2
    assert.are.equal(1, a.x)
  end)

  it("is counted in conc.core.live_objects() while alive", function()
    local core = require "conc.core"
    collectgarbage()
    collectgarbage()
    local before = core.live_objects()["conc.local"]
    assert.are.equal("integer", math.type(before),
                     "live_objects() has no conc.local entry")
    local data = threading["local"]()
    data.x = 1
    assert.are.equal(before + 1, core.live_objects()["conc.local"])
    data = nil
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, core.live_objects()["conc.local"])
  end)
end)

---------------------------------------------------------------------------
-- excepthook
---------------------------------------------------------------------------

describe("threading.excepthook", function()
  it("a custom hook set in main gets exc_type/exc_value/exc_traceback/thread", function()
    local out = tmpname()
    local saved = threading.excepthook
    threading.excepthook = function(args)
      local h = io.open(out, "wb")
      h:write("return ", dump({
        value = tostring(args.exc_value),
        message = args.exc_value.message,
        is_value_error = require("conc").isinstance(args.exc_value, errors.ValueError),
        type_ok = args.exc_type == errors.ValueError,
        tb = type(args.exc_traceback) == "string"
             and args.exc_traceback:find("stack traceback", 1, true) ~= nil,
        thread = args.thread.name,
        thread_is_current = rawequal(args.thread, threading.current_thread()),
      }))
      h:close()
    end
    local ok, err = pcall(function()
      local t = threading.Thread{name = "failing", target = function()
        error(errors.ValueError("bad value"))
      end}
      t:start()
      t:join(WAIT)
      assert.is_false(t:is_alive())
    end)
    threading.excepthook = saved
    assert.is_true(ok, err)
    assert.are.same({value = "ValueError: bad value", message = "bad value",
                     is_value_error = true, type_ok = true, tb = true,
                     thread = "failing", thread_is_current = true},
                    load(assert(slurp(out), "the hook did not run"))())
  end)

  it("a custom hook gets string errors too", function()
    local out = tmpname()
    local saved = threading.excepthook
    threading.excepthook = function(args)
      local h = io.open(out, "wb")
      h:write("return ", dump({type = args.exc_type, value = args.exc_value}))
      h:close()
    end
    local t = threading.Thread{target = function() error("plain", 0) end}
    threading.excepthook = saved
    -- the hook in force at start() is the one the thread gets
    threading.excepthook = function(args)
      local h = io.open(out, "wb")
      h:write("return ", dump({type = args.exc_type, value = args.exc_value}))
      h:close()
    end
    local ok, err = pcall(function()
      t:start()
      t:join(WAIT)
    end)
    threading.excepthook = saved
    assert.is_true(ok, err)
    assert.are.same({type = "string", value = "plain"}, load(assert(slurp(out)))())
  end)

  it("is a function, and __excepthook__ keeps the default", function()
    assert.are.equal("function", type(threading.excepthook))
    assert.are.equal("function", type(threading.__excepthook__))
  end)

  for _, interp in ipairs(interpreters) do
    local label, exe = interp[1], interp[2]

    child_it("default: prints 'Exception in thread NAME:' and a traceback, the rest goes on ("
       .. label .. ")", function()
      local gate = tmpname()
      local code, out, err = child(exe, string.format([[
local threading = require "conc.threading"
local time = require "conc.time"
local gate = %q
local other = threading.Thread{name = "survivor", target = function()
  local deadline = time.monotonic() + 20
  while time.monotonic() < deadline do
    local f = io.open(gate, "rb")
    local s = f and f:read("a")
    if f then f:close() end
    if s == "open" then break end
    time.sleep(0.005)
  end
  print("survivor done")
end}
other:start()
local function explode() error("boom in thread") end
local bad = threading.Thread{name = "bad-thread", target = function() explode() end}
bad:start()
bad:join(20)
print("bad alive", bad:is_alive())
local f = io.open(gate, "wb") f:write("open") f:close()
other:join(20)
print("other alive", other:is_alive())
print("main done")
]], gate))
      assert.are.equal(0, code, err)
      assert.matches("bad alive\tfalse\n", out)
      assert.matches("survivor done\n", out, 1, true)
      assert.matches("other alive\tfalse\n", out)
      assert.matches("main done\n", out, 1, true)
      assert.matches("Exception in thread bad-thread:\n", err, 1, true)
      assert.matches("boom in thread", err, 1, true)
      assert.matches("stack traceback:", err, 1, true)
      assert.matches("explode", err, 1, true)
      assert.is_nil(err:find("survivor", 1, true))
    end)

    child_it("default: ignores SystemExit, as Python does (" .. label .. ")", function()
      local code, out, err = child(exe, [[
local threading = require "conc.threading"
local errors = require "conc.errors"
local t = threading.Thread{target = function() error(errors.SystemExit()) end}
t:start()
t:join(20)
print("alive", t:is_alive())
]])
      assert.are.equal(0, code, err)
      assert.are.equal("alive\tfalse\n", out)
      assert.are.equal("", err)
    end)

    child_it("an error in a custom hook is reported, and the host goes on (" .. label .. ")",
       function()
      local code, out, err = child(exe, [[
local threading = require "conc.threading"
threading.excepthook = function(args) error("hook failed") end
local t = threading.Thread{name = "t1", target = function() error("first") end}
t:start()
t:join(20)
print("done", t:is_alive())
]])
      assert.are.equal(0, code, err)
      assert.are.equal("done\tfalse\n", out)
      assert.matches("hook failed", err, 1, true)
    end)
  end
end)

---------------------------------------------------------------------------
-- The process and its threads
---------------------------------------------------------------------------

describe("process exit", function()
  for _, interp in ipairs(interpreters) do
    local label, exe = interp[1], interp[2]

    child_it("waits for a non-daemon thread still running when the main body ends ("
       .. label .. ")", function()
      local code, out, err = child(exe, [[
local threading = require "conc.threading"
local time = require "conc.time"
threading.Thread{name = "late", target = function()
  time.sleep(0.3)
  print("thread output")
end}:start()
print("main body ends")
]])
      assert.are.equal(0, code, err)
      assert.matches("main body ends\n", out, 1, true)
      assert.matches("thread output\n", out, 1, true)
    end)

    child_it("waits for a non-daemon thread started by another thread (" .. label .. ")",
       function()
      local code, out, err = child(exe, [[
local threading = require "conc.threading"
local time = require "conc.time"
threading.Thread{target = function()
  threading.Thread{target = function()
    time.sleep(0.3)
    print("grandchild output")
  end}:start()
end}:start()
]])
      assert.are.equal(0, code, err)
      assert.are.equal("grandchild output\n", out)
    end)

    child_it("does not wait for a daemon thread still running (" .. label .. ")", function()
      local code, out, err, elapsed = child(exe, [[
local threading = require "conc.threading"
local time = require "conc.time"
threading.Thread{daemon = true, target = function()
  time.sleep(60)
  print("daemon output")
end}:start()
print("main body ends")
]], {limit = 30})
      assert.are.equal(0, code, err)
      assert.are.equal("main body ends\n", out)
      assert.is_true(elapsed < 10, "took " .. elapsed .. " s")
    end)
  end

  -- the stock lua5.4 has its own SIGINT handler; this is the host's
  child_it("Ctrl-C interrupts a join in the host: KeyboardInterrupt, exit 130", function()
    local code, out, err, elapsed = child(q(HOST), [[
local threading = require "conc.threading"
local time = require "conc.time"
local t = threading.Thread{daemon = true, target = function() time.sleep(60) end}
t:start()
print("joining")
io.stdout:flush()
t:join()
print("not reached")
]], {limit = 2, signal = "INT"})
    assert.are.equal(130, code, err)
    assert.are.equal("joining\n", out)
    assert.matches("KeyboardInterrupt", err, 1, true)
    assert.is_true(elapsed < 10, "took " .. elapsed .. " s")
  end)
end)

-- Lock and Event: shared by reference, so threads signal through them. Each
-- thread's observation comes back through Events; every wait is bounded.
describe("threading.Lock", function()
  local core = require "conc.core"
  -- a Lock is a table of methods bound to it (a method call is one table
  -- lookup); it must stay one object however it is reached or tampered with
  it("has bound methods that still act on what they are called on", function()
    local a, b = threading.Lock(), threading.Lock()
    local acquire = a.acquire
    assert.is_true(acquire(a))
    assert.is_true(a:locked())
    assert.is_true(acquire(b))  -- called on b: acts on b, as before
    assert.is_true(b:locked())
    a:release(); b:release()
    local ok, err = pcall(a.acquire, nil)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("conc.Lock expected", 1, true))
    ok, err = pcall(a.release, threading.Event())
    assert.is_false(ok)
    assert.truthy(tostring(err):find("conc.Lock expected", 1, true))
  end)

  it("survives tampering without crashing", function()
    local l = threading.Lock()
    local meta = getmetatable(l)
    -- a table made to look like a Lock is refused or acts on a real lock
    local forged = setmetatable({io.stdout}, meta)
    assert.is_false(pcall(meta.__index.acquire, forged))
    assert.is_false(pcall(meta.__close, forged))
    assert.is_false(pcall(core.copy, forged))
    -- overwriting the table's own fields leaves the object alone
    rawset(l, 1, io.stdout)
    assert.is_true(l:acquire())
    l:release()
    assert.is_false(pcall(meta.__close, l))  -- its box is gone: refused
    l.acquire = nil  -- a field of this table only
    assert.is_true(meta.__index.acquire(threading.Lock()))
  end)

  -- a script reaches the metatables: what it puts there must not crash
  it("survives an __index function put among the methods, and rebound", function()
    local mt = getmetatable(threading.Barrier(2))
    -- an array part in the metatable is what the box was read as: a
    -- crash, or not, by its size (7 and 100000 crashed before the fix)
    for _, n in ipairs{0, 7, 100000} do
      for i = 1, n do mt[i] = i end
      mt.zzz = mt.__index
      local b = threading.Barrier(2)  -- binds zzz to its box and table
      for _, k in ipairs{"wait", "parties", "nothing"} do pcall(b.zzz, b, k) end
      assert.are.equal(2, b.parties)
      mt.zzz = nil
      for i = 1, n do mt[i] = nil end
    end
    -- nor the watch on methods added to that metatable, put among a Lock's
    local methods = getmetatable(threading.Lock()).__index
    methods.yyy = getmetatable(mt).__newindex
    local l = threading.Lock()
    for i = 1, 50 do pcall(l.yyy, l, "k" .. i, i) end
    assert.is_true(l:acquire(false))
    l:release()
    methods.yyy = nil
  end)

  it("gives live proxies after a __gc called by hand", function()
    local l = threading.Lock()
    getmetatable(l).__gc(l[1])  -- the box lets go of its object
    local ok, err = pcall(l.acquire, l)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("conc.Lock is closed", 1, true), tostring(err))
    -- a new object may get the freed one's address (malloc hands back the
    -- block just freed): it must not come back as the closed proxy the
    -- state still caches under that address
    for _ = 1, 50 do
      local old = threading.Lock()
      getmetatable(old).__gc(old[1])
      local fresh = threading.Lock()
      assert.is_true(fresh:acquire(false))
    end
  end)

  it("lets the handle enter() returns stand for the lock once the lock's table is gone", function()
    local l = threading.Lock()
    local h = l:enter()
    l = nil
    collectgarbage(); collectgarbage()
    local again = core.copy(h)  -- a new table proxy of the same lock
    assert.are.equal("table", type(again))
    assert.is_true(again:locked())
    local cond = threading.Condition(h)
    assert.is_false(cond:acquire(false))  -- the same lock, held
    h:release()
    assert.is_false(again:locked())
  end)

  it("keeps its identity across threads and queues", function()
    local l = threading.Lock()
    assert.are.equal("table", type(l))
    assert.is_true(rawequal(l, core.copy(l)))
    assert.is_true(rawequal(l, core.copy({l})[1]))
  end)

  local time = require "conc.time"

  it("acquires, reports locked, and releases", function()
    local l = threading.Lock()
    assert.is_false(l:locked())
    assert.is_true(l:acquire())
    assert.is_true(l:locked())
    l:release()
    assert.is_false(l:locked())
  end)

  it("returns false from a non-blocking or timed acquire of a held lock", function()
    local l = threading.Lock()
    l:acquire()
    assert.is_false(l:acquire(false))
    local t0 = time.monotonic()
    assert.is_false(l:acquire(true, 0.05))
    assert.is_true(time.monotonic() - t0 >= 0.045)
    l:release()
    assert.is_true(l:acquire(true, 0.05))
    l:release()
  end)

  it("raises RuntimeError on releasing an unlocked lock", function()
    local l = threading.Lock()
    raises(errors.RuntimeError, l.release, l)
    l:acquire()
    l:release()
    raises(errors.RuntimeError, l.release, l)
  end)

  it("rejects a timeout with blocking false, and a negative one", function()
    local l = threading.Lock()
    raises(errors.ValueError, l.acquire, l, false, 1)
    raises(errors.ValueError, l.acquire, l, true, -5)
    assert.is_false(l:locked())
  end)

  it("is one lock in every thread it is passed to", function()
    local l, saw_held, may_go, took = threading.Lock(), threading.Event(),
      threading.Event(), threading.Event()
    l:acquire()
    local t = threading.Thread{target = function(lk, a, b, c)
      if not lk:acquire(false) then a:set() end
      b:wait(20)
      if lk:acquire(true, 20) then c:set() lk:release() end
    end, args = {l, saw_held, may_go, took}}
    t:start()
    assert.is_true(saw_held:wait(WAIT))
    l:release()
    may_go:set()
    assert.is_true(took:wait(WAIT))
    t:join(WAIT)
    assert.is_false(l:locked())
  end)

  it("may be released by a thread other than its holder, as in Python", function()
    local l, done = threading.Lock(), threading.Event()
    l:acquire()
    local t = threading.Thread{target = function(lk, d) lk:release() d:set() end,
      args = {l, done}}
    t:start()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_false(l:locked())
  end)

  it("translates `with` as enter() and <close>, releasing on errors too", function()
    local l = threading.Lock()
    do
      local _ <close> = l:enter()
      assert.is_true(l:locked())
    end
    assert.is_false(l:locked())
    local ok = pcall(function()
      local _ <close> = l:enter()
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_false(l:locked())
  end)

  -- Python's Lock.__enter__ returns True, not the lock; enter() returns a
  -- handle to the same lock (its box, which __close reaches quickest).
  it("enter() returns a handle that releases the lock and stands for it", function()
    local l = threading.Lock()
    local h = l:enter()
    assert.is_true(l:locked())
    assert.is_true(rawequal(conc.core.copy(h), l))  -- crosses as the lock
    local cond = threading.Condition(h)
    assert.is_true(cond:acquire(false) == false)  -- the same, held, lock
    h:release()
    assert.is_false(l:locked())
    assert.is_true(h:acquire(false))
    assert.is_true(l:locked())
    getmetatable(h).__close(h)
    assert.is_false(l:locked())
    local ok, err = pcall(getmetatable(h).__close, h)
    assert.is_false(ok)
    assert.is_true(isinstance(err, errors.RuntimeError))
  end)
end)

describe("threading.Event", function()
  it("starts clear; set and clear change is_set", function()
    local e = threading.Event()
    assert.is_false(e:is_set())
    e:set()
    assert.is_true(e:is_set())
    e:set()
    assert.is_true(e:is_set())
    e:clear()
    assert.is_false(e:is_set())
  end)

  it("returns false when wait times out, at once for a negative timeout", function()
    local e = threading.Event()
    assert.is_false(e:wait(0.02))
    assert.is_false(e:wait(-1))
    e:set()
    assert.is_true(e:wait(0))
    assert.is_true(e:wait())
  end)

  it("wakes every waiter when another thread sets it", function()
    local go, ready = threading.Event(), {}
    local woke = {}
    local ts = {}
    for i = 1, 3 do
      ready[i], woke[i] = threading.Event(), threading.Event()
      ts[i] = threading.Thread{target = function(g, r, w)
        r:set()
        if g:wait(20) then w:set() end
      end, args = {go, ready[i], woke[i]}}
      ts[i]:start()
    end
    for i = 1, 3 do assert.is_true(ready[i]:wait(WAIT)) end
    go:set()
    for i = 1, 3 do
      assert.is_true(woke[i]:wait(WAIT))
      ts[i]:join(WAIT)
    end
  end)
end)

-- RLock, Semaphore and BoundedSemaphore: Python's semantics. Another thread's
-- view comes back through Events (or run_in_thread's results); no test relies
-- on scheduling order, and every wait is bounded by WAIT.

-- True when a fresh thread cannot take lk at once (acquire(false) fails); a
-- thread that does take it releases it before it ends.
local function taken_elsewhere(lk)
  local got, done = threading.Event(), threading.Event()
  local t = threading.Thread{target = function(l, g, d)
    if l:acquire(false) then
      g:set()
      l:release()
    end
    d:set()
  end, args = {lk, got, done}}
  t:start()
  assert.is_true(done:wait(WAIT), "probe thread did not finish")
  t:join(WAIT)
  return not got:is_set()
end

-- How many of the events are set.
local function count_set(events)
  local n = 0
  for _, e in ipairs(events) do
    if e:is_set() then n = n + 1 end
  end
  return n
end

-- Waits (bounded) until at least n of the events are set; returns how many are.
local function wait_count(events, n)
  local deadline = time.monotonic() + WAIT
  while count_set(events) < n and time.monotonic() < deadline do
    time.sleep(0.005)
  end
  return count_set(events)
end

describe("threading.RLock", function()
  it("acquires and releases, returning true from acquire", function()
    local r = threading.RLock()
    assert.is_false(taken_elsewhere(r))
    assert.is_true(r:acquire())
    assert.is_true(taken_elsewhere(r))
    r:release()
    assert.is_false(taken_elsewhere(r))
    assert.is_true(r:acquire(true, 0.05))
    r:release()
    assert.is_true(r:acquire(false))
    r:release()
    assert.is_true(r:acquire(true, -1))
    r:release()
    assert.is_false(taken_elsewhere(r))
  end)

  it("lets its owner acquire again, blocking or not, and counts the acquires", function()
    local r = threading.RLock()
    assert.is_true(r:acquire())
    assert.is_true(r:acquire())
    assert.is_true(r:acquire(false))
    assert.is_true(r:acquire(true, 0.05))
    assert.is_true(r:acquire(true, -1))
    for _ = 1, 4 do
      r:release()
      assert.is_true(taken_elsewhere(r), "freed before as many releases as acquires")
    end
    r:release()
    assert.is_false(taken_elsewhere(r))
    raises(errors.RuntimeError, r.release, r)
  end)

  it("raises RuntimeError on releasing an RLock nobody holds", function()
    local r = threading.RLock()
    local err = raises(errors.RuntimeError, r.release, r)
    assert.matches("cannot release un-acquired lock", errors.tostring(err), 1, true)
    r:acquire()
    r:acquire()
    r:release()
    r:release()
    raises(errors.RuntimeError, r.release, r)
    assert.is_false(taken_elsewhere(r))
  end)

  it("rejects a timeout with blocking false, and a negative one, as Lock does", function()
    local r = threading.RLock()
    raises(errors.ValueError, r.acquire, r, false, 1)
    raises(errors.ValueError, r.acquire, r, true, -5)
    raises(errors.ValueError, r.acquire, r, true, -0.5)
    assert.is_false(taken_elsewhere(r))
    -- -1 is the default timeout: allowed with blocking false
    assert.is_true(r:acquire(false, -1))
    -- the owner gets the same checks, and its count does not change
    raises(errors.ValueError, r.acquire, r, false, 1)
    raises(errors.ValueError, r.acquire, r, true, -5)
    r:release()
    assert.is_false(taken_elsewhere(r))
  end)

  it("raises RuntimeError when a thread releases an RLock another thread holds", function()
    local r = threading.RLock()
    r:acquire()
    local raised, runtime, done = threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(lk, a, b, d)
      local ok, err = pcall(lk.release, lk)
      if not ok then
        a:set()
        if require("conc").isinstance(err, require("conc.errors").RuntimeError) then
          b:set()
        end
      end
      d:set()
    end, args = {r, raised, runtime, done}}
    t:start()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_true(raised:is_set(), "release by a non-owner did not raise")
    assert.is_true(runtime:is_set(), "release by a non-owner raised something else")
    -- main still holds it, once
    assert.is_true(taken_elsewhere(r))
    r:release()
    assert.is_false(taken_elsewhere(r))
  end)

  it("is owned by the thread that acquired it: others cannot take or release it", function()
    local r = threading.RLock()
    local held, go, done = threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(lk, h, g, d)
      lk:acquire()
      lk:acquire()
      lk:release()
      h:set()
      g:wait(20)
      lk:release()
      d:set()
    end, args = {r, held, go, done}}
    t:start()
    assert.is_true(held:wait(WAIT))
    assert.is_false(r:acquire(false))
    local t0 = time.monotonic()
    assert.is_false(r:acquire(true, 0.05))
    assert.is_true(time.monotonic() - t0 >= 0.045)
    raises(errors.RuntimeError, r.release, r)
    go:set()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_true(r:acquire(false))
    r:release()
  end)

  it("times out an acquire in another thread while held", function()
    local r = threading.RLock()
    r:acquire()
    r:acquire()
    local nonblocking, timed, elapsed = run_in_thread(function(lk)
      local tm = require "conc.time"
      local a = lk:acquire(false)
      local t0 = tm.monotonic()
      local b = lk:acquire(true, 0.05)
      return a, b, tm.monotonic() - t0
    end, nil, r)
    assert.is_false(nonblocking)
    assert.is_false(timed)
    assert.is_true(elapsed >= 0.045, "gave up after " .. elapsed .. " s")
    r:release()
    r:release()
  end)

  it("is one lock in every thread: a blocked acquire succeeds once fully released", function()
    local r = threading.RLock()
    r:acquire()
    r:acquire()
    local ready, took, done = threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(lk, a, b, d)
      a:set()
      if lk:acquire(true, 20) then
        b:set()
        lk:release()
      end
      d:set()
    end, args = {r, ready, took, done}}
    t:start()
    assert.is_true(ready:wait(WAIT))
    r:release()
    -- still held once by main: the thread cannot have it
    assert.is_false(took:wait(0.05))
    r:release()
    assert.is_true(took:wait(WAIT))
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_false(taken_elsewhere(r))
  end)

  it("translates `with` as enter() and <close>, nested, releasing on errors too", function()
    local r = threading.RLock()
    do
      local _ <close> = r:enter()
      assert.is_true(taken_elsewhere(r))
      do
        local _ <close> = r:enter()
        assert.is_true(taken_elsewhere(r))
      end
      assert.is_true(taken_elsewhere(r), "inner <close> freed the outer hold")
    end
    assert.is_false(taken_elsewhere(r))
    local ok = pcall(function()
      local _ <close> = r:enter()
      local _ <close> = r:enter()
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_false(taken_elsewhere(r))
    raises(errors.RuntimeError, r.release, r)
  end)
end)

-- n threads each acquire(true, 20) on sem and set their got[i] when they
-- get it; returns once all n are about to acquire.
local function start_acquirers(sem, n)
  local ready, got, ts = {}, {}, {}
  for i = 1, n do
    ready[i], got[i] = threading.Event(), threading.Event()
    ts[i] = threading.Thread{target = function(sm, r, g)
      r:set()
      if sm:acquire(true, 20) then g:set() end
    end, args = {sem, ready[i], got[i]}}
    ts[i]:start()
  end
  for i = 1, n do assert.is_true(ready[i]:wait(WAIT)) end
  return got, ts
end

-- A thread blocks in sem:enter() (the count is 0) until main releases; its
-- <close> then gives the count back.
local function enter_waits_for_release(sem)
  local ready, entered, done = threading.Event(), threading.Event(), threading.Event()
  local t = threading.Thread{target = function(sm, r, e, d)
    r:set()
    do
      local _ <close> = sm:enter()
      e:set()
    end
    d:set()
  end, args = {sem, ready, entered, done}}
  t:start()
  assert.is_true(ready:wait(WAIT))
  assert.is_false(entered:wait(0.05))
  sem:release()
  assert.is_true(entered:wait(WAIT))
  assert.is_true(done:wait(WAIT))
  t:join(WAIT)
end

describe("threading.Semaphore", function()
  it("defaults to a value of 1", function()
    local s = threading.Semaphore()
    assert.is_true(s:acquire())
    assert.is_false(s:acquire(false))
    s:release()
    assert.is_true(s:acquire(false))
  end)

  it("counts down from its value and up on release", function()
    local s = threading.Semaphore(3)
    assert.is_true(s:acquire())
    assert.is_true(s:acquire(false))
    assert.is_true(s:acquire(true, 0.05))
    assert.is_false(s:acquire(false))
    s:release()
    assert.is_true(s:acquire(false))
    assert.is_false(s:acquire(false))
    -- an unbounded semaphore may be released past its initial value
    s:release()
    s:release()
    s:release()
    s:release()
    for _ = 1, 4 do assert.is_true(s:acquire(false)) end
    assert.is_false(s:acquire(false))
  end)

  it("accepts 0 and rejects a negative value with ValueError", function()
    local s = threading.Semaphore(0)
    assert.is_false(s:acquire(false))
    raises(errors.ValueError, threading.Semaphore, -1)
  end)

  it("returns false from a timed acquire after about the timeout", function()
    local s = threading.Semaphore(0)
    local t0 = time.monotonic()
    assert.is_false(s:acquire(true, 0.05))
    local elapsed = time.monotonic() - t0
    assert.is_true(elapsed >= 0.045, "gave up after " .. elapsed .. " s")
    assert.is_false(s:acquire(true, 0))
  end)

  it("rejects any timeout with blocking false, -1 included, with ValueError", function()
    local s = threading.Semaphore(1)
    raises(errors.ValueError, s.acquire, s, false, 1)
    raises(errors.ValueError, s.acquire, s, false, 0)
    raises(errors.ValueError, s.acquire, s, false, -1)
    -- the failed calls took nothing
    assert.is_true(s:acquire(false, nil))
    assert.is_false(s:acquire(false, nil))
  end)

  it("treats a negative timeout as no wait at all, as Python does", function()
    local s = threading.Semaphore(1)
    assert.is_true(s:acquire(true, -1))
    -- nothing left: returns false at once. Run in a thread so that an
    -- implementation that waits forever is caught (and freed) in bounded time.
    local finished, got = threading.Event(), threading.Event()
    local t = threading.Thread{target = function(sem, f, g)
      if sem:acquire(true, -1) then g:set() end
      f:set()
    end, args = {s, finished, got}}
    t:start()
    local returned = finished:wait(WAIT)
    if not returned then s:release() end  -- free a thread stuck waiting
    assert.is_true(finished:wait(WAIT))
    t:join(WAIT)
    assert.is_true(returned, "acquire(true, -1) waited on an empty semaphore")
    assert.is_false(got:is_set())
  end)

  it("rejects release(n) with n < 1 with ValueError", function()
    local s = threading.Semaphore(0)
    raises(errors.ValueError, s.release, s, 0)
    raises(errors.ValueError, s.release, s, -1)
    assert.is_false(s:acquire(false))
  end)

  it("adds n on release(n)", function()
    local s = threading.Semaphore(0)
    s:release(3)
    for _ = 1, 3 do assert.is_true(s:acquire(false)) end
    assert.is_false(s:acquire(false))
    s:release(1)
    assert.is_true(s:acquire(false))
    assert.is_false(s:acquire(false))
  end)

  it("is one counter in every thread it is passed to", function()
    local s = threading.Semaphore(2)
    local took_two, then_none = threading.Event(), threading.Event()
    local t = threading.Thread{target = function(sem, a, b)
      if sem:acquire(false) and sem:acquire(false) then a:set() end
      if not sem:acquire(false) then b:set() end
    end, args = {s, took_two, then_none}}
    t:start()
    t:join(WAIT)
    assert.is_false(t:is_alive())
    assert.is_true(took_two:is_set())
    assert.is_true(then_none:is_set())
    assert.is_false(s:acquire(false))
    -- released by a thread that never acquired it: semaphores have no owner
    local released = threading.Event()
    local t2 = threading.Thread{target = function(sem, r)
      sem:release(2)
      r:set()
    end, args = {s, released}}
    t2:start()
    assert.is_true(released:wait(WAIT))
    t2:join(WAIT)
    assert.is_true(s:acquire(false))
    assert.is_true(s:acquire(false))
    assert.is_false(s:acquire(false))
  end)

  it("wakes a thread blocked in a timed acquire when another releases", function()
    local s = threading.Semaphore(0)
    local ready, got, done = threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(sem, r, g, d)
      r:set()
      if sem:acquire(true, 20) then g:set() end
      d:set()
    end, args = {s, ready, got, done}}
    t:start()
    assert.is_true(ready:wait(WAIT))
    assert.is_false(got:wait(0.05))  -- nothing released yet
    s:release()
    assert.is_true(got:wait(WAIT))
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_false(s:acquire(false))  -- the thread used the one release
  end)

  it("wakes a thread blocked in an untimed acquire", function()
    local s = threading.Semaphore(0)
    local ready, got = threading.Event(), threading.Event()
    local t = threading.Thread{target = function(sem, r, g)
      r:set()
      if sem:acquire() then g:set() end
    end, args = {s, ready, got}}
    t:start()
    assert.is_true(ready:wait(WAIT))
    s:release()
    assert.is_true(got:wait(WAIT))
    t:join(WAIT)
    assert.is_false(t:is_alive())
  end)

  it("wakes n waiters on release(n)", function()
    local s = threading.Semaphore(0)
    local got, ts = start_acquirers(s, 3)
    s:release(3)
    for i = 1, 3 do
      assert.is_true(got[i]:wait(WAIT), "waiter " .. i .. " not woken")
      ts[i]:join(WAIT)
      assert.is_false(ts[i]:is_alive())
    end
    assert.is_false(s:acquire(false))
  end)

  it("wakes no more than n waiters on release(n)", function()
    local s = threading.Semaphore(0)
    local got, ts = start_acquirers(s, 3)
    s:release(2)
    assert.are.equal(2, wait_count(got, 2))
    time.sleep(0.1)
    assert.are.equal(2, count_set(got), "a third waiter got past release(2)")
    s:release()
    assert.are.equal(3, wait_count(got, 3))
    for i = 1, 3 do
      ts[i]:join(WAIT)
      assert.is_false(ts[i]:is_alive())
    end
    assert.is_false(s:acquire(false))
  end)

  it("translates `with` as enter() and <close>, releasing on errors too", function()
    local s = threading.Semaphore(1)
    do
      local _ <close> = s:enter()
      assert.is_false(s:acquire(false))
    end
    assert.is_true(s:acquire(false))
    s:release()
    local ok = pcall(function()
      local _ <close> = s:enter()
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_true(s:acquire(false))
    assert.is_false(s:acquire(false))
  end)

  it("blocks in enter() until another thread releases", function()
    local s = threading.Semaphore(0)
    enter_waits_for_release(s)
    -- the thread's <close> gave it back
    assert.is_true(s:acquire(false))
    assert.is_false(s:acquire(false))
  end)
end)

describe("threading.BoundedSemaphore", function()
  it("defaults to a value of 1 and cannot be released past it", function()
    local b = threading.BoundedSemaphore()
    raises(errors.ValueError, b.release, b)
    assert.is_true(b:acquire())
    assert.is_false(b:acquire(false))
    b:release()
    raises(errors.ValueError, b.release, b)
    assert.is_true(b:acquire(false))
    assert.is_false(b:acquire(false))
  end)

  it("rejects a negative value with ValueError", function()
    raises(errors.ValueError, threading.BoundedSemaphore, -1)
    local b = threading.BoundedSemaphore(0)
    assert.is_false(b:acquire(false))
    raises(errors.ValueError, b.release, b)
  end)

  it("raises ValueError on release(n) past the initial value, changing nothing", function()
    local b = threading.BoundedSemaphore(3)
    raises(errors.ValueError, b.release, b, 1)
    assert.is_true(b:acquire())
    assert.is_true(b:acquire())
    raises(errors.ValueError, b.release, b, 3)
    -- the failed release added nothing: two may come back, one at a time or both
    b:release(2)
    raises(errors.ValueError, b.release, b)
    for _ = 1, 3 do assert.is_true(b:acquire(false)) end
    assert.is_false(b:acquire(false))
    b:release()
    b:release()
    b:release()
    raises(errors.ValueError, b.release, b)
  end)

  it("checks arguments as Semaphore does", function()
    local b = threading.BoundedSemaphore(1)
    raises(errors.ValueError, b.acquire, b, false, 1)
    raises(errors.ValueError, b.acquire, b, false, -1)
    assert.is_true(b:acquire())
    raises(errors.ValueError, b.release, b, 0)
    raises(errors.ValueError, b.release, b, -2)
    local t0 = time.monotonic()
    assert.is_false(b:acquire(true, 0.05))
    assert.is_true(time.monotonic() - t0 >= 0.045)
    b:release()
    assert.is_true(b:acquire(false))
    b:release()
  end)

  it("is bounded in every thread: another thread's over-release raises ValueError", function()
    local b = threading.BoundedSemaphore(1)
    b:acquire()
    local first_ok, second_raised, done =
      threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(sem, a, c, d)
      if pcall(sem.release, sem) then a:set() end
      local ok, err = pcall(sem.release, sem)
      if not ok and require("conc").isinstance(err, require("conc.errors").ValueError) then
        c:set()
      end
      d:set()
    end, args = {b, first_ok, second_raised, done}}
    t:start()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_true(first_ok:is_set(), "a release within the bound failed")
    assert.is_true(second_raised:is_set(), "an over-release did not raise ValueError")
    assert.is_true(b:acquire(false))
    assert.is_false(b:acquire(false))
    b:release()
  end)

  it("wakes a blocked thread on release, and enter() works as for Semaphore", function()
    local b = threading.BoundedSemaphore(1)
    b:acquire()
    enter_waits_for_release(b)
    -- the thread's <close> released within the bound, back to 1
    raises(errors.ValueError, b.release, b)
    assert.is_true(b:acquire(false))
    b:release()
  end)
end)

-- Condition: Python's semantics. A waiter thread signals "about to wait"
-- while it holds the condition's lock, and releases that lock only inside
-- wait(); so once the main state gets the lock after the signal, the waiter
-- is known to be waiting. Every wait is bounded by WAIT.
describe("threading.Condition", function()
  -- Starts k threads that each acquire cond, signal, wait(20) on it, record
  -- whether wait returned true and whether the lock was held again after it,
  -- then release. Returns with all k inside wait() and the lock held by the
  -- main state. woke[i]: wait returned true; done[i]: the thread finished.
  local function start_waiters(cond, k, lk)
    local about, woke, held, done, ts = {}, {}, {}, {}, {}
    for i = 1, k do
      about[i], woke[i], held[i], done[i] =
        threading.Event(), threading.Event(), threading.Event(), threading.Event()
      ts[i] = threading.Thread{target = function(c, l, a, w, h, d)
        c:acquire()
        a:set()
        if c:wait(20) then w:set() end
        -- held again after wait: another thread cannot take the lock
        if not l or not l:acquire(false) then h:set() else l:release() end
        c:release()
        d:set()
      end, args = {cond, lk or false, about[i], woke[i], held[i], done[i]}}
      ts[i]:start()
    end
    for i = 1, k do
      assert.is_true(about[i]:wait(WAIT), "waiter " .. i .. " did not start")
    end
    assert.is_true(cond:acquire(true, WAIT), "a waiter never released the lock")
    return woke, held, done, ts
  end

  local function join_all(done, ts)
    for i = 1, #ts do
      assert.is_true(done[i]:wait(WAIT), "waiter " .. i .. " did not finish")
      ts[i]:join(WAIT)
      assert.is_false(ts[i]:is_alive())
    end
  end

  it("uses a new RLock by default", function()
    for _, cond in ipairs{threading.Condition(), threading.Condition(nil)} do
      assert.is_false(taken_elsewhere(cond))
      assert.is_true(cond:acquire())
      -- reentrant, and owned: another thread cannot take it
      assert.is_true(cond:acquire(false))
      assert.is_true(taken_elsewhere(cond))
      cond:release()
      assert.is_true(taken_elsewhere(cond), "freed before as many releases as acquires")
      cond:release()
      assert.is_false(taken_elsewhere(cond))
      raises(errors.RuntimeError, cond.release, cond)
    end
    -- two conditions made without a lock do not share one
    local a, b = threading.Condition(), threading.Condition()
    a:acquire()
    assert.is_false(taken_elsewhere(b))
    a:release()
  end)

  it("uses the Lock it is given, and acquire/release delegate to it", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    assert.is_true(cond:acquire())
    assert.is_true(l:locked())
    assert.is_false(cond:acquire(false))  -- a Lock is not reentrant
    local t0 = time.monotonic()
    assert.is_false(cond:acquire(true, 0.05))
    assert.is_true(time.monotonic() - t0 >= 0.045)
    cond:release()
    assert.is_false(l:locked())
    -- taking the lock directly takes the condition's lock
    l:acquire()
    assert.is_false(cond:acquire(false))
    l:release()
    raises(errors.RuntimeError, cond.release, cond)
  end)

  it("uses the RLock it is given", function()
    local r = threading.RLock()
    local cond = threading.Condition(r)
    assert.is_true(cond:acquire())
    assert.is_true(cond:acquire(false))
    assert.is_true(taken_elsewhere(r))
    r:release()  -- the same lock: releasing it directly counts
    assert.is_true(taken_elsewhere(r))
    cond:release()
    assert.is_false(taken_elsewhere(r))
  end)

  it("raises TypeError for anything but a Lock or an RLock", function()
    for _, v in ipairs{42, "lock", {}, true, function() end, threading.Event()} do
      raises(errors.TypeError, threading.Condition, v)
    end
  end)

  it("raises RuntimeError on wait or notify without holding the lock", function()
    local l = threading.Lock()
    for _, cond in ipairs{threading.Condition(l), threading.Condition()} do
      local err = raises(errors.RuntimeError, cond.wait, cond, 0.01)
      assert.matches("cannot wait on un-acquired lock", errors.tostring(err), 1, true)
      err = raises(errors.RuntimeError, cond.notify, cond)
      assert.matches("cannot notify on un-acquired lock", errors.tostring(err), 1, true)
      raises(errors.RuntimeError, cond.notify, cond, 2)
      raises(errors.RuntimeError, cond.notify_all, cond)
      raises(errors.RuntimeError, cond.notifyAll, cond)
      assert.is_false(taken_elsewhere(cond))
    end
    assert.is_false(l:locked())
    -- an RLock-based condition held by the main state is not held by another
    -- thread: wait and notify raise there too
    local cond = threading.Condition()
    cond:acquire()
    local wait_raised, notify_raised, done =
      threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(c, a, b, d)
      local is = require("conc").isinstance
      local RuntimeError = require("conc.errors").RuntimeError
      local ok, err = pcall(c.wait, c, 0.01)
      if not ok and is(err, RuntimeError) then a:set() end
      ok, err = pcall(c.notify, c)
      if not ok and is(err, RuntimeError) then b:set() end
      d:set()
    end, args = {cond, wait_raised, notify_raised, done}}
    t:start()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    cond:release()
    assert.is_true(wait_raised:is_set(), "wait by a non-owner did not raise RuntimeError")
    assert.is_true(notify_raised:is_set(), "notify by a non-owner did not raise RuntimeError")
  end)

  it("returns false from wait after the timeout, holding the lock again", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    cond:acquire()
    local t0 = time.monotonic()
    assert.is_false(cond:wait(0.05))
    local elapsed = time.monotonic() - t0
    assert.is_true(elapsed >= 0.045, "gave up after " .. elapsed .. " s")
    assert.is_true(l:locked())
    assert.is_false(cond:wait(0))
    assert.is_true(l:locked())
    cond:release()
    assert.is_false(l:locked())
    -- the same with the default RLock
    cond = threading.Condition()
    cond:acquire()
    t0 = time.monotonic()
    assert.is_false(cond:wait(0.05))
    assert.is_true(time.monotonic() - t0 >= 0.045)
    assert.is_true(taken_elsewhere(cond))
    cond:release()
    assert.is_false(taken_elsewhere(cond))
  end)

  it("returns false at once from wait with a negative timeout, as Python does", function()
    local cond = threading.Condition(threading.Lock())
    local finished, notified = threading.Event(), threading.Event()
    local t = threading.Thread{target = function(c, f, n)
      c:acquire()
      if c:wait(-1) then n:set() end
      c:release()
      f:set()
    end, args = {cond, finished, notified}}
    t:start()
    local returned = finished:wait(WAIT)
    if not returned then  -- free a thread stuck waiting
      cond:acquire()
      cond:notify_all()
      cond:release()
    end
    assert.is_true(finished:wait(WAIT))
    t:join(WAIT)
    assert.is_true(returned, "wait(-1) waited")
    assert.is_false(notified:is_set())
  end)

  it("wakes a waiting thread on notify; its wait returns true once it has the lock", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    local woke, held, done, ts = start_waiters(cond, 1, l)
    cond:notify()
    -- the waiter must take the lock back before wait returns: main holds it
    assert.is_false(woke[1]:wait(0.05), "wait returned while the lock was held elsewhere")
    cond:release()
    assert.is_true(woke[1]:wait(WAIT), "the notified waiter's wait did not return true")
    join_all(done, ts)
    assert.is_true(held[1]:is_set(), "the lock was not held after wait returned")
    assert.is_false(l:locked())
  end)

  it("wakes exactly n of the waiting threads on notify(n)", function()
    local cond = threading.Condition()
    local woke, _, done, ts = start_waiters(cond, 3)
    cond:notify(2)
    cond:release()
    assert.are.equal(2, wait_count(woke, 2))
    assert.are.equal(2, wait_count(done, 2))
    time.sleep(0.1)
    assert.are.equal(2, count_set(woke), "a third waiter got past notify(2)")
    -- notify() wakes one: the last
    cond:acquire()
    cond:notify()
    cond:release()
    assert.are.equal(3, wait_count(woke, 3))
    join_all(done, ts)
  end)

  it("wakes only as many as are waiting on notify(n) with n larger, and none later", function()
    local cond = threading.Condition(threading.Lock())
    -- nobody waiting: notify is a no-op and is not remembered
    cond:acquire()
    cond:notify(5)
    cond:notify_all()
    assert.is_false(cond:wait(0.01))
    cond:release()
    local woke, _, done, ts = start_waiters(cond, 3)
    cond:notify(5)
    cond:release()
    assert.are.equal(3, wait_count(woke, 3))
    join_all(done, ts)
    cond:acquire()
    assert.is_false(cond:wait(0.01), "a notify for absent waiters was kept")
    cond:release()
  end)

  it("wakes every waiting thread on notify_all", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    local woke, held, done, ts = start_waiters(cond, 3, l)
    cond:notify_all()
    cond:release()
    assert.are.equal(3, wait_count(woke, 3))
    join_all(done, ts)
    assert.are.equal(3, count_set(held))
    assert.is_false(l:locked())
  end)

  it("has notifyAll as an alias of notify_all", function()
    local cond = threading.Condition()
    local woke, _, done, ts = start_waiters(cond, 2)
    cond:notifyAll()
    cond:release()
    assert.are.equal(2, wait_count(woke, 2))
    join_all(done, ts)
  end)

  it("releases an RLock fully in wait and restores its recursion level", function()
    local r = threading.RLock()
    local cond = threading.Condition(r)
    assert.is_true(cond:acquire())
    assert.is_true(cond:acquire())
    assert.is_false(cond:wait(0.01))
    cond:release()
    assert.is_true(taken_elsewhere(r), "wait lost a level of the recursion")
    cond:release()
    assert.is_false(taken_elsewhere(r))
    raises(errors.RuntimeError, cond.release, cond)
    -- in another thread: held twice, wait lets the main state take the lock
    local about, woke, released, raised, done = threading.Event(), threading.Event(),
      threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(c, a, w, rl, rs, d)
      c:acquire()
      c:acquire()
      a:set()
      if c:wait(20) then w:set() end
      if pcall(c.release, c) and pcall(c.release, c) then rl:set() end
      local ok, err = pcall(c.release, c)
      if not ok and require("conc").isinstance(err, require("conc.errors").RuntimeError) then
        rs:set()
      end
      d:set()
    end, args = {cond, about, woke, released, raised, done}}
    t:start()
    assert.is_true(about:wait(WAIT))
    assert.is_true(cond:acquire(true, WAIT), "wait did not release a recursive hold fully")
    cond:notify()
    cond:release()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_true(woke:is_set())
    assert.is_true(released:is_set(), "two releases after wait did not both succeed")
    assert.is_true(raised:is_set(), "a third release after wait did not raise RuntimeError")
    assert.is_false(taken_elsewhere(r))
  end)

  it("returns the predicate's result from wait_for without waiting when it holds", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    cond:acquire()
    local t0 = time.monotonic()
    assert.are.equal(42, cond:wait_for(function() return 42 end, WAIT))
    assert.are.equal("yes", cond:wait_for(function() return "yes" end))
    assert.is_true(time.monotonic() - t0 < 1, "wait_for waited on a true predicate")
    assert.is_true(l:locked())
    cond:release()
  end)

  it("returns the predicate's false value from wait_for after the timeout", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    cond:acquire()
    local calls = 0
    local t0 = time.monotonic()
    local r = cond:wait_for(function() calls = calls + 1 return false end, 0.05)
    local elapsed = time.monotonic() - t0
    assert.are.equal(false, r)
    assert.is_true(elapsed >= 0.045, "gave up after " .. elapsed .. " s")
    assert.is_true(calls >= 2, "the predicate was not checked again after the timeout")
    assert.is_true(l:locked())
    t0 = time.monotonic()
    assert.is_nil(cond:wait_for(function() return nil end, 0.02))
    assert.is_true(time.monotonic() - t0 >= 0.015)
    assert.is_true(l:locked())
    cond:release()
    assert.is_false(l:locked())
  end)

  it("returns from wait_for once another thread makes the predicate true", function()
    local cond = threading.Condition()
    local flag = threading.Event()
    local started, done = threading.Event(), threading.Event()
    local t = threading.Thread{target = function(c, f, s, d)
      s:set()
      c:acquire()  -- only once main is inside wait_for's wait
      c:notify()   -- predicate still false: main must wait again
      c:release()
      c:acquire()
      f:set()
      c:notify()
      c:release()
      d:set()
    end, args = {cond, flag, started, done}}
    cond:acquire()
    t:start()
    assert.is_true(started:wait(WAIT))
    local r = cond:wait_for(function() return flag:is_set() and "ready" end, WAIT)
    assert.are.equal("ready", r)
    assert.is_true(taken_elsewhere(cond))
    cond:release()
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
  end)

  it("runs wait_for's predicate in the waiting thread, woken by notifies", function()
    local cond = threading.Condition(threading.Lock())
    local items = threading.Semaphore(0)
    local about, got, done = threading.Event(), threading.Event(), threading.Event()
    local t = threading.Thread{target = function(c, sem, a, g, d)
      c:acquire()
      a:set()
      -- the predicate is made here: it runs in this thread's state
      if c:wait_for(function() return sem:acquire(false) end, 20) == true then g:set() end
      c:release()
      d:set()
    end, args = {cond, items, about, got, done}}
    t:start()
    assert.is_true(about:wait(WAIT))
    assert.is_true(cond:acquire(true, WAIT))  -- the thread is in wait_for's wait
    cond:notify()  -- nothing available yet: the predicate stays false
    cond:release()
    assert.is_false(got:wait(0.05), "wait_for returned on a false predicate")
    cond:acquire()
    items:release()
    cond:notify()
    cond:release()
    assert.is_true(got:wait(WAIT), "wait_for did not return the predicate's true")
    assert.is_true(done:wait(WAIT))
    t:join(WAIT)
    assert.is_false(items:acquire(false), "the thread's predicate did not take the item")
  end)

  it("translates `with` as enter() and <close>, releasing on errors too", function()
    local l = threading.Lock()
    local cond = threading.Condition(l)
    do
      local _ <close> = cond:enter()
      assert.is_true(l:locked())
      cond:notify()
      assert.is_false(cond:wait(0.01))
      assert.is_true(l:locked())
    end
    assert.is_false(l:locked())
    local ok = pcall(function()
      local _ <close> = cond:enter()
      error("inside")
    end)
    assert.is_false(ok)
    assert.is_false(l:locked())
    -- nested with the default RLock
    local rc = threading.Condition()
    do
      local _ <close> = rc:enter()
      do
        local _ <close> = rc:enter()
        assert.is_true(taken_elsewhere(rc))
      end
      assert.is_true(taken_elsewhere(rc), "inner <close> freed the outer hold")
    end
    assert.is_false(taken_elsewhere(rc))
  end)
end)

describe("threading.Timer", function()
  it("calls its function with args after the interval", function()
    local fired = threading.Event()
    local t = threading.Timer(0.05, function(ev, a, b)
      if a == 1 and b == "two" then ev:set() end
    end, {fired, 1, "two"})
    assert.is_true(rawequal(getmetatable(t), threading.Timer))
    assert.are.equal(0.05, t.interval)
    t:start()
    assert.is_true(fired:wait(WAIT))
    t:join(WAIT)
    assert.is_false(t:is_alive())
    assert.is_true(t.finished:is_set())
  end)

  it("never runs its function when cancelled before it fires", function()
    local fired = threading.Event()
    local t = threading.Timer(30, function(ev) ev:set() end, {fired})
    t:start()
    t:cancel()
    t:join(WAIT)  -- cancel ends the wait at once, not after 30 s
    assert.is_false(t:is_alive())
    assert.is_false(fired:is_set())
  end)

  it("passes kwargs after args, and is named like a Thread", function()
    local fired = threading.Event()
    local t = threading.Timer(0, function(ev, a, kw)
      if a == 5 and kw.key == "v" then ev:set() end
    end, {fired, 5}, {key = "v"})
    assert.matches("^Thread%-%d+$", t.name)
    t:start()
    assert.is_true(fired:wait(WAIT))
    t:join(WAIT)
  end)
end)

-- Barrier: Python's semantics. Threads arrive in a known order by polling
-- n_waiting (bounded) before they wait; each waiter writes what its waits
-- gave to a file the main state reads after join.
describe("threading.Barrier", function()
  -- Waits (bounded) until n threads wait on b; returns b.n_waiting.
  local function wait_waiting(b, n)
    local deadline = time.monotonic() + WAIT
    while b.n_waiting ~= n and time.monotonic() < deadline do
      time.sleep(0.005)
    end
    return b.n_waiting
  end

  -- Starts a thread that waits on b opts.cycles times (default 1), with
  -- timeout opts.timeout (default WAIT; opts.default: no timeout argument),
  -- once at least opts.after threads wait there. After the k-th wait returns
  -- it checks that opts.acted[k] is set and opts.acted[k + 1] is not.
  -- Returns a function that joins it and returns its outcomes, one a wait:
  -- "index 0", "broken" (BrokenBarrierError), "error: ..." (anything else).
  local function start_waiter(b, opts)
    opts = opts or {}
    local out, done = tmpname(), threading.Event()
    local t = threading.Thread{target = function(bar, o, path, d)
      local tm = require "conc.time"
      local errs = require "conc.errors"
      local is = require("conc").isinstance
      if o.after then
        local deadline = tm.monotonic() + 20
        while bar.n_waiting < o.after and tm.monotonic() < deadline do
          tm.sleep(0.005)
        end
      end
      local res = {}
      for k = 1, o.cycles or 1 do
        local ok, r
        if o.default then
          ok, r = pcall(bar.wait, bar)
        else
          ok, r = pcall(bar.wait, bar, o.timeout or 20)
        end
        local s
        if ok then
          s = math.type(r) == "integer" and ("index " .. r) or ("returned " .. tostring(r))
          if o.acted then
            if not o.acted[k]:is_set() then
              s = s .. ", released before the action ran"
            elseif o.acted[k + 1] and o.acted[k + 1]:is_set() then
              s = s .. ", the action ran twice in one cycle"
            end
          end
        elseif is(r, errs.BrokenBarrierError) then
          s = "broken"
        else
          s = "error: " .. errs.tostring(r)
        end
        res[#res + 1] = s
        if not ok then break end
      end
      local h = io.open(path, "wb")
      h:write(table.concat(res, "\n"))
      h:close()
      d:set()
    end, args = {b, opts, out, done}}
    t:start()
    return function()
      assert.is_true(done:wait(WAIT), "a waiter did not finish")
      t:join(WAIT)
      assert.is_false(t:is_alive(), "waiter still running after " .. WAIT .. " s")
      local res = {}
      for line in (slurp(out) or ""):gmatch("[^\n]+") do res[#res + 1] = line end
      return res
    end
  end

  -- Two threads arrive at the three-party barrier b one after the other,
  -- then main; between arrivals check(n) may look at b with n waiting.
  -- Each gets its arrival index: 0, 1, and main 2.
  local function pass_in_order(b, check)
    check = check or function() end
    local first = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    check(1)
    local second = start_waiter(b)
    assert.are.equal(2, wait_waiting(b, 2))
    check(2)
    assert.are.equal(2, b:wait(WAIT))
    assert.are.same({"index 0"}, first())
    assert.are.same({"index 1"}, second())
  end

  -- The k-th outcome of each waiter, sorted.
  local function column(all, k)
    local c = {}
    for i, res in ipairs(all) do c[i] = res[k] or "(no outcome)" end
    table.sort(c)
    return c
  end

  it("has BrokenBarrierError in threading and conc.errors, a RuntimeError", function()
    assert.is_not_nil(errors.BrokenBarrierError)
    assert.is_true(rawequal(threading.BrokenBarrierError, errors.BrokenBarrierError))
    local b = threading.Barrier(1)
    b:abort()
    local err = raises(errors.BrokenBarrierError, b.wait, b, WAIT)
    assert.is_true(isinstance(err, errors.RuntimeError), "not a RuntimeError")
    assert.matches("^BrokenBarrierError", tostring(err))
  end)

  it("raises ValueError for parties below 1", function()
    raises(errors.ValueError, threading.Barrier, 0)
    raises(errors.ValueError, threading.Barrier, -1)
    raises(errors.ValueError, threading.Barrier, 0, function() end, 1)
  end)

  it("has parties, n_waiting and broken fields", function()
    local b = threading.Barrier(3)
    assert.are.equal(3, b.parties)
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
    pass_in_order(b, function()
      assert.are.equal(3, b.parties)
      assert.is_false(b.broken)
    end)
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
    assert.are.equal(3, b.parties)
  end)

  it("keeps parties, n_waiting and broken read-only: AttributeError, the C state unchanged", function()
    local b = threading.Barrier(3)
    for k, v in pairs{parties = 1, n_waiting = 1, broken = true} do
      local err = raises(errors.AttributeError, function() b[k] = v end)
      assert.truthy(tostring(err):find(k, 1, true), tostring(err))
      assert.is_nil(rawget(b, k), k .. " was stored on the proxy")
    end
    assert.are.equal(3, b.parties)
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
    -- the barrier still takes three parties: two waiting do not pass it
    pass_in_order(b, function(n)
      assert.are.equal(n, b.n_waiting)
      assert.are.equal(3, b.parties)
    end)
    -- a key of its own still goes on the proxy
    b.tag = "mine"
    assert.are.equal("mine", b.tag)
  end)

  it("releases three threads together, each with a distinct index in 0..2", function()
    local b = threading.Barrier(3)
    local ws = {}
    for i = 1, 3 do ws[i] = start_waiter(b) end
    local all = {}
    for i = 1, 3 do all[i] = ws[i]() end
    assert.are.same({"index 0", "index 1", "index 2"}, column(all, 1))
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
  end)

  it("reports indices back through Events: main and two threads, 0..2 each once", function()
    local b = threading.Barrier(3)
    local got = {threading.Event(), threading.Event(), threading.Event()}
    local bad, done = threading.Event(), {threading.Event(), threading.Event()}
    local ts = {}
    for i = 1, 2 do
      ts[i] = threading.Thread{target = function(bar, g, x, d)
        local ok, r = pcall(bar.wait, bar, 20)
        if ok and math.type(r) == "integer" and g[r + 1] then g[r + 1]:set() else x:set() end
        d:set()
      end, args = {b, got, bad, done[i]}}
      ts[i]:start()
    end
    local mine = b:wait(WAIT)
    assert.is_true(math.type(mine) == "integer" and mine >= 0 and mine <= 2,
                   "main got index " .. tostring(mine))
    got[mine + 1]:set()
    assert.are.equal(2, wait_count(done, 2))
    for i = 1, 2 do ts[i]:join(WAIT) end
    assert.is_false(bad:is_set(), "a thread's wait failed or gave a bad index")
    assert.are.equal(3, count_set(got))
  end)

  it("gives indices in arrival order: the last to arrive gets parties - 1", function()
    pass_in_order(threading.Barrier(3))
  end)

  it("is reusable: the same three threads pass it three times", function()
    local b = threading.Barrier(3)
    local ws = {}
    for i = 1, 3 do ws[i] = start_waiter(b, {cycles = 3}) end
    local all = {}
    for i = 1, 3 do all[i] = ws[i]() end
    for k = 1, 3 do
      assert.are.same({"index 0", "index 1", "index 2"}, column(all, k))
    end
    assert.are.equal(0, b.n_waiting)
    assert.is_false(b.broken)
    -- and again, with main as one of the parties
    local w1, w2 = start_waiter(b), start_waiter(b)
    local mine = b:wait(WAIT)
    local c = column({w1(), w2(), {"index " .. tostring(mine)}}, 1)
    assert.are.same({"index 0", "index 1", "index 2"}, c)
  end)

  it("calls the action once per cycle, in the last thread to arrive, before any release", function()
    local acted = {threading.Event(), threading.Event()}
    local extra = threading.Event()
    local b = threading.Barrier(3, function()
      for _, e in ipairs(acted) do
        if not e:is_set() then e:set() return end
      end
      extra:set()
    end)
    local ws = {}
    for i = 1, 3 do ws[i] = start_waiter(b, {cycles = 2, acted = acted}) end
    local all = {}
    for i = 1, 3 do all[i] = ws[i]() end
    for k = 1, 2 do
      assert.are.same({"index 0", "index 1", "index 2"}, column(all, k))
    end
    assert.are.equal(2, count_set(acted))
    assert.is_false(extra:is_set(), "the action ran more than once a cycle")
  end)

  it("calls the action in the main state when main arrives last, and with one party", function()
    local ran, ran_in_thread = threading.Event(), threading.Event()
    local b = threading.Barrier(2, function()
      local th = require "conc.threading"
      if th.current_thread() == th.main_thread() then ran:set() else ran_in_thread:set() end
    end)
    local w = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    assert.are.equal(1, b:wait(WAIT))
    assert.are.same({"index 0"}, w())
    assert.is_true(ran:is_set(), "the action did not run in the last arrival's thread")
    assert.is_false(ran_in_thread:is_set())
    -- one party: every wait is the last arrival
    local calls = threading.Semaphore(0)
    local one = threading.Barrier(1, function() calls:release() end)
    assert.are.equal(1, one.parties)
    assert.are.equal(0, one:wait(WAIT))
    assert.are.equal(0, one:wait())
    assert.is_true(calls:acquire(false))
    assert.is_true(calls:acquire(false))
    assert.is_false(calls:acquire(false), "the action ran more than once a wait")
    assert.is_false(one.broken)
  end)

  it("breaks when a wait times out: that waiter and every other raise BrokenBarrierError", function()
    local b = threading.Barrier(3)
    local w = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    local t0 = time.monotonic()
    local err = raises(errors.BrokenBarrierError, b.wait, b, 0.05)
    local elapsed = time.monotonic() - t0
    assert.is_true(elapsed >= 0.045, "gave up after " .. elapsed .. " s")
    assert.matches("^BrokenBarrierError", tostring(err))
    assert.are.same({"broken"}, w())
    assert.is_true(b.broken)
    assert.are.equal(0, b.n_waiting)
    -- later waits raise at once, until reset
    t0 = time.monotonic()
    raises(errors.BrokenBarrierError, b.wait, b, WAIT)
    raises(errors.BrokenBarrierError, b.wait, b)
    assert.is_true(time.monotonic() - t0 < WAIT / 4, "a wait on a broken barrier waited")
    assert.is_true(b.broken)
    b:reset()
    assert.is_false(b.broken)
    assert.are.equal(0, b.n_waiting)
    pass_in_order(b)  -- fresh: it works again
  end)

  it("breaks when main waits alone on a two-party barrier with wait(0.05)", function()
    local b = threading.Barrier(2)
    local t0 = time.monotonic()
    raises(errors.BrokenBarrierError, b.wait, b, 0.05)
    assert.is_true(time.monotonic() - t0 >= 0.045)
    assert.is_true(b.broken)
    b:reset()
    assert.is_false(b.broken)
  end)

  it("uses its default timeout when wait is given none, and the call's when given", function()
    local b = threading.Barrier(2, nil, 0.05)
    local t0 = time.monotonic()
    raises(errors.BrokenBarrierError, b.wait, b)
    local elapsed = time.monotonic() - t0
    assert.is_true(elapsed >= 0.045, "gave up after " .. elapsed .. " s")
    assert.is_true(elapsed < WAIT / 2, "the default timeout was not used")
    assert.is_true(b.broken)
    b:reset()
    assert.is_false(b.broken)
    -- a waiter with a longer timeout of its own outlasts the default
    local w = start_waiter(b, {timeout = 20})
    assert.are.equal(1, wait_waiting(b, 1))
    time.sleep(0.2)
    assert.is_false(b.broken, "the default timeout overrode the call's")
    assert.are.equal(1, b.n_waiting)
    assert.are.equal(1, b:wait())  -- the last arrival: released at once
    assert.are.same({"index 0"}, w())
    -- a waiter without a timeout argument gets the default in its thread too
    local lone = start_waiter(b, {default = true})
    assert.are.same({"broken"}, lone())
    assert.is_true(b.broken)
  end)

  it("breaks on abort: the waiting thread and later waits raise until reset", function()
    local b = threading.Barrier(2)
    local w = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    b:abort()
    assert.are.same({"broken"}, w())
    assert.is_true(b.broken)
    raises(errors.BrokenBarrierError, b.wait, b, WAIT)
    assert.are.same({"broken"}, start_waiter(b)())
    assert.is_true(b.broken)
    b:reset()
    assert.is_false(b.broken)
    local w2 = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    assert.are.equal(1, b:wait(WAIT))
    assert.are.same({"index 0"}, w2())
    -- abort with nobody waiting breaks it too
    b:abort()
    assert.is_true(b.broken)
    raises(errors.BrokenBarrierError, b.wait, b, WAIT)
    b:reset()
    assert.is_false(b.broken)
  end)

  it("releases a waiting thread with BrokenBarrierError on reset, and is then fresh", function()
    local b = threading.Barrier(2)
    b:reset()  -- nobody waiting, not broken: no effect
    assert.is_false(b.broken)
    local w = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    b:reset()
    assert.are.same({"broken"}, w())
    assert.is_false(b.broken)
    assert.are.equal(0, b.n_waiting)
    local w2 = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    assert.are.equal(1, b:wait(WAIT))
    assert.are.same({"index 0"}, w2())
    assert.is_false(b.broken)
  end)

  it("breaks when the action raises: its caller gets the error, the others BrokenBarrierError", function()
    local b = threading.Barrier(2, function()
      error(require("conc.errors").ValueError("from the action"))
    end)
    -- main arrives last: the action runs and raises here
    local w = start_waiter(b)
    assert.are.equal(1, wait_waiting(b, 1))
    local err = raises(errors.ValueError, b.wait, b, WAIT)
    assert.matches("from the action", tostring(err), 1, true)
    assert.are.same({"broken"}, w())
    assert.is_true(b.broken)
    raises(errors.BrokenBarrierError, b.wait, b, WAIT)
    b:reset()
    assert.is_false(b.broken)
    -- a thread arrives last: the action raises there, main gets BrokenBarrierError
    local last = start_waiter(b, {after = 1})
    raises(errors.BrokenBarrierError, b.wait, b, WAIT)
    local res = last()
    assert.are.equal(1, #res)
    assert.matches("^error: ValueError: from the action", res[1])
    assert.is_true(b.broken)
    b:reset()
    assert.is_false(b.broken)
  end)
end)

---------------------------------------------------------------------------
-- Timeouts: one reading of the timeout argument for every blocking call
---------------------------------------------------------------------------

-- Every blocking call reads its timeout as Python's does: NaN raises
-- ValueError, anything but a number (a numeric string too) TypeError, nil
-- waits for good, and a negative one means what that call means in Python.
-- Each call runs in a thread on an object in the state where it blocks and
-- reports on a queue; a call that waits is freed by the case's unstick(), so
-- an implementation that hangs fails the case in bounded time.
describe("threading timeouts", function()
  local queue = require "conc.queue"
  local NAN = 0 / 0

  -- Thread body: call(obj, timeout) under pcall, reported on `results` as
  -- {ok, value or error text, class name, message, seconds}.
  local show = support.show
  local function outcome(case, timeout, blocks)
    return support.outcome(case, timeout, blocks, WAIT)
  end

  -- Each blocking call in the state where it blocks. make() returns the
  -- object (crossing to the thread), unstick() (main: lets the call
  -- complete) and an optional cleanup(); call(obj, timeout) runs in the
  -- thread. woken: what the call returns once freed; neg: "minus1" (Lock's:
  -- -1 is forever, other negatives ValueError) or "nowait" (no wait at
  -- all), with nowait the outcome of that: a value returned, or a class
  -- raised.
  local cases = {
    {name = "Lock:acquire on a held Lock", neg = "minus1", woken = true,
     make = function()
       local l = threading.Lock()
       l:acquire()
       return l, function() l:release() end
     end,
     call = function(l, t) return l:acquire(true, t) end},
    {name = "RLock:acquire on an RLock main holds", neg = "minus1", woken = true,
     make = function()
       local r = threading.RLock()
       r:acquire()
       return r, function() r:release() end
     end,
     call = function(r, t) return r:acquire(true, t) end},
    {name = "Semaphore:acquire at 0", neg = "nowait", woken = true, nowait = false,
     make = function()
       local s = threading.Semaphore(0)
       return s, function() s:release() end
     end,
     call = function(s, t) return s:acquire(true, t) end},
    {name = "BoundedSemaphore:acquire at 0", neg = "nowait", woken = true, nowait = false,
     make = function()
       local s = threading.BoundedSemaphore(1)
       s:acquire()
       return s, function() s:release() end
     end,
     call = function(s, t) return s:acquire(true, t) end},
    {name = "Condition:wait", neg = "nowait", woken = true, nowait = false,
     make = function()
       local o = {c = threading.Condition(threading.Lock()), about = threading.Event()}
       return o, function()
         -- the lock is free again only once the waiter is inside wait
         assert.is_true(o.about:wait(WAIT), "the waiter did not start")
         assert.is_true(o.c:acquire(true, WAIT), "the waiter kept the lock")
         o.c:notify_all()
         o.c:release()
       end
     end,
     call = function(o, t)
       o.c:acquire()
       o.about:set()
       local ok, r = pcall(o.c.wait, o.c, t)
       o.c:release()
       if not ok then error(r, 0) end
       return r
     end},
    {name = "Condition:wait_for", neg = "nowait", woken = true, nowait = false,
     make = function()
       local o = {c = threading.Condition(threading.Lock()), about = threading.Event(),
                  flag = threading.Event()}
       return o, function()
         assert.is_true(o.about:wait(WAIT), "the waiter did not start")
         assert.is_true(o.c:acquire(true, WAIT), "the waiter kept the lock")
         o.flag:set()
         o.c:notify_all()
         o.c:release()
       end
     end,
     call = function(o, t)
       o.c:acquire()
       o.about:set()
       local ok, r = pcall(o.c.wait_for, o.c, function() return o.flag:is_set() end, t)
       o.c:release()
       if not ok then error(r, 0) end
       return r
     end},
    {name = "Event:wait", neg = "nowait", woken = true, nowait = false,
     make = function()
       local e = threading.Event()
       return e, function() e:set() end
     end,
     call = function(e, t) return e:wait(t) end},
    {name = "Barrier:wait", neg = "nowait", woken = 0, nowait = "BrokenBarrierError",
     make = function()
       local b = threading.Barrier(2)
       return b, function()
         -- main arrives second, once the thread waits: both pass
         local deadline = time.monotonic() + WAIT
         while b.n_waiting < 1 and time.monotonic() < deadline do time.sleep(0.005) end
         b:wait(WAIT)
       end
     end,
     call = function(b, t) return b:wait(t) end},
    {name = "Barrier(2, nil, timeout):wait()", neg = "nowait", woken = 0,
     nowait = "BrokenBarrierError", make_with = true,
     call = function(b) return b:wait() end},
    {name = "Thread:join on a running thread", neg = "nowait", woken = nil, nowait = nil,
     make = function()
       local t, finish = parked({daemon = true})
       return t, finish, finish
     end,
     call = function(th, t) return th:join(t) end},
  }

  for _, case in ipairs(cases) do
    -- the Barrier's own default timeout: the object is made with it, in main
    local function run(timeout, blocks)
      if case.make_with then
        local c = {call = case.call, make = function()
          local b = threading.Barrier(2, nil, timeout)
          return b, function()
            local deadline = time.monotonic() + WAIT
            while b.n_waiting < 1 and time.monotonic() < deadline do time.sleep(0.005) end
            b:wait(WAIT)
          end
        end}
        return outcome(c, nil, blocks)
      end
      return outcome(case, timeout, blocks)
    end

    describe(case.name, function()
      -- (a Barrier's own timeout is checked when it is made: see below)
      local it_checked = case.make_with and function() end or it

      it_checked("raises ValueError for NaN, at once", function()
        local r = run(NAN, false)
        assert.is_false(r.ok, show(r))
        assert.are.equal("ValueError", r.class, show(r))
        assert.are.equal("Invalid value NaN (not a number)", r.message)
        assert.is_true(r.took < WAIT / 2, "raised after " .. r.took .. " s")
      end)

      it_checked("raises TypeError for a timeout that is not a number, a numeric string too", function()
        for _, bad in ipairs{"0.1", "1", {}, true} do
          local r = run(bad, false)
          assert.is_false(r.ok, tostring(bad) .. ": " .. show(r))
          assert.are.equal("TypeError", r.class, show(r))
          assert.matches("^timeout must be a number", r.message)
        end
      end)

      it("waits for good with a nil timeout, until freed", function()
        local r = run(nil, true)
        assert.is_true(r.ok, show(r))
        assert.are.equal(case.woken, r.value)
      end)

      if case.neg == "minus1" then
        it("waits for good with -1, and raises ValueError for any other negative", function()
          local r = run(-1, true)
          assert.is_true(r.ok, show(r))
          assert.are.equal(case.woken, r.value)
          for _, neg in ipairs{-0.5, -5, -math.huge} do
            r = run(neg, false)
            assert.is_false(r.ok, neg .. ": " .. show(r))
            assert.are.equal("ValueError", r.class, show(r))
            assert.are.equal("timeout value must be a non-negative number", r.message)
          end
        end)
      else
        it("does not wait at all for a negative timeout", function()
          for _, neg in ipairs{-1, -0.5, -math.huge} do
            local r = run(neg, false)
            if case.nowait == "BrokenBarrierError" then
              assert.is_false(r.ok, neg .. ": " .. show(r))
              assert.are.equal("BrokenBarrierError", r.class, show(r))
            else
              assert.is_true(r.ok, neg .. ": " .. show(r))
              assert.are.equal(case.nowait, r.value)
            end
            assert.is_true(r.took < WAIT / 2, "returned after " .. r.took .. " s")
          end
        end)
      end
    end)
  end

  it("Lock and RLock raise ValueError for NaN even when free, and stay free", function()
    for _, kind in ipairs{"Lock", "RLock"} do
      local l = threading[kind]()
      -- in a thread: a call that hangs fails the case (nothing can free it)
      local case = {make = function() return l, function() end end,
                    call = function(lk, t) return lk:acquire(true, t) end}
      local r = outcome(case, NAN, false)
      assert.are.equal("ValueError", r.class, kind .. ": " .. show(r))
      assert.are.equal("Invalid value NaN (not a number)", r.message)
      r = outcome(case, "0.1", false)
      assert.are.equal("TypeError", r.class, kind .. ": " .. show(r))
      assert.is_false(taken_elsewhere(l), kind .. " left held")
    end
  end)

  it("Barrier(parties, action, timeout) checks its timeout when made", function()
    local err = raises(errors.ValueError, threading.Barrier, 2, nil, NAN)
    assert.are.equal("Invalid value NaN (not a number)", err.message)
    err = raises(errors.TypeError, threading.Barrier, 2, nil, "0.1")
    assert.matches("^timeout must be a number", err.message)
    raises(errors.TypeError, threading.Barrier, 2, function() end, {})
  end)
end)
