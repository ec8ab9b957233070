-- concurrent.futures 5: 여러 작업 병렬 처리 (submit + as_completed)
-- the module local is futures_mod: the guide's list of futures below is named futures
local futures_mod = require "conc.futures"
local ThreadPoolExecutor, as_completed = futures_mod.ThreadPoolExecutor, futures_mod.as_completed

local function download(i)
  return string.format("파일 %d 완료", i)
end

local executor <close> = ThreadPoolExecutor()  -- with ThreadPoolExecutor() as executor:
local futures = {}
for i = 0, 4 do futures[#futures + 1] = executor:submit(download, i) end  -- [... for i in range(5)]
for f in as_completed(futures) do
  print(f:result())
end
