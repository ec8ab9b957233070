-- W6: square(x) over 100 000 integers with ThreadPoolExecutor.map on 2
-- workers, the whole iterator consumed; tasks per second.
-- Twin of bench/w6.py (luv's thread pool doing the same: bench/w6luv.lua).
-- Run: build/conc bench/w6.lua [repeats] [n]
-- The executor is made, and both its workers started, before the clock
-- starts; the clock runs from map() until its last result is taken, so the
-- submits and the map iterator are both counted. Each round checks the sum
-- of the results. Each figure is the median over `repeats` rounds, after
-- one warm-up round of n/10 tasks.
local futures = require "conc.futures"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 100000

local function square(x)
  return x * x
end

local ex <close> = futures.ThreadPoolExecutor{max_workers = 2}
for _ in ex:map(square, {1, 2, 3, 4}) do end -- both workers started

local function round(n)
  local xs = {}
  for i = 1, n do xs[i] = i end
  local sum = 0
  local t0 = time.perf_counter()
  for r in ex:map(square, xs) do sum = sum + r end
  local dt = time.perf_counter() - t0
  assert(sum == n * (n + 1) * (2 * n + 1) // 6, "W6: wrong results")
  return n / dt
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
print(string.format("W6 conc %.0f tasks/s", median(r)))
