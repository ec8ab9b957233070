-- MM: 20 000 item assignments d[i] = i on a Manager().dict() in the main
-- process; µs per assignment.
-- Twin of bench/mm.py. Run: build/conc bench/mm.lua [repeats] [n]
--   MM   d[i] = i for i = 1..n (Python: d[i] = i on a DictProxy)
--   MMg  x = d[i], the reads (info)
--   MMc  the same assignments from a child process while the parent waits
--        for it (info: the dict is the same in every process)
-- Each figure is the median over `repeats` rounds, after one warm-up round
-- of n/10; every round starts from an empty dict and checks what it holds.
local mp = require "conc.multiprocessing"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 7
local N = tonumber(arg and arg[2]) or 20000

local m <close> = mp.Manager()
local d = m:dict()

local function assign(n)
  d:clear()
  local t0 = time.perf_counter()
  for i = 1, n do
    d[i] = i
  end
  local dt = (time.perf_counter() - t0) / n * 1e6
  assert(#d == n)
  return dt
end

local function read(n)
  local t0 = time.perf_counter()
  local sum = 0
  for i = 1, n do
    sum = sum + d[i]
  end
  local dt = (time.perf_counter() - t0) / n * 1e6
  assert(sum == n * (n + 1) // 2)
  return dt
end

local function in_child(n)
  d:clear()
  local took = m:Value("d", 0)
  local p = mp.Process{target = function()
    local t0 = time.perf_counter()
    for i = 1, n do
      d[i] = i
    end
    took.value = (time.perf_counter() - t0) / n * 1e6
  end}
  p:start()
  p:join()
  assert(p.exitcode == 0 and #d == n and d[n] == n)
  return took.value
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

assign(N // 10); read(N // 10); in_child(N // 10) -- warm-up
local a, g, c = {}, {}, {}
for r = 1, REPEATS do
  a[r] = assign(N)
  g[r] = read(N)
  c[r] = in_child(N)
end
print(string.format("MM conc %.3f us/op", median(a)))
print(string.format("MMg conc %.3f us/op", median(g)))
print(string.format("MMc conc %.3f us/op", median(c)))
