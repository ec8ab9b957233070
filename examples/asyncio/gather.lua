-- asyncio 5: 여러 작업을 동시에 실행
local asyncio = require "conc.asyncio"
local async, await = asyncio.async, asyncio.await

local task = async(function(name)
  await(asyncio.sleep(1))
  print(("%s 완료"):format(name))  -- print(f"{name} 완료")
end)

local main = async(function()
  await(asyncio.gather(
    task("A"),
    task("B"),
    task("C")
  ))
end)

asyncio.run(main())
