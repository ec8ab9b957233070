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

-- Each class's own metatable makes it callable and, for a subclass, sends
-- a missing key to the parent class as a table __index: Lua walks the
-- chain itself, with no function call per level (objects look up fields
-- they lack often: an unset attribute, a method of a base class).
local root_meta = {__call = new}

-- Lua finds metamethods raw in the metatable, so a subclass copies its
-- parent's; everything else is found through __parent. (Making classes is on
-- the path of starting a thread, hence a literal set and a presized table.)
local metamethods = {__index = true, __newindex = true, __tostring = true,
  __close = true, __eq = true, __lt = true, __le = true, __len = true,
  __call = true, __concat = true, __unm = true, __add = true, __sub = true,
  __mul = true, __div = true, __mod = true, __pow = true, __idiv = true,
  __band = true, __bor = true, __bxor = true, __shl = true, __shr = true,
  __bnot = true, __gc = true, __mode = true, __qualname = true}

local function extend(parent, name)
  local cls = {__parent = parent, __name = name, __index = false,
    __tostring = false, __qualname = false, extend = extend}
  cls.__index, cls.__tostring, cls.__qualname = nil, nil, nil
  if parent then
    for k, v in next, parent do
      if metamethods[k] and not (k == "__index" and v == parent) then
        cls[k] = v
      end
    end
  end
  if cls.__index == nil then cls.__index = cls end
  return setmetatable(cls, parent and {__call = new, __index = parent} or root_meta)
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
