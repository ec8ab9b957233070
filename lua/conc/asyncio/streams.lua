-- conc.asyncio.streams: Python's asyncio streams (Lib/asyncio/streams.py)
-- over non-blocking stream sockets (TCP, Unix) that the C loop watches.
--
--   local r, w = await(asyncio.open_connection("127.0.0.1", port))
--   local srv <close> = await(asyncio.start_server(handle, "127.0.0.1", 0))
--
-- Below the streams is one transport per socket, shaped like Python's
-- selector transport with its protocol (connection_made, data_received,
-- eof_received, connection_lost, pause_writing, resume_writing), so the
-- loop's create_connection and create_server take user protocols too.
--
-- The socket is registered with the loop once, edge-triggered for reads
-- and writes: a readable edge reads until the kernel has nothing (or the
-- end of the stream); a write goes out at once when
-- nothing is buffered, and what did not fit waits for the writable edge.
--
-- StreamReader keeps its bytes as a list of the chunks read (and an offset
-- into the first): a readexactly(n) of a chunk of n bytes hands that chunk
-- back without a copy, and nothing is ever concatenated twice.
local asyncio = require "conc.asyncio"
local core = require "conc.core"
local class = require "conc.class"
local errors = require "conc.errors"

local M = {}

local async, await = asyncio.async, asyncio.await
local set_result, set_exception = asyncio._set_result, asyncio._set_exception
local running = asyncio._running
local current_task = asyncio._current_task
local Loop = asyncio._Loop
local isinstance = class.isinstance
local iscoroutine = asyncio.iscoroutine

local fd_read, fd_write, fd_close = core.fd_read, core.fd_write, core.fd_close
local sock_connect, sock_listen, sock_accept = core.sock_connect,
  core.sock_listen, core.sock_accept
local sock_error, sock_name, sock_shutdown = core.sock_error, core.sock_name,
  core.sock_shutdown
local pcall, error, type, tostring, select = pcall, error, type, tostring, select
local setmetatable = setmetatable
local sub, find, concat = string.sub, string.find, table.concat

local RuntimeError = errors.RuntimeError
local ValueError = errors.ValueError
local TypeError = errors.TypeError
local OSError = errors.OSError
local CancelledError = errors.CancelledError
local ConnectionResetError = errors.ConnectionResetError
local IncompleteReadError = errors.IncompleteReadError
local LimitOverrunError = errors.LimitOverrunError

M.IncompleteReadError = IncompleteReadError
M.LimitOverrunError = LimitOverrunError

local PENDING = 0  -- a future's _state while it waits (conc.asyncio's)
local DEFAULT_LIMIT = 65536  -- 64 KiB
local READ_MAX = 65536             -- what one fd_read takes at most
local HIGH_WATER, LOW_WATER = 64 * 1024, 16 * 1024

local function new_class(name)
  local cls = class.class(nil, name)
  cls.__module = "conc.asyncio"
  cls.__qualname = name
  return cls
end

-- ---------------------------------------------------------------------
-- Sockets, as Python's transports hand them out (server.sockets,
-- get_extra_info("socket")): getsockname() -> host, port
-- ---------------------------------------------------------------------

local TransportSocket = new_class("TransportSocket")
M.TransportSocket = TransportSocket

function TransportSocket:__init(fd, family)
  self._fd, self.family = fd, family
end

function TransportSocket:fileno() return self._fd end

local function name_of(fd, peer)
  local family, host, port = sock_name(fd, peer)
  if family == "unix" then return host end
  return host, port
end

function TransportSocket:getsockname() return name_of(self._fd, false) end
function TransportSocket:getpeername() return name_of(self._fd, true) end

function TransportSocket:__tostring()
  return string.format("<TransportSocket fd=%d family=%s>", self._fd, self.family)
end

-- ---------------------------------------------------------------------
-- The transport: one socket, its buffers, its protocol
-- ---------------------------------------------------------------------

local Transport = new_class("_SocketTransport")
M._SocketTransport = Transport

local tr_events  -- on_events of a transport, below

local function new_transport(loop, fd, family)
  local tr = setmetatable({_loop = loop, _fd = fd, _family = family,
    _proto = false, _closing = false, _closed = false, _eof = false,
    _read_eof = false, _paused_reading = false, _protocol_paused = false,
    _wq = {}, _wh = 1, _wt = 0, _woff = 1, _wsize = 0,
    _high = HIGH_WATER, _low = LOW_WATER, _connect_waiter = false,
    _extra = {}, _server = false}, Transport)
  tr._key = loop:_watch_fd(fd, function(code) tr_events(tr, code) end)
  return tr
end

-- The end: the fd unwatched and closed, the protocol told (exc: why).
local function call_connection_lost(tr)
  if tr._closed then return end
  tr._closed = true
  tr._closing = true
  local exc = tr._lost_exc
  tr._lost_exc = nil
  tr._loop:_unwatch_fd(tr._key)
  fd_close(tr._fd)
  local proto = tr._proto
  local server = tr._server
  tr._server = false
  local ok, e = true, nil
  if proto then ok, e = pcall(proto.connection_lost, proto, exc) end
  if server then server:_detach(tr) end
  if not ok then error(e, 0) end
