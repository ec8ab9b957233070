-- 동기화 객체 3: Semaphore / BoundedSemaphore
local conc = require "conc"
local threading = require "conc.threading"

local sem = threading.Semaphore(3)  -- 최대 3개 스레드 동시 접근

local function limited()
  do local _ <close> = sem:enter()  -- with sem:
    print("동시성 제한된 작업")
  end
end

-- driver added so the snippet runs: five threads, started then joined
local threads = {}
for _ = 0, 4 do threads[#threads + 1] = threading.Thread{target = limited} end  -- range(5)
for _, t in ipairs(threads) do t:start() end
for _, t in ipairs(threads) do t:join() end

-- added for the note under the snippet: BoundedSemaphore errors when
-- released more often than acquired
local bsem = threading.BoundedSemaphore(1)
bsem:acquire()
bsem:release()
local ok, err = pcall(bsem.release, bsem)  -- try: bsem.release()
if not ok and conc.isinstance(err, conc.ValueError) then  -- except ValueError as e:
  print(err)  -- tostring(err) reads "ValueError: <message>", as print("ValueError:", e)
end
