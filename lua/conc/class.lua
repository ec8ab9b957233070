-- conc.class: the one class mechanism behind Thread, the errors and what
-- follows. A class is its instances' metatable; calling it makes an instance
-- and runs __init. Subclasses come from Class:extend() and inherit methods
-- through __parent, and metamethods by copy (Lua looks those up raw).
local M = {}

local function new(cls, ...)
  local obj = setmetatable({}, cls)
  local init = cls.__init
  if init then init(obj, ...) end
  return obj
end

local classmeta = {__call = new}

function classmeta.__index(cls, k)
  local parent = rawget(cls, "__parent")
  if parent then return parent[k] end
end

local function extend(parent, name)
  local cls = {__parent = parent, __name = name}
  if parent then
    for k, v in pairs(parent) do
      if type(k) == "string" and k:sub(1, 2) == "__" and k ~= "__parent"
          and k ~= "__name" and k ~= "__init" and not (k == "__index" and v == parent) then
        cls[k] = v
      end
    end
  end
  if rawget(cls, "__index") == nil then cls.__index = cls end
  cls.extend = extend
  return setmetatable(cls, classmeta)
end

M.class = extend

-- Python's isinstance over conc classes: v's class is cls or derives from it.
function M.isinstance(v, cls)
  if type(v) ~= "table" and type(v) ~= "userdata" then return false end
  local c = getmetatable(v)
  while type(c) == "table" do
    if rawequal(c, cls) then return true end
    c = rawget(c, "__parent")
  end
  return false
end

return M
