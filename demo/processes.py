"""The demo's child processes: started in their own process groups, stopped as a whole.

Every child runs in a new session so that stopping it also stops what it started (gunicorn and
Celery workers fork), and nothing is left behind when the demo ends — even if it ends on an
error halfway through starting up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.layout import REPO


class DemoError(RuntimeError):
    """Something the demo needs did not happen; the message says what and where to look."""


def run_manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """`manage.py ARGS` as the product's own processes would run it; its output, or DemoError."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise DemoError(f"manage.py {' '.join(args)} failed:\n{result.stderr.strip()[-3000:]}")
    return result.stdout


@dataclass
class Child:
    name: str
    args: Sequence[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                list(self.args),
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text[-lines:])


class Supervisor:
    """Starts children in order and stops them in reverse order."""

    def __init__(self) -> None:
        self.children: dict[str, Child] = {}

    def start(self, child: Child) -> Child:
        self.children[child.name] = child
        child.start()
        return child

    def wait_until(
        self, what: str, ready: Callable[[], bool], timeout: float, child: Child | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if child is not None and not child.running:
                raise DemoError(
                    f"{child.name} exited while waiting for {what}; its log "
                    f"({child.log}) ends with:\n{child.log_tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                hint = f"; see {child.log}" if child else ""
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}{hint}")
            time.sleep(0.2)

    def first_dead(self, ignore: Sequence[str] = ()) -> Child | None:
        for child in self.children.values():
            if child.name not in ignore and child.process is not None and not child.running:
                return child
        return None

    def stop(self, name: str, timeout: float = 20) -> None:
        child = self.children[name]
        if child.process is None:
            return
        child.signal_group(signal.SIGTERM)
        try:
            child.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.signal_group(signal.SIGKILL)
            child.process.wait()
        # Grandchildren that outlived their parent (a forked worker) go with the group.
        child.signal_group(signal.SIGKILL)

    def stop_all(self, timeout: float = 30) -> None:
        """Stop every child at once (they do not depend on each other to shut down)."""
        for child in self.children.values():
            if child.running:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                child.process.wait()
            child.signal_group(signal.SIGKILL)
