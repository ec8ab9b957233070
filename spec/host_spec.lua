-- The conc host as a black box: the same command line, `arg` table,
-- LUA_INIT handling, REPL, messages and exit statuses as lua5.4.
-- Binary under test: $CONC_HOST (default build/conc, relative to the cwd).
-- Ctrl-C and threads are covered elsewhere.

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return (os.getenv("PWD") or ".") .. "/" .. path
end

local HOST = absolute(os.getenv("CONC_HOST") or "build/conc")
local LUA = "lua5.4"

local support = require "support"
local q, spit = support.q, support.spit

local function slurp(path)
  return assert(support.slurp(path))
end

local temps = {}

local function tmpfile(text)
  local path = os.tmpname()
  temps[#temps + 1] = path
  if text then spit(path, text) end
  return path
end

-- Runs `exe args` under `timeout 10` with env assignments and stdin text.
-- The environment is cleared of LUA_INIT*/LUA_PATH* first so the caller's
-- settings cannot leak in. Returns exit code, stdout, stderr.
local function run(exe, args, opts)
  opts = opts or {}
  local out, err = tmpfile(), tmpfile()
  local input = tmpfile(opts.stdin or "")
  local env = { "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4"
                .. " -u LUA_CPATH -u LUA_CPATH_5_4" }
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  local cmd = table.concat(env, " ") .. " timeout 10 " .. exe .. " " .. (args or "")
              .. " <" .. q(input) .. " >" .. q(out) .. " 2>" .. q(err)
  if opts.cd then cmd = "cd " .. q(opts.cd) .. " && " .. cmd end
  local ok, how, code = os.execute(cmd)
  if how == "signal" then code = 128 + code end
  if ok then code = 0 end
  return code, slurp(out), slurp(err)
end

local function conc(args, opts) return run(q(HOST), args, opts) end
local function lua(args, opts) return run(LUA, args, opts) end

-- Replaces a leading "progname: " (on any line) and "usage: progname " so
-- conc's and lua5.4's stderr can be compared.
local function unname(text, progname)
  local esc = progname:gsub("%p", "%%%0")
  text = ("\n" .. text):gsub("\n" .. esc .. ": ", "\nPROG: ")
  return (text:sub(2):gsub("usage: " .. esc .. " ", "usage: PROG "))
end

local function same_as_lua(args, opts)
  local c_code, c_out, c_err = conc(args, opts)
  local l_code, l_out, l_err = lua(args, opts)
  assert.are.equal(l_code, c_code)
  assert.are.equal(l_out, c_out)
  assert.are.equal(unname(l_err, LUA), unname(c_err, HOST))
  return c_code, c_out, c_err
end

describe("conc host", function()
  after_each(function()
    for _, path in ipairs(temps) do os.remove(path) end
    temps = {}
  end)

  it("runs -e chunks in order", function()
    local code, out, err = same_as_lua("-e 'print(1)' -e 'print(2)'")
    assert.are.equal(0, code)
    assert.are.equal("1\n2\n", out)
    assert.are.equal("", err)
  end)

  it("runs the script from stdin with -", function()
    local code, out, err = same_as_lua("-", { stdin = "print(2)\n" })
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)
    assert.are.equal("", err)
  end)

  it("runs stdin as a script when it is not a terminal and no script is given", function()
    local code, out = conc("", { stdin = "print(...) print(#arg)\n" })
    assert.are.equal(0, code)
    assert.are.equal("\n0\n", out)
  end)

  it("passes script arguments in arg and as ...", function()
    local script = tmpfile([[
print(arg[0], arg[1], arg[2], #arg, arg[-1])
print(...)
]])
    local code, out, err = conc(q(script) .. " a b")
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.are.equal(script .. "\ta\tb\t2\t" .. HOST .. "\na\tb\n", out)
    local _, l_out = lua(q(script) .. " a b")
    assert.are.equal((l_out:gsub("lua5%.4", function() return HOST end, 1)), out)
  end)

  it("puts options at negative indices and the interpreter first", function()
    local script = tmpfile("for i = -5, #arg do print(i, arg[i]) end\n")
    local code, out = conc("-W -e 'x=1' " .. q(script) .. " z")
    assert.are.equal(0, code)
    assert.are.equal(table.concat({
      "-5\tnil", "-4\t" .. HOST, "-3\t-W", "-2\t-e", "-1\tx=1",
      "0\t" .. script, "1\tz", ""
    }, "\n"), out)
  end)

  it("treats a script named - after -- as a file", function()
    local dir = tmpfile()
    os.remove(dir)
    assert.is_true(os.execute("mkdir " .. q(dir)))
    spit(dir .. "/-", "print('file', ...)\n")
    local code, out = conc("-- - x", { cd = dir, stdin = "print('stdin')\n" })
    os.remove(dir .. "/-")
    os.remove(dir)
    assert.are.equal(0, code)
    assert.are.equal("file\tx\n", out)
  end)

  it("runs a REPL with -i even when stdin is a pipe", function()
    local code, out, err = conc("-i", {
      stdin = "x = 40\nprint(x + 2)\n1+1\nfor i = 1, 2 do\nprint(-i)\nend\n=3\n"
    })
    assert.are.equal(0, code)
    assert.are.equal("", err)
    -- -i implies -v, then one prompt per line read
    assert.truthy(out:find("Copyright", 1, true))
    assert.truthy(out:find("> > 42\n> 2\n", 1, true))
    assert.are.equal("> >> >> -1\n-2\n> 3\n> \n", out:sub(-21))
  end)

  it("reports REPL errors without the program name and keeps going", function()
    local code, out, err = conc("-i", {
      stdin = "error('bad')\nprint('after')\nfor\n",
    })
    assert.are.equal(0, code)
    assert.truthy(out:find("after\n", 1, true))
    assert.truthy(err:find("^stdin:1: bad\nstack traceback:\n"))
    assert.truthy(err:find("\nstdin:1: <name> expected near <eof>\n", 1, true))
  end)

  it("uses _PROMPT and _PROMPT2", function()
    local code, out = conc("-i -e '_PROMPT=\"A \" _PROMPT2=\"B \"'", {
      stdin = "do\nend\n",
    })
    assert.are.equal(0, code)
    assert.truthy(out:find("\nA B A \n$"))
  end)

  it("runs the REPL after the script with -i", function()
    local script = tmpfile("y = 5\n")
    local code, out = conc("-i " .. q(script), { stdin = "y * 2\n" })
    assert.are.equal(0, code)
    assert.truthy(out:find("> 10\n", 1, true))
  end)

  it("prints the Lua copyright and the conc version with -v", function()
    local code, out, err = conc("-v")
    assert.are.equal(0, code)
    assert.are.equal("", err)
    local _, l_out = lua("-v")
    local first, second = out:match("^([^\n]*\n)([^\n]*)\n$")
    assert.are.equal(l_out, first)
    assert.truthy(second:find("^conc %d"))
  end)

  describe("with a module directory", function()
    local dir
    before_each(function()
      dir = os.tmpname()
      os.remove(dir)
      assert.is_true(os.execute("mkdir " .. q(dir)))
      spit(dir .. "/mymod.lua", "return { answer = 42 }\n")
    end)
    after_each(function()
      os.remove(dir .. "/mymod.lua")
      os.remove(dir)
    end)

    it("loads it into a global with -l", function()
      local code, out = same_as_lua("-l mymod -e 'print(mymod.answer)'",
                                    { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal(0, code)
      assert.are.equal("42\n", out)
    end)

    it("loads it into a named global with -l g=mod", function()
      local code, out = same_as_lua("-lg=mymod -e 'print(g.answer, mymod)'",
                                    { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal(0, code)
      assert.are.equal("42\tnil\n", out)
    end)

    it("ignores LUA_PATH with -E", function()
      local code, out, err = same_as_lua("-E -l mymod",
                                         { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.truthy(err:find(": module 'mymod' not found:", 1, true))
    end)
  end)

  it("runs LUA_INIT before the command line", function()
    local code, out = same_as_lua("-e 'print(\"main\")'",
                                  { env = { LUA_INIT = "print('init')" } })
    assert.are.equal(0, code)
    assert.are.equal("init\nmain\n", out)
  end)

  it("prefers LUA_INIT_5_4 and reads @file", function()
    local init = tmpfile("print('from file')\n")
    local code, out = same_as_lua("-e 'print(\"main\")'",
      { env = { LUA_INIT = "print('plain')", LUA_INIT_5_4 = "@" .. init } })
    assert.are.equal(0, code)
    assert.are.equal("from file\nmain\n", out)
  end)

  it("reports an error in LUA_INIT and stops", function()
    local code, out, err = same_as_lua("-e 'print(\"main\")'",
                                       { env = { LUA_INIT = "error('init')" } })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find(": LUA_INIT:1: init\n", 1, true))
  end)

  it("ignores LUA_INIT with -E", function()
    local code, out, err = same_as_lua("-E -e 'print(\"main\")'",
                                       { env = { LUA_INIT = "print('init')" } })
    assert.are.equal(0, code)
    assert.are.equal("main\n", out)
    assert.are.equal("", err)
  end)

  it("reports a syntax error like lua5.4", function()
    local script = tmpfile("x = = 1\n")
    local code, out, err = same_as_lua(q(script))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal(HOST .. ": " .. script .. ":1: unexpected symbol near '='\n", err)
  end)

  it("reports a runtime error with a traceback", function()
    local script = tmpfile("local function f() error('boom') end\nf()\n")
    local code, out, err = same_as_lua(q(script))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("^" .. HOST:gsub("%p", "%%%0") .. ": .-:1: boom\n"))
    assert.truthy(err:find("\nstack traceback:\n", 1, true))
  end)

  it("prints non-string error values like lua5.4", function()
    same_as_lua("-e 'error({})'")
    local _, _, err = same_as_lua(
      "-e 'error(setmetatable({}, {__tostring = function() return \"custom\" end}))'")
    assert.are.equal(HOST .. ": custom\n", err)
  end)

  it("reports a missing script", function()
    local code, _, err = same_as_lua("/nonexistent/script.lua")
    assert.are.equal(1, code)
    assert.truthy(err:find("cannot open /nonexistent/script.lua", 1, true))
  end)

  it("exits with os.exit's status", function()
    local code = same_as_lua("-e 'os.exit(3)'")
    assert.are.equal(3, code)
    assert.are.equal(1, (same_as_lua("-e 'os.exit(false)'")))
  end)

  it("prints the usage for an unknown option", function()
    local code, out, err = same_as_lua("-z")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("^" .. HOST:gsub("%p", "%%%0")
                           .. ": unrecognized option '%-z'\nusage: "))
  end)

  it("prints the usage for an option missing its argument", function()
    local code, _, err = same_as_lua("-e")
    assert.are.equal(1, code)
    assert.truthy(err:find(": '-e' needs argument\n", 1, true))
    assert.are.equal(1, (same_as_lua("-l -e x")))
    assert.are.equal(1, (same_as_lua("-vx")))
  end)

  it("turns warnings on with -W", function()
    local code, out, err = same_as_lua("-W -e 'warn(\"x\")'")
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.are.equal("Lua warning: x\n", err)
    local _, _, quiet = same_as_lua("-e 'warn(\"x\")'")
    assert.are.equal("", quiet)
  end)
end)

-- Ctrl-C: the script writes a ready file just before it blocks; the shell
-- waits for that file (bounded), then sends SIGINT. No sleeps decide the
-- outcome: a signal that came earlier still raises KeyboardInterrupt.
describe("conc host and Ctrl-C", function()
  after_each(function()
    for _, p in ipairs(temps) do os.remove(p) end
    temps = {}
  end)

  local function interrupt(script)
    local ready = tmpfile()
    os.remove(ready)
    local src = tmpfile(("local READY = %q\n"):format(ready) .. script)
    local out, err, status = tmpfile(), tmpfile(), tmpfile()
    local cmd = ("%s %s >%s 2>%s & pid=$!; i=0; "
      .. "while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
      .. "kill -INT $pid; ( sleep 15; kill -KILL $pid 2>/dev/null ) & "
      .. "wait $pid; echo $? >%s")
      :format(q(HOST), q(src), q(out), q(err), q(ready), q(status))
    os.execute("sh -c " .. q(cmd))
    return tonumber(slurp(status)), slurp(out), slurp(err)
  end

  local mark = "io.open(READY, 'w'):close()\n"

  -- A storm of Ctrl-C: as interrupt(), but once READY exists the shell sends
  -- SIGINT `count` times (default 300) a few ms apart while the script runs,
  -- stops, then creates the STOP file the script waits for. The host is
  -- killed after 30 s, the whole run after 60 s. Returns the exit status,
  -- stdout, stderr and how many signals were sent.
  local function storm(script, count)
    local ready, stop = tmpfile(), tmpfile()
    os.remove(ready)
    os.remove(stop)
    local src = tmpfile(("local READY, STOP = %q, %q\n"):format(ready, stop) .. script)
    local out, err, status, sent = tmpfile(), tmpfile(), tmpfile(), tmpfile()
    local cmd = ("%s %s >%s 2>%s </dev/null & pid=$!; "
      .. "( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep 30 & s=$!; wait $s; "
      .. "kill -KILL $pid 2>/dev/null ) >/dev/null 2>&1 & killer=$!; "
      .. "i=0; while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
      .. "n=0; while [ $n -lt %d ] && kill -INT $pid 2>/dev/null; do "
      .. "n=$((n+1)); sleep 0.005; done; "
      .. "echo $n >%s; : >%s; wait $pid; echo $? >%s; kill $killer 2>/dev/null; wait $killer")
      :format(q(HOST), q(src), q(out), q(err), q(ready), count or 300, q(sent),
              q(stop), q(status))
    os.execute("timeout -s KILL 60 sh -c " .. q(cmd))
    return tonumber(support.slurp(status) or ""), slurp(out), slurp(err),
           tonumber(support.slurp(sent) or "")
  end

  -- "key value" lines as a table of numbers (true/false as booleans)
  local function fields(out)
    local t = {}
    for k, v in out:gmatch("(%w+) (%w+)\n") do
      if v == "true" then t[k] = true elseif v == "false" then t[k] = false
      else t[k] = tonumber(v) end
    end
    return t
  end

  -- What the storm scripts share. Every step that can see a
  -- KeyboardInterrupt runs as the retry pattern:
  --   while not done do
  --     local ok, e = pcall(step)
  --     if not ok then if is_interrupt(e) then interrupts = ... else error(e, 0) end end
  --   end
  -- with no call of a Lua function outside the pcall: an interrupt raised at
  -- such a call would land outside it. (So the class is told by rawequal and
  -- getmetatable, C functions, not by conc.isinstance, a Lua function.)
  -- Once STOP exists no signal is on its way; pcall(absorb) takes one that
  -- came before and is still pending (raised at absorb's call, inside it).
  local prelude = [[
local conc = require "conc"
local KI = conc.errors.KeyboardInterrupt
local interrupts = 0
local function absorb() end
local function stopped()
  local f = io.open(STOP)
  if f then f:close() return true end
  return false
end
]]

  it("raises KeyboardInterrupt in time.sleep; unhandled, exits 130", function()
    local code, out, err = interrupt("local time = require 'conc.time'\n"
      .. "print('before')\n" .. mark .. "time.sleep(60)\nprint('after')\n")
    assert.are.equal(130, code)
    assert.are.equal("before\n", out)
    assert.truthy(err:find("KeyboardInterrupt", 1, true))
  end)

  it("raises KeyboardInterrupt out of an event loop waiting in epoll; exits 130", function()
    local code, out, err = interrupt([[
local asyncio = require "conc.asyncio"
local closed = false
local ok, e = pcall(asyncio.run, asyncio.async(function()
  local _ <close> = setmetatable({}, {__close = function() closed = true end})
  print("waiting")
  io.open(READY, 'w'):close()
  asyncio.await(asyncio.sleep(60))
end)())
-- run() cancelled the task on its way out: its <close> variable closed
print(closed)
error(e, 0)
]])
    assert.are.equal(130, code, err)
    assert.are.equal("waiting\ntrue\n", out)
    assert.truthy(err:find("KeyboardInterrupt", 1, true), err)
  end)

  it("reports an error whose __tostring a Ctrl-C cut short (a second try)", function()
    -- the message handler's call returns at once; the report's call waits
    -- for the signal, and the try after it answers
    local code, _, err = interrupt([[
local calls = 0
error(setmetatable({}, {__tostring = function()
  calls = calls + 1
  if calls == 2 then
    io.open(READY, 'w'):close()
    require("conc.time").sleep(20)
    return "the signal never came"
  end
  return "custom error"
end}))
]])
    assert.are.equal(1, code, err)
    assert.are.equal(("%s: custom error\n"):format(HOST), err)
  end)

  it("raises KeyboardInterrupt in join while a thread runs", function()
    local code, out, err = interrupt([[
local threading = require "conc.threading"
local time = require "conc.time"
local t = threading.Thread{target = function() time.sleep(60) end, daemon = true}
t:start()
]] .. mark .. [[
t:join()
print("joined")
]])
    assert.are.equal(130, code)
    assert.are.equal("", out)
    assert.truthy(err:find("KeyboardInterrupt", 1, true))
  end)

  it("raises KeyboardInterrupt in a blocked Lock acquire", function()
    local code, out, err = interrupt([[
local threading = require "conc.threading"
local l = threading.Lock()
l:acquire()
]] .. mark .. [[
l:acquire()
print("acquired")
]])
    assert.are.equal(130, code)
    assert.are.equal("", out)
    assert.truthy(err:find("KeyboardInterrupt", 1, true))
  end)

  it("raises KeyboardInterrupt in Event.wait", function()
    local code, _, err = interrupt([[
local threading = require "conc.threading"
local e = threading.Event()
]] .. mark .. [[
e:wait()
]])
    assert.are.equal(130, code)
    assert.truthy(err:find("KeyboardInterrupt", 1, true))
  end)

  -- each blocking call of conc.queue, and conc.select: caught, so that the
  -- queue is shown to be usable after it
  for _, case in ipairs{
    {"get on an empty Queue", "q:get()"},
    {"put on a full Queue", "q:put(1); q:put(2)"},
    {"join with a task not done", "q:put(1); q:join()"},
    {"conc.select", "conc.select({q, queue.Queue()})"},
  } do
    it("raises KeyboardInterrupt in " .. case[1], function()
      local code, out = interrupt([[
local conc = require "conc"
local queue = require "conc.queue"
local q = queue.Queue(1)
]] .. mark .. [[
local ok, err = pcall(function() ]] .. case[2] .. [[ end)
print(ok, conc.isinstance(err, conc.errors.KeyboardInterrupt))
while not q:empty() do q:get() end
q:put_nowait("x")
print(q:qsize())
]])
      assert.are.equal(0, code)
      assert.are.equal("false\ttrue\n1\n", out)
    end)
  end

  it("lets the script catch it and go on", function()
    local code, out = interrupt([[
local time = require "conc.time"
local conc = require "conc"
]] .. mark .. [[
local ok, err = pcall(time.sleep, 60)
print(ok, conc.isinstance(err, conc.errors.KeyboardInterrupt), tostring(err))
]])
    assert.are.equal(0, code)
    assert.are.equal("false\ttrue\tKeyboardInterrupt\n", out)
  end)

  -- An interrupt never takes back a completed operation: a conc call raises
  -- KeyboardInterrupt having done nothing, or completes and returns; the
  -- interrupt then comes at the next call. Under a storm of SIGINTs each
  -- item, put and count must be seen exactly once.
  it("never loses or repeats an item got from a Queue under a storm of Ctrl-C", function()
    local code, out, err, sent = storm(prelude .. [[
local threading, queue = require "conc.threading", require "conc.queue"
local q, done = queue.Queue(50), threading.Event()
-- in bursts, so that main finds the queue now full, now empty (and waits)
local producer = threading.Thread{target = function(q, done)
  local time = require "conc.time"
  local n = 0
  while not done:is_set() do
    n = n + 1; q:put(n)
    if n % 20 == 0 then time.sleep(0.001) end
  end
  q:put({produced = n})  -- the end mark, after the last item
end, args = {q, done}}
producer:start()
local seen, got, stop, produced = {}, 0, false, nil
local function consume()       -- a KeyboardInterrupt raised at its call lands inside the pcall
  while true do
    local x = q:get()          -- raises before taking anything, or returns the item
    seen[x] = (seen[x] or 0) + 1; got = got + 1   -- no call here
    if got % 500 == 0 and stopped() then stop = true return end
  end
end
local function drain()
  done:set()
  while true do
    local x = q:get()
    if type(x) == "table" then produced = x.produced return end
    seen[x] = (seen[x] or 0) + 1; got = got + 1
  end
end
]] .. mark .. [[
while not stop do
  local ok, e = pcall(consume)
  if not ok then if rawequal(getmetatable(e), KI) then interrupts = interrupts + 1 else error(e, 0) end end
end
while not produced do
  local ok, e = pcall(drain)
  if not ok then if rawequal(getmetatable(e), KI) then interrupts = interrupts + 1 else error(e, 0) end end
end
if not pcall(absorb) then interrupts = interrupts + 1 end
producer:join()
local dups, missing = 0, 0
for _, c in pairs(seen) do if c > 1 then dups = dups + 1 end end
for i = 1, produced do if seen[i] == nil then missing = missing + 1 end end
print("produced " .. produced)
print("consumed " .. got)
print("duplicates " .. dups)
print("missing " .. missing)
print("interrupts " .. interrupts)
]])
    assert.are.equal(0, code, err)
    local r = fields(out)
    assert.is_true(sent > 0, "no signal was sent")
    assert.is_true(r.produced > 0, out)
    assert.are.equal(r.produced, r.consumed, out)
    assert.are.equal(0, r.duplicates, out)
    assert.are.equal(0, r.missing, out)
    assert.is_true(r.interrupts > 0, "no KeyboardInterrupt came: " .. out)
  end)

  it("never loses or repeats an item put on a Queue under a storm of Ctrl-C", function()
    local code, out, err, sent = storm(prelude .. [[
local threading, queue = require "conc.threading", require "conc.queue"
local q, results = queue.Queue(50), queue.Queue()
-- in bursts, so that main's puts now find room, now wait on a full queue
local consumer = threading.Thread{target = function(q, results)
  local time = require "conc.time"
  local count, prev, disorder = 0, 0, 0
  while true do
    local v = q:get()
    if v == "end" then break end
    count = count + 1
    if v ~= prev + 1 then disorder = disorder + 1 end
    prev = v
    if count % 20 == 0 then time.sleep(0.001) end
  end
  results:put({count = count, last = prev, disorder = disorder})
end, args = {q, results}}
consumer:start()
local n, stop = 0, false       -- n: the last number whose put returned
local function produce()
  while true do
    q:put(n + 1)               -- raises before storing anything, or returns having stored it
    n = n + 1                  -- no call here
    if n % 500 == 0 and stopped() then stop = true return end
  end
end
local ended, report = false, nil
local function finish()
  if not ended then q:put("end"); ended = true end
  report = results:get()
end
]] .. mark .. [[
while not stop do
  local ok, e = pcall(produce)
  if not ok then if rawequal(getmetatable(e), KI) then interrupts = interrupts + 1 else error(e, 0) end end
end
while not report do
  local ok, e = pcall(finish)
  if not ok then if rawequal(getmetatable(e), KI) then interrupts = interrupts + 1 else error(e, 0) end end
end
if not pcall(absorb) then interrupts = interrupts + 1 end
consumer:join()
print("put " .. n)
print("count " .. report.count)
print("last " .. report.last)
print("disorder " .. report.disorder)
print("interrupts " .. interrupts)
]])
    assert.are.equal(0, code, err)
    local r = fields(out)
    assert.is_true(sent > 0, "no signal was sent")
    assert.is_true(r.put > 0, out)
    assert.are.equal(r.put, r.count, out)
    assert.are.equal(r.put, r.last, out)
    assert.are.equal(0, r.disorder, out)
    assert.is_true(r.interrupts > 0, "no KeyboardInterrupt came: " .. out)
  end)

  it("never loses a Semaphore count acquired under a storm of Ctrl-C", function()
    -- the releaser gives the last of the N only once STOP exists, so the
    -- acquires go on for the whole storm, and no signal comes after them
    local code, out, err, sent = storm(prelude .. [[
local threading = require "conc.threading"
local N = 3000
local sem = threading.Semaphore(0)
local releaser = threading.Thread{target = function(sem, N, STOP)
  local time = require "conc.time"
  for _ = 1, N - 1 do sem:release(); time.sleep(0.001) end
  local deadline = time.monotonic() + 30
  while not io.open(STOP) and time.monotonic() < deadline do time.sleep(0.01) end
  sem:release()
end, args = {sem, N, STOP}}
local acquired, stalled = 0, false
local function take()
  while acquired < N do
    if sem:acquire(true, 5) then acquired = acquired + 1   -- no call here
    else stalled = true return end  -- 5 s without a count: one was lost
  end
end
releaser:start()
]] .. mark .. [[
while acquired < N and not stalled do
  local ok, e = pcall(take)
  if not ok then if rawequal(getmetatable(e), KI) then interrupts = interrupts + 1 else error(e, 0) end end
end
if not pcall(absorb) then interrupts = interrupts + 1 end
releaser:join()
print("acquired " .. acquired)
print("stalled " .. tostring(stalled))
print("left " .. tostring(sem:acquire(false)))
print("interrupts " .. interrupts)
]])
    assert.are.equal(0, code, err)
    local r = fields(out)
    assert.is_true(sent > 0, "no signal was sent")
    assert.is_false(r.stalled, out)
    assert.are.equal(3000, r.acquired, out)
    assert.is_false(r.left, out)
    assert.is_true(r.interrupts > 0, "no KeyboardInterrupt came: " .. out)
  end)

  it("interrupts running Lua code", function()
    if os.getenv("CONC_SANITIZE") == "thread" then
      -- TSan defers a signal to the next intercepted libc call, and a pure
      -- Lua loop makes none: the handler would never run
      pending("not under TSan")
      return
    end
    local code, _, err = interrupt(mark .. "while true do end\n")
    assert.are.equal(130, code)
    assert.truthy(err:find("KeyboardInterrupt", 1, true))
  end)
end)
