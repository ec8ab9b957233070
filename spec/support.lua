-- What several specs share: files and shell quoting for the tests that run
-- the host as a child process.
local M = {}

-- A string quoted for sh.
function M.q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- A file's contents, or nil when it does not exist.
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

return M
