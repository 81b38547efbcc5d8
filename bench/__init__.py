"""Benchmarks of mlua-swarm side by side with LangGraph, DBOS and Python's own floor (`python -m bench`)."""
