-- concurrent.futures 3: ThreadPoolExecutor 예시
local futures = require "conc.futures"
local ThreadPoolExecutor = futures.ThreadPoolExecutor  -- from concurrent.futures import ThreadPoolExecutor

local function task(n)
  return n * n
end

local executor <close> = ThreadPoolExecutor{max_workers = 4}  -- with ThreadPoolExecutor(max_workers=4) as executor:
local future = executor:submit(task, 10)
print(future:result())  -- 결과: 100
