-- String matching and table.move that the sandbox's budgets can always stop.
--
-- The instruction hook only runs between Lua instructions, so one C call that works for minutes
-- (`string.find(s, ".-.-.-.-b")` on a long string, a plain find of a long needle that almost
-- occurs everywhere, `table.move` over 2^62 slots) used to outlive the wall clock, the step timeout
-- and the cancel. Each replacement here first bounds the work the C function could do on these
-- arguments. Within `BUDGET` the C function runs as before; past it, the same algorithm runs in Lua
-- (a port of Lua 5.4's matcher with its messages), which the hook interrupts, or the work is cut
-- into bounded C calls. Results and errors are Lua's own either way.
--
-- Called once per runtime with `poll` (raises the sandbox's abort when the host says stop), the
-- real `string` and `table` libraries and optionally a smaller budget (tests use 0 to take the Lua
-- path everywhere); returns the replacement functions.

local poll, string, table, budget = ...

local s_byte, s_sub, s_find, s_match = string.byte, string.sub, string.find, string.match
local s_gmatch, s_gsub, s_rep, s_char, s_format = string.gmatch, string.gsub, string.rep, string.char, string.format
local t_move, t_concat, t_unpack = table.move, table.concat, table.unpack
local m_tointeger, m_type, m_min, m_maxinteger = math.tointeger, math.type, math.min, math.maxinteger
local type, tonumber, tostring, error, pcall = type, tonumber, tostring, error, pcall
local setmetatable, getmetatable, rawequal = setmetatable, getmetatable, rawequal

local BUDGET = budget or 100000000 -- steps one C call may take (a fraction of a second)
local PLAIN_BUDGET = 16 * BUDGET    -- byte comparisons of one plain search (memchr/memcmp are fast)
local SMALL_WORK = BUDGET // 1024   -- what a call on a short subject is charged without measuring it
local POLL_EVERY = 20000000         -- steps of C work between two polls of the host
local MOVE_CHUNK = 65536       -- slots one C `table.move` call may copy

local spent = 0
local function charge(work)
  spent = spent + work
  if spent >= POLL_EVERY then
    spent = 0
    poll()
  end
end

-- Lua's coercions for a string argument and an optional integer argument; nil when the C
-- function would raise (it is then called so that it raises its own message).
local function as_string(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  return nil
end

local function as_integer(v, default)
  if v == nil then return default end
  if m_type(v) == "integer" then return v end
  local t = type(v)
  if t == "number" then return m_tointeger(v) end
  if t == "string" then
    local n = tonumber(v)
    return n and m_tointeger(n)
  end
  return nil
end

local function posrelat(pos, len)
  if pos > 0 then return pos end
  if pos == 0 or pos < -len then return 1 end
  return len + pos + 1
end

----------------------------------------------------------------------------------------------------
-- The matcher, in Lua: Lua 5.4's lstrlib algorithm on 1-based positions. A position one past the
-- end reads as byte 0, as C reads the string's terminator.

local PatternError = {}
local function perr(message)
  error(setmetatable({ message = message }, PatternError), 0)
end

local L_ESC, MAXCCALLS, MAXCAPTURES = 37, 200, 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local CLASS_LETTERS = { [97] = true, [99] = true, [100] = true, [103] = true, [108] = true, [112] = true,
  [115] = true, [117] = true, [119] = true, [120] = true }
local class_members = {}

local function byte_at(str, i)
  return s_byte(str, i) or 0
end

local function match_class(c, cl)
  local lower = cl
  if cl >= 65 and cl <= 90 then lower = cl + 32 end
  if not CLASS_LETTERS[lower] then return cl == c end
  local members = class_members[lower]
  if members == nil then
    -- the C library's own answer for every byte, so the locale agrees with the C matcher
    members = {}
    local pattern = "%" .. s_char(lower)
    for b = 0, 255 do members[b] = s_find(s_char(b), pattern) ~= nil end
    class_members[lower] = members
  end
  if lower ~= cl then return not members[c] end
  return members[c]
end

local function match_bracket(pat, c, p, ec)
  local sig = true
  if s_byte(pat, p + 1) == 94 then
    sig = false
    p = p + 1
  end
  p = p + 1
  while p < ec do
    local pc = s_byte(pat, p)
    if pc == L_ESC then
      p = p + 1
      if match_class(c, s_byte(pat, p)) then return sig end
    elseif s_byte(pat, p + 1) == 45 and p + 2 < ec then
      if pc <= c and c <= s_byte(pat, p + 2) then return sig end
      p = p + 2
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function class_end(ms, p)
  local pat, pe = ms.pat, ms.pend
  local c = s_byte(pat, p)
  p = p + 1
  if c == L_ESC then
    if p == pe then perr("malformed pattern (ends with '%')") end
    return p + 1
  end
  if c == 91 then
    if byte_at(pat, p) == 94 then p = p + 1 end
    repeat
      if p == pe then perr("malformed pattern (missing ']')") end
      local cc = s_byte(pat, p)
      p = p + 1
      if cc == L_ESC and p < pe then p = p + 1 end
    until byte_at(pat, p) == 93
    return p + 1
  end
  return p
end

local function single_match(ms, s, p, ep)
  if s > ms.n then return false end
  local c = s_byte(ms.src, s)
  local pc = s_byte(ms.pat, p)
  if pc == 46 then return true end
  if pc == L_ESC then return match_class(c, s_byte(ms.pat, p + 1)) end
  if pc == 91 then return match_bracket(ms.pat, c, p, ep - 1) end
  return pc == c
end

local match

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = match(ms, s + i, ep + 1)
    if res ~= nil then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = match(ms, s, ep + 1)
    if res ~= nil then return res end
    if not single_match(ms, s, p, ep) then return nil end
    s = s + 1
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level
  if level >= MAXCAPTURES then perr("too many captures") end
  ms.cinit[level + 1], ms.clen[level + 1] = s, what
  ms.level = level + 1
  local res = match(ms, s, p)
  if res == nil then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l = ms.level
  while l >= 1 and ms.clen[l] ~= CAP_UNFINISHED do l = l - 1 end
  if l < 1 then perr("invalid pattern capture") end
  ms.clen[l] = s - ms.cinit[l]
  local res = match(ms, s, p)
  if res == nil then ms.clen[l] = CAP_UNFINISHED end
  return res
end

local function match_balance(ms, s, p)
  if p >= ms.pend - 1 then perr("malformed pattern (missing arguments to '%b')") end
  local open = s_byte(ms.pat, p)
  if byte_at(ms.src, s) ~= open then return nil end
  local close, src, n, depth = s_byte(ms.pat, p + 1), ms.src, ms.n, 1
  s = s + 1
  while s <= n do
    local c = s_byte(src, s)
    if c == close then
      depth = depth - 1
      if depth == 0 then return s + 1 end
    elseif c == open then
      depth = depth + 1
    end
    s = s + 1
  end
  return nil
end

local function match_capture(ms, s, digit)
  local l = digit - 48
  if l < 1 or l > ms.level or ms.clen[l] == CAP_UNFINISHED then
    perr(s_format("invalid capture index %%%d", l))
  end
  local len, init = ms.clen[l], ms.cinit[l]
  if len >= 0 and ms.n - s + 1 >= len and s_sub(ms.src, init, init + len - 1) == s_sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

function match(ms, s, p)
  ms.depth = ms.depth - 1
  if ms.depth < 0 then perr("pattern too complex") end
  local pat, pe = ms.pat, ms.pend
  while p ~= pe do
    local pc = s_byte(pat, p)
    local nc = s_byte(pat, p + 1)
    if pc == 40 then
      if nc == 41 then
        s = start_capture(ms, s, p + 2, CAP_POSITION)
      else
        s = start_capture(ms, s, p + 1, CAP_UNFINISHED)
      end
      break
    elseif pc == 41 then
      s = end_capture(ms, s, p + 1)
      break
    elseif pc == 36 and p + 1 == pe then
      if s ~= ms.n + 1 then s = nil end
      break
    elseif pc == L_ESC and nc == 98 then
      s = match_balance(ms, s, p + 2)
      if s == nil then break end
      p = p + 4
    elseif pc == L_ESC and nc == 102 then
      p = p + 2
      if byte_at(pat, p) ~= 91 then perr("missing '[' after '%f' in pattern") end
      local ep = class_end(ms, p)
      local previous = s == 1 and 0 or s_byte(ms.src, s - 1)
      if match_bracket(pat, previous, p, ep - 1) or not match_bracket(pat, byte_at(ms.src, s), p, ep - 1) then
        s = nil
        break
      end
      p = ep
    elseif pc == L_ESC and nc ~= nil and nc >= 48 and nc <= 57 then
      s = match_capture(ms, s, nc)
      if s == nil then break end
      p = p + 2
    else
      local ep = class_end(ms, p)
      local q = byte_at(pat, ep)
      if not single_match(ms, s, p, ep) then
        if q == 42 or q == 63 or q == 45 then
          p = ep + 1
        else
          s = nil
          break
        end
      elseif q == 63 then
        local res = match(ms, s + 1, ep + 1)
        if res ~= nil then
          s = res
          break
        end
        p = ep + 1
      elseif q == 43 then
        s = max_expand(ms, s + 1, p, ep)
        break
      elseif q == 42 then
        s = max_expand(ms, s, p, ep)
        break
      elseif q == 45 then
        s = min_expand(ms, s, p, ep)
        break
      else
        s = s + 1
        p = ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function new_state(src, pat)
  return { src = src, n = #src, pat = pat, pend = #pat + 1, level = 0, depth = MAXCCALLS, cinit = {}, clen = {} }
end

local function reset(ms)
  ms.level = 0
  ms.depth = MAXCCALLS
end

local function get_capture(ms, i, s, e)
  if i >= ms.level then
    if i ~= 0 then perr(s_format("invalid capture index %%%d", i + 1)) end
    return s_sub(ms.src, s, e - 1)
  end
  local len, init = ms.clen[i + 1], ms.cinit[i + 1]
  if len == CAP_UNFINISHED then perr("unfinished capture") end
  if len == CAP_POSITION then return init end
  return s_sub(ms.src, init, init + len - 1)
end

local function captures(ms, s, e, whole)
  local count = (ms.level == 0 and whole) and 1 or ms.level
  if count == 1 then return get_capture(ms, 0, s, e) end
  local out = {}
  for i = 1, count do out[i] = get_capture(ms, i - 1, s, e) end
  return t_unpack(out, 1, count)
end

local function lua_find(s, p, init, find)
  local anchor = s_byte(p, 1) == 94
  local start = anchor and 2 or 1
  local ms = new_state(s, p)
  local s1, last = init + 1, ms.n + 1
  repeat
    reset(ms)
    local e = match(ms, s1, start)
    if e ~= nil then
      if find then return s1, e - 1, captures(ms, nil, nil, false) end
      return captures(ms, s1, e, true)
    end
    s1 = s1 + 1
  until s1 > last or anchor
  return nil
end

local function add_replacement(ms, parts, s, e, news)
  local from = 1
  while true do
    local at = s_find(news, "%", from, true)
    if at == nil then break end
    parts[#parts + 1] = s_sub(news, from, at - 1)
    local c = s_byte(news, at + 1)
    if c == L_ESC then
      parts[#parts + 1] = "%"
    elseif c == 48 then
      parts[#parts + 1] = s_sub(ms.src, s, e - 1)
    elseif c ~= nil and c >= 49 and c <= 57 then
      parts[#parts + 1] = get_capture(ms, c - 49, s, e)
    else
      perr("invalid use of '%' in replacement string")
    end
    from = at + 2
  end
  parts[#parts + 1] = s_sub(news, from)
end

local function add_value(ms, parts, s, e, repl, kind)
  local value
  if kind == "function" then
    value = repl(captures(ms, s, e, true))
  elseif kind == "table" then
    value = repl[get_capture(ms, 0, s, e)]
  else
    add_replacement(ms, parts, s, e, repl)
    return true
  end
  if not value then
    parts[#parts + 1] = s_sub(ms.src, s, e - 1)
    return false
  end
  local t = type(value)
  if t ~= "string" and t ~= "number" then perr(s_format("invalid replacement value (a %s)", t)) end
  parts[#parts + 1] = value
  return true
end

local function lua_gsub(src, p, repl, kind, max_n)
  local anchor = s_byte(p, 1) == 94
  local start = anchor and 2 or 1
  local ms = new_state(src, p)
  local parts, n, changed = {}, 0, false
  local pos, kept, lastmatch, last = 1, 1, nil, ms.n
  while n < max_n do
    reset(ms)
    local e = match(ms, pos, start)
    if e ~= nil and e ~= lastmatch then
      n = n + 1
      parts[#parts + 1] = s_sub(src, kept, pos - 1)
      changed = add_value(ms, parts, pos, e, repl, kind) or changed
      pos, kept, lastmatch = e, e, e
    elseif pos <= last then
      pos = pos + 1
    else
      break
    end
    if anchor then break end
  end
  if not changed then return src, n end
  parts[#parts + 1] = s_sub(src, kept)
  return t_concat(parts), n
end

local function lua_gmatch(s, p, init)
  local ms = new_state(s, p)
  local src, last, lastmatch = init + 1, ms.n + 1, nil
  return function()
    while src <= last do
      reset(ms)
      local e = match(ms, src, 1)
      if e ~= nil and e ~= lastmatch then
        local from = src
        src, lastmatch = e, e
        return captures(ms, from, e, true)
      end
      src = src + 1
    end
  end
end

-- A PatternError leaves as Lua's message at the caller's line; anything else (a replacement
-- function's error, the sandbox's abort, running out of memory) passes through unchanged.
local function finish(ok, ...)
  if ok then return ... end
  local e = ...
  if getmetatable(e) == PatternError then error(e.message, 2) end
  error(e, 0)
end

----------------------------------------------------------------------------------------------------
-- What the C matcher could cost on a pattern: per starting position, the product over quantified
-- items of the choices each has (a run of its class, plus one; two for `?`), times the length of one
-- try. `classes` holds the quantified items other than `.`, whose longest run is measured.

-- A quantified item with c choices costs up to c steps to count them and c tries of the rest, so
-- one start costs at most the product of the choices times (q + 1) * (m + 1) steps, plus the
-- O(n) scans of `%b` and back-references.
local function bound(shape, n, starts, run)
  local k = #shape.classes
  local try = (shape.dots + k + 1) * (shape.m + 1) + shape.heavy * n
  return starts * (n + 1) ^ shape.dots * (run + 1) ^ k * 2 ^ shape.optional * try
end

-- The longest subject on which any call with this shape stays within SMALL_WORK.
local function small_subject(shape)
  if not shape then return -1 end
  local lo, hi = -1, 1
  while bound(shape, hi, hi + 1, hi) <= SMALL_WORK do
    lo, hi = hi, hi * 2
  end
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if bound(shape, mid, mid + 1, mid) <= SMALL_WORK then lo = mid else hi = mid end
  end
  return lo
end

local shapes, shape_count = { [true] = {}, [false] = {} }, 0

local function shape_of(p, skip_anchor)
  local known = shapes[skip_anchor][p]
  if known ~= nil then return known end
  local shape = { dots = 0, optional = 0, heavy = 0, classes = {}, m = #p, captures = 0, risky = false }
  local ms = { pat = p, pend = #p + 1 }
  local i = (skip_anchor and s_byte(p, 1) == 94) and 2 or 1
  local open, nesting = 0, 0
  local ok = pcall(function()
    while i < ms.pend do
      local c, nc = s_byte(p, i), s_byte(p, i + 1)
      if c == 40 then
        shape.captures, open, nesting = shape.captures + 1, open + 1, nesting + 1
        i = i + 1
      elseif c == 41 then
        if open == 0 then shape.risky = true end
        open, nesting = open - 1, nesting + 1
        i = i + 1
      elseif c == 36 and i + 1 == ms.pend then
        i = i + 1
      elseif c == L_ESC and nc == 98 then
        if i + 3 >= ms.pend then perr("") end
        shape.heavy = shape.heavy + 1
        i = i + 4
      elseif c == L_ESC and nc == 102 then
        if byte_at(p, i + 2) ~= 91 then perr("") end
        i = class_end(ms, i + 2)
      elseif c == L_ESC and nc ~= nil and nc >= 48 and nc <= 57 then
        shape.heavy, shape.risky = shape.heavy + 1, true
        i = i + 2
      else
        local ep = class_end(ms, i)
        local q = byte_at(p, ep)
        if q == 42 or q == 43 or q == 45 or q == 63 then nesting = nesting + 1 end
        if q == 42 or q == 43 or q == 45 then
          if c == 46 then
            shape.dots = shape.dots + 1
          elseif ep == i + 1 and not s_find(s_char(c), "%w") then
            shape.classes[#shape.classes + 1] = "%" .. s_char(c)
          else
            shape.classes[#shape.classes + 1] = s_sub(p, i, ep - 1)
          end
          i = ep + 1
        elseif q == 63 then
          shape.optional = shape.optional + 1
          i = ep + 1
        else
          i = ep
        end
      end
    end
    -- what C would raise on (an unfinished capture, too many, too deep a recursion)
    if open > 0 or shape.captures > MAXCAPTURES or nesting >= MAXCCALLS - 10 then shape.risky = true end
  end)
  if ok then
    shape.small = small_subject(shape)
  else
    shape = false
  end
  if shape_count >= 256 then
    shapes, shape_count = { [true] = {}, [false] = {} }, 0
  end
  shapes[skip_anchor][p], shape_count = shape, shape_count + 1
  return shape
end

-- The work the C matcher may do on `s` from `starts` starting positions (charged), when it stays
-- within BUDGET; nil when it may not.
local function c_is_bounded(shape, s, n, starts)
  if not shape then return nil end
  if n <= shape.small then
    charge(SMALL_WORK)
    return SMALL_WORK
  end
  local work = bound(shape, n, starts, n)
  if work <= BUDGET then
    charge(work)
    return work
  end
  local classes = shape.classes
  if #classes == 0 or bound(shape, n, starts, 0) > BUDGET then return nil end
  local lo, hi = 0, n
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if bound(shape, n, starts, mid) <= BUDGET then lo = mid else hi = mid end
  end
  -- Measuring a run longer than `lo` costs up to n * (lo + 1) steps per class; keep that in budget.
  local run = m_min(lo, BUDGET // (n * #classes) - 1)
  if run < 0 then return nil end
  for i = 1, #classes do
    if s_find(s, s_rep(classes[i], run + 1)) then return nil end
  end
  work = bound(shape, n, starts, run)
  charge(work + n * (run + 1) * #classes)
  return work
end

local function has_specials(p)
  return s_find(p, "[%^%$%*%+%?%.%(%[%%%-]") ~= nil
end

-- A plain search, in C calls of at most PLAIN_BUDGET comparisons each.
local function plain_find(s, p, init)
  local n, m = #s, #p
  if m == 0 or n - init < m or (n - init - m + 1) * m <= PLAIN_BUDGET then
    return s_find(s, p, init + 1, true)
  end
  local window = m_min(PLAIN_BUDGET // m, n)
  if window < 1 then window = 1 end
  local from = init + 1
  while from + m - 1 <= n do
    local at = s_find(s_sub(s, from, from + window + m - 2), p, 1, true)
    if at ~= nil then return from + at - 1, from + at + m - 2 end
    from = from + window
    poll()
  end
  return nil
end

-- The result of a C call made through pcall; its error (which then carries no position) is raised
-- again at the caller's line, as the C function called from there would have raised it. Used only
-- where no user code runs inside the C call.
local function c_result(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "string" then error(e, 2) end
  error(e, 0)
end

-- A replacement function or table as a function that refuses what C refuses, at the gsub caller's
-- line (levels: this function, the C gsub, G.gsub, its caller).
local function checked_replacement(repl, kind)
  return function(...)
    local value
    if kind == "function" then
      value = repl(...)
    else
      value = repl[(...)]
    end
    if value and type(value) ~= "string" and type(value) ~= "number" then
      error(s_format("invalid replacement value (a %s)", type(value)), 4)
    end
    return value
  end
end

-- Whether C's gsub would raise on a `%` in this replacement string.
local function bad_replacement(repl, captures)
  local from = 1
  while true do
    local at = s_find(repl, "%", from, true)
    if at == nil then return false end
    local c = s_byte(repl, at + 1)
    if c ~= L_ESC and c ~= 48 and not (c ~= nil and c >= 49 and c <= 57 and (c == 49 or c - 49 < captures)) then
      return true
    end
    from = at + 2
  end
end

-- An exhausted C iterator would search the rest of the subject again on each further call.
local function once_exhausted(next_c, captures)
  local done = false
  if captures <= 1 then
    return function()
      if done then return nil end
      local value = next_c()
      if value == nil then done = true end
      return value
    end
  end
  local function note(first, ...)
    if first == nil then done = true end
    return first, ...
  end
  return function()
    if done then return nil end
    return note(next_c())
  end
end

local G = {}

-- Each function calls C directly when the arguments are plain and the pattern cannot make C raise;
-- through pcall (so an error names the caller's line) when it can; and the Lua matcher when the
-- work is not bounded.

function G.find(s, p, init, plain)
  local str, pat, i = as_string(s), as_string(p), as_integer(init, 1)
  if str == nil or pat == nil or i == nil then return c_result(pcall(s_find, s, p, init, plain)) end
  local n = #str
  i = posrelat(i, n) - 1
  if i > n then return nil end
  if plain or not has_specials(pat) then return plain_find(str, pat, i) end
  local shape = shape_of(pat, true)
  if c_is_bounded(shape, str, n, s_byte(pat, 1) == 94 and 1 or n - i + 1) then
    if not shape.risky then return s_find(str, pat, i + 1) end
    return c_result(pcall(s_find, str, pat, i + 1))
  end
  return finish(pcall(lua_find, str, pat, i, true))
end

function G.match(s, p, init)
  local str, pat, i = as_string(s), as_string(p), as_integer(init, 1)
  if str == nil or pat == nil or i == nil then return c_result(pcall(s_match, s, p, init)) end
  local n = #str
  i = posrelat(i, n) - 1
  if i > n then return nil end
  local shape = shape_of(pat, true)
  if c_is_bounded(shape, str, n, s_byte(pat, 1) == 94 and 1 or n - i + 1) then
    if not shape.risky then return s_match(str, pat, i + 1) end
    return c_result(pcall(s_match, str, pat, i + 1))
  end
  return finish(pcall(lua_find, str, pat, i, false))
end

function G.gmatch(s, p, init)
  local str, pat, i = as_string(s), as_string(p), as_integer(init, 1)
  if str == nil or pat == nil or i == nil then return c_result(pcall(s_gmatch, s, p, init)) end
  local n = #str
  i = posrelat(i, n) - 1
  if i > n then i = n + 1 end
  local shape = shape_of(pat, false)
  if c_is_bounded(shape, str, n, n - i + 1) then
    local next_c = once_exhausted(s_gmatch(str, pat, i + 1), shape.captures)
    if not shape.risky then return next_c end
    return function()
      return c_result(pcall(next_c))
    end
  end
  local next_match = lua_gmatch(str, pat, i)
  return function()
    return finish(pcall(next_match))
  end
end

function G.gsub(s, p, repl, max_n)
  local str, pat = as_string(s), as_string(p)
  local kind = type(repl)
  if kind == "number" then
    repl, kind = tostring(repl), "string"
  end
  local n = str and #str
  local limit = as_integer(max_n, n and n + 1)
  if str == nil or pat == nil or limit == nil or (kind ~= "string" and kind ~= "function" and kind ~= "table") then
    return c_result(pcall(s_gsub, s, p, repl, max_n))
  end
  local shape = shape_of(pat, true)
  if c_is_bounded(shape, str, n, s_byte(pat, 1) == 94 and 1 or n + 1) then
    if kind ~= "string" then
      if not shape.risky then return s_gsub(str, pat, checked_replacement(repl, kind), limit) end
    elseif shape.risky or bad_replacement(repl, shape.captures) then
      return c_result(pcall(s_gsub, str, pat, repl, limit))
    else
      return s_gsub(str, pat, repl, limit)
    end
  end
  return finish(pcall(lua_gsub, str, pat, repl, kind, limit))
end

-- table.move over more than MOVE_CHUNK slots, in chunks the hook can stop between.
function G.move(a1, f, e, t, a2)
  local from, to, dest = as_integer(f), as_integer(e), as_integer(t)
  local tables = type(a1) == "table" and (a2 == nil or type(a2) == "table")
  local count = (tables and from and to and dest and to >= from and (from > 0 or to < m_maxinteger + from))
    and to - from + 1
  if not count or count <= MOVE_CHUNK or dest > m_maxinteger - count + 1 then
    if getmetatable(a1) == nil and getmetatable(a2) == nil and (a1 == nil or type(a1) == "table") then
      return c_result(pcall(t_move, a1, f, e, t, a2))
    end
    return t_move(a1, f, e, t, a2) -- metamethods may run: their errors must pass unchanged
  end
  local target = a2 == nil and a1 or a2
  if not rawequal(target, a1) or dest > to or dest <= from then
    for done = 0, count - 1, MOVE_CHUNK do
      local size = m_min(MOVE_CHUNK, count - done)
      t_move(a1, from + done, from + done + size - 1, dest + done, target)
      poll()
    end
  else
    local left = count
    while left > 0 do
      local size = m_min(MOVE_CHUNK, left)
      t_move(a1, from + left - size, from + left - 1, dest + left - size, target)
      left = left - size
      poll()
    end
  end
  return target
end

return G
