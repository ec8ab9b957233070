-- threading 7: 스레드 종료 관리 (Event로 종료 신호 전달)
local threading = require "conc.threading"
local time = require "conc.time"

local stop_event = threading.Event()

local function loop_worker()
  while not stop_event:is_set() do
    print("작업 중...")
    time.sleep(1)
  end
end

local t = threading.Thread{target = loop_worker}
t:start()

-- 4.5, not Python's 5: at exactly 5 s the worker's sixth check races the
-- set, so Python itself prints five or six lines
time.sleep(4.5)
stop_event:set()
