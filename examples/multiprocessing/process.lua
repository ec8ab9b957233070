-- multiprocessing 2: 간단한 사용 예 (Process 클래스)
local mp = require "conc.multiprocessing"  -- from multiprocessing import Process

local function worker(n)
  print(string.format("작업 %d 시작", n))
end

-- no `if __name__ == "__main__":` needed: a child never re-runs the script file
local p = mp.Process{target = worker, args = {1}}
p:start()
p:join()
