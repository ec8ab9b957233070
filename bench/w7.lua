-- W7: 20 000 submit + result round trips on a ThreadPoolExecutor with 2
-- workers, one at a time: submit a task, wait for its result, then submit
-- the next; µs per task. Twin of bench/w7.py.
-- Run: build/conc bench/w7.lua [repeats] [n]
-- The task is square(x). Each round makes a fresh executor and one untimed
-- round trip first, so the worker's start is not counted, and checks every
-- result. Each figure is the median over `repeats` rounds, after one
-- warm-up round of n/10 tasks.
local futures = require "conc.futures"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 20000

local function square(x)
  return x * x
end

local function round(n)
  local ex <close> = futures.ThreadPoolExecutor{max_workers = 2}
  assert(ex:submit(square, 0):result() == 0) -- the untimed first round trip
  local bad = 0
  local t0 = time.perf_counter()
  for i = 1, n do
    if ex:submit(square, i):result() ~= i * i then bad = bad + 1 end
  end
  local dt = time.perf_counter() - t0
  assert(bad == 0, "W7: wrong results")
  return dt / n * 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
print(string.format("W7 conc %.3f us/task", median(r)))
