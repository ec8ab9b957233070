-- multiprocessing 7: 예외 처리 및 종료 감지
local mp = require "conc.multiprocessing"
local time = require "conc.time"  -- import time (unused, as in the guide)

local function task()
  error("실패!")  -- raise Exception("실패!")
end

-- no `if __name__ == "__main__":` needed: a child never re-runs the script file
local p = mp.Process{target = task}
p:start()
p:join()
print("정상 종료: " .. tostring(p.exitcode == 0))  -- not p.exitcode
