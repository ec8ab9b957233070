-- W6luv: the anchor for W6. The same 100 000 square(x) tasks on luv's
-- thread pool (libuv's, 2 threads), run by the stock lua5.4 with the luv
-- module: uv.new_work(square, after) and work:queue(i) for each i, then
-- uv.run() until every result has come back; tasks per second.
-- Run: lua5.4 bench/w6luv.lua [repeats] [n]   (bench/run skips it when
-- `require "luv"` fails)
-- libuv's pool is process-wide and sized once from UV_THREADPOOL_SIZE,
-- read at its first use: it is set to 2 before that. Each worker thread
-- has its own lua_State, which luv keeps, and loads square's bytecode once
-- (luv caches it), so this is close to the floor for a pool of Lua states:
-- no futures, no ordering, one C-level hand-off each way per task. The
-- clock runs from the first queue() until uv.run() returns. Each round
-- checks the sum of the results. Each figure is the median over `repeats`
-- rounds, after one warm-up round of n/10 tasks.
local uv = require "luv"

uv.os_setenv("UV_THREADPOOL_SIZE", "2")

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 100000

local function square(x)
  return x * x
end

local function round(n)
  local sum = 0
  local work = uv.new_work(square, function(r) sum = sum + r end)
  local t0 = uv.hrtime()
  for i = 1, n do work:queue(i) end
  uv.run()
  local dt = (uv.hrtime() - t0) / 1e9
  assert(sum == n * (n + 1) * (2 * n + 1) // 6, "W6luv: wrong results")
  return n / dt
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
print(string.format("W6luv luv %.0f tasks/s", median(r)))
