"""Prometheus plumbing shared by every process: the registry to expose and the :9090 server.

gunicorn runs several worker processes; each keeps its own counters. With
``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn configs set it before any worker starts),
prometheus-client writes every process's values to files there and the MultiProcessCollector
adds them up, so ``/metrics`` and :9090 show the same totals whichever worker answers.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import CollectorRegistry, Gauge, multiprocess, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Every component beats this one gauge (design.md §6 `heartbeat`), labelled by component, so it is
# defined once here rather than by each component's observer.
HEARTBEAT = Gauge(
    "heartbeat",
    "Unix time of the component's last sign of life.",
    ["component"],
    multiprocess_mode="max",
)

_server_lock = threading.Lock()
_server_started = False


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition_registry() -> CollectorRegistry:
    """The registry whose contents a scrape should see."""
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return PROCESS_REGISTRY


def render() -> tuple[bytes, str]:
    return generate_latest(exposition_registry()), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve the exposition registry on ``port`` once per process; False if already serving."""
    global _server_started
    with _server_lock:
        if _server_started:
            return False
        start_http_server(port, addr=addr, registry=exposition_registry())
        _server_started = True
        return True


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> None:
    """Point prometheus-client at an empty directory (stale files would add old counts)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)


def worker_exited(pid: int) -> None:
    """Call from gunicorn's child_exit hook so a dead worker's live gauges are dropped."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)
