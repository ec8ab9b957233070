-- conc.asyncio streams: open_connection, start_server, the Unix twins,
-- StreamReader's reads and StreamWriter's flow control. Each case runs its
-- own loop (asyncio.run); every wait is bounded by wait_for(x, WAIT) and
-- nothing asserts on time.
local asyncio = require "conc.asyncio"
local errors = require "conc.errors"
local support = require "support"

local async, await = asyncio.async, asyncio.await
local isinstance = errors.isinstance
local WAIT = 10

local function run(fn) return asyncio.run(async(fn)()) end
local function bounded(x) return await(asyncio.wait_for(x, WAIT)) end

-- an error raised by awaiting x (which must fail)
local function await_error(x)
  local ok, e = pcall(await, x)
  assert(not ok, "expected an error")
  return e
end

-- local srv <close> = serving(await(asyncio.start_server(...))): at the
-- block's end the server is closed, its clients aborted and wait_closed
-- bounded, so a failing case cannot hang there
local function serving(srv)
  return setmetatable({}, {__index = srv, __close = function()
    srv:close()
    srv:abort_clients()
    await(asyncio.wait_for(srv:wait_closed(), WAIT))
  end})
end

local function port_of(srv)
  local host, port = srv.sockets[1]:getsockname()
  return port, host
end

-- an echo server's handler: each line back, until EOF
local echo = async(function(reader, writer)
  while true do
    local line = await(reader:readline())
    if line == "" then break end
    writer:write(line)
    await(writer:drain())
  end
  writer:close()
  await(writer:wait_closed())
end)

-- a reader fed by hand (no transport)
local function fed(chunks, limit)
  local r = asyncio.StreamReader(limit)
  for i = 1, #chunks do r:feed_data(chunks[i]) end
  return r
end

