-- W12: a conc thread puts 100 000 items into a conc.queue.Queue that a task
-- on the loop awaits item by item (await(asyncio.wrap(q))): items per
-- second. Twin of bench/w12.py (which hands them over with
-- loop.call_soon_threadsafe into an asyncio.Queue). Run: build/conc
-- bench/w12.lua [repeats]
local asyncio = require "conc.asyncio"
local threading = require "conc.threading"
local queue = require "conc.queue"
local time = require "conc.time"
local async, await = asyncio.async, asyncio.await

local N = 100000
local REPEATS = tonumber(arg and arg[1]) or 5
local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

local consume = async(function(q, n)
  local wrap, sum = asyncio.wrap, 0
  for _ = 1, n do sum = sum + await(wrap(q)) end
  return sum
end)

local function round(n)
  local q = queue.Queue()
  local producer = threading.Thread{target = function(qq, count)
    for i = 1, count do qq:put(i) end
  end, args = {q, n}}
  local t0 = time.perf_counter()
  producer:start()
  local sum = asyncio.run(consume(q, n))
  local dt = time.perf_counter() - t0
  producer:join()
  assert(sum == n * (n + 1) // 2, "items lost")
  return n / dt / 1e6
end

round(N // 10)  -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
print(string.format("W12 conc %.3f M/s", median(r)))
