"""The 20 expression ops of flow-ir 0.2.0: a JSON AST parsed once, then evaluated against a ctx.

Evaluation raises only `ExprError` subclasses. Truthiness: only `null` and `false` are falsy.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mlua_swarm.flow.errors import (
    ArithError,
    ExprError,
    ExprTypeError,
    ExternError,
    FlowParseError,
    PathError,
    PathNotFound,
)
from mlua_swarm.flow.paths import Path, json_type_name, parse_path

Externs = Mapping[str, Callable[..., Any]]
NO_EXTERNS: Externs = {}
MAX_EXPR_DEPTH = 128


def truthy(value: Any) -> bool:
    """Flow truthiness: everything except `null` and `false` is true."""
    return value is not None and value is not False


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, (int, float)) and kind is not bool


def json_equal(a: Any, b: Any) -> bool:
    """Deep structural equality; numbers compare by value (`5 == 5.0`), booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if _is_number(a):
        return _is_number(b) and a == b
    if a is None:
        return b is None
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return False
        return all(json_equal(v, b[k]) for k, v in a.items())
    raise ExprTypeError(f"cannot compare a non-JSON value of type {type(a).__name__}")


class Expr:
    """Base of every expression node: `op` is the wire tag."""

    __slots__ = ()
    op: ClassVar[str]

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        """The expression's value against `ctx`."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The wire form of the expression."""
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        """Direct sub-expressions, in wire order."""
        return ()


@dataclass(frozen=True, slots=True, eq=False)
class PathExpr(Expr):
    """`path {at}`: read a ctx value; a missing key raises PathNotFound."""

    at: Path
    op: ClassVar[str] = "path"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        return self.at.get(ctx)

    def to_json(self) -> dict[str, Any]:
        return {"op": "path", "at": self.at.source}


@dataclass(frozen=True, slots=True, eq=False)
class Lit(Expr):
    """`lit {value}`: a literal JSON value."""

    value: Any
    op: ClassVar[str] = "lit"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        return self.value

    def to_json(self) -> dict[str, Any]:
        return {"op": "lit", "value": self.value}


@dataclass(frozen=True, slots=True, eq=False)
class Equality(Expr):
    """`eq` / `ne {lhs, rhs}`: deep structural (in)equality."""

    op: str  # type: ignore[misc]
    lhs: Expr
    rhs: Expr

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        same = json_equal(self.lhs.evaluate(ctx, externs), self.rhs.evaluate(ctx, externs))
        return same if self.op == "eq" else not same

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "lhs": self.lhs.to_json(), "rhs": self.rhs.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


@dataclass(frozen=True, slots=True, eq=False)
class Ordering(Expr):
    """`lt` / `lte` / `gt` / `gte {lhs, rhs}`: two numbers or two strings; NaN raises ArithError."""

    op: str  # type: ignore[misc]
    lhs: Expr
    rhs: Expr

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        a = self.lhs.evaluate(ctx, externs)
        b = self.rhs.evaluate(ctx, externs)
        if _is_number(a) and _is_number(b):
            if a != a or b != b:
                raise ArithError(f"{self.op}: cannot order NaN")
        elif not (isinstance(a, str) and isinstance(b, str)):
            raise ExprTypeError(
                f"{self.op}: needs two numbers or two strings, got {json_type_name(a)} and {json_type_name(b)}"
            )
        return _ORDERINGS[self.op](a, b)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "lhs": self.lhs.to_json(), "rhs": self.rhs.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)


@dataclass(frozen=True, slots=True, eq=False)
class Not(Expr):
    """`not {arg}`: the negated truthiness of arg."""

    arg: Expr
    op: ClassVar[str] = "not"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        value = self.arg.evaluate(ctx, externs)
        return value is None or value is False

    def to_json(self) -> dict[str, Any]:
        return {"op": "not", "arg": self.arg.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True, slots=True, eq=False)
