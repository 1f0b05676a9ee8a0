"""Built-in controllers of a sandbox cluster: what kube-controller-manager, kube-scheduler and
the kubelets do in a real one, simplified, each switchable.

    deployment   Deployment → ReplicaSet per template, rolling update / recreate, status
    replicaset   ReplicaSet → pods, status
    statefulset  StatefulSet → ordered pods <sts>-0..N-1, status
    kubelet      nodes, scheduling, pod start-up and readiness, end of graceful deletion
    gc           garbage collector: background / foreground / orphan cascading deletion

All of them are event-driven (store listeners feeding keyed work queues, plus a slow safety
resync) and write through the cluster's normal API paths, so admission hooks and webhooks see
their writes exactly as they would see kube-controller-manager's. `ControllerManager` is the
`ClusterPlugin` that runs the enabled ones on one cluster; `plugin_factory` makes the
`PluginFactory` that `SandboxServer` takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sandbox.cluster import Cluster
from sandbox.controllers.base import Controller, OwnerIndex
from sandbox.controllers.deployment import DeploymentController
from sandbox.controllers.garbage_collector import GarbageCollector
from sandbox.controllers.kubelet import Kubelet
from sandbox.controllers.replicaset import ReplicaSetController
from sandbox.controllers.statefulset import StatefulSetController

log = logging.getLogger(__name__)

# In start order: the kubelet registers its nodes (in `setup`) before the workload
# controllers start creating pods.
CONTROLLERS: dict[str, type[Controller]] = {
    "gc": GarbageCollector,
    "kubelet": Kubelet,
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "statefulset": StatefulSetController,
}
CONTROLLER_NAMES = tuple(CONTROLLERS)


def parse_controllers(text: str) -> frozenset[str]:
    """`all`, `none` or a comma-separated list of CONTROLLER_NAMES (`-name` removes one from
    all: `all,-kubelet`)."""
    chosen: set[str] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part == "all":
            chosen |= set(CONTROLLER_NAMES)
        elif part == "none":
            chosen.clear()
        elif part.startswith("-") and part[1:] in CONTROLLERS:
            chosen.discard(part[1:])
        elif part in CONTROLLERS:
            chosen.add(part)
        else:
            raise ValueError(
                f"unknown controller {part!r}; choose from all, none, {', '.join(CONTROLLER_NAMES)}"
            )
    return frozenset(chosen)


@dataclass(frozen=True)
class ControllerOptions:
    controllers: frozenset[str] = field(default_factory=lambda: frozenset(CONTROLLER_NAMES))
    # Nodes `sandbox-node-0..N-1` the kubelet registers and runs pods on.
    nodes: int = 1
    # Seconds from binding to Running/Ready.
    kubelet_ready_delay: float = 1.0
    # The kubelet finishes a graceful deletion after min(grace period, this many seconds).
    kubelet_grace_cap: float = 1.0
    # Retry backoff of the workload controllers and the kubelet (client-go's default
    # rate limiter starts at 5 ms and doubles per failure).
    backoff_initial: float = 0.005
    backoff_max: float = 30.0
    # Retry backoff of the garbage collector's denied deletions; 5 ms doubling gives the
    # recorded 13 attempts per pod in 25 s.
    gc_backoff_initial: float = 0.005
    gc_backoff_max: float = 30.0
    # Seconds between full re-enqueues (a safety net; 0 disables it).
    resync_interval: float = 300.0


class ControllerManager:
    """`ClusterPlugin` running the enabled controllers of one cluster."""

    def __init__(self, options: ControllerOptions) -> None:
        self.options = options
        self.cluster: Cluster | None = None
        self.index = OwnerIndex()
        self.controllers: dict[str, Controller] = {}
        self._unsubscribe: Any = None

    def __repr__(self) -> str:
        return f"ControllerManager({', '.join(self.controllers) or 'none'})"

    async def start(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.index.rebuild(cluster)
        self._unsubscribe = cluster.store.add_listener(self.index.on_event)
        for name, cls in CONTROLLERS.items():
            if name in self.options.controllers:
                self.controllers[name] = cls(cluster, self.index, self.options)
        for controller in self.controllers.values():
            await controller.setup()
        for controller in self.controllers.values():
            controller.start()
        log.info("cluster %s: controllers %s", cluster.name, ", ".join(self.controllers) or "-")

    async def stop(self) -> None:
        for controller in reversed(list(self.controllers.values())):
            await controller.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def plugin_factory(options: ControllerOptions) -> Any:
    """A `PluginFactory` for `SandboxServer`: one ControllerManager per cluster (none when
    no controller is enabled)."""

    def factory(cluster: Cluster) -> list[ControllerManager]:
        return [ControllerManager(options)] if options.controllers else []

    return factory


__all__ = [
    "CONTROLLER_NAMES",
    "ControllerManager",
    "ControllerOptions",
    "parse_controllers",
    "plugin_factory",
]
