-- 동기화 객체: 멀티프로세싱용 동기화 객체 (Lock, Semaphore, Event, Queue,
-- Value, Array), each shared by processes. The guide only tabulates them;
-- this driver uses each once. -- driver added
local mp = require "conc.multiprocessing"

local lock = mp.Lock()                -- 락: multiprocessing.Lock()
local sem = mp.Semaphore(2)           -- 세마포어: multiprocessing.Semaphore()
local event = mp.Event()              -- 이벤트: multiprocessing.Event()
local q = mp.Queue()                  -- 큐: multiprocessing.Queue()
local total = mp.Value("i", 0)        -- 공유 변수: Value
local slots = mp.Array("i", 3)        -- 공유 변수: Array

local function worker(i)
  event:wait()                        -- 신호 오기 전까지 블록
  do local _ <close> = sem:enter()    -- with sem:
    do local _ <close> = lock:enter() -- with lock:
      total.value = total.value + i
    end
    slots[i] = i * i
  end
  q:put(i)
end

local processes = {}
for i = 1, 3 do
  local p = mp.Process{target = worker, args = {i}}
  processes[#processes + 1] = p
  p:start()
end
event:set()
local got = {}
for _ = 1, 3 do got[#got + 1] = q:get() end
for _, p in ipairs(processes) do p:join() end
table.sort(got)
print("큐:", table.concat(got, ", "))
print("Value:", total.value)
print("Array:", slots[1], slots[2], slots[3])
