-- 동기화 객체 5: Condition (조건 변수)
local shared = require "conc.shared"
local threading = require "conc.threading"

local condition = threading.Condition()
local shared_data = shared.list()  -- []: one list that every thread sees

local function consumer()
  do local _ <close> = condition:enter()  -- with condition:
    while #shared_data == 0 do  -- while not shared_data:
      condition:wait()
    end
    local item = shared_data:pop()
    print("소비: " .. item)  -- one string: print puts tabs between arguments
  end
end

local function producer()
  do local _ <close> = condition:enter()
    shared_data:append("item")
    condition:notify()  -- 대기 중인 스레드 중 하나 깨움
  end
end

-- driver added so the snippet runs: a consumer and a producer, started then
-- joined (in either order of running, the consumer prints the one item)
local c = threading.Thread{target = consumer}
local p = threading.Thread{target = producer}
c:start()
p:start()
c:join()
p:join()
