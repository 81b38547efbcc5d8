"""`mse server install|uninstall|start|stop|restart|status|logs`: `mse serve` as a user service.

Linux gets a systemd user unit, macOS a launchd agent; both restart the server when it crashes and
append its output to `$MSE_HOME/logs/server.log`, which `logs` reads on either platform. What was
installed (bind, unit path) is kept in `$MSE_HOME/service.json`, so the other commands know which
server to ask. `stop` and `restart` first ask that server whether runs are running or operators are
attached, and refuse while any are (their work would be interrupted) unless `--force`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..store import mse_home
from .common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, report_diagnostics

UNIT_NAME = "mse.service"
AGENT_LABEL = "dev.mlua-swarm.serve"
STATE_FILE = "service.json"
LOG_TAIL_LINES = 200


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """What the service runs: the interpreter, `mse serve`'s flags, and the environment it needs."""

    python: str
    bind: str
    mse_home: str
    store: str | None = None
    admin_token: str | None = None

    @property
    def argv(self) -> list[str]:
        argv = [self.python, "-m", "mlua_swarm", "serve", "--bind", self.bind]
        if self.store:
            argv += ["--store", self.store]
        return argv

    @property
    def env(self) -> dict[str, str]:
        env = {"MSE_HOME": self.mse_home, "PYTHONUNBUFFERED": "1"}
        if self.admin_token:
            env["MSE_ADMIN_TOKEN"] = self.admin_token
        return env

    @property
    def log_path(self) -> Path:
        return Path(self.mse_home) / "logs" / "server.log"

    @property
    def url(self) -> str:
        host, _, port = self.bind.rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def systemd_unit(spec: ServiceSpec) -> str:
    """A systemd user unit running `spec`, restarted on failure, output appended to its log."""
    env = "\n".join(f"Environment={shlex.quote(f'{k}={v}')}" for k, v in sorted(spec.env.items()))
    return (
        "[Unit]\n"
        "Description=mlua-swarm server (mse serve)\n"
        "After=network.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"WorkingDirectory={spec.mse_home}\n"
        f"ExecStart={shlex.join(spec.argv)}\n"
        f"{env}\n"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=30\n"
        f"StandardOutput=append:{spec.log_path}\n"
        f"StandardError=append:{spec.log_path}\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_plist(spec: ServiceSpec) -> str:
    """A launchd agent running `spec` at login, restarted when it exits abnormally."""
    args = "".join(f"\n    <string>{escape(a)}</string>" for a in spec.argv)
    env = "".join(
        f"\n    <key>{escape(k)}</key>\n    <string>{escape(v)}</string>" for k, v in sorted(spec.env.items())
    )
    log = escape(str(spec.log_path))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        '<plist version="1.0">\n<dict>\n'
        f"  <key>Label</key>\n  <string>{AGENT_LABEL}</string>\n"
        f"  <key>ProgramArguments</key>\n  <array>{args}\n  </array>\n"
        f"  <key>EnvironmentVariables</key>\n  <dict>{env}\n  </dict>\n"
        f"  <key>WorkingDirectory</key>\n  <string>{escape(spec.mse_home)}</string>\n"
        "  <key>RunAtLoad</key>\n  <true/>\n"
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n"
        f"  <key>StandardOutPath</key>\n  <string>{log}</string>\n"
        f"  <key>StandardErrorPath</key>\n  <string>{log}</string>\n"
        "</dict>\n</plist>\n"
    )


class Platform:
    """Where the service definition lives and which commands drive it."""

    name = ""

    def unit_path(self) -> Path:
        raise NotImplementedError

    def render(self, spec: ServiceSpec) -> str:
        raise NotImplementedError

    def commands(self, action: str) -> list[list[str]]:
        raise NotImplementedError


