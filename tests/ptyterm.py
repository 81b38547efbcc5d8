"""A child process on a pseudo-terminal, for tests of what a person sees in a terminal."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import termios
import threading
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PtyProcess:
    """`argv` with its terminal on a pty (stdin, stdout and stderr; or, with `stderr_only`, stderr
    alone, stdout into a pipe and no stdin); `expect` waits until text appears (ANSI codes stripped)."""

    def __init__(
        self, argv: list[str], env: dict[str, str], *, stderr_only: bool = False, size: tuple[int, int] | None = None
    ) -> None:
        master, slave = os.openpty()
        if size is not None:
            rows, columns = size
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        if stderr_only:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
        else:
            self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.raw = ""
        self.closed = False
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                chunk = b""
            with self.changed:
                self.raw += chunk.decode(errors="replace")
                self.closed = not chunk
                self.changed.notify_all()
            if not chunk:
                return

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)

    def expect(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """The first match of `pattern` at or after `start` in the text, once it has appeared."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while (found := regex.search(self.text, start)) is None:
                left = deadline - time.monotonic()
                assert left > 0 and not self.closed, f"{pattern!r} never appeared; the terminal shows:\n{self.text}"
                self.changed.wait(left)
        return found

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\r").encode())

    def finish(self) -> tuple[int, str]:
        """Wait for the exit: its code and its stdout (`stderr_only`), once the terminal is drained."""
        stdout, _ = self.proc.communicate(timeout=60)
        with self.changed:
            self.changed.wait_for(lambda: self.closed, 10)
        os.close(self.master)
        return self.proc.returncode, (stdout or b"").decode()

    def close(self) -> None:
        """Stop the process if it still runs, and the terminal."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        os.close(self.master)
