-- What the Lua benchmarks share (Python's twins use statistics.median).
local M = {}

function M.median(v)
  table.sort(v)
  local n = #v
  if n % 2 == 1 then return v[(n + 1) // 2] end
  return (v[n // 2] + v[n // 2 + 1]) / 2
end

return M
