"""Small pieces every benchmark script shares: /proc readings and the harness error.

Scripts import it as ``harness`` (``python benchmarks/X.py`` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import signal
import time

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class HarnessError(RuntimeError):
    """The benchmark could not run (as opposed to: it ran and measured something slow)."""


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a live process in MB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit(143) so `finally` blocks stop what the benchmark started."""

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
