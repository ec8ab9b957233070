-- conc.queue: Python's queue module. The queues are C objects: a queue
-- passed to a thread is the same queue there, and items cross with the wire
-- format (copies; conc objects inside them go by reference).
--
-- Queue(maxsize), LifoQueue(maxsize), PriorityQueue(maxsize) and
-- SimpleQueue(); put(item, block, timeout), get(block, timeout), put_nowait,
-- get_nowait, qsize, empty, full, task_done, join, shutdown(immediate) and
-- the fields maxsize, unfinished_tasks, is_shutdown, all as in Python 3.13.
-- A PriorityQueue orders numbers and strings by <, and tables as Python
-- orders tuples (by their elements 1..#t in turn); equal items come out in
-- the order they went in.
local core = require "conc.core"
local errors = require "conc.errors"

return {
  Queue = core.Queue,
  LifoQueue = core.LifoQueue,
  PriorityQueue = core.PriorityQueue,
  SimpleQueue = core.SimpleQueue,
  Empty = errors.Empty,
  Full = errors.Full,
  ShutDown = errors.ShutDown,
}
