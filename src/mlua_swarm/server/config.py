"""Server settings: built-in defaults < `$MSE_HOME/config.toml` < command-line flags.

Unknown keys in the file are refused (a typo must not silently fall back to a default), and so is a
non-loopback bind without an admin token, or with one short enough to guess: anyone who can reach the
port could otherwise launch runs that execute programs.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..core.budget import DEFAULT_MAX_ATTEMPT_OUTPUT_BYTES
from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..store import mse_home
from .feed import SUBSCRIBER_BYTES

DEFAULT_BIND = "127.0.0.1:7777"
CONFIG_FILE = "config.toml"
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_RUN_DATA_BYTES = 256 * 1024 * 1024
MIN_ADMIN_TOKEN_CHARS = 16
"""Off loopback an admin token must be at least this long (and not one character repeated)."""
TOKEN_RECIPE = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(24))"'


@dataclass(frozen=True, slots=True)
class ServerConfig:
    bind: str = DEFAULT_BIND
    store: str | None = None
    """Store URL (None: the SQLite file under `$MSE_HOME`)."""
    admin_token: str | None = None
    """Needed on every mutating route (except the worker and operator ones) when set; required off loopback."""
    max_body_bytes: int = MAX_BODY_BYTES
    request_head_timeout_secs: float = 30.0
    """A connection whose request head has not fully arrived this long after it opened (or after its
    previous response) is closed."""
    request_body_stall_secs: float = 60.0
    """A request body that sends nothing for this long while more is due is answered 408."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names besides loopback ones a loopback-bound server answers for (a reverse proxy's)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks (`10.0.0.0/8`) of the reverse proxies whose `X-Forwarded-For` and
    `X-Forwarded-Proto` are believed; without any, those headers are ignored (any local process
    could otherwise claim to be any client)."""
    sync_timeout_secs: float = 3600.0
    default_ttl_secs: float = 1800.0
    """The ceiling of a detached run when neither the request nor the Blueprint sets `ttl_secs`."""
    worker_token_ttl_secs: int = 1800
    durability: str = "batch"
    seed_blueprint_id: str = "main"
    sse_buffer: int = 1024
    """Events held per SSE subscriber before the oldest are dropped (and the subscriber told)."""
    sse_buffer_bytes: int = SUBSCRIBER_BYTES
    """What the events one SSE subscriber holds may weigh before the oldest are dropped (the newest
    event is always held, whatever it weighs)."""
    max_attempt_output_bytes: int = DEFAULT_MAX_ATTEMPT_OUTPUT_BYTES
    """What one attempt's output (its Finals and Artifacts, the Progress/Partial events kept) may
    weigh in the engine; past it the worker's submit gets 413 and the attempt fails."""
    max_run_data_bytes: int = MAX_RUN_DATA_BYTES
    """What the records one run's workers publish on the data plane may weigh together (each counted
    as its request body) while this server drives the run; past it `/v1/data/...` answers 413 and
    the record is not kept."""
    max_event_streams: int = 256
    """Event streams (SSE) open at once; more are answered 503 with Retry-After."""
    fns: Mapping[str, str] = field(default_factory=dict)
    """Extra `rust_fn` ids (`ID -> module:attr`) the server's Blueprints may name."""
    base_dir: str | None = None
    """Where relative references of inline Blueprints resolve (default: the server's working directory)."""
    operator_session_sweep_secs: float = 300.0
    """How often expired operator sessions are released (0: only when read)."""
    operator_ping_secs: float = 30.0
    """Keepalive ping period of operator sockets."""
    operator_dead_after_secs: float = 150.0
    """An operator socket silent this long (no pong, no frame) is dropped; the session stays."""
    max_operator_sessions: int = 1024
    """Operator sessions held at once; `POST /v1/operators` past it is answered 503."""

    @property
    def host(self) -> str:
        return split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return split_bind(self.bind)[1]

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def check(self, token_place: Location | None = None) -> None:
        """Refuse settings the server must not start with; `token_place` is where the admin token was given."""
        split_bind(self.bind)
        if self.admin_token is not None and not isinstance(self.admin_token, str):
            raise _config_error(
                "invalid-config", "admin_token must be a string", f"quote it in config.toml; {TOKEN_RECIPE}"
            )
        if not self.loopback and not self.admin_token:
            raise _config_error(
                "admin-token-required",
                f"refusing to listen on {self.bind} without an admin token",
                "pass --admin-token T (or set admin_token in config.toml), or bind 127.0.0.1",
            )
        if not self.loopback and self.admin_token and weak_admin_token(self.admin_token):
            raise DiagnosticError(
                [
                    Diagnostic(
                        "admin-token-weak",
                        f"refusing to listen on {self.bind} with a guessable admin token"
                        f" ({len(self.admin_token)} characters; off loopback it needs at least"
                        f" {MIN_ADMIN_TOKEN_CHARS}, not all the same)",
                        location=token_place or Location("server config"),
                        hint=TOKEN_RECIPE,
                        stage="config",
                    )
                ]
            )
        _check_proxies(self.trusted_proxies)
        if self.max_body_bytes < 1024:
            raise _config_error("invalid-config", "max_body_bytes must be at least 1024", "use the default 2 MiB")
        for name in ("max_attempt_output_bytes", "sse_buffer_bytes", "max_run_data_bytes"):
            if getattr(self, name) < 1024:
                raise _config_error(
                    "invalid-config", f"{name} must be at least 1024", f"remove {name} to use the default"
                )
        for name in ("request_head_timeout_secs", "request_body_stall_secs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise _config_error(
                    "invalid-config",
                    f"{name} must be a positive number of seconds",
                    f"remove {name} to use the default",
                )
        if self.worker_token_ttl_secs <= 0:
            raise _config_error("invalid-config", "worker_token_ttl_secs must be positive", "use the default 1800")


