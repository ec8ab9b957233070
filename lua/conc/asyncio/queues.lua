-- conc.asyncio.queues: Python's asyncio queues (Queue, PriorityQueue,
-- LifoQueue), as in CPython's Lib/asyncio/queues.py (3.13), shutdown
-- included. They are for tasks of one event loop, not for threads (that is
-- conc.queue); a queue binds to the loop that first waits on it.
--
-- put(item), get() and join() are async methods: `await(q:put(x))`,
-- `local x = await(q:get())`. put_nowait raises QueueFull, get_nowait
-- QueueEmpty, and after shutdown() put raises QueueShutDown, as get does
-- once the queue is empty. maxsize is a field (0 or less: unbounded).
--
-- A PriorityQueue gives its smallest item first, by <, with a table
-- ordered as Python orders a tuple (by t[1], then t[2], ...: {priority,
-- data}); equal items come out in the order they went in.
--
-- Items live in arrays whose ends are counted explicitly. A put or get that
-- needs no wait makes no future.
local asyncio = require "conc.asyncio"
local class = require "conc.class"
local errors = require "conc.errors"
local locks = require "conc.asyncio.locks"

local M = {}

local async, await = asyncio.async, asyncio.await
local await_future = asyncio._await_future
local current_task = asyncio._current_task
local set_result = asyncio._set_result
local new_future = locks._new_future
local dq = locks._deque
local dq_new, dq_push, dq_popleft, dq_remove = dq.new, dq.push, dq.popleft,
  dq.remove
local pcall, error, type, getmetatable = pcall, error, type, getmetatable

local QueueEmpty = errors.QueueEmpty
local QueueFull = errors.QueueFull
local QueueShutDown = errors.QueueShutDown
M.QueueEmpty, M.QueueFull, M.QueueShutDown = QueueEmpty, QueueFull,
  QueueShutDown

-- ---------------------------------------------------------------------
-- Queue (FIFO)
-- ---------------------------------------------------------------------

local Queue = class.class(nil, "Queue")
Queue.__module = "conc.asyncio.queues"
Queue.__qualname = "Queue"
M.Queue = Queue

-- Queue([maxsize])
function Queue:__init(maxsize)
  if maxsize == nil then maxsize = 0 end
  if type(maxsize) ~= "number" then
    error(errors.TypeError("maxsize must be a number"), 3)
  end
  self.maxsize = maxsize
  self._getters = dq_new()
  self._putters = dq_new()
  self._unfinished_tasks = 0
  self._finished = locks.Event()
  self._finished:set()
  self._is_shutdown = false
  self._loop = false
  self:_init(maxsize)
end

-- The storage, which subclasses replace: items at _queue[_h .. _t].
function Queue:_init()
  self._queue = {}
  self._h, self._t = 1, 0
end

function Queue:_qsize() return self._t - self._h + 1 end

function Queue:_put(item)
  local t = self._t + 1
  self._t = t
  self._queue[t] = item
end

function Queue:_get()
  local h, q = self._h, self._queue
  local item = q[h]
  q[h] = nil
  if h == self._t then self._h, self._t = 1, 0 else self._h = h + 1 end
  return item
end

-- Wakes the first waiter not done yet (popping those before it).
local function wakeup_next(waiters)
  while true do
    local w = dq_popleft(waiters)
    if w == nil then return end
    if not w:done() then
      set_result(w, nil)
      return
    end
  end
end

function Queue:qsize() return self:_qsize() end
function Queue:empty() return self:_qsize() == 0 end

function Queue:full()
  local m = self.maxsize
  return m > 0 and self:_qsize() >= m
end

function Queue:put_nowait(item)
  if self._is_shutdown then error(QueueShutDown(), 2) end
  if self:full() then error(QueueFull(), 2) end
  self:_put(item)
  self._unfinished_tasks = self._unfinished_tasks + 1
  self._finished._value = false  -- _finished:clear()
  wakeup_next(self._getters)
end

function Queue:get_nowait()
  if self:_qsize() == 0 then
    if self._is_shutdown then error(QueueShutDown(), 2) end
    error(QueueEmpty(), 2)
  end
  local item = self:_get()
  wakeup_next(self._putters)
  return item
end

-- Waits in deque w for a wake; on an error (a cancellation), leaves w and
-- passes a wake it got on to the next waiter if `can` still holds.
local function wait_turn(self, w, can)
  local task = current_task()
  local fut = new_future(self, task)
  dq_push(w, fut)
  local ok, e = pcall(await_future, fut, task)
  if not ok then
    fut:cancel()  -- in case it is not done yet
    dq_remove(w, fut)  -- a wake or shutdown may have taken it out already
    if can(self) and not fut:cancelled() then wakeup_next(w) end
    error(e, 0)
  end
end

local function not_full(self) return not self:full() end
local function not_empty(self) return self:_qsize() > 0 end

Queue.put = async(function(self, item)
  while self:full() do
    if self._is_shutdown then error(QueueShutDown(), 0) end
    wait_turn(self, self._putters, not_full)
  end
  return self:put_nowait(item)
end, "Queue.put")

