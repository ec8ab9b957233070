-- multiprocessing 4.2: Value, Array를 이용한 공유 메모리
local mp = require "conc.multiprocessing"  -- from multiprocessing import Value
-- (Process is from the guide's earlier block: mp.Process)

local function increment(val)
  do local _ <close> = val:get_lock():enter()  -- with val.get_lock():
    val.value = val.value + 1
  end
end

-- no `if __name__ == "__main__":` needed: a child never re-runs the script file
local counter = mp.Value("i", 0)  -- 'i' = int
local processes = {}
for _ = 0, 9 do processes[#processes + 1] = mp.Process{target = increment, args = {counter}} end  -- range(10)
for _, p in ipairs(processes) do
  p:start()
end
for _, p in ipairs(processes) do
  p:join()
end

-- Lua's print puts a tab between its arguments, Python's a space: join with one
print("최종 값: " .. counter.value)
