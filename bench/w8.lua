-- W8: start+join 200 processes that run an empty function; µs per process.
-- Twin of bench/w8.py. Run: build/conc bench/w8.lua [repeats]
--   W8     start all 200, then join all 200 (the usual Python shape)
--   W8seq  start one, join it, then the next (one process's whole lifecycle)
--   W8spawn the batch shape with the spawn start method, 50 processes: each
--          child is a fresh host that reads its target from its parent
-- conc's mp.Process forks; Python's twin uses the "fork" start method, and
-- "spawn" for W8spawn.
-- Each figure is the median over `repeats` rounds (default 5: Python's take
-- ~6 s each here), after one warm-up round of the batch shape.
local mp = require "conc.multiprocessing"
local time = require "conc.time"

local N = 200
local N_SPAWN = 50
local REPEATS = tonumber(arg and arg[1]) or 5

-- (a spawned child gets it as bytecode: a script's local crosses that way)
local function empty() end

local function batch(ctx, n)
  local t0 = time.perf_counter()
  local procs = {}
  for i = 1, n do
    local p = ctx.Process{target = empty}
    p:start()
    procs[i] = p
  end
  for i = 1, n do procs[i]:join() end
  local dt = (time.perf_counter() - t0) / n * 1e6
  for i = 1, n do assert(procs[i].exitcode == 0) end
  return dt
end

local function sequential()
  local t0 = time.perf_counter()
  for _ = 1, N do
    local p = mp.Process{target = empty}
    p:start()
    p:join()
  end
  return (time.perf_counter() - t0) / N * 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

local spawn = mp.get_context("spawn")
batch(mp, N) -- warm-up
batch(spawn, N_SPAWN)
local b, s, sp = {}, {}, {}
for r = 1, REPEATS do
  b[r] = batch(mp, N)
  collectgarbage()
  s[r] = sequential()
  collectgarbage()
  sp[r] = batch(spawn, N_SPAWN)
  collectgarbage()
end
print(string.format("W8 conc %.2f us/process", median(b)))
print(string.format("W8seq conc %.2f us/process", median(s)))
print(string.format("W8spawn conc %.2f us/process", median(sp)))
