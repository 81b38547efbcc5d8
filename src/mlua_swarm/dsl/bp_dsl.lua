-- bp_dsl: Blueprint-level sugar on top of flow_dsl.
--
-- `B.pipeline` expands a list of stages into nested `seq` nodes: each stage is a step (or a
-- fanout), optionally wrapped in a `skip_on` guard, followed by a retry loop and a halt gate, and
-- the rest of the pipeline continues inside the gate's `else` arm. Authoring mistakes that still
-- build (a halt_on nothing gates on, a gate on a fanout stage) are reported through the host's
-- warning channel; real errors raise.

local F = require "flow_dsl"
local _, HOST = ...

local B = {}

local function warn(code, msg)
  if HOST ~= nil and HOST.warn ~= nil then HOST.warn(code, msg) end
end

local function fail(msg)
  error(msg, 0)
end

local From = {}

function B.bp(t) return t end

function B.agent(t)
  local out = {}
  for k, v in pairs(t) do
    if k == "md" then out["$agent_md"] = v else out[k] = v end
  end
  return out
end

function B.stage(id)
  return function(rec)
    local out = {}
    for k, v in pairs(rec) do out[k] = v end
    out.id = id
    return out
  end
end

function B.from(id)
  return setmetatable({ stage = id }, From)
end

local function is_from(x)
  return getmetatable(x) == From
end

local JOINS = { all = true, any = true, race = true, all_settled = true }

local function path(at) return { op = "path", at = at } end
local function lit(value) return { op = "lit", value = value } end
local function seq(children) return { kind = "seq", children = children } end
local function step(agent, input, out)
  return { kind = "step", ref = agent, ["in"] = path(input), out = path(out) }
end

local function describe(rec, index)
  if rec.id ~= nil then return "stage '" .. tostring(rec.id) .. "'" end
  return "stage #" .. tostring(index)
end

-- A fanout stage's lanes as records {lane, agent, input, out}, or an error.
local function normalize_lanes(lanes, where)
  if type(lanes) ~= "table" then fail(where .. ": fanout.lanes must be a list of lane names or records") end
  local n = #lanes
  local count = 0
  for _ in pairs(lanes) do count = count + 1 end
  if count ~= n then fail(where .. ": fanout.lanes must be an ordered list, not a table with keys") end
  if n == 0 then fail(where .. ": fanout.lanes is empty; give at least one lane") end
  local out = {}
  for i, lane in ipairs(lanes) do
    if type(lane) == "string" then
      out[i] = { lane = lane, agent = lane }
    elseif type(lane) == "table" and type(lane.lane) == "string" then
      out[i] = { lane = lane.lane, agent = lane.agent or lane.lane, input = lane.input, out = lane.out }
    else
      fail(where .. ": fanout.lanes[" .. i .. "] must be a lane name or a {lane = \"name\", ...} record")
    end
  end
  return out
end

local function validate_fanout(rec, index)
  local where = "B.pipeline " .. describe(rec, index)
  local fo = rec.fanout
  if type(fo) ~= "table" then fail(where .. ": fanout must be a table of options") end
  if rec.retry ~= nil then fail(where .. ": retry is not supported on a fanout stage") end
  if rec.agent ~= nil then
    fail(where .. ": a stage has either agent or fanout, not both (put the agent inside fanout)")
  end
  if fo.agent == nil and fo.lanes == nil then fail(where .. ": fanout needs an agent or lanes") end
  if fo.agent ~= nil and fo.lanes ~= nil then fail(where .. ": fanout takes agent or lanes, not both") end
  if fo.join ~= nil and not JOINS[fo.join] then
    fail(where .. ": fanout.join must be one of all, any, race, all_settled (got '" .. tostring(fo.join) .. "')")
  end
  if fo.lanes ~= nil then normalize_lanes(fo.lanes, where) end
end

local function verdict_path(at)
  return at .. '.parts["verdict"]'
end

local function gate_cond(out, vals)
  local eqs = {}
  for i, v in ipairs(vals) do
    eqs[i] = { op = "eq", lhs = path(verdict_path(out)), rhs = lit(v) }
  end
  if #eqs == 1 then return eqs[1] end
  return { op = "or", args = eqs }
end

local function non_empty(list)
  return list ~= nil and next(list) ~= nil
end

