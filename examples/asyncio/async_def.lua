-- asyncio 3: async def -- 비동기 함수 정의
local asyncio = require "conc.asyncio"
local async = asyncio.async

local say_hello = async(function()  -- async def say_hello():
  print("Hello")
end)

-- calling it makes a coroutine object and runs nothing, as in Python
local coro = say_hello()
print(asyncio.iscoroutine(coro))
asyncio.run(coro)  -- now it runs
