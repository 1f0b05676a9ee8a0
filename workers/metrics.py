"""Metrics of the controller runtime (design.md §6), served on :9090 of every Celery worker.

- ``heartbeat{component="worker"}``: Unix time of the worker runtime's last loop (every retry
  period), whether or not it leads anything;
- ``leader_heartbeat{controller}``: Unix time of the last successful lease acquisition/renewal,
  present only on the worker that leads that controller (the series is removed on loss), so
  ``time() - max by (controller) (leader_heartbeat)`` is the age of each controller's leadership;
- ``controller_running{controller}``: 1 while this worker runs the controller (leads, not paused);
- ``controller_fence_rejections_total{controller}``: writes stopped by the fence;
- ``controller_workers`` and ``controller_lease_share``: the live workers this worker counts and
  its fair share of the aggregator leases, by its last balance plan (``workers.balance``).

Controller keys are bounded by the configuration (one per cell at most), so labels stay bounded.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from podseidon_site.metrics import HEARTBEAT as HEARTBEAT  # re-exported for the runtime

LEADER_HEARTBEAT = Gauge(
    "leader_heartbeat",
    "Unix time this process last acquired or renewed the controller's lease (leader only).",
    ["controller"],
    multiprocess_mode="max",
)
CONTROLLER_RUNNING = Gauge(
    "controller_running",
    "1 while this process runs the controller (holds its lease and it is not paused).",
    ["controller"],
    multiprocess_mode="max",
)
FENCE_REJECTIONS = Counter(
    "controller_fence_rejections",
    "Controller writes the fence stopped because the lease was not provably ours.",
    ["controller"],
)

WORKERS = Gauge(
    "controller_workers",
    "Live workers in the membership, as this worker last read it (lease balancing on).",
    multiprocess_mode="max",
)
LEASE_SHARE = Gauge(
    "controller_lease_share",
    "How many aggregator leases this worker should lead by its last balance plan.",
    multiprocess_mode="max",
)

WORKER_COMPONENT = "worker"
