-- The floor under MV (see bench/mv_floor.c): the translation's loop over a
-- C module that does only what the calls must. ns per increment, median of
-- 5 rounds of 1M after a warm-up round.
-- Run: lua5.4 bench/mv_floor.lua DIR   (DIR holding mv_floor.so)
package.cpath = (arg[1] or "/tmp") .. "/?.so;" .. package.cpath
local new_value = require "mv_floor"
local N = 1000000

local function round(v)
  local t0 = os.clock()
  for _ = 1, N do
    do local _ <close> = v:get_lock():enter(); v.value = v.value + 1 end
  end
  return (os.clock() - t0) / N * 1e9
end

local v = new_value()
round(v)
local r = {}
for i = 1, 5 do r[i] = round(v) end
table.sort(r)
assert(v.value == 6 * N)
print(string.format("MVfloor %s %.2f ns/incr", _VERSION, r[3]))
