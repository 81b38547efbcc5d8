-- flow_dsl: builders for the flow IR (flow-ir 0.2.0 wire form).
--
-- Expressions are wrappers `{ast = <json expr>}` sharing one metatable, so they can carry
-- comparison methods and arithmetic operators. Nodes are plain tables. Nothing is validated
-- here: the Blueprint loader checks paths and shapes when it parses the result.

local F = {}

local Expr = {}
Expr.__index = Expr

local function wrap(ast)
  return setmetatable({ ast = ast }, Expr)
end

local function is_expr(x)
  return getmetatable(x) == Expr
end

-- An expression's AST; any other value becomes a literal.
function F.unwrap(x)
  if is_expr(x) then return x.ast end
  return { op = "lit", value = x }
end
local unwrap = F.unwrap

local function unwrap_all(list)
  local out = {}
  for i, x in ipairs(list or {}) do out[i] = unwrap(x) end
  return out
end

function F.p(at) return wrap({ op = "path", at = at }) end
function F.lit(value) return wrap({ op = "lit", value = value }) end
function F.raw(ast) return wrap(ast) end
function F.all(list) return wrap({ op = "and", args = unwrap_all(list) }) end
function F.any(list) return wrap({ op = "or", args = unwrap_all(list) }) end
function F.call_extern(ref, args) return wrap({ op = "call_extern", ref = ref, args = unwrap_all(args) }) end

-- The marker that becomes a genuine empty JSON object (a plain `{}` becomes `[]`).
function F.obj() return { __mse_empty_object__ = true } end

local function comparison(op)
  return function(self, rhs) return wrap({ op = op, lhs = self.ast, rhs = unwrap(rhs) }) end
end
Expr.eq = comparison("eq")
Expr.ne = comparison("ne")
Expr.lt = comparison("lt")
Expr.lte = comparison("lte")
Expr.gt = comparison("gt")
Expr.gte = comparison("gte")

function Expr:And(other) return wrap({ op = "and", args = { self.ast, unwrap(other) } }) end
function Expr:Or(other) return wrap({ op = "or", args = { self.ast, unwrap(other) } }) end
function Expr:Not() return wrap({ op = "not", arg = self.ast }) end
function Expr:exists() return wrap({ op = "exists", arg = self.ast }) end
function Expr:len() return wrap({ op = "len", arg = self.ast }) end
function Expr:contains(needle) return wrap({ op = "in", needle = unwrap(needle), haystack = self.ast }) end

local function arithmetic(op)
  return function(lhs, rhs) return wrap({ op = op, lhs = unwrap(lhs), rhs = unwrap(rhs) }) end
end
Expr.__add = arithmetic("add")
Expr.__sub = arithmetic("sub")
Expr.__mul = arithmetic("mul")
Expr.__div = arithmetic("div")
Expr.__mod = arithmetic("mod")

function F.step(t)
  return { kind = "step", ref = t.agent, ["in"] = unwrap(t.input), out = unwrap(t.out) }
end

function F.seq(children)
  local out = {}
  for i, child in ipairs(children) do out[i] = child end
  return { kind = "seq", children = out }
end

function F.branch(t)
  return { kind = "branch", cond = unwrap(t.cond), ["then"] = t.on_true, ["else"] = t.on_false }
end

function F.loop_(t)
  return { kind = "loop", counter = unwrap(t.counter), cond = unwrap(t.cond), max = t.max, body = t.body }
end

function F.fanout(t)
  local node = {
    kind = "fanout", items = unwrap(t.items), bind = unwrap(t.bind), body = t.body,
    join = t.join, out = unwrap(t.out),
  }
  -- ours: join each lane as this expression over its final ctx instead of the whole ctx
  if t.collect ~= nil then node.collect = unwrap(t.collect) end
  return node
end

function F.assign(t)
  return { kind = "assign", at = unwrap(t.at), value = unwrap(t.value) }
end

function F.try_(t)
  local node = { kind = "try", body = t.body, catch = t.catch }
  if t.err_at ~= nil then node.err_at = unwrap(t.err_at) end
  return node
end

return F
