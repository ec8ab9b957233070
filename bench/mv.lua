-- MV: 200 000 increments of a shared mp.Value('i', 0) under its own lock,
-- in one process, nobody else touching it; ns per increment.
-- Twin of bench/mv.py. Run: build/conc bench/mv.lua [repeats] [n]
--   MV     do local _ <close> = v:get_lock():enter(); v.value = v.value + 1 end
--          (Python: with v.get_lock(): v.value += 1)
--   MVraw  the same on mp.RawValue('i', 0), no lock: v.value = v.value + 1
-- Each figure is the median over `repeats` rounds, after one warm-up round
-- of n/10 increments.
local mp = require "conc.multiprocessing"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 7
local N = tonumber(arg and arg[2]) or 200000

local v = mp.Value("i", 0)
local raw = mp.RawValue("i", 0)

local function locked(n)
  v.value = 0
  local t0 = time.perf_counter()
  for _ = 1, n do
    do local _ <close> = v:get_lock():enter(); v.value = v.value + 1 end
  end
  local dt = (time.perf_counter() - t0) / n * 1e9
  assert(v.value == n)
  return dt
end

local function unlocked(n)
  raw.value = 0
  local t0 = time.perf_counter()
  for _ = 1, n do
    raw.value = raw.value + 1
  end
  local dt = (time.perf_counter() - t0) / n * 1e9
  assert(raw.value == n)
  return dt
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

locked(N // 10); unlocked(N // 10) -- warm-up
local l, u = {}, {}
for r = 1, REPEATS do
  l[r] = locked(N)
  u[r] = unlocked(N)
end
print(string.format("MV conc %.2f ns/incr", median(l)))
print(string.format("MVraw conc %.2f ns/incr", median(u)))
