-- concurrent.futures 10: 예외 처리 예
local conc = require "conc"
local futures = require "conc.futures"

-- from the guide's earlier block (ThreadPoolExecutor 예시)
local executor <close> = futures.ThreadPoolExecutor{max_workers = 4}

local function fail_task()
  error(conc.ValueError("실패"))  -- raise ValueError("실패")
end

local future = executor:submit(fail_task)

local ok, e = pcall(function()  -- try:
  local result = future:result()
end)
if not ok then  -- except Exception as e:
  -- Lua's print puts a tab between its arguments, Python's a space: join
  -- with one; e.message is Python's str(e)
  print("예외 발생: " .. e.message)
end
