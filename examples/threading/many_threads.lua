-- threading 3: 여러 스레드 실행
local threading = require "conc.threading"
local time = require "conc.time"

local function worker()
  print("스레드 시작")
  time.sleep(2)
  print("스레드 종료")
end

for i = 0, 4 do  -- range(5)
  local t = threading.Thread{target = worker}
  t:start()
end
-- as in Python, the script's end waits for the (non-daemon) threads