end

-- Drops what is buffered and ends the connection soon (exc: why).
local function force_close(tr, exc)
  if tr._closed or tr._lost_scheduled then return end
  tr._wq, tr._wh, tr._wt, tr._woff, tr._wsize = {}, 1, 0, 1, 0
  tr._closing = true
  tr._lost_scheduled = true
  tr._lost_exc = exc
  tr._loop:_push(call_connection_lost, tr)
end

local function fatal(tr, exc)
  force_close(tr, exc)
end

-- Reads until the kernel has nothing more (or reading is paused). After
-- a readable edge (short true) a short read is the end of it: the fd is
-- edge-triggered, and data or a FIN coming later makes a new edge; the
-- poll says when the peer had hung up already (code 8), and then the
-- reads go on to the EOF.
local function tr_read(tr, short)
  local fd, proto = tr._fd, tr._proto
  while not (tr._paused_reading or tr._closing or tr._read_eof) do
    local ok, s = pcall(fd_read, fd, READ_MAX)
    if not ok then
      fatal(tr, s)
      return
    end
    if s == false then return end
    if s == "" then
      tr._read_eof = true
      if not proto:eof_received() then tr:close() end
      return
    end
    proto:data_received(s)
    if short and #s < READ_MAX then return end
  end
end

local function maybe_pause_protocol(tr)
  if tr._wsize <= tr._high or tr._protocol_paused then return end
  tr._protocol_paused = true
  local proto = tr._proto
  if proto then proto:pause_writing() end
end

local function maybe_resume_protocol(tr)
  if not tr._protocol_paused or tr._wsize > tr._low then return end
  tr._protocol_paused = false
  local proto = tr._proto
  if proto then proto:resume_writing() end
end

local MERGE_MAX = 65536

-- Writes what is buffered, as far as the kernel takes it.
local function tr_flush(tr)
  local q, h, t, off = tr._wq, tr._wh, tr._wt, tr._woff
  local fd = tr._fd
  while h <= t do
    local s = q[h]
    -- small chunks go out together: one system call, not one each
    if h < t and #s - off + 1 < MERGE_MAX then
      local j, size = h, #s - off + 1
      while j < t and size + #q[j + 1] <= MERGE_MAX do
        j = j + 1
        size = size + #q[j]
      end
      if j > h then
        if off > 1 then q[h] = sub(s, off) end
        s = concat(q, "", h, j)
        for k = h, j - 1 do q[k] = nil end
        h, off = j, 1
        q[h] = s
      end
    end
    local ok, n = pcall(fd_write, fd, s, off)
    if not ok then
      tr._wh, tr._wt, tr._woff = h, t, off
      fatal(tr, n)
      return
    end
    tr._wsize = tr._wsize - n
    if n < #s - off + 1 then
      off = off + n
      break
    end
    q[h] = nil
    h, off = h + 1, 1
  end
  if h > t then h, t = 1, 0 end
  tr._wh, tr._wt, tr._woff = h, t, off
  maybe_resume_protocol(tr)
  if tr._wsize == 0 then
    if tr._closing then
      if not tr._lost_scheduled then
        tr._lost_scheduled = true
        tr._loop:_push(call_connection_lost, tr)
      end
    elseif tr._eof then
      pcall(sock_shutdown, fd)
    end
  end
end

local function read_protected(tr, short)
  local ok, e = pcall(tr_read, tr, short)
  if not ok then
    tr._loop:call_exception_handler({message = "Fatal error: protocol.data_received() call failed.",
      exception = e, transport = tr, protocol = tr._proto})
    force_close(tr, e)
  end
end

tr_events = function(tr, code)
  if tr._closed then return end
  local cw = tr._connect_waiter
  if cw then  -- connecting: writable (or an error) says it is done
    if code & 6 == 0 then return end
    tr._connect_waiter = false
    if cw._state == PENDING then
      local err = sock_error(tr._fd)
      if err ~= nil then set_exception(cw, err) else set_result(cw, true) end
    end
    return
  end
  if not tr._proto then return end  -- connection_made reads what came
  if code & 5 ~= 0 then read_protected(tr, code & 12 == 0) end
  if code & 6 ~= 0 and tr._wsize > 0 and not tr._closed then tr_flush(tr) end
end

-- The protocol takes the transport, then what arrived already is read.
local function tr_start(tr)
  if tr._closed then return end
  tr._proto:connection_made(tr)
  if not tr._closed then read_protected(tr) end
end

local function tr_attach(tr, proto, now)
  tr._proto = proto
  if now then tr_start(tr) else tr._loop:_push(tr_start, tr) end
end

