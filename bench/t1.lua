-- T1: a 1000-element nested table (100 entries, each a table of 10 fields:
-- 4 integers, 3 strings, 3 floats) sent to a thread and back; µs per round
-- trip. Twin of bench/t1.py. Run: build/conc bench/t1.lua [repeats]
--
-- conc has no queue yet, so two measurements:
--   T1        core.copy(t) twice per round trip. copy = encode + decode with
--             the wire format, in this one state: exactly the work a trip
--             to another state and back does, minus the hand-over.
--   T1thr     a real cross-state trip: start a thread with the table as its
--             argument (encoded here, decoded in the thread's own state),
--             the thread reads one field, join; µs per thread.
--   T1thrbase the same with no argument (the cost of the thread alone).
--   T1thrrt   2 x (T1thr - T1thrbase), median of the per-round differences:
--             the table's share of a one-way trip, doubled to estimate a
--             round trip through real threads.
-- Each figure is the median over `repeats` rounds, after one warm-up round.
local core = require "conc.core"
local threading = require "conc.threading"
local time = require "conc.time"

local REPEATS = tonumber(arg and arg[1]) or 7
local COPIES = 2000  -- round trips per round for T1
local THREADS = 300  -- threads per round for T1thr / T1thrbase

local function make_table()
  local t = {}
  for i = 1, 100 do
    t[i] = {
      id = i, qty = i * 3, count = i * 1000 + 7, rank = 100 - i,
      name = "item-" .. i, tag = "tag-" .. (i % 7), label = string.rep("x", i % 20),
      price = i * 1.25, x = i / 3, y = -i * 0.5,
    }
  end
  return t
end

local data = make_table()
local copy = core.copy

local function roundtrips()
  local t0 = time.perf_counter()
  local r
  for _ = 1, COPIES do
    r = copy(copy(data)) -- there (encode + decode) and back (again)
  end
  local dt = time.perf_counter() - t0
  assert(r[100].name == "item-100" and r[50].price == 62.5)
  return dt / COPIES * 1e6
end

local function touch(t) return t[100].id end
local function empty() end

local function threads(with_table)
  local t0 = time.perf_counter()
  for _ = 1, THREADS do
    local th
    if with_table then
      th = threading.Thread{target = touch, args = {data}}
    else
      th = threading.Thread{target = empty}
    end
    th:start()
    th:join()
  end
  return (time.perf_counter() - t0) / THREADS * 1e6
end

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

roundtrips(); threads(true); threads(false) -- warm-up
local rt, thr, base, delta = {}, {}, {}, {}
for r = 1, REPEATS do
  rt[r] = roundtrips()
  collectgarbage()
  thr[r] = threads(true)
  base[r] = threads(false)
  delta[r] = 2 * (thr[r] - base[r])
  collectgarbage()
end
print(string.format("T1 conc %.2f us/roundtrip", median(rt)))
print(string.format("T1thr conc %.2f us/thread", median(thr)))
print(string.format("T1thrbase conc %.2f us/thread", median(base)))
print(string.format("T1thrrt conc %.2f us/roundtrip", median(delta)))
