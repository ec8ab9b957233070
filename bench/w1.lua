-- W1: start+join 1000 threads that run an empty function; µs per thread.
-- Twin of bench/w1.py. Run: build/conc bench/w1.lua [repeats]
--   W1     start all 1000, then join all 1000 (the usual Python shape)
--   W1seq  start one, join it, then the next (lifecycle latency, no overlap)
-- Each figure is the median over `repeats` rounds, after one warm-up round.
local threading = require "conc.threading"
local time = require "conc.time"

local N = 1000
local REPEATS = tonumber(arg and arg[1]) or 7

local function empty() end

local function batch()
  local t0 = time.perf_counter()
  local threads = {}
  for i = 1, N do
    local t = threading.Thread{target = empty}
    t:start()
    threads[i] = t
  end
  for i = 1, N do threads[i]:join() end
  return (time.perf_counter() - t0) / N * 1e6
end

local function sequential()
  local t0 = time.perf_counter()
  for _ = 1, N do
    local t = threading.Thread{target = empty}
    t:start()
    t:join()
  end
  return (time.perf_counter() - t0) / N * 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

batch(); sequential() -- warm-up
local b, s = {}, {}
for r = 1, REPEATS do
  b[r] = batch()
  collectgarbage()
  s[r] = sequential()
  collectgarbage()
end
print(string.format("W1 conc %.2f us/thread", median(b)))
print(string.format("W1seq conc %.2f us/thread", median(s)))
