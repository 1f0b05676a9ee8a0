"""Cluster clients for the console and API, and a cheap, cached reachability probe.

Clients are built once per cluster entry of the configuration and shared by every request
thread (``KubeClient`` is thread-safe); a changed configuration (tests swap
``settings.PODSEIDON``) gets new ones. Actions use a short request timeout
(``PODSEIDON_ACTION_TIMEOUT_SECONDS``) so an unreachable cluster fails the action promptly.

``probe`` answers "does this API server answer?" with one ``GET /version`` under a short
timeout, remembered for a few seconds so a page that refreshes every few seconds, or many users
looking at once, cost at most one request per cluster per interval.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from podseidon_site.config import ClusterAccess, PodseidonConfig
from protectors.kube.client import KubeClient, KubeError, api_client_for
from protectors.kube.events import EventRecorder

CORE = "core"
EVENT_COMPONENT = "podseidon-console"

_lock = threading.Lock()
_clients: dict[tuple[str, str, float], KubeClient] = {}
_recorders: dict[tuple[str, str], EventRecorder] = {}
_probes: dict[tuple[str, str], tuple[float, Reachability]] = {}


class UnknownCluster(LookupError):
    pass


@dataclass(frozen=True)
class Reachability:
    reachable: bool
    version: str | None = None  # gitVersion of the API server
    error: str | None = None
    checked_at: float = 0.0
    latency_ms: float | None = None


def config() -> PodseidonConfig:
    return settings.PODSEIDON


def access_for(name: str, cfg: PodseidonConfig | None = None) -> ClusterAccess:
    cfg = cfg or config()
    if name == CORE:
        return cfg.core
    cell = cfg.cell(name)
    if cell is None:
        raise UnknownCluster(f"unknown cell {name!r}; configured cells: {cfg.cell_ids}")
    return cell


def client_for(name: str, *, timeout: float | None = None) -> KubeClient:
    """A shared client for ``core`` or a cell ID (raises UnknownCluster)."""
    access = access_for(name)
    timeout = float(timeout or settings.PODSEIDON_ACTION_TIMEOUT_SECONDS)
    key = (name, access.model_dump_json(), timeout)
    with _lock:
        client = _clients.get(key)
    if client is None:
        client = _build_client(name, access, timeout)
        with _lock:
            client = _clients.setdefault(key, client)
    return client


def recorder_for(name: str) -> EventRecorder:
    """The process's Event recorder for ``core`` or a cell (one writer thread per cluster)."""
    access = access_for(name)
    key = (name, access.model_dump_json())
    with _lock:
        recorder = _recorders.get(key)
    if recorder is None:
        recorder = EventRecorder(client_for(name), EVENT_COMPONENT)
        with _lock:
            recorder = _recorders.setdefault(key, recorder)
    return recorder


def _build_client(name: str, access: ClusterAccess, timeout: float) -> KubeClient:
    """The one place clients are made (site tests replace it with a fake cluster)."""
    try:
        api_client = api_client_for(access)
    except Exception as error:  # a missing/broken kubeconfig is "unreachable", with the cause
        raise KubeError(
            0, "Unreachable", f"cannot load the {name} cluster's access: {error}"
        ) from None
    return KubeClient(api_client, request_timeout=timeout)


def probe(name: str, *, fresh: bool = False) -> Reachability:
    access = access_for(name)
    key = (name, access.model_dump_json())
    now = time.time()
    with _lock:
        cached = _probes.get(key)
    if cached and not fresh and now - cached[0] < settings.PODSEIDON_PROBE_CACHE_SECONDS:
        return cached[1]
    started = time.monotonic()
    try:
        timeout = settings.PODSEIDON_PROBE_TIMEOUT_SECONDS
        body = client_for(name, timeout=timeout).request("GET", "/version", timeout=timeout)
        result = Reachability(
            True,
            version=(body or {}).get("gitVersion"),
            checked_at=now,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
        )
    except KubeError as error:
        message = error.message if error.status == 0 else f"{error.status} {error.reason}"
        result = Reachability(False, error=message, checked_at=now)
    with _lock:
        _probes[key] = (now, result)
    return result


def probe_many(names: list[str]) -> dict[str, Reachability]:
    """Probe several clusters at once: a page with three dead cells waits one timeout, not 3."""
    if len(names) <= 1:
        return {name: probe(name) for name in names}
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        return dict(zip(names, pool.map(probe, names), strict=True))


def reset() -> None:
    """Forget every client, probe and Event recorder (tests)."""
    with _lock:
        recorders = list(_recorders.values())
        _recorders.clear()
        _clients.clear()
        _probes.clear()
    for recorder in recorders:
        recorder.stop(timeout=1.0)
