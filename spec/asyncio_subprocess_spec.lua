-- conc.asyncio.subprocess against Python's documented asyncio.subprocess
-- behaviour (Lib/asyncio/subprocess.py, Lib/test/test_asyncio/
-- test_subprocess.py): create_subprocess_exec / _shell, the Process's
-- pipes (stdin a writer, stdout and stderr readers), returncode, wait,
-- communicate, send_signal / terminate / kill.
--
-- Translation (DESIGN.md): keyword arguments are a trailing options table
-- (create_subprocess_exec("cat", {stdin = asyncio.PIPE})); communicate's
-- tuple is two return values; `async for line in proc.stdout` is
-- `for line in proc.stdout:lines()`. Every wait is bounded with
-- asyncio.wait_for(x, WAIT); no case looks at how long anything took.

local asyncio = require "conc.asyncio"
local errors = require "conc.errors"
local class = require "conc.class"

local async, await = asyncio.async, asyncio.await
local isinstance = class.isinstance
local PIPE, DEVNULL, STDOUT = asyncio.PIPE, asyncio.DEVNULL, asyncio.STDOUT

local WAIT = 10  -- seconds: the bound on every wait for a child

local function run(fn)
  return asyncio.run(async(fn)())
end

local function bounded(aw) return await(asyncio.wait_for(aw, WAIT)) end

-- communicate's two values: wait_for's task keeps only a first one, so
-- these waits are bounded by a timeout block around a plain await
local function communicate(proc, input)
  local _ <close> = asyncio.timeout(WAIT)
  return await(proc:communicate(input))
end

-- Every case starts a program, which inherits LD_PRELOAD: with the TSan
-- runtime preloaded (stock lua5.4 in a TSan build) an uninstrumented
-- program crashes. The host's flavour of this spec runs them there.
local NO_CHILD = (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) ~= nil
local it = NO_CHILD and function(name)
  pending(name .. ": no uninstrumented child with the TSan runtime preloaded")
end or it

