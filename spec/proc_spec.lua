-- conc.core's processes: fork, waitpid, _exit, and fork safety -- a child
-- forked while other threads hammer conc's queues, locks and thread starts
-- finds conc usable: one thread in its table, no parked worker believed to
-- exist, every internal lock free.
local core = require "conc.core"
local threading = require "conc.threading"
local queue = require "conc.queue"

-- Every wait on a child is bounded; a child still there is killed.
local WAIT = 20

local function reap(pid)
  local status = core.waitpid(pid, WAIT)
  if status == nil then
    os.execute("kill -KILL " .. pid)
    core.waitpid(pid, WAIT)
  end
  return status
end

-- Runs fn in a forked child; the child's exit status is 0 when fn returned,
-- 1 (with the error on stderr) when it raised.
local function in_child(fn)
  local pid = core.fork()
  if pid == 0 then
    local ok, err = pcall(fn)
    if not ok then io.stderr:write("child: ", tostring(err), "\n") end
    core._exit(ok and 0 or 1)
  end
  assert.is_true(pid > 0)
  return reap(pid)
end

-- What every child checks: conc works, and its tables describe only it.
local function use_conc()
  assert(#threading.enumerate() == 1,
         "threads in the child: " .. #threading.enumerate())
  assert(threading.active_count() == 1)
  local pool = core._pool()  -- only this thread, if it is a worker
  assert(pool.idle == 0 and pool.bare == 0 and pool.warming == 0,
         ("pool in the child: %d idle, %d bare, %d warming"):format(
           pool.idle, pool.bare, pool.warming))
  assert(pool.workers <= 1, "workers in the child: " .. pool.workers)
  local q = queue.Queue()
  local ts = {}
  for i = 1, 2 do
    ts[i] = threading.Thread{target = function(qq, n)
      for j = 1, 10 do qq:put(n * 100 + j) end
    end, args = {q, i}}
    ts[i]:start()
  end
  for i = 1, 2 do ts[i]:join(WAIT) end
  for i = 1, 2 do assert(not ts[i]:is_alive(), "a thread did not finish") end
  local sum = 0
  for _ = 1, 20 do sum = sum + q:get(true, WAIT) end
  assert(sum == 2 * 55 + 100 * 10 + 200 * 10, "sum " .. sum)
  local l = threading.Lock()
  assert(l:acquire(true, 1))
  l:release()
end

local support = require "support"
-- Cases that fork: pending under ThreadSanitizer (support.forks says why).
local forks = support.forks(it, function(why) pending(why) end)

describe("conc.core.fork", function()
  forks("returns the child's pid, and waitpid its exit code", function()
    local pid = core.fork()
    if pid == 0 then core._exit(7) end
    assert.are.equal(7, reap(pid))
  end)

  forks("gives -N for a child killed by signal N", function()
    local pid = core.fork()
    if pid == 0 then
      os.execute("kill -TERM $PPID")  -- the shell's parent is the child
      core._exit(0)
    end
    assert.are.equal(-15, reap(pid))
  end)

  forks("waitpid with a timeout returns nil while the child runs", function()
    local r = threading.Event()
    local pid = core.fork()
    if pid == 0 then
      -- blocks until killed: nothing in this child sets r
      r:wait(WAIT)
      core._exit(0)
    end
    assert.is_nil(core.waitpid(pid, 0))
    assert.is_nil(core.waitpid(pid, 0.01))
    os.execute("kill -KILL " .. pid)
    assert.are.equal(-9, reap(pid))
  end)

  it("rejects bad arguments with errors, not crashes", function()
    assert.has_error(function() core.waitpid("x") end)
    assert.has_error(function() core.waitpid(1, 0 / 0) end)
    local ok, err = pcall(core.waitpid, 999999999, 0)  -- no such child
    assert.is_false(ok)
    assert.truthy(tostring(err):find("waitpid", 1, true))
  end)

  forks("leaves the child one thread, even with threads running here", function()
    local stop, waiting = threading.Event(), threading.Event()
    local t = threading.Thread{target = function()
      waiting:set()
      stop:wait(WAIT)
    end}
    t:start()
    -- blocked in a wait when the fork comes, not coming up (see below: the
    -- sanitizers' runtime cannot fork a thread that is inside it)
    assert.is_true(waiting:wait(WAIT))
    assert.are.equal(0, in_child(function()
      use_conc()
      assert(not t:is_alive(), "the parent's thread is alive in the child")
      t:join(0)  -- done there: returns at once
    end))
    stop:set()
    t:join(WAIT)
    assert.is_false(t:is_alive())
  end)

  forks("leaves the forking thread the RLock it held, as in Python", function()
    local r = threading.RLock()
    r:acquire()
    assert.are.equal(0, in_child(function()
      r:release()  -- held here: the owner is this thread, forked
      assert(r:acquire(false), "the child cannot take its RLock again")
      r:release()
    end))
    r:release()
  end)

  forks("lets a thread fork: it becomes the child's main thread", function()
    local result = queue.Queue()
    local t = threading.Thread{name = "forker", target = function()
      local pid = core.fork()
      if pid == 0 then
        local ok = pcall(function()
          use_conc()
          assert(threading.main_thread().name == "forker")
        end)
        core._exit(ok and 0 or 1)
      end
      result:put(reap(pid))
    end}
    t:start()
    assert.are.equal(0, result:get(true, WAIT))
    t:join(WAIT)
  end)

  -- gcc 12's AddressSanitizer runtime (Debian 12's) is not fork-safe: a
  -- child forked while another thread is inside its allocator deadlocks
  -- in it (google/sanitizers; fixed in LLVM 18 by llvm-project#75290).
  -- So under the sanitizers every thread here pauses in a conc wait while
  -- a fork is made, and no worker is between jobs; everywhere else they
  -- run on through every fork. (core.fork_threads, the C test, hammers a
  -- queue and a lock through each fork under ASan too: that loop
  -- allocates nothing.)
  local SAN = os.getenv("CONC_SANITIZE") or ""

  -- The OS threads of this process, as the kernel counts them.
  local function os_threads()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("a")
    f:close()
    return tonumber(s:match("\nThreads:%s*(%d+)"))
  end

  -- No thread is between two things: every worker but the `busy` ones is
  -- parked, none is building a state, and the OS threads are this one and
  -- the workers (a worker that ended has finished ending).
  local function quiet(busy)
    local p = core._pool()
    return p.warming == 0 and p.idle + p.bare + busy >= p.workers
           and os_threads() == p.workers + 1
  end

  forks("is safe while 4 threads hammer a queue, a lock and thread starts (200 forks)", function()
    local q = queue.Queue(8)
    local l = threading.Lock()
    local stop = threading.Event()
    local resume = threading.Event()   -- clear while a fork is made
    local paused = threading.Semaphore(0)  -- a release per thread paused
    resume:set()
    local hammers = {}
    for i = 1, 4 do
      hammers[i] = threading.Thread{target = function()
        while not stop:is_set() do
          if SAN ~= "" and not resume:is_set() then
            paused:release()
            resume:wait(WAIT)
          end
          q:put(i)
          q:get()
          do local _ <close> = l:enter() end
        end
      end}
      hammers[i]:start()
    end
    local function nothing() end
    local starter = threading.Thread{target = function()
      while not stop:is_set() do
        if SAN ~= "" and not resume:is_set() then
          paused:release()
          resume:wait(WAIT)
        end
        local s = threading.Thread{target = nothing}
        s:start()
        s:join()
      end
    end}
    starter:start()
    if SAN ~= "" then
      -- no worker may end mid-fork either: let the ones earlier specs left
      -- time out (idle ones within 5 s) until the six this one needs are
      -- left (5 running, 1 taking the starter's threads, reused at once)
      local deadline = os.time() + WAIT
      while core._pool().workers > 6 and os.time() < deadline do
        threading.Event():wait(0.05)
      end
      assert.is_true(core._pool().workers <= 6, "workers left")
    end
    local failed = {}
    for k = 1, 200 do
      if SAN ~= "" then
        resume:clear()
        for _ = 1, 5 do assert.is_true(paused:acquire(true, WAIT)) end
        -- all five paused in waits; every other worker parked (the one
        -- that ran the starter's last thread may still be freeing it or
        -- building its next state) and no OS thread left but ours
        local deadline = os.time() + WAIT
        while not quiet(5) and os.time() < deadline do
          threading.Event():wait(0.001)
        end
      end
      local status = in_child(use_conc)
      resume:set()
      if status ~= 0 then failed[#failed + 1] = k .. ":" .. tostring(status) end
    end
    stop:set()
    resume:set()
    for i = 1, 4 do hammers[i]:join(WAIT) end
    starter:join(WAIT)
    assert.are.same({}, failed)
    for i = 1, 4 do assert.is_false(hammers[i]:is_alive()) end
    assert.is_false(starter:is_alive())
  end)
end)
