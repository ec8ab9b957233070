-- W4: 2 threads each add 500 000 to one shared counter, each increment under
-- one threading.Lock; total rate in million increments per second.
-- Twin of bench/w4.py. Run: build/conc bench/w4.lua [repeats] [n]
-- The counter is a conc.shared.dict (Python: a global int); the lock and the
-- dict cross to the threads by reference. Start and join are counted.
-- Each figure is the median over `repeats` rounds, after one warm-up round
-- of n/10 per thread. Needs conc.shared (bench/run skips W4 conc without it).
local shared = require "conc.shared"
local threading = require "conc.threading"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 500000

local function add(lock, d, n)
  for _ = 1, n do
    local _ <close> = lock:enter()
    d.n = d.n + 1
  end
end

local function round(n)
  local lock = threading.Lock()
  local d = shared.dict()
  d.n = 0
  local t0 = time.perf_counter()
  local a = threading.Thread{target = add, args = {lock, d, n}}
  local b = threading.Thread{target = add, args = {lock, d, n}}
  a:start(); b:start()
  a:join(); b:join()
  local dt = time.perf_counter() - t0
  assert(d.n == 2 * n, "lost increments: " .. tostring(d.n))
  return 2 * n / dt / 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round(N // 10) -- warm-up
local v = {}
for r = 1, REPEATS do v[r] = round(N) end
print(string.format("W4 conc %.3f Mincr/s", median(v)))
