-- The sandbox bootstrap. It runs once per Lua runtime, while the full standard library is still
-- reachable, keeps private references to the few dangerous functions it needs (debug hooks,
-- binary-capable `load`), and returns the table of entry points the Python host calls.
--
-- Every script then runs in a fresh environment table holding only safe libraries. An instruction
-- hook calls the host's `check` function every `hook_every` instructions; when the host says stop
-- (cancelled, out of time, out of budget) the hook raises a private sentinel that protected calls
-- (`pcall`, `xpcall`, `coroutine.resume`, `coroutine.close`) cannot swallow.

local check, hook_every, log_print, check_clock, strguard_source = ...

local sethook, getinfo = debug.sethook, debug.getinfo
local raw_load, raw_pcall, raw_xpcall, raw_error = load, pcall, xpcall, error
local raw_setmetatable, raw_getmetatable, raw_rawget = setmetatable, getmetatable, rawget
local raw_type, raw_tostring, raw_select, raw_next = type, tostring, select, next
local co_create, co_resume, co_close = coroutine.create, coroutine.resume, coroutine.close
local concat = table.concat

local ABORT = raw_setmetatable({}, {
  __tostring = function() return "script aborted by the host" end,
  __metatable = false,
})
local aborted = false
local user_source = nil

local function hook()
  if aborted or check() then
    aborted = true
    raw_error(ABORT, 0)
  end
end
sethook(hook, "", hook_every)

-- Long C calls poll this between bounded pieces of work (see strguard.lua); it stops the script
-- on a cancel or the wall clock, and leaves the instruction count to the hook.
local function poll()
  if aborted or check_clock() then
    aborted = true
    raw_error(ABORT, 0)
  end
end
local function in_script(source) return source == user_source end
local guarded = raw_load(strguard_source, "=strguard", "t")(poll, string, table, nil, in_script)

-- Binary chunks and string.dump are gone for good; strings index a private copy of `string`.
local function copy(t)
  local out = {}
  for k, v in raw_next, t do out[k] = v end
  return out
end
string.dump = nil
local SAFE_STRING = copy(string)
SAFE_STRING.find, SAFE_STRING.match = guarded.find, guarded.match
SAFE_STRING.gmatch, SAFE_STRING.gsub = guarded.gmatch, guarded.gsub
local SAFE_TABLE = copy(table)
SAFE_TABLE.move = guarded.move
local string_mt = raw_getmetatable("")
string_mt.__index = SAFE_STRING
string_mt.__metatable = false

local function rethrow_if_aborted(...)
  if aborted then raw_error(ABORT, 0) end
  return ...
end

local function safe_pcall(f, ...)
  return rethrow_if_aborted(raw_pcall(f, ...))
end

local function safe_xpcall(f, handler, ...)
  local function guarded(e)
    if aborted then return e end
    return handler(e)
  end
  return rethrow_if_aborted(raw_xpcall(f, guarded, ...))
end

local function safe_setmetatable(t, mt)
  if raw_type(mt) == "table" and raw_rawget(mt, "__gc") ~= nil then
    raw_error("setmetatable: __gc metamethods are not allowed in the sandbox", 2)
  end
  return raw_setmetatable(t, mt)
end

local function safe_collectgarbage(opt)
  if opt == nil or opt == "collect" or opt == "count" then
    return collectgarbage(opt)
  end
  raw_error("collectgarbage: only 'collect' and 'count' are allowed in the sandbox", 2)
end

local function safe_print(...)
  local n = raw_select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = raw_tostring((raw_select(i, ...))) end
  log_print(concat(parts, "\t"))
end

-- Lua keeps debug hooks per coroutine: every coroutine a script creates gets the budget hook, so a
-- loop inside one is stopped like any other.
local function hooked_create(f)
  local c = co_create(f)
  sethook(c, hook, "", hook_every)
  return c
end

local function wrap_result(c, ok, ...)
  if aborted then raw_error(ABORT, 0) end
  if ok then return ... end
  co_close(c)
  raw_error((...), 0)
end

local function safe_coroutine()
  local co = copy(coroutine)
  co.create = hooked_create
  co.wrap = function(f)
    local c = hooked_create(f)
    return function(...) return wrap_result(c, co_resume(c, ...)) end
  end
  co.resume = function(c, ...) return rethrow_if_aborted(co_resume(c, ...)) end
  co.close = function(c) return rethrow_if_aborted(co_close(c)) end
  return co
