-- 동기화 객체 2: RLock (Reentrant Lock)
local threading = require "conc.threading"

local lock = threading.RLock()

local function recursive(depth)
  do local _ <close> = lock:enter()  -- with lock:
    -- 재귀 또는 중첩 진입 시 deadlock 방지
    -- bounded at 10 levels: the Python recurses until RecursionError
    if depth < 10 then recursive(depth + 1) end
  end
end

-- driver added so the snippet runs: recursive() in a thread, then the main
-- thread takes the lock, which it can only once every level released it
local t = threading.Thread{target = recursive, args = {1}}
t:start()
t:join()
do local _ <close> = lock:enter()
  print("재귀 종료: 락이 모두 해제됨")
end
