-- asyncio 8: 동기 코드에서 await 사용 불가
local asyncio = require "conc.asyncio"
local await = asyncio.await

-- 다음은 오류 발생:
local function bad()
  await(asyncio.sleep(1))  -- Python: SyntaxError; here a RuntimeError when run
end

-- 반드시 async 함수 안에서만 await 사용 가능
local ok, err = pcall(bad)
print(ok, err)
