-- multiprocessing 3: 다중 프로세스 실행
local mp = require "conc.multiprocessing"

-- from the guide's earlier block
local function worker(n)
  print(string.format("작업 %d 시작", n))
end

local processes = {}
for i = 0, 4 do  -- range(5)
  local p = mp.Process{target = worker, args = {i}}
  processes[#processes + 1] = p  -- processes.append(p)
  p:start()
end

for _, p in ipairs(processes) do
  p:join()
end
