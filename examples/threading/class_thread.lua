-- threading 2: 클래스 기반 스레드
local threading = require "conc.threading"

local MyThread = threading.Thread:extend()
function MyThread:run()
  print("MyThread 실행 중")
end

local t = MyThread()
t:start()
t:join()
