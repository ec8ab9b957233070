-- W10: TCP echo over 127.0.0.1 with asyncio streams: 10 concurrent
-- connections, 100 000 round trips of 32 bytes in all (10 000 each); round
-- trips per second. Twin of bench/w10.py.
-- Run: build/conc bench/w10.lua [repeats] [n]
-- Server and clients run in one loop (asyncio.run). The server's handler
-- echoes what it reads (read(1024), write, drain) until EOF; each client
-- writes 32 bytes, drains, awaits readexactly(32), checks it, n/10 times.
-- The server is listening and the 10 clients connected before the clock
-- starts; the clock runs until the last client has its last echo. Each
-- figure is the median over `repeats` rounds, after one warm-up round of
-- n/10 round trips.
local asyncio = require "conc.asyncio"
local time = require "conc.time"

local async, await = asyncio.async, asyncio.await

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 100000
local CONNS = 10
local MSG = string.rep("x", 31) .. "\n"

local handle = async(function(reader, writer)
  while true do
    local data = await(reader:read(1024))
    if data == "" then break end
    writer:write(data)
    await(writer:drain())
  end
  writer:close()
end)

local client = async(function(reader, writer, n)
  for _ = 1, n do
    writer:write(MSG)
    await(writer:drain())
    local echo = await(reader:readexactly(32))
    if echo ~= MSG then error("W10: wrong echo") end
  end
end)

local round = async(function(n)
  local srv <close> = await(asyncio.start_server(handle, "127.0.0.1", 0))
  local _, port = srv.sockets[1]:getsockname()
  local conns = {}
  for i = 1, CONNS do
    local r, w = await(asyncio.open_connection("127.0.0.1", port))
    conns[i] = {r, w}
  end
  local cs = {}
  for i = 1, CONNS do cs[i] = client(conns[i][1], conns[i][2], n // CONNS) end
  local t0 = time.perf_counter()
  await(asyncio.gather(table.unpack(cs)))
  local dt = time.perf_counter() - t0
  for i = 1, CONNS do
    local w = conns[i][2]
    w:close()
    await(w:wait_closed())
  end
  return (n // CONNS * CONNS) / dt
end)

local median = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua").median

asyncio.run(round(N // 10)) -- warm-up
local r = {}
for i = 1, REPEATS do r[i] = asyncio.run(round(N)) end
print(string.format("W10 conc %.0f trips/s", median(r)))
