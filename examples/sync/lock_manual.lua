-- 동기화 객체 1: Lock (threading.Lock), 수동 방식
local threading = require "conc.threading"

local lock = threading.Lock()

-- 또는 수동 방식
lock:acquire()
-- ...
lock:release()
