-- 동기화 객체 6: Queue (스레드 안전)
local queue = require "conc.queue"
local threading = require "conc.threading"

local q = queue.Queue()

local function producer()
  for i = 0, 4 do  -- range(5)
    q:put(i)
  end
end

local function consumer()
  while true do
    local item = q:get()
    print("소비: " .. item)  -- one string: print puts tabs between arguments
    q:task_done()
  end
end

-- driver added so the snippet runs: the consumer loops forever, as in the
-- Python, so it is a daemon thread and the script ends once q:join() has
-- seen every item done
local c = threading.Thread{target = consumer, daemon = true}
local p = threading.Thread{target = producer}
c:start()
p:start()
p:join()
q:join()
