"""The skip marker `{"__mse_skip": true, "value": v}`: what a dispatcher returns for a skipped step.

Defined with the engine's output fold, which produces it; re-exported here for flow code.
"""

from ..core.fold import SKIP_KEY, is_skip_marker, unwrap_skip_marker, wrap_skip_marker

__all__ = ["SKIP_KEY", "is_skip_marker", "unwrap_skip_marker", "wrap_skip_marker"]
