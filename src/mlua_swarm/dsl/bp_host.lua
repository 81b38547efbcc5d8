-- The part of Lua's standard library a `.bp.lua` build script gets, built once per build with the
-- full library still in reach: `io` reads (a relative path means the script's folder) and the
-- clock and environment reads of `os`. Anything else in `io` or `os` raises a message saying
-- what is available instead of answering nil.

local resolve = ...
local real_io, real_os = io, os

local function refusing(name, lib, allowed)
  return setmetatable(lib, {
    __index = function(_, key)
      error(name .. "." .. tostring(key) .. " is not available in a .bp.lua build (available: " .. allowed .. ")", 2)
    end,
    __metatable = false,
  })
end

local IO_ALLOWED = "io.open(path) and io.open(path, 'r'), io.lines(path), io.type"

local io_lib = refusing("io", {
  open = function(path, mode)
    if mode ~= nil and mode ~= "r" and mode ~= "rb" then
      error("io.open mode '" .. tostring(mode) .. "' is not available in a .bp.lua build (files are read-only)", 2)
    end
    return real_io.open(resolve(path), mode or "r")
  end,
  lines = function(path, ...)
    if path == nil then error("io.lines needs a path in a .bp.lua build (standard input is not available)", 2) end
    return real_io.lines(resolve(path), ...)
  end,
  type = real_io.type,
}, IO_ALLOWED)

local os_lib = refusing("os", {
  getenv = real_os.getenv,
  time = real_os.time,
  date = real_os.date,
  clock = real_os.clock,
  difftime = real_os.difftime,
}, "os.getenv, os.time, os.date, os.clock, os.difftime")

return { io = io_lib, os = os_lib }