end

-- The line of the innermost frame running the user's script (nil outside it).
local function user_line()
  if user_source == nil then return nil end
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if info == nil then return nil end
    if info.source == user_source then return info.currentline end
    level = level + 1
  end
end

-- A fresh global table holding only the safe library (no `require` yet).
local function base_env()
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset, select = select,
    tonumber = tonumber, tostring = tostring, type = type, getmetatable = getmetatable,
    _VERSION = _VERSION,
    pcall = safe_pcall, xpcall = safe_xpcall, setmetatable = safe_setmetatable,
    collectgarbage = safe_collectgarbage, print = safe_print,
    string = copy(SAFE_STRING), table = copy(SAFE_TABLE), math = copy(math), utf8 = copy(utf8),
    coroutine = safe_coroutine(),
  }
  env._G = env
  env.load = function(chunk, name, _mode, chunk_env)
    return raw_load(chunk, name, "t", chunk_env or env)
  end
  return env
end

-- Extra globals the host grants (`extras`: name -> Lua value) and the names it refuses with a
-- message saying how to get them (`blocked`: name -> message), applied to a script's or module's
-- environment. A refused name raises when read instead of answering nil.
local function grant(env, extras, blocked)
  for k, v in raw_next, extras do env[k] = v end
  if raw_next(blocked) ~= nil then
    raw_setmetatable(env, {
      __index = function(_, k)
        local message = raw_rawget(blocked, k)
        if message ~= nil then raw_error(message, 2) end
        return nil
      end,
    })
  end
end

-- The script's environment, with a `require` that knows `package.preload` entries, compiled from
-- `modules` (name -> source) on first use, and whatever the host's `find_module(name)` answers
-- (source and chunk name, or nil and why not); each module runs in its own safe environment.
local function new_env(host, modules, find_module, extras, blocked)
  local env = base_env()
  local loaded, preload = {}, {}
  local package = { loaded = loaded, preload = preload }
  local function loader_of(module_src, chunkname, granted)
    return function(...)
      local module_env = base_env()
      module_env.require, module_env.package = env.require, package
      if granted then grant(module_env, extras, blocked) end
      local chunk, err = raw_load(module_src, chunkname, "t", module_env)
      if chunk == nil then raw_error(err, 0) end
      return chunk(...)
    end
  end
  local function require(name)
    local mod = loaded[name]
    if mod ~= nil then return mod end
    local loader = preload[name]
    if loader == nil then
      local why = "only preloaded modules can be required"
      if find_module ~= nil then
        local module_src, found = find_module(name)
        if module_src ~= nil then
          loader = loader_of(module_src, found, true)
        else
          why = found
        end
      end
      if loader == nil then
        raw_error("module '" .. raw_tostring(name) .. "' not found (" .. raw_tostring(why) .. ")", 2)
      end
    end
    mod = loader(name, host)
    if mod == nil then mod = true end
    loaded[name] = mod
    return mod
  end
  for name, module_src in raw_next, modules do
    preload[name] = loader_of(module_src, "=" .. name, false)
  end
  env.package, env.require = package, require
  grant(env, extras, blocked)
  return env
end

