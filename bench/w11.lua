-- W11: a token handed back and forth between two threads through two
-- Events, 100 000 round trips; µs per hand-off (a round trip is two).
-- Twin of bench/w11.py; the C baseline (mutex + condvar) is
-- bench/pingpong_pthread.c. Run: build/conc bench/w11.lua [repeats] [n]
--   main thread (A): e1:set(); e2:wait(); e2:clear()    n times
--   the other (B):   e1:wait(); e1:clear(); e2:set()    n times
-- B is started and one round trip is made before the clock starts, so
-- thread start is not counted. Each figure is the median over `repeats`
-- rounds, after one warm-up round.
local threading = require "conc.threading"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 3
local N = tonumber(arg and arg[2]) or 100000

local function pong(e1, e2, n)
  for _ = 1, n do
    e1:wait(); e1:clear(); e2:set()
  end
end

local function round(n)
  local e1, e2 = threading.Event(), threading.Event()
  local b = threading.Thread{target = pong, args = {e1, e2, n + 1}}
  b:start()
  e1:set(); e2:wait(); e2:clear() -- the untimed first round trip
  local t0 = time.perf_counter()
  for _ = 1, n do
    e1:set(); e2:wait(); e2:clear()
  end
  local dt = time.perf_counter() - t0
  b:join()
  return dt / (2 * n) * 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local h = {}
for r = 1, REPEATS do h[r] = round(N) end
print(string.format("W11 conc %.3f us/handoff", median(h)))
