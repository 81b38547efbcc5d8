"""A template child: its system prompt arrives as a file path, the prompt on stdin."""

import json
import sys

with open(sys.argv[1], encoding="utf-8") as fh:
    system = fh.read()
print(json.dumps({"result": {"system": system, "prompt": sys.stdin.read()}, "usage": {"total_tokens": 0}}))
