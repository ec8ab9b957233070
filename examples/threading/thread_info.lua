-- threading 5: 주요 스레드 정보
local threading = require "conc.threading"

print(threading.current_thread().name)
print(threading.active_count())
-- Python prints the list; a Lua table prints as an address, so name each
for _, t in ipairs(threading.enumerate()) do print(t.name) end
