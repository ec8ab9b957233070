-- W6pool1000, W6pool1: W6's square(x) over 100 000 integers, here with
-- mp.Pool(2):map, chunksize 1000 and 1; tasks per second.
-- Twin of bench/w6pool.py. Run: build/conc bench/w6pool.lua [repeats] [n]
-- The pool is made, and its workers started, before the clock starts; the
-- clock runs from map() until it returns the list. Each round checks the
-- sum of the results. Each figure is the median over `repeats` rounds,
-- after one warm-up round of n/10 tasks.
local mp = require "conc.multiprocessing"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 3
local N = tonumber(arg and arg[2]) or 100000

local function square(x)
  return x * x
end

local function one_round(pool, n, chunksize)
  local xs = {}
  for i = 1, n do xs[i] = i end
  local t0 = time.perf_counter()
  local result = pool:map(square, xs, chunksize)
  local dt = time.perf_counter() - t0
  local sum = 0
  for i = 1, #result do sum = sum + result[i] end
  assert(sum == n * (n + 1) * (2 * n + 1) // 6, "W6pool: wrong results")
  return n / dt
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

do
  local pool <close> = mp.get_context("fork").Pool(2)
  pool:map(square, {1, 2, 3, 4}, 1) -- its workers started
  for _, chunksize in ipairs{1000, 1} do
    one_round(pool, N // 10, chunksize) -- warm-up
    local r = {}
    for i = 1, REPEATS do r[i] = one_round(pool, N, chunksize) end
    print(string.format("W6pool%d conc %.0f tasks/s", chunksize, median(r)))
  end
end