class Systemd(Platform):
    name = "systemd"

    def unit_path(self) -> Path:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user" / UNIT_NAME

    def render(self, spec: ServiceSpec) -> str:
        return systemd_unit(spec)

    def commands(self, action: str) -> list[list[str]]:
        ctl = ["systemctl", "--user"]
        return {
            "install": [[*ctl, "daemon-reload"], [*ctl, "enable", "--now", UNIT_NAME]],
            "uninstall": [[*ctl, "disable", "--now", UNIT_NAME]],
            "reload": [[*ctl, "daemon-reload"]],
            "start": [[*ctl, "start", UNIT_NAME]],
            "stop": [[*ctl, "stop", UNIT_NAME]],
            "restart": [[*ctl, "restart", UNIT_NAME]],
            "status": [[*ctl, "--no-pager", "status", UNIT_NAME]],
        }[action]


class Launchd(Platform):
    name = "launchd"

    def unit_path(self) -> Path:
        return Path.home() / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"

    def render(self, spec: ServiceSpec) -> str:
        return launchd_plist(spec)

    def commands(self, action: str) -> list[list[str]]:
        domain = f"gui/{os.getuid()}"
        target = f"{domain}/{AGENT_LABEL}"
        plist = str(self.unit_path())
        return {
            "install": [["launchctl", "bootstrap", domain, plist]],
            "uninstall": [["launchctl", "bootout", target]],
            "reload": [],
            "start": [["launchctl", "kickstart", target]],
            "stop": [["launchctl", "kill", "SIGTERM", target]],
            "restart": [["launchctl", "kickstart", "-k", target]],
            "status": [["launchctl", "print", target]],
        }[action]


def platform() -> Platform:
    return Launchd() if sys.platform == "darwin" else Systemd()


# ── the installed service ─────────────────────────────────────────────────────


def _state_path() -> Path:
    return mse_home() / STATE_FILE


def _error(code: str, message: str, hint: str, where: str = "mse server") -> DiagnosticError:
    return DiagnosticError([Diagnostic(code, message, location=Location(where), hint=hint, stage="service")])


