-- threading 4.1: Lock (뮤텍스)
local threading = require "conc.threading"

local lock = threading.Lock()

local function safe_worker()
  do local _ <close> = lock:enter()  -- with lock:
    -- 임계 구역 (공유 자원 접근)
    -- Lua's print puts a tab between its arguments, Python's a space: join with one
    print(threading.current_thread().name .. " 작업 중")
  end
end

local threads = {}
for _ = 0, 2 do threads[#threads + 1] = threading.Thread{target = safe_worker} end  -- range(3)
for _, t in ipairs(threads) do
  t:start()
end
-- as in Python, the script's end waits for the (non-daemon) threads
