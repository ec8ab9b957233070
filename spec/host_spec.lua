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

  it("raises KeyboardInterrupt in time.sleep; unhandled, exits 130", function()
    local code, out, err = interrupt("local time = require 'conc.time'\n"
      .. "print('before')\n" .. mark .. "time.sleep(60)\nprint('after')\n")
    assert.are.equal(130, code)
    assert.are.equal("before\n", out)
    assert.truthy(err:find("KeyboardInterrupt", 1, true))
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
