-- conc.asyncio.locks: Python's asyncio synchronization primitives (Lock,
-- Event, Condition, Semaphore, BoundedSemaphore, Barrier), as in CPython's
-- Lib/asyncio/locks.py (3.13): the same FIFO fairness, the same handling of
-- a waiter cancelled after it was woken. They are for tasks of one event
-- loop, not for threads: an object binds to the loop that first waits on it.
--
-- `async with lock:` translates in two ways, both released on error too:
--
--   await(lock:acquire()); local _ <close> = lock     -- acquire, then guard
--   local _ <close> = await(lock:enter())             -- enter acquires, returns lock
--
-- acquire() (and enter()) are async methods: calling one makes a coroutine
-- object that must be awaited, as in Python; release() and locked() are
-- plain calls, and __close (Python's __aexit__) releases. Condition and
-- Semaphore work the same way. Barrier:enter() waits at the barrier and
-- gives the index (its __close does nothing), as Barrier.__aenter__ does.
-- Barrier's reset() and abort() are async, as in Python; its properties
-- parties, n_waiting and broken are fields kept up to date.
--
-- Waiting makes a future on the running loop; acquiring a free lock or
-- semaphore, or waiting for a set event, makes none.
local asyncio = require "conc.asyncio"
local class = require "conc.class"
local errors = require "conc.errors"

local M = {}

local async, await = asyncio.async, asyncio.await
local await_future = asyncio._await_future
local current_task = asyncio._current_task
local set_result = asyncio._set_result
local isinstance = class.isinstance
local pcall, error, tostring, type = pcall, error, tostring, type

local RuntimeError = errors.RuntimeError
local ValueError = errors.ValueError
local CancelledError = errors.CancelledError
local BrokenBarrierError = errors.BrokenBarrierError
M.BrokenBarrierError = BrokenBarrierError

-- ---------------------------------------------------------------------
-- A deque of waiter futures: d[d.h .. d.t], counted explicitly.
-- ---------------------------------------------------------------------

local function dq_new() return {h = 1, t = 0} end

local function dq_push(d, v)
  local t = d.t + 1
  d.t = t
  d[t] = v
end

local function dq_popleft(d)
  local h, t = d.h, d.t
  if h > t then return nil end
  local v = d[h]
  d[h] = nil
  if h == t then d.h, d.t = 1, 0 else d.h = h + 1 end
  return v
end

-- Removes v (the first one found); false if it is not there.
local function dq_remove(d, v)
  local h, t = d.h, d.t
  if h <= t and d[h] == v then
    dq_popleft(d)
    return true
  end
  for i = h + 1, t do
    if d[i] == v then
      for j = i, t - 1 do d[j] = d[j + 1] end
      d[t] = nil
      d.t = t - 1
      return true
    end
  end
  return false
end

local function dq_len(d) return d.t - d.h + 1 end

-- for queues.lua
M._deque = {new = dq_new, push = dq_push, popleft = dq_popleft,
  remove = dq_remove, len = dq_len}

-- ---------------------------------------------------------------------
-- Shared pieces
-- ---------------------------------------------------------------------

-- A new future on the running loop, binding obj to that loop on first use
-- (Python's _LoopBoundMixin._get_loop).
local function new_future(obj, task)
  local loop = task._loop
  local mine = obj._loop
  if not mine then
    obj._loop = loop
  elseif mine ~= loop then
    error(RuntimeError(tostring(obj) .. " is bound to a different event loop"), 3)
  end
  return loop:create_future()
end
M._new_future = new_future

-- Waits for fut as a waiter in deque w; fut leaves w however it ends.
-- Returns ok, err (as pcall).
local function wait_in(w, fut, task)
  dq_push(w, fut)
  local ok, e = pcall(await_future, fut, task)
  dq_remove(w, fut)
  return ok, e
end

local function describe(self, extra)
  local mt = getmetatable(self)
  return string.format("<asyncio.locks.%s object at %p [%s]>",
    mt.__qualname or mt.__name, self, extra)
end

local function with_waiters(s, w)
  local n = dq_len(w)
  if n > 0 then s = s .. ", waiters:" .. n end
  return s
end

-- An enter() for a class whose acquire() is the async function `acquire`
-- over the plain function `raw` (a subclass's own acquire is awaited).
local function make_enter(raw, acquire_async)
  return async(function(self)
    local acquire = self.acquire
    if acquire == acquire_async then raw(self) else await(acquire(self)) end
    return self
  end, "enter")
end

local function release_on_close(self) self:release() end

-- ---------------------------------------------------------------------
-- Lock
-- ---------------------------------------------------------------------

local Lock = class.class(nil, "Lock")
Lock.__module = "conc.asyncio.locks"
Lock.__qualname = "Lock"
M.Lock = Lock

function Lock:__init()
  self._waiters = dq_new()
  self._locked = false
  self._loop = false
end

function Lock:locked() return self._locked end

local function all_cancelled(w)
  for i = w.h, w.t do
    if not w[i]:cancelled() then return false end
  end
  return true
end

-- Wakes the first waiter, if it is not done yet (it takes the lock when
-- its task runs).
local function wake_up_first(self)
  local w = self._waiters
  local fut = w[w.h]
  if w.h <= w.t and not fut:done() then set_result(fut, true) end
end

local function lock_acquire(self)
  local w = self._waiters
  if not self._locked and (w.h > w.t or all_cancelled(w)) then
    self._locked = true
    return true
  end
  local task = current_task()
  local ok, e = wait_in(w, new_future(self, task), task)
  if not ok then
    -- Cancelled (perhaps after release() woke us): if the lock is free,
    -- the next waiter must get its turn.
    if not self._locked then wake_up_first(self) end
    error(e, 0)
  end
  self._locked = true
  return true
end

local lock_acquire_async = async(lock_acquire, "Lock.acquire")
Lock.acquire = lock_acquire_async
Lock.enter = make_enter(lock_acquire, lock_acquire_async)

function Lock:release()
  if not self._locked then
    error(RuntimeError("Lock is not acquired."), 2)
  end
  self._locked = false
  wake_up_first(self)
end

Lock.__close = release_on_close

function Lock:__tostring()
  return describe(self, with_waiters(self._locked and "locked" or "unlocked",
    self._waiters))
end

-- ---------------------------------------------------------------------
-- Event
-- ---------------------------------------------------------------------

local Event = class.class(nil, "Event")
Event.__module = "conc.asyncio.locks"
Event.__qualname = "Event"
M.Event = Event

function Event:__init()
  self._waiters = dq_new()
  self._value = false
  self._loop = false
end

function Event:is_set() return self._value end

function Event:set()
  if self._value then return end
  self._value = true
  local w = self._waiters
  for i = w.h, w.t do
    local fut = w[i]
    if not fut:done() then set_result(fut, true) end
  end
end

function Event:clear() self._value = false end

Event.wait = async(function(self)
  if self._value then return true end
  local task = current_task()
  local ok, e = wait_in(self._waiters, new_future(self, task), task)
  if not ok then error(e, 0) end
  return true
end, "Event.wait")

function Event:__tostring()
  return describe(self, with_waiters(self._value and "set" or "unset",
    self._waiters))
end

-- ---------------------------------------------------------------------
-- Condition
-- ---------------------------------------------------------------------

local Condition = class.class(nil, "Condition")
Condition.__module = "conc.asyncio.locks"
Condition.__qualname = "Condition"
M.Condition = Condition

-- Condition([lock]): over lock, or a new Lock.
function Condition:__init(lock)
  if lock == nil then lock = Lock() end
  self._lock = lock
  self._waiters = dq_new()
  self._loop = false
end

function Condition:locked() return self._lock:locked() end
function Condition:acquire() return self._lock:acquire() end
function Condition:release() return self._lock:release() end
Condition.enter = async(function(self)
  await(self._lock:acquire())
  return self
end, "Condition.enter")
Condition.__close = release_on_close

-- Wakes up to n waiters that are not done yet.
local function cond_notify(self, n)
  local w = self._waiters
  local woken = 0
  for i = w.h, w.t do
    if woken >= n then break end
    local fut = w[i]
    if not fut:done() then
      woken = woken + 1
      set_result(fut, false)
    end
  end
end

-- Releases the lock, waits to be notified and takes the lock again (even
-- when cancelled: the CancelledError comes once the lock is held).
Condition.wait = async(function(self)
  local lock = self._lock
  if not lock:locked() then
    error(RuntimeError("cannot wait on un-acquired lock"), 2)
  end
  local task = current_task()
  local fut = new_future(self, task)
  lock:release()
  local ok, e = wait_in(self._waiters, fut, task)
  -- Must take the lock again whatever happened; a cancellation meanwhile
  -- is raised once it is held.
  while true do
    local ok2, e2 = pcall(await, lock:acquire())
    if ok2 then break end
    if not isinstance(e2, CancelledError) then
      cond_notify(self, 1)
      error(e2, 0)
    end
    ok, e = false, e2
  end
  if not ok then
    -- this task may have been notified: pass the notification on
    -- (a spurious wakeup, which a condition variable allows)
    cond_notify(self, 1)
    error(e, 0)
  end
  return true
end, "Condition.wait")

-- Waits until predicate() is true; returns its last value.
Condition.wait_for = async(function(self, predicate)
  local result = predicate()
  while not result do
    await(self:wait())
    result = predicate()
  end
  return result
end, "Condition.wait_for")

function Condition:notify(n)
  if not self._lock:locked() then
    error(RuntimeError("cannot notify on un-acquired lock"), 2)
  end
  cond_notify(self, n or 1)
end

function Condition:notify_all()
  if not self._lock:locked() then
    error(RuntimeError("cannot notify on un-acquired lock"), 2)
  end
  cond_notify(self, dq_len(self._waiters))
end

function Condition:__tostring()
  return describe(self, with_waiters(self:locked() and "locked" or "unlocked",
    self._waiters))
end

-- ---------------------------------------------------------------------
-- Semaphore, BoundedSemaphore
-- ---------------------------------------------------------------------

local Semaphore = class.class(nil, "Semaphore")
Semaphore.__module = "conc.asyncio.locks"
Semaphore.__qualname = "Semaphore"
M.Semaphore = Semaphore

function Semaphore:__init(value)
  if value == nil then value = 1 end
  if type(value) ~= "number" then
    error(errors.TypeError("Semaphore value must be a number"), 3)
  end
  if value < 0 then
    error(ValueError("Semaphore initial value must be >= 0"), 3)
  end
  self._waiters = dq_new()
  self._value = value
  self._loop = false
end

-- True if acquire() would wait: no value left, or waiters (not
-- cancelled) come first.
local function sem_locked(self)
  if self._value == 0 then return true end
  local w = self._waiters
  for i = w.h, w.t do
    if not w[i]:cancelled() then return true end
  end
  return false
end
Semaphore.locked = sem_locked

-- Wakes the first waiter not done yet, taking a unit for it.
local function wake_up_next(self)
  local w = self._waiters
  for i = w.h, w.t do
    local fut = w[i]
    if not fut:done() then
      self._value = self._value - 1
      set_result(fut, true)
      return true
    end
  end
  return false
end

local function sem_acquire(self)
  if not sem_locked(self) then
    self._value = self._value - 1
    return true
  end
  local task = current_task()
  local fut = new_future(self, task)
  local ok, e = wait_in(self._waiters, fut, task)
  if not ok and fut:done() and not fut:cancelled() then
    -- woken with a unit, but not taking it: give it back
    self._value = self._value + 1
  end
  -- waiters that came meanwhile wait behind us (FIFO): wake what may run
  while self._value > 0 do
    if not wake_up_next(self) then break end
  end
  if not ok then error(e, 0) end
  return true
end

local sem_acquire_async = async(sem_acquire, "Semaphore.acquire")
Semaphore.acquire = sem_acquire_async
Semaphore.enter = make_enter(sem_acquire, sem_acquire_async)

function Semaphore:release()
  self._value = self._value + 1
  wake_up_next(self)
end

Semaphore.__close = release_on_close

function Semaphore:__tostring()
  local s = sem_locked(self) and "locked" or
    ("unlocked, value:" .. tostring(self._value))
  return describe(self, with_waiters(s, self._waiters))
end

local BoundedSemaphore = Semaphore:extend("BoundedSemaphore")
BoundedSemaphore.__module = "conc.asyncio.locks"
BoundedSemaphore.__qualname = "BoundedSemaphore"
M.BoundedSemaphore = BoundedSemaphore

function BoundedSemaphore:__init(value)
  if value == nil then value = 1 end
  self._bound_value = value
  Semaphore.__init(self, value)
end

function BoundedSemaphore:release()
  if self._value >= self._bound_value then
    error(ValueError("BoundedSemaphore released too many times"), 2)
  end
  Semaphore.release(self)
end

-- ---------------------------------------------------------------------
-- Barrier
-- ---------------------------------------------------------------------

local FILLING, DRAINING, RESETTING, BROKEN =
  "filling", "draining", "resetting", "broken"

local Barrier = class.class(nil, "Barrier")
Barrier.__module = "conc.asyncio.locks"
Barrier.__qualname = "Barrier"
M.Barrier = Barrier

-- The fields parties, n_waiting and broken after a change of state or count.
local function barrier_sync(self)
  self.n_waiting = self._bstate == FILLING and self._count or 0
  self.broken = self._bstate == BROKEN
end

function Barrier:__init(parties)
  if type(parties) ~= "number" or parties < 1 then
    error(ValueError("parties must be >= 1"), 3)
  end
  self._cond = Condition()
  self._parties = parties
  self.parties = parties
  self._bstate = FILLING
  self._count = 0
  barrier_sync(self)
  -- the predicates its waits use, made once
  self._ready = function()
    return self._bstate ~= DRAINING and self._bstate ~= RESETTING
  end
  self._released = function() return self._bstate ~= FILLING end
end

-- Waits while the barrier drains or resets; raises if it is broken.
local function barrier_block(self)
  await(self._cond:wait_for(self._ready))
  if self._bstate == BROKEN then
    error(BrokenBarrierError("Barrier aborted"), 0)
  end
end

-- Waits in the barrier until it is released; raises if reset or broken.
local function barrier_wait(self)
  await(self._cond:wait_for(self._released))
  if self._bstate == BROKEN or self._bstate == RESETTING then
    error(BrokenBarrierError("Abort or reset of barrier"), 0)
  end
end

local function barrier_pass(self)
  local index = self._count
  self._count = index + 1
  barrier_sync(self)
  if index + 1 == self._parties then
    -- the last one: release the others (draining blocks newcomers)
    self._bstate = DRAINING
    barrier_sync(self)
    self._cond:notify_all()
  else
    barrier_wait(self)
  end
  return index
end

-- The last task out of the barrier lets those waiting for it to drain in.
local function barrier_exit(self)
  if self._count == 0 then
    if self._bstate == RESETTING or self._bstate == DRAINING then
      self._bstate = FILLING
    end
    self._cond:notify_all()
  end
  barrier_sync(self)
end

-- Waits until parties tasks wait; gives each an index in 0 .. parties-1.
Barrier.wait = async(function(self)
  local cond = self._cond
  await(cond:acquire())
  local _ <close> = cond
  barrier_block(self)
  local ok, r = pcall(barrier_pass, self)
  self._count = self._count - 1
  barrier_exit(self)
  if not ok then error(r, 0) end
  return r
end, "Barrier.wait")

Barrier.enter = Barrier.wait
function Barrier:__close() end

-- Back to the empty state; tasks waiting get BrokenBarrierError.
Barrier.reset = async(function(self)
  local cond = self._cond
  await(cond:acquire())
  local _ <close> = cond
  if self._count > 0 then
    if self._bstate ~= RESETTING then self._bstate = RESETTING end
  else
    self._bstate = FILLING
  end
  barrier_sync(self)
  cond:notify_all()
end, "Barrier.reset")

-- Breaks the barrier: waiting tasks, and later ones, get BrokenBarrierError.
Barrier.abort = async(function(self)
  local cond = self._cond
  await(cond:acquire())
  local _ <close> = cond
  self._bstate = BROKEN
  barrier_sync(self)
  cond:notify_all()
end, "Barrier.abort")

function Barrier:__tostring()
  local s = self._bstate
  if s ~= BROKEN then
    s = s .. ", waiters:" .. self.n_waiting .. "/" .. self._parties
  end
  return describe(self, s)
end

return M
