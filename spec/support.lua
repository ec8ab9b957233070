-- What several specs share: files and shell quoting for the tests that run
-- the host as a child process.
local M = {}

-- ThreadSanitizer supports no fork of a threaded process (its own
-- runtime has a thread): it kills a child that starts a thread
-- (die_after_fork) and defers signals in it. Cases that fork run under
-- the default build and ASan; under TSan they are pending.
M.TSAN = os.getenv("CONC_SANITIZE") == "thread"

-- forks(name, fn): busted's it(name, fn), pending under TSan. Made from
-- the spec's own it and a function calling its pending (busted's pending
-- inside a case is another function than the one a file sees at load):
--   local forks = support.forks(it, function(why) pending(why) end)
function M.forks(it, pending)
  return function(name, fn)
    it(name, function()
      if M.TSAN then
        pending("TSan supports no fork of a threaded process")
        return
      end
      fn()
    end)
  end
end

-- A string through an mp.Array('c', n): put_str writes it, NUL-ended;
-- get_str reads it back.
function M.put_str(a, s)
  assert(#s < #a, "string too long for the array")
  for i = 1, #s do a[i] = s:sub(i, i) end
  a[#s + 1] = "\0"
end

function M.get_str(a)
  local parts = {}
  for _, c in ipairs(a) do
    if c == "\0" then break end
    parts[#parts + 1] = c
  end
  return table.concat(parts)
end

-- raises(cls, fn, ...): fn(...) must raise an error of class cls (a
-- conc.errors class); returns the error.
function M.raises(cls, fn, ...)
  local errors = require "conc.errors"
  local ok, err = pcall(fn, ...)
  -- Lua's assert: busted's is the spec file's, not this module's
  assert(not ok, "expected an error")
  assert(errors.isinstance(err, cls), "expected " .. tostring(cls.__qualname)
         .. ", got " .. errors.tostring(err))
  return err
end

-- The processes a spec's cases start, every wait on them bounded by wait
-- seconds:
--   local kids = support.children(WAIT); after_each(kids.cleanup)
-- kids.start(p) starts p and returns it; kids.spawn(fn, ...) starts fn(...)
-- in a new process; kids.finish(p) joins p and returns its exit code (a
-- child that does not end is killed and the case fails); kids.in_child(fn,
-- ...) is finish(spawn(fn, ...)); kids.wait_for(pred) is true once pred()
-- is (false after the bound: it runs in children too). cleanup kills the
-- children still running when a case ends.
function M.children(wait)
  local mp = require "conc.multiprocessing"
  local time = require "conc.time"
  local kids, started = {}, {}
  function kids.start(p)
    started[#started + 1] = p
    p:start()
    return p
  end
  function kids.spawn(fn, ...)
    return kids.start(mp.Process{target = fn, args = table.pack(...)})
  end
  function kids.finish(p)
    p:join(wait)
    if p:is_alive() then
      p:kill()
      p:join(wait)
      error("child " .. tostring(p.name) .. " still running after " .. wait .. " s")
    end
    return p.exitcode
  end
  function kids.in_child(fn, ...)
    return kids.finish(kids.spawn(fn, ...))
  end
  function kids.wait_for(pred)
    local deadline = time.monotonic() + wait
    while not pred() do
      if time.monotonic() > deadline then return false end
      time.sleep(0.002)
    end
    return true
  end
  function kids.cleanup()
    for _, p in ipairs(started) do
      pcall(function()
        if p:is_alive() then
          p:kill()
          p:join(wait)
        end
      end)
    end
    started = {}
  end
  return kids
end

-- A string quoted for sh.
function M.q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A file's contents, or nil when it does not exist.
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Timeouts of blocking calls, one way for every spec.
--
-- support.attempt(results, call, obj, timeout) runs call(obj, timeout) in
-- a thread under pcall and puts {ok, value or error text, class, message,
-- seconds taken} on `results`; class is the name of the first of CLASSES
-- the error is an instance of.
local CLASSES = {"BrokenBarrierError", "ValueError", "TypeError",
                 "KeyboardInterrupt", "RuntimeError", "ShutDown", "Empty",
                 "Full"}

function M.attempt(results, call, obj, timeout)
  local errors = require "conc.errors"
  local time = require "conc.time"
  local t0 = time.monotonic()
  local ok, r = pcall(call, obj, timeout)
  local took = time.monotonic() - t0
  local class, message
  if not ok then
    for _, c in ipairs(CLASSES) do
      if errors.isinstance(r, errors[c]) then class = c break end
    end
    message = type(r) == "table" and r.message or nil
    r = errors.tostring(r)
  end
  results:put({ok = ok, value = r, class = class, message = message, took = took})
end

function M.show(r)
  if r == nil then return "no report" end
  if r.ok then return "returned " .. tostring(r.value) end
  return "raised " .. tostring(r.value)
end

-- Runs case.call(obj, timeout) in a thread on a fresh case.make(), which
-- returns the object, unstick() (lets the call complete) and an optional
-- cleanup(). blocks false: the call must report without being freed,
-- within wait seconds; blocks true: it must still wait a moment later, and
-- report once freed. A call that hangs is freed, so the case fails in
-- bounded time. Returns the report.
function M.outcome(case, timeout, blocks, wait)
  local errors = require "conc.errors"
  local queue = require "conc.queue"
  local threading = require "conc.threading"
  local obj, unstick, cleanup = case.make()
  local results = queue.Queue()
  local t = threading.Thread{target = M.attempt, daemon = true,
                             args = table.pack(results, case.call, obj, timeout)}
  t:start()
  local function report(within)
    local ok, r = pcall(results.get, results, true, within)
    if ok then return r end
    assert(errors.isinstance(r, queue.Empty), errors.tostring(r))
    return nil
  end
  local r, early, hung
  if blocks then
    early = report(0.1)
    if not early then unstick() end
    r = early or report(wait)
  else
    r = report(wait)
    if not r then  -- free a thread stuck waiting
      hung = true
      unstick()
      r = report(wait)
    end
  end
  if cleanup then cleanup() end
  t:join(wait)
  assert(not t:is_alive(), "thread still running after " .. wait .. " s")
  assert(early == nil, "did not wait: " .. M.show(early))
  assert(hung == nil, "waited until freed, then " .. M.show(r))
  assert(r ~= nil, "never returned, even once freed")
  return r
end

return M
