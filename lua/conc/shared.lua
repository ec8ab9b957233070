-- conc.shared: a list and a dict every thread sees, each operation atomic
-- (what Python's Manager().list() and .dict() give). See docs/shared.md.
local core = require "conc.core"

return {
  list = core.shared_list,
  dict = core.shared_dict,
}
