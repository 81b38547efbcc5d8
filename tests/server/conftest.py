"""Fixtures of the server tests: `live_server` (a real uvicorn on a loopback port) from tests.serverkit."""

from tests.serverkit import live_server

__all__ = ["live_server"]
