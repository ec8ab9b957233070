-- W2, W2b: items from one producer thread to one consumer thread through an
-- unbounded queue.Queue(); messages per second.
-- Twin of bench/w2.py. Run: build/conc bench/w2.lua [repeats] [n] [nb]
--   W2   n  = 1 000 000 integers i
--   W2b  nb =   200 000 small tables {id = i, name = "item"}
-- The producer is the main thread, the consumer a Thread that gets n items
-- and checks each one (x == i, item.id == i). The clock runs from just
-- before the consumer's start() until it is joined, so its start is counted.
-- The consumer hands the number of bad items back on a second queue, read
-- after the clock stops. Each figure is the median over `repeats` rounds,
-- after one warm-up round of n/10 items.
local threading = require "conc.threading"
local queue = require "conc.queue"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 1000000
local NB = tonumber(arg and arg[3]) or 200000

local function consume_ints(q, n, res)
  local bad = 0
  for i = 1, n do
    if q:get() ~= i then bad = bad + 1 end
  end
  res:put(bad)
end

local function consume_tables(q, n, res)
  local bad = 0
  for i = 1, n do
    local item = q:get()
    if item.id ~= i then bad = bad + 1 end
  end
  res:put(bad)
end

local function round_ints(n)
  local q, res = queue.Queue(), queue.Queue()
  local c = threading.Thread{target = consume_ints, args = {q, n, res}}
  local t0 = time.perf_counter()
  c:start()
  for i = 1, n do
    q:put(i)
  end
  c:join()
  local dt = time.perf_counter() - t0
  assert(res:get() == 0, "W2: items lost or out of order")
  return n / dt
end

local function round_tables(n)
  local q, res = queue.Queue(), queue.Queue()
  local c = threading.Thread{target = consume_tables, args = {q, n, res}}
  local t0 = time.perf_counter()
  c:start()
  for i = 1, n do
    q:put({id = i, name = "item"})
  end
  c:join()
  local dt = time.perf_counter() - t0
  assert(res:get() == 0, "W2b: items lost or out of order")
  return n / dt
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

round_ints(N // 10); round_tables(NB // 10) -- warm-up
local a, b = {}, {}
for r = 1, REPEATS do
  a[r] = round_ints(N)
  b[r] = round_tables(NB)
end
print(string.format("W2 conc %.4f Mmsg/s", median(a) / 1e6))
print(string.format("W2b conc %.4f Mmsg/s", median(b) / 1e6))