describe("asyncio.subprocess", function()
  it("is reachable from conc.asyncio", function()
    local sub = require "conc.asyncio.subprocess"
    assert.equal(sub, asyncio.subprocess)
    assert.equal(sub.PIPE, asyncio.PIPE)
    assert.equal(sub.create_subprocess_exec, asyncio.create_subprocess_exec)
    assert.is_true(asyncio.iscoroutinefunction(asyncio.create_subprocess_shell))
    assert.equal(-1, PIPE)
    assert.equal(-2, STDOUT)
    assert.equal(-3, DEVNULL)
  end)

  it("reads a child's stdout line by line (exec)", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("printf", "a\\nb\\nc\\n",
        {stdout = PIPE}))
      assert.is_number(proc.pid)
      assert.is_nil(proc.stdin)
      assert.is_nil(proc.stderr)
      assert.equal("a\n", bounded(proc.stdout:readline()))
      assert.equal("b\n", bounded(proc.stdout:readline()))
      assert.equal("c\n", bounded(proc.stdout:readline()))
      assert.equal("", bounded(proc.stdout:readline()))
      assert.is_true(proc.stdout:at_eof())
      assert.equal(0, bounded(proc:wait()))
      assert.equal(0, proc.returncode)
    end)
  end)

  it("iterates lines of a shell command, the last without a newline", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_shell(
        "echo one; echo two; printf three", {stdout = PIPE}))
      local got = {}
      for line in proc.stdout:lines() do got[#got + 1] = line end
      assert.same({"one\n", "two\n", "three"}, got)
      assert.equal(0, bounded(proc:wait()))
    end)
  end)

  it("reads with read(n), readexactly and readuntil", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("printf", "abcdef;ghi",
        {stdout = PIPE}))
      assert.equal("ab", bounded(proc.stdout:readexactly(2)))
      assert.equal("cdef;", bounded(proc.stdout:readuntil(";")))
      local ok, e = pcall(function() bounded(proc.stdout:readexactly(10)) end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, asyncio.IncompleteReadError))
      assert.equal("ghi", e.partial)
      assert.equal(10, e.expected)
      assert.equal("", bounded(proc.stdout:read(5)))
      assert.equal(0, bounded(proc:wait()))
    end)
  end)

  it("communicates: input to stdin, stdout back (cat)", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("cat",
        {stdin = PIPE, stdout = PIPE}))
      local out, err = communicate(proc, "hello\nworld\n")
      assert.equal("hello\nworld\n", out)
      assert.is_nil(err)
      assert.equal(0, proc.returncode)
    end)
  end)

  it("communicates large input and output without deadlock", function()
    run(function()
      local data = string.rep("0123456789abcdef", 64 * 1024)  -- 1 MiB
      local proc = bounded(asyncio.create_subprocess_exec("cat",
        {stdin = PIPE, stdout = PIPE, stderr = PIPE}))
      local out, err = communicate(proc, data)
      assert.equal(#data, #out)
      assert.is_true(out == data)
      assert.equal("", err)
      assert.equal(0, proc.returncode)
    end)
  end)

  it("writes and drains stdin by hand, then closes it", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("cat",
        {stdin = PIPE, stdout = PIPE}))
      proc.stdin:write("x")
      proc.stdin:write("y\n")
      bounded(proc.stdin:drain())
      assert.equal("xy\n", bounded(proc.stdout:readline()))
      proc.stdin:close()
      assert.is_true(proc.stdin:is_closing())
      bounded(proc.stdin:wait_closed())
      assert.equal("", bounded(proc.stdout:read()))
      assert.equal(0, bounded(proc:wait()))
    end)
  end)

  it("gives the exit code of sh -c 'exit 3'", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("sh", "-c", "exit 3"))
      assert.equal(3, bounded(proc:wait()))
      assert.equal(3, proc.returncode)
      assert.equal(3, bounded(proc:wait()))  -- again: the same code
    end)
  end)

  it("sets returncode when the child ends, without a wait", function()
    run(function()
      -- (returncode may be set already: the child can end before
      -- create_subprocess_shell returns)
      local proc = bounded(asyncio.create_subprocess_shell("exit 5"))
      for _ = 1, 1000 do
        if proc.returncode ~= nil then break end
        await(asyncio.sleep(0.01))
      end
      assert.equal(5, proc.returncode)
    end)
  end)

  it("merges stderr into stdout with stderr=STDOUT", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_shell(
        "echo out; echo err >&2; echo out2", {stdout = PIPE, stderr = STDOUT}))
      assert.is_nil(proc.stderr)
      local out, err = communicate(proc)
      assert.equal("out\nerr\nout2\n", out)
      assert.is_nil(err)
    end)
  end)

  it("keeps stdout and stderr apart with two PIPEs", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_shell(
        "echo out; echo err >&2; exit 2", {stdout = PIPE, stderr = PIPE}))
      local out, err = communicate(proc)
      assert.equal("out\n", out)
      assert.equal("err\n", err)
      assert.equal(2, proc.returncode)
    end)
  end)

  it("connects DEVNULL: stdin reads nothing, output is dropped", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_shell(
        "cat; echo gone; echo gone too >&2",
        {stdin = DEVNULL, stdout = DEVNULL, stderr = DEVNULL}))
      assert.is_nil(proc.stdin)
      assert.is_nil(proc.stdout)
      local out, err = communicate(proc)
      assert.is_nil(out)
      assert.is_nil(err)
      assert.equal(0, proc.returncode)
      local p2 = bounded(asyncio.create_subprocess_exec("wc", "-c",
        {stdin = DEVNULL, stdout = PIPE}))
      local n = bounded(p2:communicate())
      assert.equal("0", n:match("%d+"))
    end)
  end)

  it("passes env as the child's whole environment", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("/bin/sh", "-c",
        "printf '%s|%s' \"$CONC_A\" \"$HOME\"",
        {stdout = PIPE, env = {CONC_A = "one", "PATH=/usr/bin:/bin"}}))
      local out = bounded(proc:communicate())
      assert.equal("one|", out)
    end)
  end)

  it("kills a sleep 30 child: returncode -9", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("sleep", "30"))
      assert.is_nil(proc.returncode)
      proc:kill()
      assert.equal(-9, bounded(proc:wait()))
      assert.equal(-9, proc.returncode)
      local ok, e = pcall(function() proc:kill() end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, errors.ProcessLookupError))
    end)
  end)

  it("terminates a child: returncode -15; send_signal sends any", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("sleep", "30"))
      proc:terminate()
      assert.equal(-15, bounded(proc:wait()))
      local p2 = bounded(asyncio.create_subprocess_exec("sleep", "30"))
      p2:send_signal(2)
      assert.equal(-2, bounded(p2:wait()))
    end)
  end)

  it("a wait_for timeout leaves the child running; kill ends it", function()
    run(function()
      local proc = bounded(asyncio.create_subprocess_exec("sleep", "30"))
      local ok, e = pcall(function() await(asyncio.wait_for(proc:wait(), 0.05)) end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, asyncio.TimeoutError))
      assert.is_nil(proc.returncode)
      proc:kill()
      assert.equal(-9, bounded(proc:wait()))
    end)
  end)

  it("raises FileNotFoundError for a missing program", function()
    run(function()
      local ok, e = pcall(function()
        bounded(asyncio.create_subprocess_exec("conc-no-such-program-xyz",
          {stdout = PIPE}))
      end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, errors.FileNotFoundError), tostring(e))
      ok, e = pcall(function()
        bounded(asyncio.create_subprocess_exec("/nonexistent/prog"))
      end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, errors.FileNotFoundError), tostring(e))
    end)
  end)

  it("rejects STDOUT for stdout and unknown options", function()
    run(function()
      local ok, e = pcall(function()
        bounded(asyncio.create_subprocess_exec("true", {stdout = STDOUT}))
      end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, errors.ValueError), tostring(e))
      ok, e = pcall(function()
        bounded(asyncio.create_subprocess_exec("true", {bogus = 1}))
      end)
      assert.is_false(ok)
      assert.is_true(isinstance(e, errors.TypeError), tostring(e))
    end)
  end)

  it("runs two subprocesses concurrently", function()
    run(function()
      -- each child waits for a line from us before it answers: both are
      -- started, then fed in the reverse order, then both are awaited
      local a = bounded(asyncio.create_subprocess_shell(
        "read x; echo \"A:$x\"", {stdin = PIPE, stdout = PIPE}))
      local b = bounded(asyncio.create_subprocess_shell(
        "read x; echo \"B:$x\"", {stdin = PIPE, stdout = PIPE}))
      assert.is_nil(a.returncode)
      assert.is_nil(b.returncode)
      local r = bounded(asyncio.gather(b:communicate("2\n"), a:communicate("1\n")))
      assert.equal("B:2\n", r[1])
      assert.equal("A:1\n", r[2])
      assert.equal(0, a.returncode)
      assert.equal(0, b.returncode)
    end)
  end)

  it("runs two sleeping children at once", function()
    run(function()
      local p1 = bounded(asyncio.create_subprocess_exec("sleep", "0.3"))
      local p2 = bounded(asyncio.create_subprocess_exec("sleep", "0.3"))
      assert.is_nil(p1.returncode)
      assert.is_nil(p2.returncode)
      local codes = bounded(asyncio.gather(p1:wait(), p2:wait()))
      assert.same({0, 0}, codes)
    end)
  end)

  it("communicate ends when the child never reads its stdin", function()
    run(function()
      -- the child exits at once without reading: communicate still ends
      local proc = bounded(asyncio.create_subprocess_shell("exec 0<&-; exit 0",
        {stdin = PIPE}))
      bounded(proc:communicate(string.rep("x", 4 * 1024 * 1024)))
      assert.equal(0, proc.returncode)
    end)
  end)
end)
