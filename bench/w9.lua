-- W9: 100 000 tasks each awaiting sleep(0), gathered: us per task. W9b:
-- 10 000 tasks each sleeping 50 ms, gathered: ms of wall time over the
-- 50 ms. Twin of bench/w9.py. Run: build/conc bench/w9.lua [repeats]
-- Each figure is the median of the repeats, after one warm-up round (both
-- twins): the first round of a process pays the page faults of fresh
-- memory, which the later ones reuse.
local asyncio = require "conc.asyncio"
local time = require "conc.time"
local async, await = asyncio.async, asyncio.await

local REPEATS = tonumber(arg and arg[1]) or 5
local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

local zero = async(function() await(asyncio.sleep(0)) end)
local fifty = async(function() await(asyncio.sleep(0.05)) end)

local function gathered(coro, n)
  local main = async(function()
    local cs = {}
    for i = 1, n do cs[i] = coro() end
    await(asyncio.gather(table.unpack(cs, 1, n)))
  end)
  collectgarbage()
  local t0 = time.perf_counter()
  asyncio.run(main())
  return time.perf_counter() - t0
end

local r, rb = {}, {}
gathered(zero, 100000)
for i = 1, REPEATS do r[i] = gathered(zero, 100000) / 100000 * 1e6 end
print(string.format("W9 conc %.3f us/task", median(r)))
gathered(fifty, 10000)
for i = 1, REPEATS do rb[i] = (gathered(fifty, 10000) - 0.05) * 1e3 end
print(string.format("W9b conc %.3f ms", median(rb)))
