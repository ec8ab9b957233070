-- asyncio 4: await -- 코루틴을 비동기적으로 실행
local asyncio = require "conc.asyncio"
local async, await = asyncio.async, asyncio.await

local say_hello = async(function()
  await(asyncio.sleep(1))
  print("Hello after 1 second")
end)

asyncio.run(say_hello())
