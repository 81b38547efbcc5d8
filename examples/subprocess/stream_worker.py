"""A streaming child (ndjson_lines): reports progress per item, stages a part, then its final value."""

from mlua_swarm import child

task = child.read_input()
items = task["items"]
child.progress("start", f"{len(items)} items")
lengths = {}
for index, item in enumerate(items, 1):
    lengths[item] = len(item)
    child.progress("item", f"{index}/{len(items)}: {item}")
child.artifact("longest", max(items, key=len))
child.final({"lengths": lengths, "total": sum(lengths.values())})
