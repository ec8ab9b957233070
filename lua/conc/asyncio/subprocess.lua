-- conc.asyncio.subprocess: Python's asyncio.subprocess over the loop's
-- edge-triggered fd watches. A child starts with posix_spawn (core.spawn);
-- each PIPE is a socket pair whose one end the child gets (ours closes
-- right after the spawn) and whose other end we watch: stdin is a writer
-- (write, drain, close), stdout and stderr are readers (read, readline,
-- readexactly, readuntil, at_eof). The child's exit comes through a pidfd:
-- readable once it ended, then core.child_poll reaps it and gives the code
-- (-N: killed by signal N), which lands in proc.returncode and wakes the
-- waiters of proc:wait().
--
--   local proc = await(asyncio.create_subprocess_exec("cat",
--     {stdin = asyncio.PIPE, stdout = asyncio.PIPE}))
--   local out, err = await(proc:communicate("hello"))
--
-- Python's keyword arguments are a trailing options table: stdin, stdout,
-- stderr (asyncio.PIPE, asyncio.DEVNULL, asyncio.STDOUT for stderr, an fd
-- of ours, or nil: the child shares ours), env (a table K = V or a list of
-- "K=V": the child's whole environment), limit (the readers' buffer limit
-- for readline/readuntil).
local core = require "conc.core"
local class = require "conc.class"
local errors = require "conc.errors"
local asyncio = require "conc.asyncio"

local M = {}

local async, await = asyncio.async, asyncio.await
local set_result, set_exception = asyncio._set_result, asyncio._set_exception
local isinstance = class.isinstance
local type, error, pcall, tostring = type, error, pcall, tostring
local concat = table.concat
local fd_read, fd_write, fd_close = core.fd_read, core.fd_write, core.fd_close
-- core.fd_pair makes both ends non-blocking; core.fd_blocking(fd) makes
-- the child's end block again
local fd_blocking = core.fd_blocking

local ValueError, TypeError = errors.ValueError, errors.TypeError
local RuntimeError = errors.RuntimeError

-- Python's values (negative: an fd of ours is >= 0)
M.PIPE, M.STDOUT, M.DEVNULL = -1, -2, -3
local PIPE, STDOUT, DEVNULL = M.PIPE, M.STDOUT, M.DEVNULL

local DEFAULT_LIMIT = 65536
local READ_MAX = 65536

local function pending(f) return f ~= nil and not f:done() end

-- ---------------------------------------------------------------------
-- The readers: a child's stdout and stderr
-- ---------------------------------------------------------------------

local StreamReader = class.class(nil, "StreamReader")
StreamReader.__module = "conc.asyncio.subprocess"
StreamReader.__qualname = "StreamReader"
M.StreamReader = StreamReader

function StreamReader:__init(limit, loop)
  self._limit = limit or DEFAULT_LIMIT
  self._loop = loop or asyncio._running()
  self._buf = ""        -- what has come, consolidated
  self._chunks = {}     -- what came since, to join on the next look
  self._eof = false
  self._waiter = nil
  self._exception = nil
end