function Transport:write(data)
  if type(data) ~= "string" then
    error(TypeError("data argument must be a string, not " .. type(data)), 2)
  end
  if self._eof then error(RuntimeError("Cannot call write() after write_eof()"), 2) end
  local n = #data
  if n == 0 or self._closed or self._lost_scheduled then return end
  if self._wsize == 0 then
    local ok, w = pcall(fd_write, self._fd, data, 1)
    if not ok then
      fatal(self, w)
      return
    end
    if w == n then return end
    local t = self._wt + 1
    self._wt = t
    self._wq[t] = data
    self._woff = w + 1
    self._wsize = n - w
  else
    local t = self._wt + 1
    self._wt = t
    self._wq[t] = data
    self._wsize = self._wsize + n
  end
  maybe_pause_protocol(self)
end

function Transport:writelines(list)
  self:write(concat(list))
end

function Transport:can_write_eof() return true end

function Transport:write_eof()
  if self._closing or self._eof then return end
  self._eof = true
  if self._wsize == 0 then pcall(sock_shutdown, self._fd) end
end

function Transport:is_closing() return self._closing end

function Transport:close()
  if self._closing then return end
  self._closing = true
  if self._wsize == 0 then
    self._lost_scheduled = true
    self._loop:_push(call_connection_lost, self)
  end
end

function Transport:abort() force_close(self, nil) end

function Transport:get_write_buffer_size() return self._wsize end

function Transport:get_write_buffer_limits() return self._low, self._high end

function Transport:set_write_buffer_limits(high, low)
  if high == nil then high = low and 4 * low or HIGH_WATER end
  if low == nil then low = high // 4 end
  if not (high >= low and low >= 0) then
    error(ValueError(string.format("high (%d) must be >= low (%d) must be >= 0", high, low)), 2)
  end
  self._high, self._low = high, low
  maybe_pause_protocol(self)
  maybe_resume_protocol(self)
end

function Transport:pause_reading()
  if self._closing or self._paused_reading then return end
  self._paused_reading = true
end

function Transport:resume_reading()
  if self._closing or not self._paused_reading then return end
  self._paused_reading = false
  self._loop:_push(read_protected, self)
end

function Transport:is_reading()
  return not self._closing and not self._paused_reading
end

function Transport:get_protocol() return self._proto end
function Transport:set_protocol(p) self._proto = p end

local function addr_value(family, host, port)
  if family == "unix" then return host end
  return {host, port}
end

-- get_extra_info("peername" | "sockname" | "socket"): {host, port} for
-- TCP, the path for Unix sockets.
function Transport:get_extra_info(name, default)
  local extra = self._extra
  local v = extra[name]
  if v ~= nil then return v end
  if self._closed then return default end
  if name == "peername" or name == "sockname" then
    local ok, family, host, port = pcall(sock_name, self._fd, name == "peername")
    if ok then v = addr_value(family, host, port) end
  elseif name == "socket" then
    v = TransportSocket(self._fd, self._family)
  end
  if v == nil then return default end
  extra[name] = v
  return v
end

function Transport:__tostring()
  return string.format("<_SocketTransport fd=%d%s>", self._fd,
    self._closed and " closed" or self._closing and " closing" or "")
end

-- ---------------------------------------------------------------------
-- Names and connecting
-- ---------------------------------------------------------------------

local function family_of(host)
  return find(host, ":", 1, true) and "inet6" or "inet"
end

-- host, port -> a list of {family, host, port} (awaits a worker thread
-- only for a name that is neither numeric nor "localhost").
local function resolve(loop, host, port, passive, family)
  port = tonumber(port) or 0
  if host == nil or host == "" then
    if passive then return {{family or "inet", family == "inet6" and "::" or "0.0.0.0", port}} end
    host = "localhost"
  end
  if type(host) ~= "string" then
    error(TypeError("host must be a string, not " .. type(host)), 3)
  end
  if host == "localhost" and family ~= "inet6" then
    return {{"inet", "127.0.0.1", port}}
  end
  if core.is_numeric_host(host) then
    return {{family_of(host), host, port}}
  end
  local list = await(loop:run_in_executor(nil, core.getaddrinfo, host, port,
    family, passive))
  if #list == 0 then error(OSError("getaddrinfo() returned empty list"), 0) end
  return list
end

function Loop:getaddrinfo(host, port, opts)
  local loop = self
  return async(function()
    return resolve(loop, host, port, opts and opts.passive, opts and opts.family)
  end, "getaddrinfo")()
end

local function close_fd_of(tr)
  tr._closed, tr._closing = true, true
  tr._loop:_unwatch_fd(tr._key)
  fd_close(tr._fd)
end

-- A connected transport (no protocol yet) to one address.
local function connect_one(loop, family, host, port)
  local fd, pending = sock_connect(family, host, port)
  local tr = new_transport(loop, fd, family)
  if pending then
    local w = loop:create_future()
    tr._connect_waiter = w
    local ok, e = pcall(await, w)
    if not ok then
      close_fd_of(tr)
      error(e, 0)
    end
  end
  local extra = tr._extra
  if family == "unix" then
    extra.peername = host
  else
    extra.peername = {host, port}
  end
  return tr
