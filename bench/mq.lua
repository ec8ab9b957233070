-- MQ: 1 000 000 small integers from one process to another through
-- mp.Queue(); million messages per second. Twin of bench/mq.py.
-- Run: build/conc bench/mq.lua [repeats]
-- The parent puts 0..n-1; a child process gets them, checks each one and
-- sends back its count of bad items. The clock runs from just before the
-- child's start() to its join, so its start is counted.
local mp = require "conc.multiprocessing"
local time = require "conc.time"

local N = 1000000
local REPEATS = tonumber(arg and arg[1]) or 3

local function round(n)
  local q, back = mp.Queue(), mp.Queue()
  local p = mp.Process{target = function()
    local bad = 0
    for i = 0, n - 1 do
      if q:get() ~= i then bad = bad + 1 end
    end
    back:put(bad)
  end}
  local t0 = time.perf_counter()
  p:start()
  for i = 0, n - 1 do q:put(i) end
  p:join()
  local dt = time.perf_counter() - t0
  assert(back:get() == 0, "items arrived wrong")
  return n / dt / 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
print(string.format("MQ conc %.3f M/s", median(r)))