function StreamReader:__tostring()
  local info = {"StreamReader"}
  local n = #self:_data()
  if n > 0 then info[#info + 1] = n .. " bytes" end
  if self._eof then info[#info + 1] = "eof" end
  if self._exception ~= nil then info[#info + 1] = "exception=" .. tostring(self._exception) end
  return "<" .. concat(info, " ") .. ">"
end

function StreamReader:_data()
  local chunks = self._chunks
  if #chunks > 0 then
    self._buf = self._buf .. concat(chunks)
    self._chunks = {}
  end
  return self._buf
end

function StreamReader:_wake()
  local w = self._waiter
  if w ~= nil then
    self._waiter = nil
    if not w:done() then set_result(w, nil) end
  end
end

function StreamReader:exception() return self._exception end

function StreamReader:set_exception(e)
  self._exception = e
  local w = self._waiter
  if w ~= nil then
    self._waiter = nil
    if not w:done() then set_exception(w, e) end
  end
end

function StreamReader:feed_data(s)
  if self._eof then error(RuntimeError("feed_data after feed_eof"), 2) end
  if s == "" then return end
  local chunks = self._chunks
  chunks[#chunks + 1] = s
  self:_wake()
end

function StreamReader:feed_eof()
  self._eof = true
  self:_wake()
end

function StreamReader:at_eof()
  return self._eof and self._buf == "" and #self._chunks == 0
end

-- Waits for feed_data, feed_eof or set_exception.
function StreamReader:_wait_for_data(name)
  if self._waiter ~= nil then
    error(RuntimeError(name .. "() called while another coroutine is already " ..
      "waiting for incoming data"), 3)
  end
  local w = self._loop:create_future()
  self._waiter = w
  local ok, e = pcall(await, w)
  if self._waiter == w then self._waiter = nil end
  if not ok then error(e, 0) end
end

function StreamReader:_check()
  if self._exception ~= nil then error(self._exception, 0) end
end

-- read(n): up to n bytes (n nil or negative: everything to the end);
-- "" at the end.
function StreamReader:_read(n)
  self:_check()
  if n == 0 then return "" end
  if n == nil or n < 0 then
    while not self._eof do
      self:_wait_for_data("read")
      self:_check()
    end
    local all = self:_data()
    self._buf = ""
    return all
  end
  while self:_data() == "" and not self._eof do
    self:_wait_for_data("read")
    self:_check()
  end
  local buf = self._buf
  local s = buf:sub(1, n)
  self._buf = buf:sub(n + 1)
  return s
end

local function incomplete(partial, expected)
  local e = errors.IncompleteReadError(string.format(
    "%d bytes read on a total of %s expected bytes", #partial,
    expected and tostring(expected) or "undefined"))
  e.partial, e.expected = partial, expected
  return e
end

function StreamReader:_readexactly(n)
  if type(n) ~= "number" or n < 0 then
    error(ValueError("readexactly size can not be less than zero"), 3)
  end
  self:_check()
  if n == 0 then return "" end
  while #self:_data() < n do
    if self._eof then
      local partial = self._buf
      self._buf = ""
      error(incomplete(partial, n), 0)
    end
    self:_wait_for_data("readexactly")
    self:_check()
  end
  local buf = self._buf
  self._buf = buf:sub(n + 1)
  return buf:sub(1, n)
end

local function overrun(message, consumed)
  local e = errors.LimitOverrunError(message)
  e.consumed = consumed
  return e
end

function StreamReader:_readuntil(sep)
  sep = sep or "\n"
  if type(sep) ~= "string" or sep == "" then
    error(ValueError("Separator should be at least one-byte string"), 3)
  end
  self:_check()
  local limit, seplen, offset = self._limit, #sep, 1
  while true do
    local buf = self:_data()
    local i = buf:find(sep, offset, true)
    if i ~= nil then
      if i - 1 > limit then
        error(overrun("Separator is found, but chunk is longer than limit", i - 1), 0)
      end
      self._buf = buf:sub(i + seplen)
      return buf:sub(1, i + seplen - 1)
    end
    offset = math.max(1, #buf - seplen + 2)
    if offset - 1 > limit then
      error(overrun("Separator is not found, and chunk exceed the limit", offset - 1), 0)
    end
    if self._eof then
      self._buf = ""
      error(incomplete(buf, nil), 0)
    end
    self:_wait_for_data("readuntil")
    self:_check()
  end
end

function StreamReader:_readline()
  local ok, line = pcall(self._readuntil, self, "\n")
  if ok then return line end
  local e = line
  if isinstance(e, errors.IncompleteReadError) then return e.partial end
  if isinstance(e, errors.LimitOverrunError) then
    local buf = self:_data()
    if buf:sub(e.consumed + 1, e.consumed + 1) == "\n" then
      self._buf = buf:sub(e.consumed + 2)
    else
      self._buf = ""
    end
    error(ValueError(e.message), 0)
  end
  error(e, 0)
end

StreamReader.read = async(StreamReader._read, "StreamReader.read")
StreamReader.readexactly = async(StreamReader._readexactly, "StreamReader.readexactly")
StreamReader.readuntil = async(StreamReader._readuntil, "StreamReader.readuntil")
StreamReader.readline = async(StreamReader._readline, "StreamReader.readline")

-- Python's `async for line in reader`: for line in reader:lines() do …
-- end, inside a task (each step awaits the next line; "" ends it).
function StreamReader:lines()
  return function()
    local line = self:_readline()
    if line == "" then return nil end
    return line
  end
end

-- Our end of a child's stdout or stderr: read until EAGAIN on each edge;
-- at the end (or an error) the fd is unwatched and closed.
function StreamReader:_attach(fd)
  self._fd = fd
  self._key = self._loop:_watch_fd(fd, function(code)
    if code & 5 == 0 then return end
    self:_pump()
  end)
end

function StreamReader:_detach()
  local fd = self._fd
  if fd == nil then return end
  self._fd = nil
  self._loop:_unwatch_fd(self._key)
  fd_close(fd)
end

function StreamReader:_pump()
  while self._fd ~= nil do
    local ok, s = pcall(fd_read, self._fd, READ_MAX)
    if not ok then
      self:_detach()
      self._eof = true
      self:set_exception(s)
      return
    end
    if s == false then return end
    if s == "" then
      self:_detach()
      self:feed_eof()
      return
    end
    self:feed_data(s)
  end
end

-- ---------------------------------------------------------------------
-- The writer: a child's stdin
-- ---------------------------------------------------------------------

local StreamWriter = class.class(nil, "StreamWriter")
StreamWriter.__module = "conc.asyncio.subprocess"
StreamWriter.__qualname = "StreamWriter"
M.StreamWriter = StreamWriter

function StreamWriter:__init(fd, loop)
  self._loop = loop
  self._fd = fd
  self._pend = {}       -- strings not written yet; the first from _at on
  self._at = 1
  self._closing = false
  self._closed = false
  self._lost = false    -- the child's end went away
  self._error = nil     -- what the write that found it out raised
  self._drainers = {}
  self._closers = {}
  self._key = loop:_watch_fd(fd, function(code) self:_on_events(code) end)
end

function StreamWriter:__tostring()
  local n = 0
  for i = 1, #self._pend do n = n + #self._pend[i] end
  n = n - (self._at - 1)
  return string.format("<StreamWriter fd=%s%s%s>", tostring(self._fd),
    n > 0 and (" bufsize=" .. n) or "", self._closing and " closing" or "")
end

local function settle_all(list, e)
  for i = 1, #list do
    local f = list[i]
    list[i] = nil
    if not f:done() then
      if e ~= nil then set_exception(f, e) else set_result(f, nil) end
    end
  end
end

-- The fd goes (its data written, or lost); e: why, if it was lost.
function StreamWriter:_finish(e)
  if self._closed then return end
  self._closed = true
  self._closing = true
  if e ~= nil then
    self._lost = true
    self._error = e
  end
  self._pend, self._at = {}, 1
  local fd = self._fd
  self._fd = nil
  self._loop:_unwatch_fd(self._key)
  fd_close(fd)
  settle_all(self._drainers, self._lost and self:_lost_error() or nil)
  settle_all(self._closers, nil)
end

function StreamWriter:_lost_error()
  return self._error or errors.ConnectionResetError("Connection lost")
end

-- Writes what is pending until the socket is full.
function StreamWriter:_flush()
  local pend = self._pend
  while #pend > 0 do
    local s = pend[1]
    local ok, n = pcall(fd_write, self._fd, s, self._at)
    if not ok then
      self:_finish(n)
      return
    end
    if n == 0 then return end
    self._at = self._at + n
    if self._at > #s then
      table.remove(pend, 1)
      self._at = 1
    end
  end
  if self._closing then
    self:_finish(nil)
  else
    settle_all(self._drainers, nil)
  end
end

function StreamWriter:_on_events(code)
  if self._closed then return end
  if code & 2 ~= 0 and #self._pend > 0 then self:_flush() end
  if self._closed then return end
  if code & 4 ~= 0 then
    -- the child closed its stdin (or ended): data still pending is lost
    if #self._pend > 0 then
      self:_finish(errors.BrokenPipeError("broken pipe"))
    else
      self._lost = true
      self:_finish(nil)
    end
  end
end

function StreamWriter:write(data)
  if type(data) ~= "string" then
    error(TypeError("data argument must be a string, not " .. type(data)), 2)
  end
  if data == "" or self._closing or self._lost then return end
  local pend = self._pend
  pend[#pend + 1] = data
  if #pend == 1 then self:_flush() end
end

function StreamWriter:writelines(list)
  for i = 1, #list do self:write(list[i]) end
end

function StreamWriter:can_write_eof() return true end

-- Closes once what was written went out (the child reads the end then).
function StreamWriter:close()
  if self._closing then return end
  self._closing = true
  if #self._pend == 0 then self:_finish(nil) end
end
StreamWriter.write_eof = StreamWriter.close

function StreamWriter:is_closing() return self._closing end

function StreamWriter:get_extra_info(name, default)
  if name == "fileno" then return self._fd end
  return default
end

StreamWriter.drain = async(function(self)
  if self._lost then error(self:_lost_error(), 0) end
  if #self._pend == 0 then
    if self._closing then await(asyncio.sleep(0)) end
    return
  end
  local f = self._loop:create_future()
  local d = self._drainers
  d[#d + 1] = f
  await(f)
end, "StreamWriter.drain")

StreamWriter.wait_closed = async(function(self)
  if self._closed then return end
  local f = self._loop:create_future()
  local c = self._closers
  c[#c + 1] = f
  await(f)
end, "StreamWriter.wait_closed")

-- ---------------------------------------------------------------------
-- Process
-- ---------------------------------------------------------------------

local Process = class.class(nil, "Process")
Process.__module = "conc.asyncio.subprocess"
Process.__qualname = "Process"
M.Process = Process

function Process:__init()
  error(TypeError("make processes with asyncio.create_subprocess_exec() " ..
    "or create_subprocess_shell()"), 3)
end

function Process:__tostring()
  return string.format("<Process %d>", self.pid)
end

-- The child ended with code: it is reaped; the waiters learn it.
function Process:_exited(code)
  self.returncode = code
  local key = self._pidkey
  if key ~= nil then
    self._pidkey = nil
    self._loop:_unwatch_fd(key)
  end
  if self._pidfd ~= nil then
    fd_close(self._pidfd)
    self._pidfd = nil
  end
  local ws = self._waiters
  self._waiters = {}
  for i = 1, #ws do
    if not ws[i]:done() then set_result(ws[i], code) end
  end
end

function Process:_poll()
  if self.returncode ~= nil then return true end
  local code = core.child_poll(self.pid)
  if code == nil then return false end
  self:_exited(code)
  return true
end

-- Watches for the child's end: its pidfd, or (no pidfd) a poll now and then.
function Process:_watch_exit()
  local ok, fd = pcall(core.pidfd, self.pid)
  if ok then
    self._pidfd = fd
    self._pidkey = self._loop:_watch_fd(fd, function(code)
      if code & 5 ~= 0 then self:_poll() end
    end)
    return
  end
  local loop, delay = self._loop, 0.001
  local function tick()
    if self:_poll() then return end
    delay = math.min(delay * 2, 0.05)
    loop:call_later(delay, tick)
  end
  loop:call_soon(tick)
end

Process.wait = async(function(self)
  if self.returncode ~= nil then return self.returncode end
  local f = self._loop:create_future()
  local ws = self._waiters
  ws[#ws + 1] = f
  return await(f)
end, "Process.wait")

local function is_lost(e)
  return isinstance(e, errors.BrokenPipeError) or
    isinstance(e, errors.ConnectionResetError)
end

local feed_stdin = async(function(stdin)
  local ok, e = pcall(function() await(stdin:drain()) end)
  if not ok and not is_lost(e) then error(e, 0) end
  stdin:close()
end, "Process._feed_stdin")

local read_all = async(function(reader)
  return reader:_read(-1)
end, "Process._read_stream")

local noop = async(function() return nil end, "Process._noop")

-- communicate(input): input written to stdin, which is closed then; stdout
-- and stderr read to their ends, together; the child waited for. Returns
-- out, err (nil for a stream that is no PIPE).
Process.communicate = async(function(self, input)
  if input ~= nil and type(input) ~= "string" then
    error(TypeError("input must be a string, not " .. type(input)), 2)
  end
  local stdin
  if self.stdin ~= nil then
    -- written now, before anything waits: a child that reads at once
    -- finds it there
    if input ~= nil then self.stdin:write(input) end
    stdin = feed_stdin(self.stdin)
  else
    stdin = noop()
  end
  local out = self.stdout ~= nil and read_all(self.stdout) or noop()
  local err = self.stderr ~= nil and read_all(self.stderr) or noop()
  local r = await(asyncio.gather(stdin, out, err))
  await(self:wait())
  return r[2], r[3]
end, "Process.communicate")

function Process:send_signal(sig)
  if self.returncode ~= nil then error(errors.ProcessLookupError(), 2) end
  core.child_kill(self.pid, sig)
end

function Process:terminate() self:send_signal(15) end
function Process:kill() self:send_signal(9) end

-- ---------------------------------------------------------------------
-- Starting a child
-- ---------------------------------------------------------------------

local known_opts = {stdin = true, stdout = true, stderr = true, env = true,
  limit = true}

local function env_list(env)
  if env == nil then return nil end
  if type(env) ~= "table" then
    error(TypeError("env must be a table, not " .. type(env)), 4)
  end
  local list = {}
  for i = 1, #env do list[i] = env[i] end
  local keys = {}
  for k in pairs(env) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do list[#list + 1] = k .. "=" .. tostring(env[k]) end
  return list
end

local function spawn(argv, search, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not known_opts[k] then
      error(TypeError("unexpected option '" .. tostring(k) .. "'"), 3)
    end
  end
  local env = env_list(opts.env)
  local loop = asyncio._running()
  local made = {}       -- every fd opened here, closed if the spawn fails
  local theirs = {}     -- the child's copies, closed after the spawn
  local ours = {}       -- our ends of the PIPEs, by stream index
  local child = {}
  local function open(v, i)
    if v == nil then return i - 1 end
    if v == PIPE then
      local a, b = core.fd_pair()
      made[#made + 1], made[#made + 2] = a, b
      -- the child's end must block: a program reading an empty
      -- non-blocking stdin (or writing a full stdout) fails with EAGAIN
      fd_blocking(b)
      theirs[#theirs + 1] = b
      ours[i] = a
      return b
    elseif v == DEVNULL then
      local fd = core.devnull()
      made[#made + 1] = fd
      theirs[#theirs + 1] = fd
      return fd
    elseif v == STDOUT then
      if i ~= 3 then error(ValueError("STDOUT can only be used for stderr"), 4) end
      return child[2]
    elseif math.type(v) == "integer" and v >= 0 then
      return v
    end
    error(ValueError("invalid " .. ({"stdin", "stdout", "stderr"})[i] ..
      ": " .. tostring(v)), 4)
  end
  local ok, e = pcall(function()
    child[1] = open(opts.stdin, 1)
    child[2] = open(opts.stdout, 2)
    child[3] = open(opts.stderr, 3)
    return core.spawn(argv, search, env, child)
  end)
  if not ok then
    for i = 1, #made do fd_close(made[i]) end
    error(e, 0)
  end
  for i = 1, #theirs do fd_close(theirs[i]) end
  local p = setmetatable({pid = e, returncode = nil, _loop = loop,
    _waiters = {}, _args = argv}, Process)
  if ours[1] then p.stdin = StreamWriter(ours[1], loop) end
  if ours[2] then
    p.stdout = StreamReader(opts.limit, loop)
    p.stdout:_attach(ours[2])
  end
  if ours[3] then
    p.stderr = StreamReader(opts.limit, loop)
    p.stderr:_attach(ours[3])
  end
  p:_watch_exit()
  return p
end

-- The arguments and the trailing options table of a call.
local function split_args(...)
  local n = select("#", ...)
  local args = {...}
  local opts
  if n > 0 and type(args[n]) == "table" and getmetatable(args[n]) == nil then
    opts = args[n]
    args[n] = nil
    n = n - 1
  end
  return args, n, opts
end

-- create_subprocess_exec(program, arg1, …, {stdin=, stdout=, stderr=,
-- env=, limit=}) -> Process; program is looked up in PATH unless it has
-- a slash.
M.create_subprocess_exec = async(function(program, ...)
  local args, n, opts = split_args(...)
  local argv = {program}
  for i = 1, n do argv[i + 1] = args[i] end
  return spawn(argv, true, opts)
end, "create_subprocess_exec")

-- create_subprocess_shell(cmd, opts) -> Process of /bin/sh -c cmd
M.create_subprocess_shell = async(function(cmd, opts)
  if type(cmd) ~= "string" then
    error(ValueError("cmd must be a string"), 2)
  end
  return spawn({"/bin/sh", "-c", cmd}, false, opts)
end, "create_subprocess_shell")

return M
