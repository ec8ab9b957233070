-- 동기화 객체 1: Lock (threading.Lock), with lock: 형태
local threading = require "conc.threading"

local lock = threading.Lock()

local function worker()
  do local _ <close> = lock:enter()  -- with lock:
    -- 공유 자원 접근
    print("작업 중")
  end
end

-- driver added so the snippet runs: three workers, started then joined
local threads = {}
for _ = 0, 2 do threads[#threads + 1] = threading.Thread{target = worker} end  -- range(3)
for _, t in ipairs(threads) do t:start() end
for _, t in ipairs(threads) do t:join() end