end

local function connect_any(loop, addrs)
  local errs = {}
  for i = 1, #addrs do
    local a = addrs[i]
    local ok, tr = pcall(connect_one, loop, a[1], a[2], a[3])
    if ok then return tr end
    if isinstance(tr, CancelledError) then error(tr, 0) end
    errs[#errs + 1] = tr
  end
  if #errs == 1 then error(errs[1], 0) end
  local same = true
  for i = 2, #errs do
    if tostring(errs[i]) ~= tostring(errs[1]) then same = false end
  end
  if same then error(errs[1], 0) end
  local msgs = {}
  for i = 1, #errs do msgs[i] = errors.tostring(errs[i]) end
  error(OSError("Multiple exceptions: " .. concat(msgs, ", ")), 0)
end

-- ---------------------------------------------------------------------
-- Server
-- ---------------------------------------------------------------------

local Server = new_class("Server")
M.Server = Server

local accept_ready  -- below

function Server:__init(loop, listeners, protocol_factory, opts)
  self._loop = loop
  self._listeners = listeners   -- {fd, family, path, key}
  self._protocol_factory = protocol_factory
  self._active = 0
  self._clients = {}
  self._waiters = {}
  self._serving = false
  self._serving_forever_fut = false
  self._cleanup = opts and opts.cleanup_socket ~= false
  local socks = {}
  for i = 1, #listeners do
    socks[i] = TransportSocket(listeners[i].fd, listeners[i].family)
  end
  self.sockets = socks
end

function Server:_attach(tr)
  self._active = self._active + 1
  self._clients[tr] = true
end

local function wakeup(self)
  local ws = self._waiters
  self._waiters = nil
  if ws == nil then return end
  for i = 1, #ws do
    local w = ws[i]
    if w._state == PENDING then set_result(w, w) end
  end
end

function Server:_detach(tr)
  self._clients[tr] = nil
  self._active = self._active - 1
  if self._active == 0 and self._listeners == nil then wakeup(self) end
end

function Server:_start_serving()
  if self._serving or self._listeners == nil then return end
  self._serving = true
  local loop = self._loop
  for i = 1, #self._listeners do
    local l = self._listeners[i]
    l.key = loop:_watch_fd(l.fd, function(code)
      if code & 1 ~= 0 then accept_ready(self, l) end
    end)
    -- a client that connected before the watch is accepted now
    loop:_push(function() accept_ready(self, l) end, nil)
  end
end

-- Accepts every waiting client; each gets a transport and a protocol.
accept_ready = function(self, l)
  local loop = self._loop
  while self._serving and l.key do
    local ok, fd, family, host, port = pcall(sock_accept, l.fd)
    if not ok then
      loop:call_exception_handler({message = "socket.accept() out of system resource",
        exception = fd})
      return
    end
    if fd == nil then return end
    local tr = new_transport(loop, fd, family)
    if family == "unix" then
      tr._extra.peername = host
    else
      tr._extra.peername = {host, port}
    end
    tr._server = self
    self:_attach(tr)
    local pok, proto = pcall(self._protocol_factory)
    if not pok then
      loop:call_exception_handler({message = "protocol_factory() failed", exception = proto})
      tr._server = false
      self:_detach(tr)
      close_fd_of(tr)
    else
      tr_attach(tr, proto, false)
    end
  end
end

function Server:get_loop() return self._loop._public end
function Server:is_serving() return self._serving end

function Server:close()
  local listeners = self._listeners
  if listeners == nil then return end
  self._listeners = nil
  self._serving = false
  for i = 1, #listeners do
    local l = listeners[i]
    if l.key then self._loop:_unwatch_fd(l.key) l.key = nil end
    fd_close(l.fd)
    if l.path and self._cleanup then os.remove(l.path) end
  end
  self.sockets = {}
  local f = self._serving_forever_fut
  if f and f._state == PENDING then f:cancel() end
  self._serving_forever_fut = false
  if self._active == 0 then wakeup(self) end
end

function Server:close_clients()
  for tr in pairs(self._clients) do tr:close() end
end

function Server:abort_clients()
  for tr in pairs(self._clients) do tr:abort() end
end

Server.start_serving = async(function(self)
  self:_start_serving()
  await(asyncio.sleep(0))
end, "Server.start_serving")

Server.wait_closed = async(function(self)
  local ws = self._waiters
  if ws == nil then return end
  local w = self._loop:create_future()
  ws[#ws + 1] = w
  await(w)
end, "Server.wait_closed")

Server.serve_forever = async(function(self)
  if self._serving_forever_fut then
    error(RuntimeError("server " .. tostring(self) .. " is already being awaited on serve_forever()"), 0)
  end
  if self._listeners == nil then
    error(RuntimeError("server " .. tostring(self) .. " is closed"), 0)
  end
  self:_start_serving()
  local f = self._loop:create_future()
  self._serving_forever_fut = f
  local ok, e = pcall(await, f)
  if self._serving_forever_fut == f then self._serving_forever_fut = false end
  if not ok then
    if isinstance(e, CancelledError) then
      self:close()
      await(self:wait_closed())
    end
    error(e, 0)
  end
end, "Server.serve_forever")

function Server:__close()
  self:close()
  if current_task() ~= nil then await(self:wait_closed()) end
end

function Server:__tostring()
  return string.format("<Server sockets=%d%s>", #self.sockets,
    self._serving and " serving" or "")
end

local function listen_all(loop, addrs, backlog)
  local listeners = {}
  for i = 1, #addrs do
    local a = addrs[i]
    local ok, fd = pcall(sock_listen, a[1], a[2], a[3], backlog)
    if not ok then
      for j = 1, #listeners do fd_close(listeners[j].fd) end
      error(fd, 0)
    end
    listeners[#listeners + 1] = {fd = fd, family = a[1],
      path = a[1] == "unix" and a[2] or nil}
  end
  return listeners
end

local function make_server(loop, protocol_factory, addrs, opts)
  local listeners = listen_all(loop, addrs, opts and opts.backlog or 100)
  local srv = Server(loop, listeners, protocol_factory, opts)
  if not (opts and opts.start_serving == false) then srv:_start_serving() end
  return srv
end

-- ---------------------------------------------------------------------
-- The loop's transport methods (Python's loop.create_connection, ...)
-- ---------------------------------------------------------------------

local function connected(tr, protocol_factory)
  local proto = protocol_factory()
  tr_attach(tr, proto, true)
  return tr, proto
end

function Loop:create_connection(protocol_factory, host, port, opts)
  local loop = self
  return async(function()
    local tr = connect_any(loop, resolve(loop, host, port, false, opts and opts.family))
    return connected(tr, protocol_factory)
  end, "create_connection")()
end

function Loop:create_unix_connection(protocol_factory, path, opts)
  local loop = self
  return async(function()
    local tr = connect_one(loop, "unix", path, 0)
    return connected(tr, protocol_factory)
  end, "create_unix_connection")()
end

function Loop:create_server(protocol_factory, host, port, opts)
  local loop = self
  return async(function()
    local addrs = resolve(loop, host, port, true, opts and opts.family)
    return make_server(loop, protocol_factory, addrs, opts)
  end, "create_server")()
end

function Loop:create_unix_server(protocol_factory, path, opts)
  local loop = self
  return async(function()
    if type(path) ~= "string" then error(TypeError("path must be a string"), 0) end
    return make_server(loop, protocol_factory, {{"unix", path, 0}}, opts)
  end, "create_unix_server")()
end

-- ---------------------------------------------------------------------
-- StreamReader
-- ---------------------------------------------------------------------

local StreamReader = new_class("StreamReader")
M.StreamReader = StreamReader

-- StreamReader(limit) or StreamReader{limit = }
function StreamReader:__init(limit)
  if type(limit) == "table" then limit = limit.limit end
  limit = limit or DEFAULT_LIMIT
  if type(limit) ~= "number" or limit <= 0 then
    error(ValueError("Limit cannot be <= 0"), 3)
  end
  self._limit = limit
  self._c, self._h, self._t, self._off, self._n = {}, 1, 0, 1, 0
  self._eof = false
  self._waiter = false
  self._exception = nil
  self._transport = false
  self._paused = false
end

function StreamReader:exception() return self._exception end

local function wakeup_waiter(self)
  local w = self._waiter
  if w then
    self._waiter = false
    if w._state == PENDING then set_result(w, nil) end
  end
end

function StreamReader:set_exception(exc)
  self._exception = exc
  local w = self._waiter
  if w then
    self._waiter = false
    if w._state == PENDING then set_exception(w, exc) end
  end
end

function StreamReader:set_transport(tr)
  if self._transport then error(RuntimeError("Transport already set"), 2) end
  self._transport = tr
end

local function maybe_resume_transport(self)
  if self._paused and self._n <= self._limit then
    self._paused = false
    self._transport:resume_reading()
  end
end

function StreamReader:feed_eof()
  self._eof = true
  wakeup_waiter(self)
end

function StreamReader:at_eof() return self._eof and self._n == 0 end

function StreamReader:feed_data(data)
  if self._eof then error(RuntimeError("feed_data after feed_eof"), 2) end
  local len = #data
  if len == 0 then return end
  local t = self._t + 1
  self._t = t
  self._c[t] = data
  local n = self._n + len
  self._n = n
  local w = self._waiter
  if w then
    self._waiter = false
    if w._state == PENDING then set_result(w, nil) end
  end
  local tr = self._transport
  if tr and not self._paused and n > 2 * self._limit then
    if pcall(tr.pause_reading, tr) then self._paused = true end
  end
end

-- Waits for feed_data or feed_eof (or an error).
local function wait_for_data(self, name)
  local w = self._waiter
  if w and w._state == PENDING then
    error(RuntimeError(name ..
      "() called while another coroutine is already waiting for incoming data"), 0)
  end
  if self._eof then error(RuntimeError("_wait_for_data after EOF"), 0) end
  if self._paused then
    self._paused = false
    self._transport:resume_reading()
  end
  w = running():create_future()
  self._waiter = w
  await(w)
end

-- The first n buffered bytes, removed (n <= self._n).
local function take(self, n)
  if n == 0 then return "" end
  local c, h, off = self._c, self._h, self._off
  local first = c[h]
  local avail = #first - off + 1
  self._n = self._n - n
  if n < avail then
    self._off = off + n
    return sub(first, off, off + n - 1)
  end
  if off > 1 then first = sub(first, off) end
  c[h] = nil
  h = h + 1
  local s
  if n == avail then
    s = first
    self._off = 1
  else
    local parts, np, need = {first}, 1, n - avail
    while true do
      local x = c[h]
      local len = #x
      np = np + 1
      if len <= need then
        parts[np] = x
        c[h] = nil
        h = h + 1
        need = need - len
        if need == 0 then
          self._off = 1
          break
        end
      else
        parts[np] = sub(x, 1, need)
        self._off = need + 1
        break
      end
    end
    s = concat(parts)
  end
  if h > self._t then
    self._h, self._t, self._off = 1, 0, 1
  else
    self._h = h
  end
  return s
end

local function take_all(self) return take(self, self._n) end

-- The logical position (1-based) of sep's first byte at or after logical
-- position start, or nil; each chunk is searched in place, and a sep that
-- spans chunks is found in a small window over the boundary.
local function find_sep(self, sep, start)
  local c, h, t, off = self._c, self._h, self._t, self._off
  local seplen = #sep
  local base = 0
  for i = h, t do
    local s = c[i]
    local o = i == h and off or 1
    local len = #s - o + 1
    if base + len >= start then
      local from = start - base
      if from < 1 then from = 1 end
      local p = find(s, sep, o + from - 1, true)
      if p then return base + p - o + 1 end
      if seplen > 1 and i < t then
        local tf = #s - seplen + 2
        if tf < o + from - 1 then tf = o + from - 1 end
        if tf <= #s then
          local parts, got, j = {sub(s, tf)}, 0, i + 1
          while got < seplen - 1 and j <= t do
            local x = sub(c[j], 1, seplen - 1 - got)
            parts[#parts + 1] = x
            got = got + #x
            j = j + 1
          end
          local q = find(concat(parts), sep, 1, true)
          if q then return base + tf - o + q end
        end
      end
    end
    base = base + len
  end
  return nil
end

local function incomplete(partial, expected)
  local e = IncompleteReadError(string.format(
    "%d bytes read on a total of %s expected bytes", #partial,
    expected ~= nil and tostring(expected) or "undefined"))
  e.partial, e.expected = partial, expected
  return e
end
M._incomplete = incomplete

local function overrun(msg, consumed)
  local e = LimitOverrunError(msg)
  e.consumed = consumed
  return e
end

local function readuntil(self, sep)
  if sep == nil then sep = "\n" end
  if type(sep) ~= "string" then error(TypeError("separator must be a string"), 0) end
  local seplen = #sep
  if seplen == 0 then error(ValueError("Separator should be at least one-byte string"), 0) end
  local exc = self._exception
  if exc ~= nil then error(exc, 0) end
  local offset = 1  -- where the search starts (Python's offset + 1)
  local isep
  while true do
    local buflen = self._n
    if buflen - offset + 1 >= seplen then
      isep = find_sep(self, sep, offset)
      if isep then break end
      offset = buflen + 2 - seplen
      if offset - 1 > self._limit then
        error(overrun("Separator is not found, and chunk exceed the limit", offset - 1), 0)
      end
    end
    if self._eof then
      error(incomplete(take_all(self), nil), 0)
    end
    wait_for_data(self, "readuntil")
    exc = self._exception
    if exc ~= nil then error(exc, 0) end
  end
  if isep - 1 > self._limit then
    error(overrun("Separator is found, but chunk is longer than limit", isep - 1), 0)
  end
  local chunk = take(self, isep - 1 + seplen)
  maybe_resume_transport(self)
  return chunk
end

-- readuntil(sep): the bytes up to and including sep (default "\n").
StreamReader.readuntil = async(readuntil, "StreamReader.readuntil")

-- readline(): a line with its "\n"; at EOF the partial line (or "").
StreamReader.readline = async(function(self)
  local ok, line = pcall(readuntil, self, "\n")
  if ok then return line end
  local e = line
  if isinstance(e, IncompleteReadError) then return e.partial end
  if isinstance(e, LimitOverrunError) then
    local consumed = e.consumed
    if self._n >= consumed + 1 and find_sep(self, "\n", consumed + 1) == consumed + 1 then
      take(self, consumed + 1)
    else
      take_all(self)
    end
    maybe_resume_transport(self)
    error(ValueError(e.message), 0)
  end
  error(e, 0)
end, "StreamReader.readline")

-- read(n): up to n bytes (at least one, but "" at EOF); n -1 or nil:
-- everything until EOF.
StreamReader.read = async(function(self, n)
  local exc = self._exception
  if exc ~= nil then error(exc, 0) end
  if n == 0 then return "" end
  if n == nil or n < 0 then
    while not self._eof do
      wait_for_data(self, "read")
      exc = self._exception
      if exc ~= nil then error(exc, 0) end
    end
    local s = take_all(self)
    maybe_resume_transport(self)
    return s
  end
  if self._n == 0 and not self._eof then
    wait_for_data(self, "read")
    exc = self._exception
    if exc ~= nil then error(exc, 0) end
  end
  local avail = self._n
  local s = take(self, n < avail and n or avail)
  maybe_resume_transport(self)
  return s
end, "StreamReader.read")

-- readexactly(n): n bytes, or IncompleteReadError (partial, expected) at EOF.
StreamReader.readexactly = async(function(self, n)
  if type(n) ~= "number" then error(TypeError("readexactly() needs a number"), 0) end
  if n < 0 then error(ValueError("readexactly size can not be less than zero"), 0) end
  local exc = self._exception
  if exc ~= nil then error(exc, 0) end
  if n == 0 then return "" end
  while self._n < n do
    if self._eof then error(incomplete(take_all(self), n), 0) end
    wait_for_data(self, "readexactly")
    exc = self._exception
    if exc ~= nil then error(exc, 0) end
  end
  local s = take(self, n)
  maybe_resume_transport(self)
  return s
end, "StreamReader.readexactly")

function StreamReader:__tostring()
  local info = {"StreamReader"}
  if self._n > 0 then info[#info + 1] = self._n .. " bytes" end
  if self._eof then info[#info + 1] = "eof" end
  if self._limit ~= DEFAULT_LIMIT then info[#info + 1] = "limit=" .. self._limit end
  if self._exception ~= nil then info[#info + 1] = "exception=" .. tostring(self._exception) end
  if self._paused then info[#info + 1] = "paused" end
  return "<" .. concat(info, " ") .. ">"
end

-- ---------------------------------------------------------------------
-- The protocol between a transport and a reader (with flow control)
-- ---------------------------------------------------------------------

local StreamWriter  -- below

local StreamReaderProtocol = new_class("StreamReaderProtocol")
M.StreamReaderProtocol = StreamReaderProtocol

function StreamReaderProtocol:__init(reader, client_connected_cb, loop)
  self._reader = reader
  self._cb = client_connected_cb or false
  self._loop = loop or running()
  self._paused = false
  self._drain_waiters = false
  self._connection_lost = false
  self._closed = self._loop:create_future()
  self._transport = false
  self._task = false
end

local function client_task_done(task)
  local proto = task._proto_of
  local tr = proto._transport
  if task:cancelled() then
    if tr then tr:close() end
    return
  end
  local exc = task:exception()
  if exc ~= nil then
    proto._loop:call_exception_handler({message = "Unhandled exception in client_connected_cb",
      exception = exc, transport = tr})
    if tr then tr:close() end
  end
end

function StreamReaderProtocol:connection_made(tr)
  local reader = self._reader
  if reader then reader:set_transport(tr) end
  self._transport = tr
  local cb = self._cb
  if cb then
    local writer = StreamWriter(tr, self, reader, self._loop)
    self._writer = writer
    local res = cb(reader, writer)
    if iscoroutine(res) then
      local task = self._loop:create_task(res)
      task._proto_of = self
      task:add_done_callback(client_task_done)
      self._task = task
    end
  end
end

function StreamReaderProtocol:data_received(data)
  local reader = self._reader
  if reader then reader:feed_data(data) end
end

function StreamReaderProtocol:eof_received()
  local reader = self._reader
  if reader then reader:feed_eof() end
  return true
end

function StreamReaderProtocol:pause_writing()
  self._paused = true
end

function StreamReaderProtocol:resume_writing()
  self._paused = false
  local ws = self._drain_waiters
  if ws then
    for i = 1, #ws do
      local w = ws[i]
      if w._state == PENDING then set_result(w, nil) end
    end
  end
end

function StreamReaderProtocol:connection_lost(exc)
  local reader = self._reader
  if reader then
    if exc == nil then reader:feed_eof() else reader:set_exception(exc) end
  end
  local closed = self._closed
  if closed._state == PENDING then
    if exc == nil then set_result(closed, nil) else set_exception(closed, exc) end
  end
  self._connection_lost = true
  local ws = self._drain_waiters
  if ws then
    for i = 1, #ws do
      local w = ws[i]
      if w._state == PENDING then
        if exc == nil then set_result(w, nil) else set_exception(w, exc) end
      end
    end
  end
  self._transport = false
  self._writer = nil
  self._task = false
end

local drain_helper = function(self)
  if self._connection_lost then error(ConnectionResetError("Connection lost"), 0) end
  if not self._paused then return end
  local w = self._loop:create_future()
  local ws = self._drain_waiters
  if not ws then ws = {} self._drain_waiters = ws end
  ws[#ws + 1] = w
  local ok, e = pcall(await, w)
  for i = #ws, 1, -1 do
    if ws[i] == w then table.remove(ws, i) break end
  end
  if not ok then error(e, 0) end
end

-- ---------------------------------------------------------------------
-- StreamWriter
-- ---------------------------------------------------------------------

StreamWriter = new_class("StreamWriter")
M.StreamWriter = StreamWriter

function StreamWriter:__init(transport, protocol, reader, loop)
  self._transport = transport
  self._protocol = protocol
  self._reader = reader or false
  self._loop = loop or running()
  self.transport = transport
end

function StreamWriter:write(data)
  return self._transport:write(data)
end

function StreamWriter:writelines(list)
  return self._transport:write(concat(list))
end

function StreamWriter:write_eof() return self._transport:write_eof() end
function StreamWriter:can_write_eof() return self._transport:can_write_eof() end
function StreamWriter:close() return self._transport:close() end
function StreamWriter:is_closing() return self._transport:is_closing() end
function StreamWriter:get_extra_info(name, default)
  return self._transport:get_extra_info(name, default)
end

-- wait_closed(): until the connection is closed (raising what ended it).
StreamWriter.wait_closed = async(function(self)
  return await(self._protocol._closed)
end, "StreamWriter.wait_closed")

-- drain(): waits while the write buffer is above its high-water mark.
local drain_wait = async(function(self)
  local reader = self._reader
  if reader then
    local exc = reader._exception
    if exc ~= nil then error(exc, 0) end
  end
  if self._transport._closing then
    -- let connection_lost run first, which a closing transport calls soon
    await(asyncio.sleep(0))
  end
  local proto = self._protocol
  if proto._connection_lost or proto._paused then drain_helper(proto) end
end, "StreamWriter.drain")

-- The common case, nothing to wait for, is the loop's one finished future:
-- a write-drain pair then makes no coroutine object.
function StreamWriter:drain()
  local reader, proto = self._reader, self._protocol
  if not (reader and reader._exception ~= nil) and not self._transport._closing
      and not proto._connection_lost and not proto._paused then
    return running()._done
  end
  return drain_wait(self)
end

function StreamWriter:__close() self:close() end

function StreamWriter:__tostring()
  return "<StreamWriter transport=" .. tostring(self._transport) .. ">"
end

-- ---------------------------------------------------------------------
-- The stream functions
-- ---------------------------------------------------------------------

local function limit_of(opts)
  return opts and opts.limit or DEFAULT_LIMIT
end

local function reader_and_writer(loop, tr, limit)
  local reader = StreamReader(limit)
  local proto = StreamReaderProtocol(reader, nil, loop)
  tr_attach(tr, proto, true)
  return reader, StreamWriter(tr, proto, reader, loop)
end

-- open_connection(host, port, {limit=}) -> reader, writer
M.open_connection = async(function(host, port, opts)
  local loop = running()
  local tr = connect_any(loop, resolve(loop, host, port, false, opts and opts.family))
  return reader_and_writer(loop, tr, limit_of(opts))
end, "open_connection")

-- open_unix_connection(path, {limit=}) -> reader, writer
M.open_unix_connection = async(function(path, opts)
  local loop = running()
  if type(path) ~= "string" then error(TypeError("path must be a string"), 0) end
  local tr = connect_one(loop, "unix", path, 0)
  return reader_and_writer(loop, tr, limit_of(opts))
end, "open_unix_connection")

local function stream_factory(loop, cb, limit)
  return function()
    return StreamReaderProtocol(StreamReader(limit), cb, loop)
  end
end

-- start_server(client_connected_cb, host, port, {limit=, backlog=}) ->
-- Server; cb(reader, writer) for each client (an async function's
-- coroutine runs as a task).
M.start_server = async(function(cb, host, port, opts)
  local loop = running()
  local addrs = resolve(loop, host, port, true, opts and opts.family)
  return make_server(loop, stream_factory(loop, cb, limit_of(opts)), addrs, opts)
end, "start_server")

-- start_unix_server(client_connected_cb, path, {limit=, backlog=}) -> Server
M.start_unix_server = async(function(cb, path, opts)
  local loop = running()
  if type(path) ~= "string" then error(TypeError("path must be a string"), 0) end
  return make_server(loop, stream_factory(loop, cb, limit_of(opts)),
    {{"unix", path, 0}}, opts)
end, "start_unix_server")

return M