class And(Expr):
    """`and {args}`: short-circuit on truthiness; empty is true."""

    args: tuple[Expr, ...]
    op: ClassVar[str] = "and"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        for arg in self.args:
            value = arg.evaluate(ctx, externs)
            if value is None or value is False:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {"op": "and", "args": [a.to_json() for a in self.args]}

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True, slots=True, eq=False)
class Or(Expr):
    """`or {args}`: short-circuit on truthiness; empty is false."""

    args: tuple[Expr, ...]
    op: ClassVar[str] = "or"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        for arg in self.args:
            value = arg.evaluate(ctx, externs)
            if value is not None and value is not False:
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {"op": "or", "args": [a.to_json() for a in self.args]}

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True, slots=True, eq=False)
class Exists(Expr):
    """`exists {arg}`: false when arg reads a missing path or is null; other errors propagate."""

    arg: Expr
    op: ClassVar[str] = "exists"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        try:
            return self.arg.evaluate(ctx, externs) is not None
        except PathNotFound:
            return False

    def to_json(self) -> dict[str, Any]:
        return {"op": "exists", "arg": self.arg.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


def _as_float(op: str, value: Any) -> float:
    if not _is_number(value):
        raise ExprTypeError(f"{op}: needs numbers, got {json_type_name(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ArithError(f"{op}: {value} is out of the float range") from None


def _mod(a: float, b: float) -> float:
    quotient = a / b
    if not math.isfinite(quotient):
        return quotient
    return a - math.floor(quotient) * b


_ARITH: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "mod": _mod,
}


@dataclass(frozen=True, slots=True, eq=False)
class Arith(Expr):
    """`add` / `sub` / `mul` / `div` / `mod {lhs, rhs}`: float arithmetic; a float result always."""

    op: str  # type: ignore[misc]
    lhs: Expr
    rhs: Expr

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        a = _as_float(self.op, self.lhs.evaluate(ctx, externs))
        b = _as_float(self.op, self.rhs.evaluate(ctx, externs))
        if b == 0.0 and self.op in ("div", "mod"):
            raise ArithError(f"{self.op}: division by zero")
        try:
            result = _ARITH[self.op](a, b)
        except OverflowError:
            raise ArithError(f"{self.op}: result out of the float range") from None
        if not math.isfinite(result):
            raise ArithError(f"{self.op}: result is not a finite number")
        return result

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "lhs": self.lhs.to_json(), "rhs": self.rhs.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)


@dataclass(frozen=True, slots=True, eq=False)
class Len(Expr):
    """`len {arg}`: array length, string character count or object key count."""

    arg: Expr
    op: ClassVar[str] = "len"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        value = self.arg.evaluate(ctx, externs)
        if isinstance(value, list | str | dict):
            return len(value)
        raise ExprTypeError(f"len: needs an array, string or object, got {json_type_name(value)}")

    def to_json(self) -> dict[str, Any]:
        return {"op": "len", "arg": self.arg.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True, slots=True, eq=False)
class In(Expr):
    """`in {needle, haystack}`: membership (eq semantics) in an array haystack."""

    needle: Expr
    haystack: Expr
    op: ClassVar[str] = "in"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        needle = self.needle.evaluate(ctx, externs)
        haystack = self.haystack.evaluate(ctx, externs)
        if not isinstance(haystack, list):
            raise ExprTypeError(f"in: haystack must be an array, got {json_type_name(haystack)}")
        return any(json_equal(needle, item) for item in haystack)

    def to_json(self) -> dict[str, Any]:
        return {"op": "in", "needle": self.needle.to_json(), "haystack": self.haystack.to_json()}

    def children(self) -> tuple[Expr, ...]:
        return (self.needle, self.haystack)


@dataclass(frozen=True, slots=True, eq=False)
class CallExtern(Expr):
    """`call_extern {ref, args}`: call a host-registered pure function as `fn(*args)`."""

    ref: str
    args: tuple[Expr, ...]
    op: ClassVar[str] = "call_extern"

    def evaluate(self, ctx: Any, externs: Externs) -> Any:
        fn = externs.get(self.ref)
        if fn is None:
            raise ExternError(self.ref, "not registered")
        values = [arg.evaluate(ctx, externs) for arg in self.args]
        try:
            return fn(*values)
        except Exception as err:
            raise ExternError(self.ref, f"{type(err).__name__}: {err}") from err

    def to_json(self) -> dict[str, Any]:
        return {"op": "call_extern", "ref": self.ref, "args": [a.to_json() for a in self.args]}

    def children(self) -> tuple[Expr, ...]:
        return self.args


def eval_expr(expr: Expr, ctx: Any, externs: Externs | None = None) -> Any:
    """Evaluate `expr` against `ctx`; raises only ExprError subclasses."""
    try:
        return expr.evaluate(ctx, NO_EXTERNS if externs is None else externs)
    except RecursionError:
        raise ExprError("value nesting too deep to evaluate") from None


def walk_expr(expr: Expr) -> Iterator[Expr]:
    """Every expression in the tree rooted at `expr`, pre-order."""
    stack = [expr]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children()))