def _check_proxies(proxies: object) -> None:
    hint = 'list the proxies\' IP addresses or networks, e.g. trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]'
    if not isinstance(proxies, list | tuple):
        raise _config_error("invalid-config", "trusted_proxies must be a list of addresses", hint)
    for entry in proxies:
        if not (isinstance(entry, str) and _is_network(entry)):
            raise _config_error(
                "invalid-config", f"trusted proxy {str(entry)[:100]!r} is not an IP address or network", hint
            )


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True


def weak_admin_token(token: str) -> bool:
    """Short enough, or uniform enough, that someone reaching the port could guess it."""
    return len(token) < MIN_ADMIN_TOKEN_CHARS or len(set(token)) == 1


def split_bind(bind: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:7777`) → (host, port); a bad form is an `invalid-config` diagnostic."""
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _config_error("invalid-config", f"bind must look like HOST:PORT, got {bind!r}", "e.g. 127.0.0.1:7777")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_path() -> Path:
    return mse_home() / CONFIG_FILE


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> ServerConfig:
    """The file's settings (a missing file is fine) with the non-None `overrides` on top, checked."""
    path = path or config_path()
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise _config_error("invalid-config", f"cannot read {path}: {exc}", "fix the TOML syntax", path) from None
    known = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise _config_error(
            "unknown-config-key", f"unknown keys in {path}: {', '.join(unknown)}", f"known: {', '.join(sorted(known))}"
        )
    token_place = Location(element="admin_token", file=str(path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if (overrides or {}).get("admin_token"):
        token_place = Location("--admin-token")
    elif "MSE_ADMIN_TOKEN" in os.environ and not values.get("admin_token"):
        values["admin_token"] = os.environ["MSE_ADMIN_TOKEN"]
        token_place = Location("MSE_ADMIN_TOKEN")
    try:
        config = replace(ServerConfig(), **values)
    except TypeError as exc:
        raise _config_error("invalid-config", str(exc), "check the value types in config.toml", path) from None
    config.check(token_place)
    return config


def _config_error(code: str, message: str, hint: str, path: Path | None = None) -> DiagnosticError:
    location = Location(file=str(path)) if path is not None else Location("server config")
    return DiagnosticError([Diagnostic(code, message, location=location, hint=hint, stage="config")])


__all__ = [
    "DEFAULT_BIND",
    "MAX_BODY_BYTES",
    "MIN_ADMIN_TOKEN_CHARS",
    "TOKEN_RECIPE",
    "ServerConfig",
    "config_path",
    "is_loopback",
    "load_config",
    "split_bind",
    "weak_admin_token",
]
