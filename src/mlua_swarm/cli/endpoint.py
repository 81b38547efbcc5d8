"""Which server a command talks to: `--server URL`, else `$MSE_HTTP`, else none (run locally).

Kept free of HTTP imports so commands that stay local pay nothing for the choice.
"""

from __future__ import annotations

import os

SERVER_ENV = "MSE_HTTP"
ADMIN_TOKEN_ENV = "MSE_ADMIN_TOKEN"


def server_url(option: str | None, *, local: bool = False) -> str | None:
    """`--server`, else `$MSE_HTTP` (unless `--local`), else None; without a trailing slash."""
    if option:
        return option.rstrip("/")
    if local:
        return None
    found = os.environ.get(SERVER_ENV)
    return found.rstrip("/") if found else None


__all__ = ["ADMIN_TOKEN_ENV", "SERVER_ENV", "server_url"]
