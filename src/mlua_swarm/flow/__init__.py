"""The flow layer: flow-ir 0.2.0 paths, expressions and nodes, and the async evaluator that runs them."""

from mlua_swarm.flow.errors import (
    ArithError,
    EvalError,
    ExprError,
    ExprTypeError,
    ExternError,
    FlowError,
    FlowFailed,
    FlowParseError,
    NonBoolCond,
    PathError,
    PathNotFound,
    PathWriteError,
    StepBlocked,
    StepError,
    StepFailed,
)
from mlua_swarm.flow.evaluator import FlowCtx, StepDispatcher, run_flow
from mlua_swarm.flow.exprs import Expr, eval_expr, parse_expr, truthy, walk_expr
from mlua_swarm.flow.nodes import Assign, Branch, Fanout, Join, Loop, Node, Seq, Step, Try, parse_node, walk
from mlua_swarm.flow.paths import Path, parse_path
from mlua_swarm.flow.skip import Skipped

__all__ = [
    "ArithError",
    "Assign",
    "Branch",
    "EvalError",
    "Expr",
    "ExprError",
    "ExprTypeError",
    "ExternError",
    "Fanout",
    "FlowCtx",
    "FlowError",
    "FlowFailed",
    "FlowParseError",
    "Join",
    "Loop",
    "Node",
    "NonBoolCond",
    "Path",
    "PathError",
    "PathNotFound",
    "PathWriteError",
    "Seq",
    "Skipped",
    "Step",
    "StepBlocked",
    "StepDispatcher",
    "StepError",
    "StepFailed",
    "Try",
    "eval_expr",
    "parse_expr",
    "parse_node",
    "parse_path",
    "run_flow",
    "truthy",
    "walk",
    "walk_expr",
]