Queue.get = async(function(self)
  while self:_qsize() == 0 do
    if self._is_shutdown then error(QueueShutDown(), 0) end
    wait_turn(self, self._getters, not_empty)
  end
  return self:get_nowait()
end, "Queue.get")

function Queue:task_done()
  local n = self._unfinished_tasks
  if n <= 0 then
    error(errors.ValueError("task_done() called too many times"), 2)
  end
  self._unfinished_tasks = n - 1
  if n == 1 then self._finished:set() end
end

Queue.join = async(function(self)
  if self._unfinished_tasks > 0 then await(self._finished:wait()) end
end, "Queue.join")

-- shutdown([immediate]): put raises QueueShutDown from now on, get once
-- the queue is empty; immediate empties it first (counting its items as
-- done). Blocked getters and putters wake up to find out.
function Queue:shutdown(immediate)
  self._is_shutdown = true
  if immediate then
    while self:_qsize() > 0 do
      self:_get()
      if self._unfinished_tasks > 0 then
        self._unfinished_tasks = self._unfinished_tasks - 1
      end
    end
    if self._unfinished_tasks == 0 then self._finished:set() end
  end
  for _, w in ipairs({self._getters, self._putters}) do
    while true do
      local fut = dq_popleft(w)
      if fut == nil then break end
      if not fut:done() then set_result(fut, nil) end
    end
  end
end

function Queue:__tostring()
  local mt = getmetatable(self)
  local s = string.format("<%s at %p maxsize=%s", mt.__qualname or mt.__name,
    self, tostring(self.maxsize))
  local g, p = dq.len(self._getters), dq.len(self._putters)
  if g > 0 then s = s .. " _getters[" .. g .. "]" end
  if p > 0 then s = s .. " _putters[" .. p .. "]" end
  if self._unfinished_tasks > 0 then s = s .. " tasks=" .. self._unfinished_tasks end
  if self._is_shutdown then s = s .. " shutdown" end
  return s .. ">"
end

-- ---------------------------------------------------------------------
-- PriorityQueue: a binary heap, ties broken by arrival
-- ---------------------------------------------------------------------

local PriorityQueue = Queue:extend("PriorityQueue")
PriorityQueue.__module = "conc.asyncio.queues"
PriorityQueue.__qualname = "PriorityQueue"
M.PriorityQueue = PriorityQueue

-- a < b, with tables (without a __lt of their own) as Python's tuples.
local function less(a, b)
  if type(a) == "table" and type(b) == "table" then
    local mt = getmetatable(a)
    if not (mt and mt.__lt) then
      local na, nb = #a, #b
      for i = 1, na < nb and na or nb do
        local x, y = a[i], b[i]
        if x ~= y then
          if less(x, y) then return true end
          if less(y, x) then return false end
        end
      end
      return na < nb
    end
  end
  return a < b
end
M._less = less

function PriorityQueue:_init()
  self._queue = {}   -- the heap of items, 1 .. _n
  self._seq = {}     -- the arrival number of each
  self._n = 0
  self._count = 0
end

function PriorityQueue:_qsize() return self._n end

local function before(items, seqs, i, j)
  local a, b = items[i], items[j]
  if less(a, b) then return true end
  if less(b, a) then return false end
  return seqs[i] < seqs[j]
end

function PriorityQueue:_put(item)
  local items, seqs = self._queue, self._seq
  local n = self._n + 1
  local c = self._count + 1
  self._n, self._count = n, c
  items[n], seqs[n] = item, c
  local i = n
  while i > 1 do  -- sift up
    local p = i // 2
    if not before(items, seqs, i, p) then break end
    items[i], items[p] = items[p], items[i]
    seqs[i], seqs[p] = seqs[p], seqs[i]
    i = p
  end
end

function PriorityQueue:_get()
  local items, seqs = self._queue, self._seq
  local n = self._n
  local top = items[1]
  items[1], seqs[1] = items[n], seqs[n]
  items[n], seqs[n] = nil, nil
  n = n - 1
  self._n = n
  local i = 1
  while true do  -- sift down
    local l = 2 * i
    if l > n then break end
    local m = l
    if l + 1 <= n and before(items, seqs, l + 1, l) then m = l + 1 end
    if not before(items, seqs, m, i) then break end
    items[i], items[m] = items[m], items[i]
    seqs[i], seqs[m] = seqs[m], seqs[i]
    i = m
  end
  return top
end

-- ---------------------------------------------------------------------
-- LifoQueue: a stack
-- ---------------------------------------------------------------------

local LifoQueue = Queue:extend("LifoQueue")
LifoQueue.__module = "conc.asyncio.queues"
LifoQueue.__qualname = "LifoQueue"
M.LifoQueue = LifoQueue

function LifoQueue:_init()
  self._queue = {}
  self._n = 0
end

function LifoQueue:_qsize() return self._n end

function LifoQueue:_put(item)
  local n = self._n + 1
  self._n = n
  self._queue[n] = item
end

function LifoQueue:_get()
  local n = self._n
  local q = self._queue
  local item = q[n]
  q[n] = nil
  self._n = n - 1
  return item
end

return M
