-- asyncio 7: asyncio.run() 내부 작동 방식
local asyncio = require "conc.asyncio"
local async, await = asyncio.async, asyncio.await

local main = async(function()
  await(asyncio.sleep(0.1))
  print("main done")
end)

-- 내부적으로 다음과 같음
local loop = asyncio.get_event_loop()
loop:run_until_complete(main())
