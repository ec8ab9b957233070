-- concurrent.futures 6: 타임아웃 및 예외 처리
local conc = require "conc"
local futures = require "conc.futures"
local threading = require "conc.threading"
local TimeoutError = futures.TimeoutError  -- from concurrent.futures import TimeoutError

-- from the guide's earlier block (ThreadPoolExecutor 예시): executor and task.
-- driver added: this task takes longer than the timeout, as it waits for an
-- event that is set only once the timeout has passed
local finished = threading.Event()
local function task(n)
  finished:wait()
  return n * n
end
local executor <close> = futures.ThreadPoolExecutor{max_workers = 4}

local future = executor:submit(task, 10)

local ok, err = pcall(function()  -- try:
  local result = future:result(2)  -- timeout=2
end)
if not ok then
  if conc.isinstance(err, TimeoutError) then  -- except TimeoutError:
    print("시간 초과 발생")
  else
    error(err, 0)
  end
end

finished:set()  -- driver added: the task ends, so the shutdown at the script's end can join it
