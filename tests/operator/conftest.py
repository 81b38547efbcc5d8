from tests.serverkit import live_server  # noqa: F401
