-- W3: 10 000 000 uncontended acquire+release pairs on one threading.Lock,
-- in the main thread, nobody else touching it; ns per pair.
-- Twin of bench/w3.py. Run: build/conc bench/w3.lua [repeats] [n]
--   W3      lock:acquire(); lock:release()
--   W3with  do local _ <close> = lock:enter() end   (Python: with lock: pass)
-- Each figure is the median over `repeats` rounds, after one warm-up round
-- of n/10 pairs.
local threading = require "conc.threading"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 10000000

local lock = threading.Lock()

local function pairs_(n)
  local t0 = time.perf_counter()
  for _ = 1, n do
    lock:acquire()
    lock:release()
  end
  return (time.perf_counter() - t0) / n * 1e9
end

local function with_(n)
  local t0 = time.perf_counter()
  for _ = 1, n do
    do local _ <close> = lock:enter() end
  end
  return (time.perf_counter() - t0) / n * 1e9
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

pairs_(N // 10); with_(N // 10) -- warm-up
local p, w = {}, {}
for r = 1, REPEATS do
  p[r] = pairs_(N)
  w[r] = with_(N)
end
assert(not lock:locked())
print(string.format("W3 conc %.2f ns/pair", median(p)))
print(string.format("W3with conc %.2f ns/pair", median(w)))
