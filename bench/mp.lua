-- MP: a small integer's round trip through an mp.Pipe() between two
-- processes; µs per round trip. Twin of bench/mp.py.
-- Run: build/conc bench/mp.lua [repeats]
local mp = require "conc.multiprocessing"
local time = require "conc.time"

local N = 20000
local REPEATS = tonumber(arg and arg[1]) or 3

local a, b = mp.Pipe()
local p = mp.Process{target = function()
  a:close()
  while true do
    local x = b:recv()
    if x == nil then break end
    b:send(x)
  end
end}
p:start()
b:close()

local function round(n)
  local t0 = time.perf_counter()
  for i = 1, n do
    a:send(i)
    assert(a:recv() == i)
  end
  return (time.perf_counter() - t0) / n * 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
a:send(nil)
p:join()
print(string.format("MP conc %.2f us/round trip", median(r)))
