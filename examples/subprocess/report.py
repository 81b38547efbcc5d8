"""A plain-mode child: reads its JSON prompt on stdin, prints one JSON document, exits 0."""

import json
import sys

words = json.load(sys.stdin)
print(json.dumps({"words": words, "verdict": "long" if words > 5 else "short"}))
