"""What every controller (generator, aggregator per cell, monitor) looks like to the runtime.

The runtime (workers/runtime.py with workers/leases.py, workers/switches.py and the Celery
worker bootstep in workers/bootstep.py) decides *when* a controller runs: it calls ``start``
once this process holds the controller's lease and is not paused, and ``stop`` as soon as it
loses the lease or is paused. A controller decides *what* to
do: its informers, work queue and reconcile loop. Controllers never talk to Redis or Django.

Every write a controller makes goes through ``ControllerContext`` clients whose writes are
fenced: before a write goes out, the fence checks that this process still holds the lease
under the same token, so a leader that lost its lease (paused process, partition, Redis
failure) cannot write after a new leader took over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from podseidon_site.config import PodseidonConfig
from protectors.kube.client import KubeClient


class LostLeadership(Exception):
    """Raised by a fenced write when the lease is no longer ours; the write did not go out."""


class Fence(Protocol):
    """The leadership proof writes carry."""

    @property
    def token(self) -> int:
        """Monotonic fencing token of the current lease (grows with every new leader)."""
        ...

    def check(self) -> None:
        """Raise LostLeadership unless the lease is still held under ``token``."""
        ...


class AlwaysValidFence:
    """For tests and tools that run one controller alone, without Redis."""

    token = 1

    def check(self) -> None:
        return None


@dataclass
class ControllerStatus:
    """What a controller reports to the runtime (shown by the console)."""

    last_reconcile_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass
class ControllerContext:
    config: PodseidonConfig
    # Fenced clients: core cluster, and each cell by ID.
    core: KubeClient
    cells: dict[str, KubeClient]
    fence: Fence
    status: ControllerStatus = field(default_factory=ControllerStatus)
    # Called by a controller after each reconcile (error is None on success), so the runtime
    # can publish "last reconcile error" without the controller knowing about Redis.
    report: Callable[[str | None], None] = lambda error: None


class Controller(Protocol):
    #: Lease key: "generator", "aggregator/<cellID>" or "monitor".
    name: str

    def start(self, context: ControllerContext) -> None:
        """Begin working (start informers, workers). Must return promptly."""
        ...

    def stop(self) -> None:
        """Stop all work and threads; return within a few seconds. May be started again."""
        ...