_FIELDS: dict[str, tuple[str, ...]] = {
    "path": ("at",),
    "lit": ("value",),
    "not": ("arg",),
    "exists": ("arg",),
    "len": ("arg",),
    "and": ("args",),
    "or": ("args",),
    "in": ("needle", "haystack"),
    "call_extern": ("ref", "args"),
    **{op: ("lhs", "rhs") for op in ("eq", "ne", "lt", "lte", "gt", "gte", "add", "sub", "mul", "div", "mod")},
}
EXPR_OPS: tuple[str, ...] = tuple(_FIELDS)


def check_fields(
    obj: dict[str, Any], tag_key: str, tag: str, fields: tuple[str, ...], where: str, optional: tuple[str, ...] = ()
) -> None:
    """Refuse unknown and missing fields, naming the exact field set the tag takes."""
    wanted = ", ".join((*fields, *(f"{f}?" for f in optional)))
    for key in obj:
        if key != tag_key and key not in fields and key not in optional:
            raise FlowParseError(f"unknown field {key!r} in {tag!r}", f"{where}.{key}", f"{tag!r} takes: {wanted}")
    for key in fields:
        if key not in obj:
            raise FlowParseError(f"missing field {key!r} in {tag!r}", where, f"{tag!r} takes: {wanted}")


def parse_path_field(value: Any, where: str) -> Path:
    """Parse a path string found at `where`, turning PathError into a located FlowParseError."""
    try:
        return parse_path(value)
    except PathError as err:
        raise FlowParseError(err.message + f" at position {err.position} in {err.text}", where, err.hint) from None


def parse_expr(obj: Any, where: str = "$", *, depth: int = 0) -> Expr:
    """Parse one expression object (tag `op`); raises FlowParseError naming the JSON path of the problem."""
    if depth > MAX_EXPR_DEPTH:
        raise FlowParseError("expression nested too deeply", where, f"at most {MAX_EXPR_DEPTH} levels")
    if not isinstance(obj, dict):
        raise FlowParseError(
            f"an expression must be an object, got {json_type_name(obj)}",
            where,
            'write e.g. {"op": "lit", "value": ...} or {"op": "path", "at": "$.key"}',
        )
    op = obj.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        shown = "missing" if op is None else repr(op)
        raise FlowParseError(f"unknown expression op {shown}", f"{where}.op", "op is one of " + ", ".join(EXPR_OPS))
    check_fields(obj, "op", op, _FIELDS[op], where)
    nxt = depth + 1
    if op == "path":
        return PathExpr(parse_path_field(obj["at"], f"{where}.at"))
    if op == "lit":
        return Lit(copy.deepcopy(obj["value"]))
    if op in ("eq", "ne"):
        return Equality(
            op, parse_expr(obj["lhs"], f"{where}.lhs", depth=nxt), parse_expr(obj["rhs"], f"{where}.rhs", depth=nxt)
        )
    if op in _ORDERINGS:
        return Ordering(
            op, parse_expr(obj["lhs"], f"{where}.lhs", depth=nxt), parse_expr(obj["rhs"], f"{where}.rhs", depth=nxt)
        )
    if op in _ARITH:
        return Arith(
            op, parse_expr(obj["lhs"], f"{where}.lhs", depth=nxt), parse_expr(obj["rhs"], f"{where}.rhs", depth=nxt)
        )
    if op == "in":
        return In(
            parse_expr(obj["needle"], f"{where}.needle", depth=nxt),
            parse_expr(obj["haystack"], f"{where}.haystack", depth=nxt),
        )
    if op in ("and", "or", "call_extern"):
        args = _parse_args(obj["args"], f"{where}.args", nxt)
        if op == "and":
            return And(args)
        if op == "or":
            return Or(args)
        ref = obj["ref"]
        if not isinstance(ref, str) or not ref:
            raise FlowParseError(
                "call_extern ref must be a non-empty string", f"{where}.ref", "name a function the host registered"
            )
        return CallExtern(ref, args)
    arg = parse_expr(obj["arg"], f"{where}.arg", depth=nxt)
    if op == "not":
        return Not(arg)
    if op == "exists":
        return Exists(arg)
    return Len(arg)


def _parse_args(value: Any, where: str, depth: int) -> tuple[Expr, ...]:
    if not isinstance(value, list):
        raise FlowParseError(f"args must be an array, got {json_type_name(value)}", where, "write args as [expr, ...]")
    return tuple(parse_expr(item, f"{where}[{i}]", depth=depth) for i, item in enumerate(value))
