-- String matching and table.move that the sandbox's budgets can always stop.
--
-- The instruction hook only runs between Lua instructions, so one C call that works for minutes
-- (`string.find(s, ".-.-.-.-b")` on a long string, a plain find of a long needle that almost
-- occurs everywhere, `table.move` over 2^62 slots) used to outlive the wall clock, the step timeout
-- and the cancel. Each replacement here first bounds the work the C function could do on these
-- arguments. Within `BUDGET` the C function runs as before; past it, the match runs in a matcher of
-- our own written in Lua (same pattern language, same results and messages), which the hook
-- interrupts, or the work is cut into bounded C calls.
--
-- Called once per runtime with `poll` (raises the sandbox's abort when the host says stop), the
-- real `string` and `table` libraries, optionally a smaller budget (tests use 0 to take the Lua
-- path everywhere) and optionally `in_script(source)`, which tells the user's code from the host's
-- (see `raise`); returns the replacement functions.

local poll, string, table, budget, in_script = ...

local s_byte, s_sub, s_find, s_match = string.byte, string.sub, string.find, string.match
local s_gmatch, s_gsub, s_rep, s_char, s_format = string.gmatch, string.gsub, string.rep, string.char, string.format
local t_move, t_concat, t_unpack = table.move, table.concat, table.unpack
local m_tointeger, m_type, m_min, m_maxinteger = math.tointeger, math.type, math.min, math.maxinteger
local type, tonumber, tostring, error, pcall = type, tonumber, tostring, error, pcall
local setmetatable, getmetatable, rawequal = setmetatable, getmetatable, rawequal
local getinfo = debug.getinfo

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

local function start_of(pos, len)
  if pos > 0 then return pos end
  if pos == 0 or pos < -len then return 1 end
  return len + pos + 1
end

----------------------------------------------------------------------------------------------------
-- The matcher, in Lua, so that the instruction hook can stop it. It implements Lua's pattern
-- language as the reference manual defines it (§6.4.1), with the C library's error messages, as a
-- machine with an explicit stack of choices instead of recursion:
--   * `items` walks the pattern one item at a time, from the item the machine has reached, so a
--     malformed piece is reported only once matching gets to it, as the C library does;
--   * a quantified item that could match more than one way leaves a choice (a greedy count to
--     lower, a lazy position to advance, an optional item to skip) and the machine goes on;
--   * on a mismatch the newest choice is taken up again, after the capture changes made since it
--     was left are undone from the trail.
-- Positions are 1-based; `n + 1` is the end of the subject, where a byte reads as 0.

local PatternError = {}
local function perr(message)
  error(setmetatable({ message = message }, PatternError), 0)
end

local PERCENT, OPEN_BRACKET, CLOSE_BRACKET, CARET, DASH = 37, 91, 93, 94, 45
local STAR, PLUS, QUESTION, DOLLAR, DOT, LPAREN, RPAREN = 42, 43, 63, 36, 46, 40, 41
local MAX_CAPTURES, MAX_DEPTH = 32, 200 -- C's limits: captures, and nested choices and captures
local OPEN, POSITION = -1, -2 -- a capture's length while it is open, and for `()`

-- Which bytes each class letter takes, as the C library answers for every byte (so the locale is
-- the one C uses).
local CLASS_LETTERS = "acdglpsuwx"
local class_bytes = {}
local function in_class(letter, b)
  local lower = letter
  if letter >= 65 and letter <= 90 then lower = letter + 32 end
  if not s_find(CLASS_LETTERS, s_char(lower), 1, true) then return b == letter end
  local table_of = class_bytes[lower]
  if table_of == nil then
    table_of = {}
    for x = 0, 255 do table_of[x] = s_find(s_char(x), "%" .. s_char(lower)) ~= nil end
    class_bytes[lower] = table_of
  end
  if lower == letter then return table_of[b] end
  return not table_of[b]
end

local function byte_or_zero(text, i)
  return s_byte(text, i) or 0
end

-- The end of the single-character class starting at `i` (one past it), raising C's messages.
local function class_end(pat, plen, i)
  local c = s_byte(pat, i)
  if c == PERCENT then
    if i + 1 > plen then perr("malformed pattern (ends with '%')") end
    return i + 2
  end
  if c ~= OPEN_BRACKET then return i + 1 end
  local j = i + 1
  if byte_or_zero(pat, j) == CARET then j = j + 1 end
  -- the first member is taken as it is (so `[]]` holds `]`), then members up to the closing `]`
  repeat
    if j > plen then perr("malformed pattern (missing ']')") end
    local member = s_byte(pat, j)
    j = j + 1
    if member == PERCENT and j <= plen then j = j + 1 end
  until byte_or_zero(pat, j) == CLOSE_BRACKET
  return j + 1
end

-- Whether byte `b` is in the set `pat[first .. last]`, `first` at its `[` and `last` at its `]`.
local function in_set(pat, first, last, b)
  local j, negated = first + 1, false
  if s_byte(pat, j) == CARET then
    negated, j = true, j + 1
  end
  while j < last do
    local m = s_byte(pat, j)
    if m == PERCENT then
      j = j + 1
      if in_class(s_byte(pat, j), b) then return not negated end
      j = j + 1
    elseif s_byte(pat, j + 1) == DASH and j + 2 < last then
      if m <= b and b <= s_byte(pat, j + 2) then return not negated end
      j = j + 3
    else
      if m == b then return not negated end
      j = j + 1
    end
  end
  return negated
end

-- Whether the class `pat[i .. stop - 1]` takes the subject's byte at `si` (never past the end).
local function takes(ms, si, i, stop)
  if si > ms.n then return false end
  local b, c = s_byte(ms.src, si), s_byte(ms.pat, i)
  if c == DOT then return true end
  if c == PERCENT then return in_class(s_byte(ms.pat, i + 1), b) end
  if c == OPEN_BRACKET then return in_set(ms.pat, i, stop - 1, b) end
  return c == b
end

local function new_state(src, pat)
  return { src = src, n = #src, pat = pat, plen = #pat, level = 0, starts = {}, lens = {} }
end

-- Capture changes are logged on the trail so that a choice taken up again can undo them.
local function set_capture(ms, trail, k, start, len)
  trail[#trail + 1] = { k, ms.starts[k], ms.lens[k], ms.level }
  ms.starts[k], ms.lens[k] = start, len
end

local function undo_to(ms, trail, mark)
  for t = #trail, mark + 1, -1 do
    local entry = trail[t]
    ms.starts[entry[1]], ms.lens[entry[1]], ms.level = entry[2], entry[3], entry[4]
    trail[t] = nil
  end
end

local GREEDY, LAZY, OPTIONAL = 1, 2, 3

-- One attempt from subject position `si`, pattern position `pi`: the end of the match, or nil.
local function run(ms, si, pi)
  local src, pat, plen, n = ms.src, ms.pat, ms.plen, ms.n
  local choices, trail = {}, {}

  -- After a mismatch: the next way to go on from the newest choice, or nil when none is left.
  local function retreat()
    while #choices > 0 do
      local ch = choices[#choices]
      undo_to(ms, trail, ch.mark)
      if ch.kind == GREEDY then
        ch.count = ch.count - 1
        if ch.count >= 0 then return ch.base + ch.count, ch.next end
      elseif ch.kind == LAZY then
        if takes(ms, ch.at, ch.item, ch.stop) then
          ch.at = ch.at + 1
          return ch.at, ch.next
        end
      else
        choices[#choices] = nil
        return ch.at, ch.next
      end
      choices[#choices] = nil
    end
    return nil
  end

  local function deeper()
    if #choices + #trail + 1 >= MAX_DEPTH then perr("pattern too complex") end
  end

  local function leave(kind, fields)
    deeper()
    fields.kind, fields.mark = kind, #trail
    choices[#choices + 1] = fields
  end

  while true do
    local ok = true
    if pi > plen then return si end
    local c, following = s_byte(pat, pi), s_byte(pat, pi + 1)
    if c == LPAREN then
      if ms.level >= MAX_CAPTURES then perr("too many captures") end
      deeper()
      local k = ms.level + 1
      if following == RPAREN then
        set_capture(ms, trail, k, si, POSITION)
        pi = pi + 2
      else
        set_capture(ms, trail, k, si, OPEN)
        pi = pi + 1
      end
      ms.level = k
    elseif c == RPAREN then
      local k = ms.level
      while k >= 1 and ms.lens[k] ~= OPEN do k = k - 1 end
      if k < 1 then perr("invalid pattern capture") end
      deeper()
      set_capture(ms, trail, k, ms.starts[k], si - ms.starts[k])
      pi = pi + 1
    elseif c == DOLLAR and pi == plen then
      ok = si == n + 1
      pi = pi + 1
    elseif c == PERCENT and following == 98 then -- %b
      if pi + 3 > plen then perr("malformed pattern (missing arguments to '%b')") end
      local open_b, close_b = s_byte(pat, pi + 2), s_byte(pat, pi + 3)
      ok = false
      if byte_or_zero(src, si) == open_b and si <= n then
        local depth, j = 1, si + 1
        while j <= n do
          local b = s_byte(src, j)
          if b == close_b then
            depth = depth - 1
            if depth == 0 then
              ok, si = true, j + 1
              break
            end
          elseif b == open_b then
            depth = depth + 1
          end
          j = j + 1
        end
      end
      pi = pi + 4
    elseif c == PERCENT and following == 102 then -- %f
      local first = pi + 2
      if byte_or_zero(pat, first) ~= OPEN_BRACKET then perr("missing '[' after '%f' in pattern") end
      local stop = class_end(pat, plen, first)
      local before = si == 1 and 0 or s_byte(src, si - 1)
      ok = not in_set(pat, first, stop - 1, before) and in_set(pat, first, stop - 1, byte_or_zero(src, si))
      pi = stop
    elseif c == PERCENT and following ~= nil and following >= 48 and following <= 57 then -- %0-%9
      local k = following - 48
      if k < 1 or k > ms.level or ms.lens[k] == OPEN then perr(s_format("invalid capture index %%%d", k)) end
      local len = ms.lens[k]
      ok = len >= 0 and n - si + 1 >= len and s_sub(src, si, si + len - 1) == s_sub(src, ms.starts[k], ms.starts[k] + len - 1)
      si, pi = si + (ok and len or 0), pi + 2
    else
      local stop = class_end(pat, plen, pi)
      local q = s_byte(pat, stop)
      local here = takes(ms, si, pi, stop)
      if q == STAR or q == PLUS then
        local base = q == PLUS and si + 1 or si
        if q == PLUS and not here then
          ok = false
        elseif not here then
          pi = stop + 1
        else
          local count = 0
          while takes(ms, base + count, pi, stop) do count = count + 1 end
          leave(GREEDY, { base = base, count = count, next = stop + 1 })
          si, pi = base + count, stop + 1
        end
      elseif q == DASH then
        if here then leave(LAZY, { at = si, item = pi, stop = stop, next = stop + 1 }) end
        pi = stop + 1
      elseif q == QUESTION then
        if here then
          leave(OPTIONAL, { at = si, next = stop + 1 })
          si = si + 1
        end
        pi = stop + 1
      elseif here then
        si, pi = si + 1, stop
      else
        ok = false
      end
    end
    if not ok then
      si, pi = retreat()
      if si == nil then return nil end
    end
  end
end

-- Capture `k` (0: the whole match `from .. to - 1` when the pattern has no captures), as a value.
local function capture(ms, k, from, to)
  if k >= ms.level then
    if k ~= 0 then perr(s_format("invalid capture index %%%d", k + 1)) end
    return s_sub(ms.src, from, to - 1)
  end
  local len = ms.lens[k + 1]
  if len == OPEN then perr("unfinished capture") end
  if len == POSITION then return ms.starts[k + 1] end
  return s_sub(ms.src, ms.starts[k + 1], ms.starts[k + 1] + len - 1)
end

-- Every capture's value; with `whole`, the match itself when the pattern has none.
local function all_captures(ms, from, to, whole)
  local count = ms.level
  if count == 0 then
    if not whole then return end
    return s_sub(ms.src, from, to - 1)
  end
  local values = {}
  for k = 1, count do values[k] = capture(ms, k - 1, from, to) end
  return t_unpack(values, 1, count)
end

local function attempt(ms, si, pi)
  ms.level = 0
  return run(ms, si, pi)
end

-- `string.find` (`find`) or `string.match` from byte `init + 1` (0-based `init`, already clamped).
local function lua_find(s, p, init, find)
  local ms = new_state(s, p)
  local anchored = s_byte(p, 1) == CARET
  local pi = anchored and 2 or 1
  for si = init + 1, ms.n + 1 do
    local stop = attempt(ms, si, pi)
    if stop ~= nil then
      if find then return si, stop - 1, all_captures(ms, si, stop, false) end
      return all_captures(ms, si, stop, true)
    end
    if anchored then break end
  end
  return nil
end

-- `string.gmatch`'s iterator (a `^` is an ordinary byte here, as in C); an empty match right
-- where the previous match ended is skipped.
local function lua_gmatch(s, p, init)
  local ms = new_state(s, p)
  local si, previous = init + 1, nil
  return function()
    while si <= ms.n + 1 do
      local from = si
      local stop = attempt(ms, from, 1)
      if stop ~= nil and stop ~= previous then
        si, previous = stop, stop
        return all_captures(ms, from, stop, true)
      end
      si = si + 1
    end
  end
end

-- What a replacement string makes of one match: `%0`-`%9` and `%%` expanded.
local function expand(ms, repl, from, to, out)
  local at = 1
  while true do
    local pct = s_find(repl, "%", at, true)
    if pct == nil then break end
    out[#out + 1] = s_sub(repl, at, pct - 1)
    local d = s_byte(repl, pct + 1)
    if d == PERCENT then
      out[#out + 1] = "%"
    elseif d == 48 then
      out[#out + 1] = s_sub(ms.src, from, to - 1)
    elseif d ~= nil and d >= 49 and d <= 57 then
      out[#out + 1] = tostring(capture(ms, d - 49, from, to))
    else
      perr("invalid use of '%' in replacement string")
    end
    at = pct + 2
  end
  out[#out + 1] = s_sub(repl, at)
end

-- `string.gsub` with `repl` of type `kind` (a string, a table or a function), at most `limit` times.
local function lua_gsub(s, p, repl, kind, limit)
  local ms = new_state(s, p)
  local anchored = s_byte(p, 1) == CARET
  local pi = anchored and 2 or 1
  local out, count, si, previous = {}, 0, 1, nil
  while count < limit do
    local stop = attempt(ms, si, pi)
    if stop ~= nil and stop ~= previous then
      count = count + 1
      if kind == "string" then
        expand(ms, repl, si, stop, out)
      else
        local value
        if kind == "function" then
          value = repl(all_captures(ms, si, stop, true))
        else
          value = repl[capture(ms, 0, si, stop)]
        end
        if not value then
          out[#out + 1] = s_sub(s, si, stop - 1)
        elseif type(value) == "string" or type(value) == "number" then
          out[#out + 1] = tostring(value)
        else
          perr(s_format("invalid replacement value (a %s)", type(value)))
        end
      end
      si, previous = stop, stop
    elseif si <= ms.n then
      out[#out + 1] = s_sub(s, si, si)
      si = si + 1
    else
      break
    end
    if anchored then break end
  end
  out[#out + 1] = s_sub(s, si)
  return t_concat(out), count
end

-- Raise `message` at the line that called the replacement function at `level` (counted from here:
-- 1 is this function), as the C function would have: a C function called from Lua names the
-- caller's line, even through a tail call, since a tail call to C keeps the caller's frame. A tail
-- call to a Lua function replaces it, so when one brought us here the calling function is gone: the
-- message then names the innermost line of the user's code still running (the one that called the
-- function that made the tail call), or none when there is none. The replacement functions call
-- the raising helpers in the scope of a to-be-closed variable, so that those calls are not tail
-- calls and their own frame stays to be read.
local function raise(message, level)
  local at = level + 1
  local called = getinfo(level, "t")
  if called ~= nil and called.istailcall then
    local frame = getinfo(at, "S")
    while frame ~= nil and (frame.what == "C" or (in_script ~= nil and not in_script(frame.source))) do
      at = at + 1
      frame = getinfo(at, "S")
    end
    if frame == nil then at = level + 1 end
  end
  error(message, at)
end

-- A PatternError leaves as Lua's message at the caller's line (levels: raise, this function, the
-- replacement function); anything else (a replacement function's error, the sandbox's abort,
-- running out of memory) passes through unchanged.
local function finish(ok, ...)
  if ok then return ... end
  local e = ...
  if getmetatable(e) == PatternError then raise(e.message, 3) end
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
  local plen = #p
  local i = (skip_anchor and s_byte(p, 1) == 94) and 2 or 1
  local open, nesting = 0, 0
  local ok = pcall(function()
    while i <= plen do
      local c, nc = s_byte(p, i), s_byte(p, i + 1)
      if c == 40 then
        shape.captures, open, nesting = shape.captures + 1, open + 1, nesting + 1
        i = i + 1
      elseif c == 41 then
        if open == 0 then shape.risky = true end
        open, nesting = open - 1, nesting + 1
        i = i + 1
      elseif c == DOLLAR and i == plen then
        i = i + 1
      elseif c == PERCENT and nc == 98 then
        if i + 3 > plen then perr("") end
        shape.heavy = shape.heavy + 1
        i = i + 4
      elseif c == PERCENT and nc == 102 then
        if byte_or_zero(p, i + 2) ~= OPEN_BRACKET then perr("") end
        i = class_end(p, plen, i + 2)
      elseif c == PERCENT and nc ~= nil and nc >= 48 and nc <= 57 then
        shape.heavy, shape.risky = shape.heavy + 1, true
        i = i + 2
      else
        local ep = class_end(p, plen, i)
        local q = byte_or_zero(p, ep)
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
    if open > 0 or shape.captures > MAX_CAPTURES or nesting >= MAX_DEPTH - 10 then shape.risky = true end
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
  if type(e) == "string" then raise(e, 3) end
  error(e, 0)
end

-- A replacement function or table as a function that refuses what C refuses, at the gsub caller's
-- line (levels: raise, this function, the C gsub, G.gsub).
local function checked_replacement(repl, kind)
  return function(...)
    local value
    if kind == "function" then
      value = repl(...)
    else
      value = repl[(...)]
    end
    if value and type(value) ~= "string" and type(value) ~= "number" then
      raise(s_format("invalid replacement value (a %s)", type(value)), 4)
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
    if c ~= PERCENT and c ~= 48 and not (c ~= nil and c >= 49 and c <= 57 and (c == 49 or c - 49 < captures)) then
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
  if str == nil or pat == nil or i == nil then
    local keep <close> = nil
    return c_result(pcall(s_find, s, p, init, plain))
  end
  local n = #str
  i = start_of(i, n) - 1
  if i > n then return nil end
  if plain or not has_specials(pat) then return plain_find(str, pat, i) end
  local shape = shape_of(pat, true)
  if c_is_bounded(shape, str, n, s_byte(pat, 1) == 94 and 1 or n - i + 1) then
    if not shape.risky then return s_find(str, pat, i + 1) end
    local keep <close> = nil
    return c_result(pcall(s_find, str, pat, i + 1))
  end
  local keep <close> = nil
  return finish(pcall(lua_find, str, pat, i, true))
end

function G.match(s, p, init)
  local str, pat, i = as_string(s), as_string(p), as_integer(init, 1)
  if str == nil or pat == nil or i == nil then
    local keep <close> = nil
    return c_result(pcall(s_match, s, p, init))
  end
  local n = #str
  i = start_of(i, n) - 1
  if i > n then return nil end
  local shape = shape_of(pat, true)
  if c_is_bounded(shape, str, n, s_byte(pat, 1) == 94 and 1 or n - i + 1) then
    if not shape.risky then return s_match(str, pat, i + 1) end
    local keep <close> = nil
    return c_result(pcall(s_match, str, pat, i + 1))
  end
  local keep <close> = nil
  return finish(pcall(lua_find, str, pat, i, false))
end

function G.gmatch(s, p, init)
  local str, pat, i = as_string(s), as_string(p), as_integer(init, 1)
  if str == nil or pat == nil or i == nil then
    local keep <close> = nil
    return c_result(pcall(s_gmatch, s, p, init))
  end
  local n = #str
  i = start_of(i, n) - 1
  if i > n then i = n + 1 end
  local shape = shape_of(pat, false)
  if c_is_bounded(shape, str, n, n - i + 1) then
    local next_c = s_gmatch(str, pat, i + 1)
    if not shape.risky then return once_exhausted(next_c, shape.captures) end
    -- pcall calls the C iterator itself, so that its error carries no position of ours.
    local done = false
    local function note(ok, first, ...)
      if ok and first == nil then done = true end
      return ok, first, ...
    end
    return function()
      if done then return nil end
      local keep <close> = nil
      return c_result(note(pcall(next_c)))
    end
  end
  local next_match = lua_gmatch(str, pat, i)
  return function()
    local keep <close> = nil
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
    local keep <close> = nil
    return c_result(pcall(s_gsub, s, p, repl, max_n))
  end
  local shape = shape_of(pat, true)
  if c_is_bounded(shape, str, n, s_byte(pat, 1) == 94 and 1 or n + 1) then
    if kind ~= "string" then
      if not shape.risky then return s_gsub(str, pat, checked_replacement(repl, kind), limit) end
    elseif shape.risky or bad_replacement(repl, shape.captures) then
      local keep <close> = nil
      return c_result(pcall(s_gsub, str, pat, repl, limit))
    else
      return s_gsub(str, pat, repl, limit)
    end
  end
  local keep <close> = nil
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
      local keep <close> = nil
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