def installed() -> ServiceSpec:
    path = _state_path()
    try:
        return ServiceSpec(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise _error("not-installed", "no service is installed", "run `mse server install` first", str(path)) from None
    except (OSError, ValueError, TypeError) as exc:
        raise _error(
            "invalid-config", f"cannot read {path}: {exc}", "run `mse server install` again", str(path)
        ) from None


def busy(spec: ServiceSpec, timeout: float = 5.0) -> dict[str, Any] | None:
    """The server's `/v1/status` when runs are running or operators attached; None when idle or not up."""
    import httpx

    try:
        status = httpx.get(f"{spec.url}/v1/status", timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return None
    if status.get("running_runs") or status.get("attached_operators"):
        return dict(status)
    return None


def _execute(commands: Sequence[Sequence[str]]) -> None:
    for argv in commands:
        if shutil.which(argv[0]) is None:
            raise _error(
                "service-manager-missing", f"{argv[0]} is not on PATH", "this command needs systemd or launchd"
            )
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if done.stdout:
            print(done.stdout, end="")
        if done.returncode != 0:
            raise _error(
                "service-manager-failed",
                f"`{shlex.join(argv)}` exited with {done.returncode}: {done.stderr.strip()[:500]}",
                "is a user service manager running? (`systemctl --user` needs a login session)",
            )


# ── commands ─────────────────────────────────────────────────────────────────


def install_main(args: argparse.Namespace) -> int:
    from ..server.config import load_config

    home = mse_home()
    config = load_config(None, {"bind": args.bind, "store": args.store, "admin_token": args.admin_token})
    token = args.admin_token or os.environ.get("MSE_ADMIN_TOKEN") or None
    spec = ServiceSpec(sys.executable, config.bind, str(home), config.store, token)
    target = platform()
    path = target.unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(target.render(spec))
    if token:
        path.chmod(0o600)
    state = _state_path()
    state.write_text(json.dumps(asdict(spec), indent=2))
    state.chmod(0o600)
    print(f"wrote {path}")
    if not args.no_start:
        _execute(target.commands("install"))
        print(f"{target.name}: mse serve enabled and started on {spec.url} (logs: mse server logs)")
    return EXIT_OK


def uninstall_main(args: argparse.Namespace) -> int:
    spec = installed()
    _refuse_if_busy(spec, args.force)
    target = platform()
    _execute(target.commands("uninstall"))
    target.unit_path().unlink(missing_ok=True)
    _execute(target.commands("reload"))
    _state_path().unlink(missing_ok=True)
    print(f"removed {target.unit_path()}")
    return EXIT_OK


class Busy(Exception):
    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status


def _refuse_if_busy(spec: ServiceSpec, force: bool) -> None:
    status = None if force else busy(spec)
    if status is not None:
        raise Busy(status)


def control_main(args: argparse.Namespace) -> int:
    """start, stop, restart: stop and restart refuse while the server has work, unless --force."""
    spec = installed()
    if args.action in ("stop", "restart"):
        _refuse_if_busy(spec, args.force)
    _execute(platform().commands(args.action))
    print(f"mse server {args.action}: done")
    return EXIT_OK


def status_main(args: argparse.Namespace) -> int:
    import httpx

    spec = installed()
    target = platform()
    print(f"service   {target.name} {target.unit_path()}")
    print(f"server    {spec.url}")
    try:
        status = httpx.get(f"{spec.url}/v1/status", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"state     not answering ({exc})")
        return EXIT_FAILED
    print(
        f"state     up {status['uptime_secs']:.0f}s, {status['running_runs']} running run(s), "
        f"{status['attached_operators']} operator(s) attached"
    )
    return EXIT_OK


def logs_main(args: argparse.Namespace) -> int:
    spec = installed()
    try:
        lines = spec.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        raise _error("no-logs", f"no log at {spec.log_path} yet", "start the service: `mse server start`") from None
    print("\n".join(lines[-args.lines :]))
    return EXIT_OK


def _guarded(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = handler(args)
            return code
        except DiagnosticError as exc:
            report_diagnostics(exc.diagnostics, as_json=False)
            return EXIT_INVALID
        except Busy as exc:
            s = exc.status
            print(
                f"mse server {args.action}: refused, the server has {s.get('running_runs', 0)} running run(s) and "
                f"{s.get('attached_operators', 0)} attached operator(s); wait for them, or pass --force "
                "(running runs are interrupted and can be resumed)",
                file=sys.stderr,
            )
            return EXIT_FAILED

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("server", help="run `mse serve` as a user service (systemd on Linux, launchd on macOS)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = actions.add_parser("install", help="write the service definition, enable and start it")
    q.add_argument("--bind", help="HOST:PORT (default: config.toml, else 127.0.0.1:7777)")
    q.add_argument("--store", help="store URL")
    q.add_argument("--admin-token", help="required off loopback (or MSE_ADMIN_TOKEN)")
    q.add_argument("--no-start", action="store_true", help="only write the definition")
    q.set_defaults(handler=_guarded(install_main))

    q = actions.add_parser("uninstall", help="stop, disable and remove the service")
    q.add_argument("--force", action="store_true", help="even while runs are running or operators attached")
    q.set_defaults(handler=_guarded(uninstall_main))

    for action, text in (("start", "start the service"), ("stop", "stop it"), ("restart", "restart it")):
        q = actions.add_parser(action, help=text)
        if action != "start":
            q.add_argument("--force", action="store_true", help="even while runs are running or operators attached")
        q.set_defaults(handler=_guarded(control_main))

    q = actions.add_parser("status", help="the service and what the server is doing")
    q.set_defaults(handler=_guarded(status_main))

    q = actions.add_parser("logs", help="the end of the server's log")
    q.add_argument("-n", "--lines", type=int, default=LOG_TAIL_LINES)
    q.set_defaults(handler=_guarded(logs_main))


__all__ = ["Launchd", "ServiceSpec", "Systemd", "launchd_plist", "register", "systemd_unit"]