function B.pipeline(t)
  local stages = {}
  for i, rec in ipairs(t) do
    if type(rec) ~= "table" then fail("B.pipeline: stage #" .. i .. " is not a table") end
    if rec.id == nil then fail("B.pipeline: stage #" .. i .. ' has no id; write B.stage "id" { ... }') end
    stages[i] = rec
  end
  local n = #stages
  local pipeline_halt = t.halt_on or {}
  local halted_at = t.halted_at or "$.halted_at"
  local gate_default = t.gate_default or "explicit"
  if gate_default ~= "explicit" and gate_default ~= "auto" then
    fail('B.pipeline: gate_default must be "explicit" or "auto" (got \'' .. tostring(gate_default) .. "')")
  end

  -- Pass 0: fanout records.
  for i, rec in ipairs(stages) do
    if rec.fanout ~= nil then validate_fanout(rec, i) end
  end

  -- Pass 1: every stage's (and every retry fix stage's) out path, for B.from.
  local outs = {}
  local function out_of(rec) return rec.out or ("$." .. rec.id) end
  for i, rec in ipairs(stages) do
    outs[rec.id] = out_of(rec)
    if rec.retry ~= nil then
      local fix = rec.retry.fix
      if type(fix) ~= "table" or fix.id == nil then
        fail("B.pipeline " .. describe(rec, i) .. ': retry.fix must be a stage, e.g. fix = B.stage "fix" { agent = ... }')
      end
      if math.type(rec.retry.max) ~= "integer" or rec.retry.max < 1 then
        fail("B.pipeline " .. describe(rec, i) .. ": retry.max must be a positive integer")
      end
      outs[fix.id] = out_of(fix)
    end
  end

  local function resolve_from(ref)
    local target = outs[ref.stage]
    if target == nil then fail("B.from: no stage named '" .. tostring(ref.stage) .. "' in this pipeline") end
    return target
  end

  local function input_of(rec, index, chained)
    local input = rec.input
    if type(input) == "string" then return input end
    if is_from(input) then return resolve_from(input) end
    if input ~= nil then
      fail("B.pipeline " .. describe(rec, index) .. ": input must be a path string or B.from(...)")
    end
    if chained and t.chain and index >= 2 then return out_of(stages[index - 1]) end
    return "$.d." .. rec.id
  end

  local function wants_gate(rec)
    if rec.gate == false then return false end
    if rec.gate == true then return true end
    if rec.retry ~= nil then return true end
    if rec.halt_on ~= nil then return true end
    return gate_default == "auto" and non_empty(pipeline_halt) and rec.fanout == nil
  end

  local function fanout_node(rec, index)
    local fo = rec.fanout
    local bind = fo.bind or "$.item"
    local items, body
    if fo.agent ~= nil then
      items = path(input_of(rec, index, true))
      body = step(fo.agent, bind, fo.lane_out or "$.branch_out")
    else
      local where = "B.pipeline " .. describe(rec, index)
      local lanes = normalize_lanes(fo.lanes, where)
      local names = {}
      for i, lane in ipairs(lanes) do names[i] = lane.lane end
      items = lit(names)
      local function lane_step(lane)
        local input = lane.input or ("$.d." .. lane.lane)
        if is_from(input) then
          input = resolve_from(input)
        elseif type(input) ~= "string" then
          fail(where .. ": fanout lane '" .. lane.lane .. "': input must be a path string or B.from(...)")
        end
        return step(lane.agent, input, lane.out or ("$.lane." .. lane.lane))
      end
      body = lane_step(lanes[#lanes])
      for i = #lanes - 1, 1, -1 do
        body = {
          kind = "branch",
          cond = { op = "eq", lhs = path(bind), rhs = lit(lanes[i].lane) },
          ["then"] = lane_step(lanes[i]),
          ["else"] = body,
        }
      end
    end
    if fo.items ~= nil then
      if is_from(fo.items) then
        items = path(resolve_from(fo.items))
      else
        items = F.unwrap(fo.items)
      end
    end
    return {
      kind = "fanout", items = items, bind = path(bind), body = body,
      join = fo.join or "all", out = path(out_of(rec)),
    }
  end

  -- Authoring warnings.
  local any_gate = false
  for i, rec in ipairs(stages) do
    local gated = wants_gate(rec)
    if gated then any_gate = true end
    if gated and rec.fanout ~= nil then
      warn("dsl-gate-on-fanout", "B.pipeline " .. describe(rec, i) .. ": a gate on a fanout stage never fires (its out is the "
        .. "join result, which has no parts.verdict); the gate is emitted anyway")
    end
  end
  if non_empty(pipeline_halt) and not any_gate then
    local ids, vals = {}, {}
    for i, rec in ipairs(stages) do ids[i] = tostring(rec.id) end
    for i, v in ipairs(pipeline_halt) do vals[i] = tostring(v) end
    warn("dsl-dead-halt", "B.pipeline: halt_on = {" .. table.concat(vals, ", ") .. "} has no effect because none of "
      .. "the stages [" .. table.concat(ids, ", ") .. "] is gated, so this pipeline can never halt; give one "
      .. 'stage gate = true, its own halt_on or a retry, or set gate_default = "auto"')
  end

  local tail
  if t.done ~= nil then
    tail = { kind = "assign", at = path(t.done), value = lit(true) }
  else
    tail = seq({})
  end

  local function build(i)
    if i > n then return tail end
    local rec = stages[i]
    local vals = rec.halt_on or pipeline_halt
    local out = out_of(rec)
    local input = input_of(rec, i, true)
    local node
    if rec.fanout ~= nil then
      node = fanout_node(rec, i)
    else
      node = step(rec.agent, input, out)
    end
    local rest = build(i + 1)
    local body = { node }
    if rec.retry ~= nil then
      local retry = rec.retry
      local fix = retry.fix
      local fix_node = step(fix.agent, input_of(fix, i, false), out_of(fix))
      local counter = retry.counter or ("$." .. rec.id .. "_n")
      body[#body + 1] = {
        kind = "loop",
        counter = path(counter),
        cond = { op = "and", args = { { op = "lt", lhs = path(counter), rhs = lit(retry.max) }, gate_cond(out, vals) } },
        max = retry.max + 1,
        body = seq({ fix_node, node }),
      }
    end
    local kids = body
    if non_empty(rec.skip_on) then
      kids = {
        {
          kind = "branch",
          cond = { op = "in", needle = path(verdict_path(input)), haystack = lit(rec.skip_on) },
          ["then"] = seq({}),
          ["else"] = seq(body),
        },
      }
    end
    if not wants_gate(rec) then
      kids[#kids + 1] = rest
      return seq(kids)
    end
    kids[#kids + 1] = {
      kind = "branch",
      cond = gate_cond(out, vals),
      ["then"] = { kind = "assign", at = path(halted_at), value = lit(rec.id) },
      ["else"] = rest,
    }
    return seq(kids)
  end

  return build(1)
end

return B
