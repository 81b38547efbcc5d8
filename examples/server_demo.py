"""The server half of `make demo`: start `mse serve` on a free loopback port, run the example
Blueprint through it with `mse run --server` (the same live progress, fed by the server's event
stream), list the server's runs, show where the dashboard is, and stop the server cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

MSE = [sys.executable, "-m", "mlua_swarm"]
HERE = Path(__file__).resolve().parent


def main() -> int:
    server = subprocess.Popen([*MSE, "serve", "--bind", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    try:
        url = None
        for line in server.stderr:
            found = re.search(r"listening on (\S+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            print(f"mse serve did not start (exit {server.wait()})", file=sys.stderr)
            return 1
        threading.Thread(target=server.stderr.read, daemon=True).start()
        print(f"\n== mse serve is listening on {url}; its dashboard is {url}/", flush=True)
        code = subprocess.call([*MSE, "run", str(HERE / "review_loop.json"), "--server", url])
        subprocess.call([*MSE, "runs", "list", "--server", url, "--limit", "3"])
        print(f"== the run is on the dashboard at {url}/ while a server runs (`mse serve` keeps one up)", flush=True)
        return code
    finally:
        server.send_signal(signal.SIGTERM)
        stopped = server.wait(30)
        clean = stopped in (0, -signal.SIGTERM)
        print(f"== mse serve stopped {'cleanly' if clean else f'with exit code {stopped}'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
