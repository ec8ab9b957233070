-- asyncio 6: 무한 루프 & 병렬 반복
local asyncio = require "conc.asyncio"
local async, await = asyncio.async, asyncio.await

local worker = async(function(n)
  for i = 0, 2 do  -- for i in range(3):
    await(asyncio.sleep(1))
    print(("작업 %d: %d"):format(n, i))
  end
end)

local main = async(function()
  local tasks = {}  -- [asyncio.create_task(worker(i)) for i in range(2)]
  for i = 0, 1 do tasks[#tasks + 1] = asyncio.create_task(worker(i)) end
  await(asyncio.gather(table.unpack(tasks)))  -- asyncio.gather(*tasks)
end)

asyncio.run(main())
