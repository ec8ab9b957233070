-- concurrent.futures 3: ProcessPoolExecutor 예시
local conc = require "conc"
local futures = require "conc.futures"
local ProcessPoolExecutor = futures.ProcessPoolExecutor  -- from concurrent.futures import ProcessPoolExecutor

local function square(x)
  return x * x  -- x ** 2 (Lua's x ^ 2 is a float: 1.0)
end

local executor <close> = ProcessPoolExecutor()  -- with ProcessPoolExecutor() as executor:
local results = conc.list(executor:map(square, {1, 2, 3, 4}))
print("[" .. table.concat(results, ", ") .. "]")  -- print(results): [1, 4, 9, 16]
