"""Child-process entry: `python -m bench.probe module:function JSON_KWARGS` prints one JSON line.

The line is `{"metrics": {...}}`, or `{"unavailable": reason}` when the probe raised `Unavailable`.
Any other failure exits non-zero with the traceback on stderr, which the parent reports as an error.
"""

from __future__ import annotations

import importlib
import json
import sys

from .harness import Unavailable


def main(argv: list[str]) -> int:
    target, raw_kwargs = argv
    module_name, _, func_name = target.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        metrics = func(**json.loads(raw_kwargs))
    except Unavailable as exc:
        print(json.dumps({"unavailable": str(exc)}))
        return 0
    print(json.dumps({"metrics": metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