describe("conc.asyncio streams", function()
  describe("TCP", function()
    it("an echo server serves 50 concurrent clients, each several lines", function()
      run(function()
        local srv <close> = serving(await(asyncio.start_server(echo, "127.0.0.1", 0)))
        assert.is_true(srv:is_serving())
        local port, host = port_of(srv)
        assert.equal("127.0.0.1", host)
        assert.is_true(port > 0)
        local client = async(function(id)
          local r, w = await(asyncio.open_connection("127.0.0.1", port))
          local got = {}
          for i = 1, 5 do
            local line = string.format("client %d line %d %s\n", id, i, string.rep("x", id))
            w:write(line)
            await(w:drain())
            got[i] = await(r:readline()) == line
          end
          w:write_eof()
          assert.equal("", await(r:read()))  -- the server's close
          w:close()
          await(w:wait_closed())
          for i = 1, 5 do if not got[i] then return false end end
          return true
        end)
        local cs = {}
        for i = 1, 50 do cs[i] = client(i) end
        local results = bounded(asyncio.gather(table.unpack(cs)))
        assert.equal(50, #results)
        for i = 1, 50 do assert.is_true(results[i]) end
      end)
    end)

    it("a plain function as client_connected_cb gets reader and writer", function()
      run(function()
        local got = asyncio.get_running_loop():create_future()
        local srv <close> = serving(await(asyncio.start_server(function(reader, writer)
          got:set_result({reader, writer})
        end, "127.0.0.1", 0)))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        local pair = bounded(got)
        assert.is_true(isinstance(pair[1], asyncio.StreamReader))
        assert.is_true(isinstance(pair[2], asyncio.StreamWriter))
        w:write("ping")
        assert.equal("ping", bounded(pair[1]:readexactly(4)))
        pair[2]:write("pong")
        assert.equal("pong", bounded(r:readexactly(4)))
        pair[2]:close()
        assert.equal("", bounded(r:read(10)))
        w:close()
        bounded(w:wait_closed())
        bounded(pair[2]:wait_closed())
      end)
    end)

    it("get_extra_info gives peername and sockname as {host, port}", function()
      run(function()
        local peer = asyncio.get_running_loop():create_future()
        local srv <close> = serving(await(asyncio.start_server(function(_, writer)
          peer:set_result(writer:get_extra_info("peername"))
          writer:close()
        end, "127.0.0.1", 0)))
        local port = port_of(srv)
        local r, w = await(asyncio.open_connection("127.0.0.1", port))
        local pn, sn = w:get_extra_info("peername"), w:get_extra_info("sockname")
        assert.same({"127.0.0.1", port}, pn)
        assert.equal("127.0.0.1", sn[1])
        assert.same({"127.0.0.1", sn[2]}, bounded(peer))
        assert.is_nil(w:get_extra_info("nothing"))
        assert.equal(7, w:get_extra_info("nothing", 7))
        assert.is_true(w:can_write_eof())
        assert.equal("", bounded(r:read()))
        w:close()
        bounded(w:wait_closed())
      end)
    end)

    it("connecting to a closed port raises ConnectionRefusedError", function()
      run(function()
        local srv = await(asyncio.start_server(echo, "127.0.0.1", 0))
        local port = port_of(srv)
        srv:close()
        bounded(srv:wait_closed())
        local e = await_error(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT))
        assert.is_true(isinstance(e, errors.ConnectionRefusedError), tostring(e))
        assert.is_true(isinstance(e, errors.OSError))
      end)
    end)

    it("drain with a 4 MiB write completes and the peer gets every byte", function()
      run(function()
        local total = 4 * 1024 * 1024
        local piece = {}
        for i = 0, 255 do piece[#piece + 1] = string.char(i) end
        piece = table.concat(piece)  -- 256 bytes, every value
        local big = string.rep(piece, total // 256)
        local srv <close> = serving(await(asyncio.start_server(async(function(reader, writer)
          -- read in small pieces, so that the sender has to wait
          local n, ok = 0, true
          while true do
            local s = await(reader:read(1000))
            if s == "" then break end
            if s ~= big:sub(n + 1, n + #s) then ok = false end
            n = n + #s
          end
          writer:write(string.format("%d %s\n", n, tostring(ok)))
          await(writer:drain())
          writer:close()
        end), "127.0.0.1", 0)))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        w:write(big)
        assert.is_true(w.transport:get_write_buffer_size() > 0)
        bounded(w:drain())
        assert.is_true(w.transport:get_write_buffer_size() <= 16 * 1024)
        w:write_eof()
        assert.equal(total .. " true\n", bounded(r:readline()))
        assert.equal("", bounded(r:read()))
        assert.is_true(r:at_eof())
        w:close()
        bounded(w:wait_closed())
      end)
    end)

    it("many small writes arrive in order and whole", function()
      run(function()
        local srv <close> = serving(await(asyncio.start_server(async(function(reader, writer)
          local data = await(reader:read(-1))
          writer:write(data)
          writer:close()
        end), "127.0.0.1", 0)))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        local parts = {}
        for i = 1, 20000 do
          parts[i] = tostring(i) .. ","
          w:write(parts[i])
        end
        w:writelines({"a", "b", "c"})
        bounded(w:drain())
        w:write_eof()
        assert.equal(table.concat(parts) .. "abc", bounded(r:read(-1)))
        w:close()
      end)
    end)

    it("a writer's close gives the peer's reader EOF, and its own reads EOF too", function()
      run(function()
        local seen = asyncio.get_running_loop():create_future()
        local srv <close> = serving(await(asyncio.start_server(async(function(reader, writer)
          local a = await(reader:readexactly(5))
          local b = await(reader:read(100))
          seen:set_result({a, b, reader:at_eof()})
          writer:close()
        end), "127.0.0.1", 0)))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        w:write("hello")
        w:close()
        assert.is_true(w:is_closing())
        bounded(w:wait_closed())
        assert.same({"hello", "", true}, bounded(seen))
        assert.equal("", bounded(r:read(10)))
        assert.equal("", bounded(r:readline()))
        local e = await_error(r:readexactly(1))
        assert.is_true(isinstance(e, asyncio.IncompleteReadError))
      end)
    end)

    it("a peer that closes with unread data resets the connection", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local written, paused = loop:create_future(), loop:create_future()
        local srv <close> = serving(await(asyncio.start_server(async(function(_, writer)
          writer.transport:pause_reading()  -- the data stays in the kernel
          paused:set_result(true)
          await(written)
          writer.transport:abort()
        end), "127.0.0.1", 0)))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        bounded(paused)
        w:write(string.rep("x", 1000))
        written:set_result(true)
        local ok, e = pcall(function() return bounded(r:read()) end)
        -- Linux answers the unread bytes with a reset
        assert.is_false(ok)
        assert.is_true(isinstance(e, errors.ConnectionResetError), tostring(e))
        local e2 = await_error(w:drain())
        assert.is_true(isinstance(e2, errors.ConnectionResetError), tostring(e2))
        w:close()
      end)
    end)

    it("an error in an async handler goes to the exception handler and closes", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local ctx = loop:create_future()
        loop:set_exception_handler(function(_, c) if not ctx:done() then ctx:set_result(c) end end)
        local srv <close> = serving(await(asyncio.start_server(async(function()
          error(errors.ValueError("handler failed"))
        end), "127.0.0.1", 0)))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        local c = bounded(ctx)
        assert.matches("client_connected_cb", c.message)
        assert.is_true(isinstance(c.exception, errors.ValueError))
        assert.equal("", bounded(r:read()))
        w:close()
      end)
    end)
  end)

  describe("Server", function()
    it("close() stops serving and wait_closed() waits for the connections", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local conns, peer = 0, nil
        local srv = await(asyncio.start_server(function(_, writer)
          conns = conns + 1
          peer = writer
          writer:write("hi\n")
        end, "127.0.0.1", 0))
        local port = port_of(srv)
        local r, w = await(asyncio.open_connection("127.0.0.1", port))
        assert.equal("hi\n", bounded(r:readline()))
        srv:close()
        assert.is_false(srv:is_serving())
        assert.equal(0, #srv.sockets)
        local waiting = asyncio.create_task(srv:wait_closed())
        await(asyncio.sleep(0))
        await(asyncio.sleep(0))
        assert.is_false(waiting:done())  -- one connection is still open
        w:close()
        assert.equal("", bounded(r:read()))
        -- the server's side is half open (eof_received keeps it) until closed
        assert.is_false(waiting:done())
        peer:close()
        bounded(waiting)
        bounded(srv:wait_closed())  -- done now: returns at once
        assert.equal(1, conns)
        local e = await_error(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT))
        assert.is_true(isinstance(e, errors.ConnectionRefusedError), tostring(e))
        srv:close()  -- twice is fine
        local _ = loop
      end)
    end)

    it("serve_forever() ends in CancelledError when cancelled, having closed", function()
      run(function()
        local srv = await(asyncio.start_server(echo, "127.0.0.1", 0))
        local t = asyncio.create_task(srv:serve_forever())
        await(asyncio.sleep(0))
        local e = await_error(srv:serve_forever())
        assert.is_true(isinstance(e, errors.RuntimeError))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv)))
        w:write("one\n")
        assert.equal("one\n", bounded(r:readline()))
        w:close()
        bounded(w:wait_closed())
        t:cancel()
        local e2 = await_error(asyncio.wait_for(t, WAIT))
        assert.is_true(isinstance(e2, errors.CancelledError))
        assert.is_false(srv:is_serving())
        bounded(srv:wait_closed())
      end)
    end)

    it("<close> closes the server and waits for it", function()
      run(function()
        local srv
        do
          local s <close> = await(asyncio.start_server(echo, "127.0.0.1", 0))
          srv = s
          assert.is_true(s:is_serving())
        end
        assert.is_false(srv:is_serving())
        assert.equal(0, #srv.sockets)
      end)
    end)
  end)

  describe("Unix sockets", function()
    it("an echo server on a path", function()
      -- a fresh name in the temporary directory (no shell: under the TSan
      -- build's stock lua5.4 a /bin/sh crashes with the runtime preloaded)
      local base = os.tmpname()
      local path = base .. ".sock"
      local ok, err = pcall(run, function()
        local srv <close> = serving(await(asyncio.start_unix_server(echo, path)))
        assert.equal(path, (srv.sockets[1]:getsockname()))
        local client = async(function(id)
          local r, w = await(asyncio.open_unix_connection(path))
          local out = {}
          for i = 1, 3 do
            w:write(string.format("%d:%d\n", id, i))
            out[i] = await(r:readline())
          end
          w:close()
          await(w:wait_closed())
          return table.concat(out)
        end)
        local cs = {}
        for i = 1, 10 do cs[i] = client(i) end
        local res = bounded(asyncio.gather(table.unpack(cs)))
        for i = 1, 10 do
          assert.equal(string.format("%d:1\n%d:2\n%d:3\n", i, i, i), res[i])
        end
      end)
      os.remove(path)
      os.remove(base)
      if not ok then error(err, 0) end
      -- the server's close removed its socket file
      assert.is_nil(io.open(path, "r"))
    end)

    it("connecting to a missing path fails with an OSError", function()
      run(function()
        local e = await_error(asyncio.open_unix_connection("/nonexistent-dir-conc/x.sock"))
        assert.is_true(isinstance(e, errors.OSError), tostring(e))
      end)
    end)
  end)

  describe("StreamReader", function()
    it("readexactly returns n bytes across chunks, IncompleteReadError at EOF", function()
      run(function()
        local r = fed({"ab", "cde", "f", "ghij"})
        assert.equal("abcd", await(r:readexactly(4)))
        assert.equal("e", await(r:readexactly(1)))
        assert.equal("", await(r:readexactly(0)))
        assert.equal("fg", await(r:readexactly(2)))
        r:feed_eof()
        local e = await_error(r:readexactly(10))
        assert.is_true(isinstance(e, asyncio.IncompleteReadError))
        assert.is_true(isinstance(e, errors.EOFError))
        assert.equal("hij", e.partial)
        assert.equal(10, e.expected)
        assert.equal("3 bytes read on a total of 10 expected bytes", e.message)
        assert.is_true(r:at_eof())
        support.raises(errors.ValueError, function() await(r:readexactly(-1)) end)
      end)
    end)

    it("readexactly waits for data fed later", function()
      run(function()
        local r = asyncio.StreamReader()
        local t = asyncio.create_task(r:readexactly(6))
        await(asyncio.sleep(0))
        r:feed_data("abc")
        await(asyncio.sleep(0))
        assert.is_false(t:done())
        r:feed_data("defg")
        assert.equal("abcdef", bounded(t))
        assert.equal("g", await(r:read(100)))
      end)
    end)

    it("readuntil finds separators that span chunks", function()
      run(function()
        local r = fed({"one", "--", "|two-", "-|", "three-|-|end"})
        assert.equal("one--|", await(r:readuntil("--|")))
        assert.equal("two--|", await(r:readuntil("--|")))
        assert.equal("three-|", await(r:readuntil("-|")))
        assert.equal("-|", await(r:readuntil("-|")))
        r:feed_eof()
        local e = await_error(r:readuntil("--|"))
        assert.is_true(isinstance(e, asyncio.IncompleteReadError))
        assert.equal("end", e.partial)
        assert.is_nil(e.expected)
        assert.matches("undefined expected bytes", e.message)
        support.raises(errors.ValueError, function() await(r:readuntil("")) end)
      end)
    end)

    it("readuntil raises LimitOverrunError past the limit, keeping the data", function()
      run(function()
        local r = fed({"aaaaaaaaaa", "aaaaaaaaaa"}, 8)
        local e = await_error(r:readuntil("\n"))
        assert.is_true(isinstance(e, asyncio.LimitOverrunError))
        assert.equal(20, e.consumed)
        assert.matches("not found", e.message)
        r:feed_data("b\n")
        -- found, but beyond the limit
        local e2 = await_error(r:readuntil("\n"))
        assert.is_true(isinstance(e2, asyncio.LimitOverrunError))
        assert.equal(21, e2.consumed)
        assert.matches("longer than limit", e2.message)
        assert.equal(string.rep("a", 20) .. "b\n", await(r:read(100)))
      end)
    end)

    it("readline: lines, the partial last one, '' at EOF, ValueError over the limit", function()
      run(function()
        local r = fed({"first\nsec", "ond\n", "\nlast"})
        assert.equal("first\n", await(r:readline()))
        assert.equal("second\n", await(r:readline()))
        assert.equal("\n", await(r:readline()))
        r:feed_eof()
        assert.equal("last", await(r:readline()))
        assert.equal("", await(r:readline()))
        assert.is_true(r:at_eof())

        local r2 = fed({string.rep("z", 12) .. "\nnext\n"}, 8)
        local e = await_error(r2:readline())
        assert.is_true(isinstance(e, errors.ValueError), tostring(e))
        -- the long line is dropped, with its newline
        assert.equal("next\n", await(r2:readline()))
      end)
    end)

    it("read(n) gives what is there up to n; read(-1) and read() read to EOF", function()
      run(function()
        local r = fed({"abc", "def"})
        assert.equal("ab", await(r:read(2)))
        assert.equal("cd", await(r:read(2)))
        assert.equal("", await(r:read(0)))
        assert.equal("e", await(r:read(1)))
        r:feed_data("f")
        local t = asyncio.create_task(r:read(-1))
        await(asyncio.sleep(0))
        r:feed_data("ghi")
        await(asyncio.sleep(0))
        assert.is_false(t:done())
        r:feed_eof()
        assert.equal("ffghi", bounded(t))
        assert.equal("", await(r:read()))
        assert.equal("", await(r:read(5)))
        support.raises(errors.RuntimeError, function() r:feed_data("x") end)
      end)
    end)

    it("two readers waiting at once is a RuntimeError; an exception reaches the reader", function()
      run(function()
        local r = asyncio.StreamReader()
        local t = asyncio.create_task(r:read(1))
        await(asyncio.sleep(0))
        local e = await_error(r:readline())
        assert.is_true(isinstance(e, errors.RuntimeError))
        assert.matches("already waiting", e.message)
        r:set_exception(errors.ConnectionResetError("gone"))
        local e2 = await_error(asyncio.wait_for(t, WAIT))
        assert.is_true(isinstance(e2, errors.ConnectionResetError))
        assert.equal(r:exception(), e2)
      end)
    end)

    it("a cancelled read leaves the reader usable", function()
      run(function()
        local r = asyncio.StreamReader()
        local t = asyncio.create_task(r:readexactly(3))
        await(asyncio.sleep(0))
        t:cancel()
        pcall(await, t)
        assert.is_true(t:cancelled())
        r:feed_data("xyz")
        assert.equal("xyz", bounded(r:readexactly(3)))
      end)
    end)

    it("a small limit pauses reading and resumes it; every byte arrives", function()
      run(function()
        local total = 1024 * 1024
        local srv <close> = serving(await(asyncio.start_server(async(function(_, writer)
          writer:write(string.rep("q", total))
          await(writer:drain())
          writer:close()
        end), "127.0.0.1", 0, {limit = 1024})))
        local r, w = await(asyncio.open_connection("127.0.0.1", port_of(srv), {limit = 100}))
        local n = 0
        while true do
          local s = bounded(r:read(37))
          if s == "" then break end
          n = n + #s
        end
        assert.equal(total, n)
        w:close()
      end)
    end)
  end)

  describe("the loop's own", function()
    it("getaddrinfo and create_connection/create_server with protocols", function()
      run(function()
        local loop = asyncio.get_running_loop()
        local addrs = await(loop:getaddrinfo("127.0.0.1", 80))
        assert.same({"inet", "127.0.0.1", 80}, addrs[1])
        local got = loop:create_future()
        local Echo = {}
        Echo.__index = Echo
        function Echo:connection_made(tr) self.tr = tr end
        function Echo:data_received(d) self.tr:write(d:upper()) end
        function Echo:eof_received() return false end
        function Echo:connection_lost() end
        local srv = await(loop:create_server(function() return setmetatable({}, Echo) end,
          "127.0.0.1", 0))
        local Client = {}
        Client.__index = Client
        function Client:connection_made(tr) tr:write("hello") end
        function Client:data_received(d) got:set_result(d) end
        function Client:eof_received() end
        function Client:connection_lost() end
        local tr, proto = await(loop:create_connection(function() return setmetatable({}, Client) end,
          "127.0.0.1", port_of(srv)))
        assert.equal(Client, getmetatable(proto))
        assert.equal("HELLO", bounded(got))
        tr:close()
        srv:close()
        bounded(srv:wait_closed())
      end)
    end)
  end)
end)
