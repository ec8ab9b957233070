-- threading 6: Timer 객체 (지연 실행)
local threading = require "conc.threading"
local Timer = threading.Timer  -- from threading import Timer

local function delayed()
  print("3초 후 실행")
end

local t = Timer(3.0, delayed)
t:start()
