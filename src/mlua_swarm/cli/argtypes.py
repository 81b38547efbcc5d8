"""argparse types shared by the `mse` sub-commands; importing this module loads nothing else."""

from __future__ import annotations

import argparse
import math

MAX_COUNT = 2**31 - 1


def count_arg(text: str) -> int:
    """An argparse type: a whole number from 0 to 2^31 - 1 (limits, counts, sequence numbers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_COUNT}, got {text}")
    return value


def seconds_arg(text: str) -> float:
    """An argparse type: a finite, positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


__all__ = ["MAX_COUNT", "count_arg", "seconds_arg"]
