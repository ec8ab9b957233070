-- W10luv: the anchor for W10. The same echo (10 connections, 100 000
-- round trips of 32 bytes over 127.0.0.1, server and clients in one loop)
-- on luv's raw TCP handles under the stock lua5.4: callbacks, no
-- coroutines, no streams, so close to the floor for a Lua event loop.
-- Run: lua5.4 bench/w10luv.lua [repeats] [n]   (bench/run skips it when
-- `require "luv"` fails). Each figure is the median over `repeats` rounds,
-- after one warm-up round of n/10 round trips.
local uv = require "luv"

local REPEATS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 100000
local CONNS = 10
local MSG = string.rep("x", 31) .. "\n"

local function round(n)
  local server = uv.new_tcp()
  server:bind("127.0.0.1", 0)
  local port = server:getsockname().port
  local peers = {}
  server:listen(128, function()
    local c = uv.new_tcp()
    server:accept(c)
    c:nodelay(true)
    peers[#peers + 1] = c
    c:read_start(function(err, data)
      if err or not data then c:close() return end
      c:write(data)
    end)
  end)
  local per, done, t0 = n // CONNS, 0, nil
  local clients = {}
  local connected = 0
  local function start_all()
    t0 = uv.hrtime()
    for i = 1, CONNS do clients[i]:write(MSG) end
  end
  for i = 1, CONNS do
    local c = uv.new_tcp()
    clients[i] = c
    local left, got = per, 0
    c:connect("127.0.0.1", port, function(err)
      assert(not err, err)
      c:nodelay(true)
      c:read_start(function(rerr, data)
        assert(not rerr and data, "W10luv: lost the server")
        got = got + #data
        if got >= 32 then
          got = got - 32
          left = left - 1
          if left == 0 then
            done = done + 1
            c:close()
            if done == CONNS then
              for _, p in ipairs(peers) do if not p:is_closing() then p:close() end end
              server:close()
            end
          else
            c:write(MSG)
          end
        end
      end)
      connected = connected + 1
      if connected == CONNS then start_all() end
    end)
  end
  uv.run()
  return per * CONNS / ((uv.hrtime() - t0) / 1e9)
end

local function median(v)
  table.sort(v)
  local k = #v
  if k % 2 == 1 then return v[(k + 1) // 2] end
  return (v[k // 2] + v[k // 2 + 1]) / 2
end

round(N // 10)
local r = {}
for i = 1, REPEATS do r[i] = round(N) end
print(string.format("W10luv luv %.0f trips/s", median(r)))
