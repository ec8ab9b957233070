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

-- Lua finds metamethods raw in the metatable, so a subclass copies its
-- parent's; everything else is found through __parent. (A set, not a list:
-- making a class is on the path of starting a thread.)
local metamethods = {}
for k in ("__index __newindex __tostring __close __eq __lt __le __len __call "
    .. "__concat __unm __add __sub __mul __div __mod __pow __idiv __band __bor "
    .. "__bxor __shl __shr __bnot __gc __mode __qualname"):gmatch("%S+") do
  metamethods[k] = true
end

local function extend(parent, name)
  local cls = {__parent = parent, __name = name}
  if parent then
    for k, v in next, parent do
      if metamethods[k] and not (k == "__index" and v == parent) then
        cls[k] = v
      end
    end
  end
  if cls.__index == nil then cls.__index = cls end
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
