-- 동기화 객체 4: Event (이벤트 신호)
local threading = require "conc.threading"

local event = threading.Event()

local function waiter()
  print("기다리는 중...")
  event:wait()  -- 신호 오기 전까지 블록
  print("이벤트 감지!")
end

local function setter()
  event:set()  -- 모든 wait() 중인 스레드 깨움
end

-- driver added so the snippet runs: a waiter and a setter, started then joined
local w = threading.Thread{target = waiter}
local s = threading.Thread{target = setter}
w:start()
s:start()
w:join()
s:join()
