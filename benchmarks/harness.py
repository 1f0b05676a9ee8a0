"""Small pieces every benchmark script shares: /proc readings and the harness error.

Scripts import it as ``harness`` (``python benchmarks/X.py`` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

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


BENCH_IMAGE = "registry.local/bench/app:1.4.2"


def app_container() -> dict[str, Any]:
    """The one container of every benchmark pod: sized like a real app's, so objects weigh what
    they would in a cluster."""
    return {
        "name": "app",
        "image": BENCH_IMAGE,
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
    }


def app_container_status(ready: bool, started_at: str, restart_count: int = 0) -> dict[str, Any]:
    return {
        "name": "app",
        "ready": ready,
        "started": True,
        "restartCount": restart_count,
        "image": BENCH_IMAGE,
        "imageID": "",
        "state": {"running": {"startedAt": started_at}},
    }
