-- conc.core and the modules over it, fed wrong arguments: every call must
-- return or raise a Lua error; none may crash the host (the sanitizer builds
-- run this too). Waits are bounded: sleep is left out, joins get timeout 0;
-- fork, waitpid, _exit, process_exit, orphan_rule and spawn_receive are
-- left out too.
local core = require "conc.core"
local threading = require "conc.threading"
local time = require "conc.time"
local shared = require "conc.shared"
local conc = require "conc"

local junk = {nil, true, false, 0, -1, 1.5, 0 / 0, math.huge, -math.huge,
  "", "x", "1", {}, {1, 2}, print, function() end,
  coroutine.create(function() end), io.stdout, math.maxinteger,
  math.mininteger}
local NJUNK = 20  -- #junk is unreliable with the leading nil

-- Under TSan each call below costs memory that is not given back (the
-- sweep took 19 GB with every pair for the shared containers' rows, 17 GB
-- with every fourth second argument once the queues' rows came): there
-- the rows on an object take every fourth first and second argument, the
-- others every second (1.2 GB), as fuzz.transfer runs fewer iterations.
-- The other builds take every pair.
local NARROW = os.getenv("CONC_SANITIZE") == "thread"

local function callables()
  local list = {}
  local function add(name, f, self)
    list[#list + 1] = {name = name, f = f, self = self}
  end
  -- left out: what waits unbounded, and what makes or ends processes
  -- (fork, waitpid and _exit get their own specs: proc_spec.lua;
  -- process_exit ends a child, and ended this spec early, with status 0,
  -- whenever the junk reached it first; orphan_rule(pid) ends this process
  -- when pid is not its parent, which is what a pool worker asks of it;
  -- spawn_receive(fd) reads and closes fd, and "1" closed this spec's
  -- stdout, so that its results were lost; getaddrinfo("x") waits on the
  -- resolver, as sleep waits)
  local skip = {sleep = true, fork = true, waitpid = true, _exit = true,
    process_exit = true, orphan_rule = true, spawn_receive = true,
    getaddrinfo = true}
  for k, v in pairs(core) do
    if type(v) == "function" and not skip[k] then add("core." .. k, v) end
  end
  for k, v in pairs(time) do
    if type(v) == "function" and k ~= "sleep" then add("time." .. k, v) end
  end
  for _, k in ipairs{"current_thread", "main_thread", "enumerate",
      "active_count", "get_ident", "get_native_id", "local", "Local"} do
    add("threading." .. k, threading[k])
  end
  local h = core.thread_new("junk", true)
  for k, v in pairs(getmetatable(h).__index) do
    if k ~= "start" then add("handle:" .. k, v) end
  end
  -- shared containers: their methods and metamethods on a real one, put
  -- back as it was between rows (what the junk added would slow the rest)
  for name, c in pairs{list = shared.list(), dict = shared.dict()} do
    add("shared." .. name, shared[name])
    for k, v in pairs(getmetatable(c)) do
      if type(v) == "function" and k ~= "__gc" then
        add(name .. ":" .. k, v, c)
        list[#list].reset = function()
          c:clear()
          if name == "list" then c:extend{1, "x"} else c:update{a = 1} end
        end
      end
    end
  end
  -- queues: each row gets a fresh unbounded queue holding one item whose
  -- task is done, so that no call can block (get finds the item, join finds
  -- no task, put has room) and a shutdown does not carry over
  local queue = require "conc.queue"
  for _, kind in ipairs{"Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"} do
    local function fresh()
      local q = queue[kind]()
      q:put(1)
      if q.task_done then q:task_done() end
      return q
    end
    for k, v in pairs(getmetatable(fresh())) do
      if type(v) == "function" and k ~= "__gc" then
        add(kind .. ":" .. k, v, fresh())
        local row = list[#list]
        row.reset = function() row.self = fresh() end
      end
    end
  end
  return list, h
end

describe("conc.core", function()
  it("raises, and never crashes, on wrong arguments to every function", function()
    local list, h = callables()
    local calls = 0
    for _, c in ipairs(list) do
      local step = NARROW and (c.self and 4 or 2) or 1
      for i = 1, NJUNK, step do
        for j = 1, NJUNK, step do
          if c.reset then c.reset() end
          local a, b = junk[i], junk[j]
          if c.name == "handle:join" then b = 0 end  -- never wait
          local ok, err = pcall(c.f, a, b)
          assert(ok or err ~= nil, c.name)
          ok, err = pcall(c.f, c.self or h, a, b)
          assert(ok or err ~= nil, c.name)
          calls = calls + 2
        end
      end
    end
    threading.stack_size(0)  -- the junk set it to anything
    assert.is_true(calls > 1000)
  end)

  it("names what was wrong", function()
    local ok, err = pcall(core.thread_new("t", false).join, 5)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("conc.Thread expected", 1, true))
    ok, err = pcall(core.loads, "not a message")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("corrupt message", 1, true))
  end)

  it("reports a thread whose target is not callable, and goes on", function()
    local saved = threading.excepthook
    local out = os.tmpname()
    do
      local _ENV = _G  -- not busted's file environment: the hook crosses
      threading.excepthook = function(args)
        local f = io.open(out, "w")
        f:write(tostring(args.exc_value))
        f:close()
      end
    end
    local t = threading.Thread{target = 42}
    t:start()
    t:join(30)
    threading.excepthook = saved
    assert.is_false(t:is_alive())
    local f = io.open(out)
    local msg = f:read("a")
    f:close()
    os.remove(out)
    assert.truthy(msg:find("attempt to call a number value", 1, true), msg)
  end)
end)

describe("conc.core error table", function()
  local errors = require "conc.errors"
  local function raised(code)
    local ok, err = pcall(core._raise, code)
    assert.is_false(ok)
    return err
  end

  it("raises each code as its Python class with its message", function()
    assert.is_true(errors.isinstance(raised(-1011), errors.Full))
    assert.is_true(errors.isinstance(raised(-1025), errors.BrokenBarrierError))
    local e = raised(-1020)
    assert.is_true(errors.isinstance(e, errors.RuntimeError))
    assert.are.equal("release unlocked lock", e.message)
    assert.is_true(errors.isinstance(raised(-12), errors.MemoryError))
    assert.is_true(errors.isinstance(raised(-110), errors.TimeoutError))
    assert.is_true(errors.isinstance(raised(-10), errors.ChildProcessError))
  end)

  it("raises SystemError naming a code it does not know", function()
    for _, code in ipairs{-999, -1, 5, -5000} do
      local e = raised(code)
      assert.is_true(errors.isinstance(e, errors.SystemError), tostring(e))
      assert.truthy(e.message:find(tostring(code), 1, true), e.message)
    end
  end)

  it("raises KeyboardInterrupt for EINTR", function()
    assert.is_true(errors.isinstance(raised(-4), errors.KeyboardInterrupt))
  end)
end)
