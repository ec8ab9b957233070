-- asyncio 9: 동기 함수 호출 주의 -- time.sleep() inside a task blocks the
-- whole loop; debug mode says so, naming the task
local asyncio = require "conc.asyncio"
local time = require "conc.time"
local async, await = asyncio.async, asyncio.await

local blocking = async(function()
  time.sleep(0.2)  -- 전체 블로킹: use await(asyncio.sleep(0.2))
  print("blocked the loop")
end)

local main = async(function()
  await(asyncio.create_task(blocking(), {name = "blocker"}))
end)

asyncio.run(main(), {debug = true})