-- Put before a script, on its first line: a to-be-closed variable (nil, so nothing is closed) in
-- scope of the whole chunk makes a `return f(...)` of the chunk an ordinary call rather than a tail
-- call, so the chunk's frame, and its line, stay while `f` runs: an error `f` raises at its caller
-- (string.find's "malformed pattern", say) then names the script's line, as it does anywhere else.
local KEEP_FRAME = "local __mse_frame <close> = nil; "

local SB = {}

-- Run `src` (chunk name `chunkname`) with extra globals and preloaded module sources.
-- Returns status, value, line: status is "ok", "error", "syntax" or "aborted".
function SB.run(src, chunkname, globals, modules, namespaces, warn, find_module, extras, blocked)
  aborted = false
  local host = {
    warn = function(code, msg) warn(code, msg, user_line()) end,
    where = user_line,
  }
  local env = new_env(host, modules, find_module, extras, blocked)
  for k, v in raw_next, globals do env[k] = v end
  -- Host functions answer (true, result) or (false, message); the wrapper turns the latter into
  -- a Lua error at the caller, so scripts can pcall them.
  for ns, fns in raw_next, namespaces do
    local wrapped = {}
    for name, fn in raw_next, fns do
      wrapped[name] = function(...)
        local ok, res = fn(...)
        if not ok then raw_error(res, 2) end
        return res
      end
    end
    -- A dotted namespace ("std.json") nests under its parent table; every namespace can also
    -- be `require`d by its name.
    local parent, leaf = env, ns
    local dot = leaf:find(".", 1, true)
    while dot do
      local head = leaf:sub(1, dot - 1)
      parent[head] = parent[head] or {}
      parent, leaf = parent[head], leaf:sub(dot + 1)
      dot = leaf:find(".", 1, true)
    end
    parent[leaf] = wrapped
    env.package.loaded[ns] = wrapped
  end
  local chunk, err = raw_load(KEEP_FRAME .. src, chunkname, "t", env)
  if chunk == nil then return "syntax", err, nil end
  user_source = chunkname
  local line = nil
  local ok, value = raw_xpcall(chunk, function(e)
    if e ~= ABORT then line = user_line() end
    return e
  end)
  user_source = nil
  if aborted or value == ABORT then return "aborted", nil, nil end
  if not ok then
    if raw_type(value) ~= "string" and raw_type(value) ~= "table" then value = raw_tostring(value) end
    return "error", value, line
  end
  return "ok", value, nil
end

-- Evaluate `src` the way mlua's `eval` does: as an expression first, else as a chunk; the
-- result must be a function, which is then called with `...`.
function SB.call_eval(src, chunkname, args, argc)
  aborted = false
  local env = base_env()
  local chunk = raw_load("return " .. src, chunkname, "t", env)
  if chunk == nil then
    local err
    chunk, err = raw_load(src, chunkname, "t", env)
    if chunk == nil then return "syntax", err end
  end
  local ok, fn = raw_pcall(chunk)
  if ok and raw_type(fn) ~= "function" then
    ok, fn = false, "expected the script to evaluate to a function, got " .. raw_type(fn)
  end
  if ok then ok, fn = raw_pcall(fn, table.unpack(args, 1, argc)) end
  if aborted or fn == ABORT then return "aborted", nil end
  if not ok then
    if raw_type(fn) ~= "string" and raw_type(fn) ~= "table" then fn = raw_tostring(fn) end
    return "error", fn
  end
  return "ok", fn
end

-- The length of `value` as compact JSON text (a lower bound), counting a shared table once per
-- place it appears without walking it again. Returns "ok", size; or "too_big" past `limit`;
-- "cycle" when a table contains itself; "aborted" when the budget ran out meanwhile.
local TOO_BIG, CYCLE = {}, {}
function SB.json_size(value, limit)
  local sizes, open = {}, {}
  local function size(v)
    local t = raw_type(v)
    if t == "string" then return #v + 2 end
    if t ~= "table" then return #raw_tostring(v) end
    local known = sizes[v]
    if known ~= nil then return known end
    if open[v] then raw_error(CYCLE, 0) end
    open[v] = true
    local total = 2
    for k, item in raw_next, v do
      total = total + size(item) + 1
      if raw_type(k) == "string" then total = total + #k + 3 end
      if total > limit then raw_error(TOO_BIG, 0) end
    end
    open[v] = nil
    sizes[v] = total
    return total
  end
  local ok, res = raw_pcall(size, value)
  if aborted or res == ABORT then return "aborted", 0 end
  if ok then return "ok", res end
  if res == TOO_BIG then return "too_big", 0 end
  if res == CYCLE then return "cycle", 0 end
  raw_error(res, 0)
end

-- The runtime's own standard library (what a script gets when its author opts into it), minus
-- `debug`, which would let a script remove the budget hook.
function SB.stdlib()
  return {
    os = os, io = io, dofile = dofile, loadfile = loadfile, require = require, package = package,
  }
end

-- Compile without running: nil when `src` is valid Lua text, else the message.
function SB.check(src, chunkname)
  local chunk, err = raw_load(src, chunkname, "t", {})
  if chunk == nil then return err end
  return nil
end

return SB
