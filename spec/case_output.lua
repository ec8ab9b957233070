-- A busted output handler that names every case as it runs, for ctest.
--
--   busted -o spec/case_output.lua FILE
--
-- Each case writes, flushed, "RUN  describe › it" before it starts and a
-- result line when it ends ("  ok", or "FAIL"/"ERR "/"PEND" with the name
-- again), so when a case takes the whole process down (a segfault, an
-- abort, a sanitizer report, a hang ended by ctest's timeout) the last RUN
-- line without a result names it. Errors outside a case (a describe body, a
-- file that does not load, a before_each or after_each) print an ERR line
-- when they happen. The end is plainTerminal's: a count, then each pending,
-- failure and error with its place and message. busted's exit status is
-- its own (failures + errors), not this handler's.
--
-- What it cannot name: a crash in a before_each comes after the previous
-- case's result line, one in an after_each after this case's, and a crash
-- caused by a thread an earlier case left running names whichever case was
-- running when it struck.

local pretty = require "pl.pretty"

local io_write, io_flush = io.write, io.flush
local string_format = string.format

-- A case slower than this shows its time on its result line.
local SLOW = 0.5

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.base"()

  local function out(...)
    io_write(...)
    io_flush()
  end

  -- "outer describe › inner describe › case"; the file is left out.
  local function fullname(element)
    local names = { element.name or element.descriptor }
    local parent = busted.parent(element)
    while parent and (parent.name or parent.descriptor)
          and parent.descriptor ~= "file" do
      table.insert(names, 1, parent.name or parent.descriptor)
      parent = busted.parent(parent)
    end
    return table.concat(names, " › ")
  end

  -- " -> file:line" where the block was written, when busted knows it
  local function place(tr)
    if tr and tr.short_src then
      return " -> " .. tr.short_src .. ":" .. tostring(tr.currentline)
    end
    return ""
  end

  local function text(message)
    if message == nil then return "Nil error" end
    if type(message) == "string" then return message end
    return pretty.write(message)
  end

  local function seconds(element)
    local d = element.duration
    if d and d >= SLOW then return string_format(" (%.2f s)", d) end
    return ""
  end

  handler.suiteStart = function(suite, count, total)
    if total > 1 then
      out(string_format("\nRepeating all tests (run %u of %u)\n\n", count, total))
    end
    return nil, true
  end

  handler.testStart = function(element)
    out("RUN  ", fullname(element), "\n")
    return nil, true
  end

  local TAGS = { failure = "FAIL", error = "ERR ", pending = "PEND" }

  handler.testEnd = function(element, _, status)
    local tag = TAGS[status]
    if tag then
      out(tag, " ", fullname(element), seconds(element), "\n")
    else
      out("  ok", seconds(element), "\n")
    end
    return nil, true
  end

  -- An error outside a case (base.lua has already recorded it).
  handler.outsideError = function(element)
    if element.descriptor ~= "it" then
      -- a hook has no name of its own: its descriptor ends the full name
      local kind = element.name and (" (" .. element.descriptor .. ")") or ""
      out("ERR  ", fullname(element), kind, "\n")
    end
    return nil, true
  end

  local function plural(n, word)
    return n .. " " .. word .. (n == 1 and "" or "s")
  end

  handler.suiteEnd = function()
    local lines = {
      string_format("\n%u passed / %s / %s / %u pending : %.3f s",
        handler.successesCount, plural(handler.failuresCount, "failure"),
        plural(handler.errorsCount, "error"), handler.pendingsCount,
        handler.getDuration()),
    }
    for _, p in ipairs(handler.pendings) do
      -- where pending() was called, else where the case was written
      local where = place(p.trace)
      if where == "" then where = place(p.element.trace) end
      lines[#lines + 1] = string_format("\nPending%s\n%s", where, p.name)
      if p.message ~= nil then lines[#lines + 1] = text(p.message) end
    end
    local function details(kind, list)
      for _, f in ipairs(list) do
        lines[#lines + 1] = string_format("\n%s%s\n%s", kind, place(f.element.trace), f.name)
        if f.randomseed then lines[#lines + 1] = "Random seed: " .. f.randomseed end
        lines[#lines + 1] = text(f.message)
        if options.verbose and f.trace and f.trace.traceback then
          lines[#lines + 1] = f.trace.traceback
        end
      end
    end
    details("Failure", handler.failures)
    details("Error", handler.errors)
    out(table.concat(lines, "\n"), "\n")
    return nil, true
  end

  busted.subscribe({ "suite", "start" }, handler.suiteStart)
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "test", "start" }, handler.testStart, { predicate = handler.cancelOnPending })
  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "error" }, handler.outsideError)
  busted.subscribe({ "failure" }, handler.outsideError)

  -- base.lua's getFullName joins with spaces; the summary uses ours.
  handler.getFullName = fullname

  return handler
end
