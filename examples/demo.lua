-- The conc demo: CPU-bound Lua in threads that really run in parallel.
-- Each thread has its own Lua state, so there is no global lock; the work
-- below takes about half as long on two threads as on one, on two cores.
local threading = require "conc.threading"
local time = require "conc.time"

local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local N, RUNS = 30, 4

local function work(runs)
  for _ = 1, runs do fib(N) end
end

local t0 = time.perf_counter()
work(RUNS)
local serial = time.perf_counter() - t0
print(string.format("%d x fib(%d) in the main thread:   %.2f s", RUNS, N, serial))

local nthreads = 2
t0 = time.perf_counter()
local threads = {}
for i = 1, nthreads do
  threads[i] = threading.Thread{target = work, args = {RUNS // nthreads}}
  threads[i]:start()
end
for _, t in ipairs(threads) do t:join() end
local parallel = time.perf_counter() - t0
print(string.format("%d x fib(%d) split over %d threads: %.2f s  (speedup %.2fx)",
  RUNS, N, nthreads, parallel, serial / parallel))

-- Threads see copies of what they are given, functions and upvalues included,
-- and each reports its own name, as in Python.
local function hello(greeting)
  print(greeting, threading.current_thread().name)
end
local t = threading.Thread{target = hello, args = {"hello from"}, name = "greeter"}
t:start()
t:join()
