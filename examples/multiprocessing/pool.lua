-- multiprocessing 5: Pool을 이용한 병렬 처리
local mp = require "conc.multiprocessing"  -- from multiprocessing import Pool

local function square(x)
  return x * x
end

-- no `if __name__ == "__main__":` needed: a child never re-runs the script file
local pool <close> = mp.Pool{processes = 4}  -- with Pool(processes=4) as pool:
local result = pool:map(square, {1, 2, 3, 4})
print("[" .. table.concat(result, ", ") .. "]")  -- print(result): [1, 4, 9, 16]
