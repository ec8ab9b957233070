-- The module rule of the wire format (docs/transfer.md, "Modules"): what a
-- script passes is data and arrives as a copy of what it was when sent,
-- module tables included; what code needs (a function, a module a function
-- has as an upvalue, a value's metatable) crosses by name to the receiver's
-- own module, and only while the sender's module is as it was loaded:
-- otherwise the send fails, naming the module and the field.
--
-- The targets live in spec/fixtures/modtargets.lua, over the data module
-- spec/fixtures/cfgmod.lua: a function defined here would carry busted's
-- environment. Threads report through a queue and are joined with a bound
-- before it is read; children of fork report through a multiprocessing
-- queue, every wait bounded.

local mp = require "conc.multiprocessing"
local queue = require "conc.queue"
local threading = require "conc.threading"
local support = require "support"

local cfg = require "fixtures.cfgmod"
local targets = require "fixtures.modtargets"

local WAIT = 30  -- seconds: the bound on every wait (sanitizer builds are slow)

local forks = support.forks(it, function(why) pending(why) end)

-- Runs target(q, ...) in a thread, joins it and returns what it put on q,
-- or raises saying it put nothing (its error is then on stderr).
local function in_thread(target, ...)
  local q = queue.Queue()
  local t = threading.Thread{target = target, args = table.pack(q, ...)}
  t:start()
  t:join(WAIT)
  assert(not t:is_alive(), "the thread did not end in " .. WAIT .. " s")
  assert(q:qsize() == 1, "the thread put nothing (see its error on stderr)")
  return q:get(false)
end

-- The error fn(...) raises, as a string; fails when it raises none.
local function refusal(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "the send was not refused")
  return tostring(err)
end

-- Does s contain each of the plain strings after it?
local function says(s, ...)
  for _, part in ipairs{...} do
    assert(s:find(part, 1, true), "'" .. part .. "' not in: " .. s)
  end
end

local function start(target, ...)
  threading.Thread{target = target, args = table.pack(...)}:start()
end

-- Leaves the fixtures as loaded: the cases change them.
local function restore()
  cfg.level, cfg.name, cfg.extra = 1, "cfg", nil
  cfg.settings.level = 1
  targets.flag = nil
end

describe("transfer of modules", function()
  after_each(restore)

  describe("as data", function()
    it("a module passed to a thread arrives as a copy, with its changes",
       function()
      cfg.level = 99
      cfg.settings.level = 98
      local got = in_thread(targets.report, cfg)
      assert.same({level = 99, settings = 98, module = false}, got)
    end)

    it("a module's table through a queue in one state is a copy", function()
      local q = queue.Queue()
      cfg.settings.level = 5
      q:put(cfg.settings)
      local got = q:get(false)
      assert.is_false(rawequal(got, cfg.settings))
      assert.same({level = 5}, got)
      q:put(cfg)
      got = q:get(false)
      assert.is_false(rawequal(got, cfg))
      assert.same(cfg, got)
    end)

    it("a module inside another value is copied too", function()
      local q = queue.Queue()
      cfg.level = 7
      q:put({cfg = cfg, list = {cfg.settings}})
      local got = q:get(false)
      assert.is_false(rawequal(got.cfg, cfg))
      assert.equal(7, got.cfg.level)
      assert.is_true(rawequal(got.cfg.settings, got.list[1]))
      assert.is_false(rawequal(got.list[1], cfg.settings))
    end)

    it("_G, the standard library and conc are the receiver's own", function()
      local q = queue.Queue()
      local sent = {_G, string, package.loaded, string.format, threading,
                    threading.Thread, queue}
      q:put(sent)
      local got = q:get(false)
      for i = 1, #sent do assert.is_true(rawequal(got[i], sent[i])) end
      local t = in_thread(targets.report_env, sent)
      assert.same({true, true, true, true, true, true, true}, t)
    end)
  end)

  describe("as code", function()
    it("a module's function crosses by name", function()
      local q = queue.Queue()
      q:put(targets.report)
      assert.is_true(rawequal(q:get(false), targets.report))
    end)

    it("a module in a target's upvalue is the thread's own", function()
      local got = in_thread(targets.make_reader())
      assert.same({level = 1, module = true}, got)
    end)

    it("a changed module in an upvalue is refused, naming the field",
       function()
      local reader = targets.make_reader()
      cfg.level = 99
      says(refusal(start, reader), "target<upvalue cfg>",
           "fixtures.cfgmod.level")
      restore()
      cfg.extra = true
      says(refusal(start, reader), "fixtures.cfgmod.extra")
      restore()
      cfg.name = nil
      says(refusal(start, reader), "fixtures.cfgmod.name")
      restore()
      assert.same({level = 1, module = true}, in_thread(reader))
    end)

    it("a field a module makes on first use is no change", function()
      local lazy = require "fixtures.lazymod"
      local reader = targets.make_lazy_reader()
      local _ = lazy.cfg -- made now, after loading
      assert.same({level = 1, module = true}, in_thread(reader))
      lazy.extra = 1 -- no module value: the receiver's lazymod has none
      finally(function() lazy.extra = nil end)
      says(refusal(start, reader), "target<upvalue lazy>",
           "fixtures.lazymod.extra was added")
    end)

    it("a module's function is refused once its module changed", function()
      targets.flag = "set"
      local q = queue.Queue()
      says(refusal(q.put, q, targets.report), "fixtures.modtargets.flag")
      says(refusal(start, targets.report), "target",
           "fixtures.modtargets.flag")
    end)

    it("a function stored into a module after loading crosses as code",
       function()
      local late = require "fixtures.latemod"
      late.extra = targets.make_late()
      finally(function() late.extra = nil end)
      assert.equal("ran", in_thread(late.extra))
    end)

    it("conc's own modules cross by name, with the fields they make",
       function()
      local conc = require "conc"
      local errors = require "conc.errors"
      local _ = conc.threading, conc.queue, errors.KeyError -- made on use
      threading.excepthook = threading.excepthook -- kept out of the module
      local got = in_thread(targets.make_worker())
      assert.is_true(got.threading and got.conc and got.errors)
      assert.is_true(got.isinstance)
      assert.matches("^Thread%-", got.name)
    end)

    it("an object's class crosses by name as its metatable", function()
      local p = targets.Point.new(3)
      assert.same({class = true, x = 3}, in_thread(targets.check_point, p))
      local q = queue.Queue()
      q:put(p)
      local got = q:get(false)
      assert.is_false(rawequal(got, p))
      assert.is_true(rawequal(getmetatable(got), targets.Point))
    end)
  end)

  -- Both start methods: a forked child's modules are as they were at the
  -- fork, a spawned child's are freshly required; either way what is sent
  -- after arrives as sent, or is refused.
  local kids = support.children(WAIT)
  after_each(kids.cleanup)
  for _, method in ipairs({"fork", "spawn"}) do
    local ctx = mp.get_context(method)
    local case = method == "fork" and forks or it

    local function child(target, ...)
      return kids.start(ctx.Process{target = target, args = table.pack(...)})
    end

    local function finish(p)
      assert.equal(0, kids.finish(p))
    end

    case("a module sent to a child (" .. method .. ") arrives as sent", function()
      local inq, outq = mp.Queue(), mp.Queue()
      local p = child(targets.echo, inq, outq)
      cfg.level = 99 -- the child's own cfg is as loaded
      inq:put(cfg)
      local got = outq:get(true, WAIT)
      restore()
      finish(p)
      assert.same({level = 99, settings = 1, module = false}, got)
    end)

    case("a closure over a changed module is refused before it is sent to a child ("
         .. method .. ")", function()
      local inq, outq = mp.Queue(), mp.Queue()
      local p = child(targets.call, inq, outq)
      local reader = targets.make_reader()
      cfg.level = 99
      says(refusal(inq.put, inq, reader), "fixtures.cfgmod.level")
      restore()
      inq:put(reader)
      local got = outq:get(true, WAIT)
      finish(p)
      assert.same({level = 1, module = true}, got)
    end)
  end
end)
