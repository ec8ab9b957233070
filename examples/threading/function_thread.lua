-- threading 2: 함수 기반 스레드
local threading = require "conc.threading"
local time = require "conc.time"

local function worker()
  print("스레드 시작")
  time.sleep(2)
  print("스레드 종료")
end

local t = threading.Thread{target = worker}
t:start()
t:join()  -- 메인 스레드는 이 스레드가 끝날 때까지 대기
