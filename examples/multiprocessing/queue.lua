-- multiprocessing 4.1: Queue를 이용한 데이터 교환
local mp = require "conc.multiprocessing"  -- from multiprocessing import Process, Queue

local function producer(q)
  q:put("데이터")
end

local function consumer(q)
  print(q:get())
end

-- no `if __name__ == "__main__":` needed: a child never re-runs the script file
local q = mp.Queue()
mp.Process{target = producer, args = {q}}:start()
mp.Process{target = consumer, args = {q}}:start()
