-- W5: four runs of naive fib(27), serially vs split over 2 threads (2 runs
-- each), and over 2 processes (W5p, mp.Process with fork); speedup =
-- serial time / split time. Twin of bench/w5.py; the C
-- baseline of the same shape is bench/fib_pthread.c.
-- Run: build/conc bench/w5.lua [repeats] [n]
-- Each time is the median over `repeats` rounds (serial and threaded
-- alternate in each round), after one warm-up round. The threaded time
-- includes starting and joining the two threads (processes).
local mp = require "conc.multiprocessing"
local threading = require "conc.threading"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 11
local N = tonumber(arg and arg[2]) or 27

local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local function worker(n)
  for _ = 1, 2 do fib(n) end
end

local function serial()
  local t0 = time.perf_counter()
  for _ = 1, 4 do fib(N) end
  return time.perf_counter() - t0
end

-- Two workers of a kind (threads or processes), 2 runs each: the time
-- from the first start to the last join, and the two.
local function split(new)
  local t0 = time.perf_counter()
  local a = new{target = worker, args = {N}}
  local b = new{target = worker, args = {N}}
  a:start(); b:start()
  a:join(); b:join()
  return time.perf_counter() - t0, a, b
end

local function threaded()
  return (split(threading.Thread))
end

local function processes()
  local dt, a, b = split(mp.Process)
  assert(a.exitcode == 0 and b.exitcode == 0)
  return dt
end

-- The same split over a pool's 2 workers (issue 10's rows): 4 calls of
-- worker-sized halves (2 x fib(N)) as 2 tasks, the pool made and warmed
-- before the clock, which runs from the submits to the last result.
local futures = require "conc.futures"
local function pooled(run)
  local t0 = time.perf_counter()
  run()
  return time.perf_counter() - t0
end
local tpe = futures.ThreadPoolExecutor(2)
local ppe = futures.ProcessPoolExecutor(2)
local pool = mp.Pool(2)
local function on_executor(ex)
  return pooled(function()
    local a, b = ex:submit(worker, N), ex:submit(worker, N)
    a:result(); b:result()
  end)
end
local function on_pool()
  return pooled(function() pool:map(worker, {N, N}, 1) end)
end
-- warm: every worker started and has the function
for _ = 1, 2 do on_executor(tpe); on_executor(ppe); on_pool() end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

serial(); threaded(); processes() -- warm-up
local s, t, pr, te, pe, po = {}, {}, {}, {}, {}, {}
for r = 1, REPEATS do
  s[r] = serial()
  t[r] = threaded()
  pr[r] = processes()
  te[r] = on_executor(tpe)
  pe[r] = on_executor(ppe)
  po[r] = on_pool()
end
tpe:shutdown(); ppe:shutdown(); pool:terminate(); pool:join()
local ms, mt, mp_ = median(s), median(t), median(pr)
print(string.format("W5 conc n %d", N))
print(string.format("W5 conc serial %.6f s", ms))
print(string.format("W5 conc threaded %.6f s", mt))
print(string.format("W5 conc speedup %.4f x", ms / mt))
print(string.format("W5 conc processes %.6f s", mp_))
print(string.format("W5 conc pspeedup %.4f x", ms / mp_))
print(string.format("W5 conc tpespeedup %.4f x", ms / median(te)))
print(string.format("W5 conc ppespeedup %.4f x", ms / median(pe)))
print(string.format("W5 conc poolspeedup %.4f x", ms / median(po)))
