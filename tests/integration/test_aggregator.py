"""The aggregator against real API servers (sandbox core + cell-a + cell-b): controllers run
in-process, one per cell, with an always-valid fence (the runtime's leases are tested
elsewhere). Protectors use a 200 ms aggregationRate to keep the tests fast."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client as k8s
from prometheus_client import REGISTRY

from podseidon_site.config import (
    AggregatorConfig,
    CellConfig,
    ClusterAccess,
    PodseidonConfig,
    UpdateTriggerConfig,
)
from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME
from protectors.kube.client import KubeClient
from protectors.model import Bucket, CellStatus, PodProtector
from protectors.summarize import summarize
from tests.integration.webhook_env import (
    GROUP,
    PLURAL,
    VERSION,
    create_protector,
    install_crd,
    read_protector,
    ready_pod,
)
from workers.aggregator.controller import AggregatorController
from workers.controller import AlwaysValidFence, ControllerContext

pytestmark = pytest.mark.integration

CELLS = ("cell-a", "cell-b")
RATE_MILLIS = 200
HISTORY = {"aggregationRateMillis": RATE_MILLIS}
LABELS = {"app": "web"}
# design.md: a pod change shows in the status within aggregationRate + 1 s.
CONVERGENCE = RATE_MILLIS / 1000 + 1.0


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.1f}s: {what}")
        time.sleep(0.03)


class Env:
    def __init__(self, clusters, namespace: str) -> None:
        self.clusters = clusters
        self.ns = namespace
        self.controllers: list[AggregatorController] = []
        self.reports: list[str | None] = []

    def core(self, cluster: str = "core") -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.clusters.api(cluster))

    def config(self, **aggregator) -> PodseidonConfig:
        kubeconfigs = self.clusters.kubeconfigs
        return PodseidonConfig(
            core=ClusterAccess(kubeconfig=str(kubeconfigs["core"])),
            cells=[CellConfig(id=c, kubeconfig=str(kubeconfigs[c])) for c in CELLS],
            aggregator=AggregatorConfig(**aggregator),
        )

    def context(self, config: PodseidonConfig) -> ControllerContext:
        return ControllerContext(
            config=config,
            core=KubeClient.from_access(config.core),
            cells={cell.id: KubeClient.from_access(cell) for cell in config.cells},
            fence=AlwaysValidFence(),
            report=self.reports.append,
        )

    def start(self, cell: str, **aggregator) -> AggregatorController:
        config = self.config(**aggregator)
        controller = AggregatorController(config, cell)
        controller.start(self.context(config))
        self.controllers.append(controller)
        return controller

    def protector(self, name: str = "web", **kwargs) -> None:
        create_protector(
            self.clusters.api("core"), self.ns, name, 1, LABELS, history=HISTORY, **kwargs
        )

    def read(self, name: str = "web") -> PodProtector:
        return read_protector(self.clusters.api("core"), self.ns, name)

    def cell(self, cell: str, name: str = "web") -> CellStatus | None:
        status = self.read(name).status
        return status.cell(cell) if status else None

    def counts(self, name: str = "web") -> dict[str, tuple[int, int]]:
        """cell → (total, available)."""
        status = self.read(name).status
        return {
            c.cell_id: (c.aggregation.total_replicas, c.aggregation.available_replicas)
            for c in (status.cells if status else ())
        }

    def add_buckets(self, cell: str, buckets: list[Bucket], name: str = "web") -> None:
        """Append buckets to one cell's status as the webhook would (read, modify, PUT)."""
        objects = k8s.CustomObjectsApi(self.clusters.api("core"))
        for _ in range(20):
            current = self.read(name)
            status = current.status
            existing = status.cell(cell)
            status = status.with_cell(existing.with_buckets((*existing.buckets, *buckets)))
            body = current.with_status(summarize(status)).to_dict()
            try:
                objects.replace_namespaced_custom_object_status(
                    GROUP, VERSION, self.ns, PLURAL, name, body
                )
                return
            except k8s.ApiException as error:
                if error.status != 409:
                    raise
                time.sleep(0.05)
        raise AssertionError("could not write buckets")

    def set_ready(self, cell: str, pod: str, ready: bool) -> None:
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.core(cell).patch_namespaced_pod_status(
            pod,
            self.ns,
            {
                "status": {
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": since},
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "lastTransitionTime": since,
                        },
                    ]
                }
            },
        )


@pytest.fixture(scope="module")
def crd(clusters) -> None:
    install_crd(clusters.api("core"))


@pytest.fixture
def env(clusters, crd) -> Iterator[Env]:
    namespace = f"agg-{uuid.uuid4().hex[:8]}"
    environment = Env(clusters, namespace)
    for cluster in ("core", *CELLS):
        environment.core(cluster).create_namespace({"metadata": {"name": namespace}})
    yield environment
    for controller in environment.controllers:
        controller.stop()
    for cluster in ("core", *CELLS):
        with contextlib.suppress(k8s.ApiException):
            environment.core(cluster).delete_namespace(namespace)


def pool_size(cell: str) -> float | None:
    return REGISTRY.get_sample_value("aggregator_next_event_pool_current_size", {"cell": cell})


def test_converges_to_per_cell_counts_in_both_cells(env: Env) -> None:
    env.protector()
    for cell in CELLS:
        env.start(cell)
    wait_for(lambda: set(env.counts()) == set(CELLS), 5, "both cells aggregated")

    core_a, core_b = env.core("cell-a"), env.core("cell-b")
    for i in range(3):
        ready_pod(core_a, env.ns, f"a-{i}", LABELS)
    ready_pod(core_a, env.ns, "a-unready", LABELS, ready=False)
    for i in range(2):
        ready_pod(core_b, env.ns, f"b-{i}", LABELS)
    ready_pod(core_b, env.ns, "b-other", {"app": "db"})
    took = wait_for(
        lambda: env.counts() == {"cell-a": (4, 3), "cell-b": (2, 2)},
        CONVERGENCE,
        "per-cell counts after pods became ready",
    )
    summary = env.read().status.summary
    assert (summary.total_replicas, summary.aggregated_available_replicas) == (6, 5)
    assert summary.estimated_available_replicas == 5

    # Readiness flips converge just as fast, in each cell independently.
    env.set_ready("cell-a", "a-unready", True)
    env.set_ready("cell-b", "b-0", False)
    took = max(
        took,
        wait_for(
            lambda: env.counts() == {"cell-a": (4, 4), "cell-b": (2, 1)},
            CONVERGENCE,
            "counts after readiness flips",
        ),
    )
    # A terminating pod stops counting at once.
    env.core("cell-a").delete_namespaced_pod("a-0", env.ns)
    wait_for(lambda: env.counts()["cell-a"] == (3, 3), CONVERGENCE, "after a deletion")
    assert took <= CONVERGENCE
    assert all(report is None for report in env.reports), env.reports


def test_buckets_older_than_the_sync_time_are_dropped_newer_kept(env: Env) -> None:
    ready_pod(env.core("cell-a"), env.ns, "a-0", LABELS)
    env.protector()
    controller = env.start("cell-a")
    wait_for(lambda: env.counts().get("cell-a") == (1, 1), 5, "aggregated")
    sync_time = controller.sync_time
    assert sync_time is not None

    now = datetime.now(UTC)
    old_single = Bucket(start_time=sync_time - timedelta(seconds=30), pod_uid="old")
    old_compacted = Bucket(
        start_time=sync_time - timedelta(seconds=90),
        end_time=sync_time - timedelta(seconds=20),
        counter=3,
    )
    # Compacted buckets expire by endTime: this one still covers deletions after the sync time.
    open_compacted = Bucket(
        start_time=sync_time - timedelta(seconds=90),
        end_time=now + timedelta(seconds=60),
        counter=2,
    )
    future_single = Bucket(start_time=now + timedelta(seconds=60), pod_uid="new")
    env.add_buckets("cell-a", [old_single, old_compacted, open_compacted, future_single])

    def expired() -> bool:
        cell = env.cell("cell-a")
        return cell is not None and len(cell.buckets) == 2

    wait_for(expired, CONVERGENCE, "old buckets dropped")
    kept = env.cell("cell-a").buckets
    assert {(b.pod_uid, b.counter) for b in kept} == {(None, 2), ("new", None)}
    summary = env.read().status.summary
    assert summary.estimated_available_replicas == 1 - 3  # 2 compacted + 1 single pending
    # lastEventTime is the cell's sync time; the newest pending bucket is a minute ahead of it.
    assert env.cell("cell-a").aggregation.last_event_time >= sync_time
    assert summary.max_latency_millis > 50_000
    # They wait in the next-event pool; a pod event does not clear them (they are newer).
    wait_for(lambda: (pool_size("cell-a") or 0) >= 1, 2, "pool gauge")
    assert f"{env.ns}/web" in controller.waiting()
    ready_pod(env.core("cell-a"), env.ns, "a-1", LABELS)
    wait_for(lambda: env.counts().get("cell-a") == (2, 2), CONVERGENCE, "new pod counted")
    assert len(env.cell("cell-a").buckets) == 2


def test_quiet_cell_with_update_trigger_still_clears_buckets(env: Env) -> None:
    # Both aggregators only watch pods labelled for this test, so no other pod event can move
    # their sync time: only cell-a's update trigger does.
    selector = f"quiet={env.ns}"
    env.protector()
    trigger = UpdateTriggerConfig(
        enabled=True,
        interval_seconds=0.25,
        dummy_pod_name="update-trigger",
        dummy_pod_namespace=env.ns,
    )
    triggered = env.start("cell-a", pod_label_selector=selector, update_trigger=trigger)
    untriggered = env.start("cell-b", pod_label_selector=selector)
    wait_for(lambda: set(env.counts()) == set(CELLS), 5, "both cells aggregated")
    dummy = env.core("cell-a").read_namespaced_pod("update-trigger", env.ns)
    assert dummy.metadata.labels["quiet"] == env.ns
    assert ANNOTATION_UPDATE_TRIGGER_TIME in dummy.metadata.annotations
    assert not dummy.spec.node_name  # never scheduled

    pending = Bucket(start_time=datetime.now(UTC), pod_uid="gone")
    env.add_buckets("cell-a", [pending])
    env.add_buckets("cell-b", [pending])
    wait_for(
        lambda: env.cell("cell-a").buckets == (),
        trigger.interval_seconds + CONVERGENCE + 0.5,
        "bucket cleared in the triggered cell",
    )
    # The quiet cell without a trigger has seen nothing newer: its bucket waits in the pool.
    time.sleep(0.5)
    assert len(env.cell("cell-b").buckets) == 1
    assert f"{env.ns}/web" in untriggered.waiting()
    assert f"{env.ns}/web" not in triggered.waiting()


def test_min_ready_seconds_requeue_counts_a_pod_at_the_right_moment(env: Env) -> None:
    env.protector(min_ready_seconds=2)
    env.start("cell-a")
    wait_for(lambda: "cell-a" in env.counts(), 5, "aggregated")
    # ready_pod writes lastTransitionTime at whole seconds: the pod is ready since `since`.
    ready_pod(env.core("cell-a"), env.ns, "slow", LABELS, ready_for=0)
    pod = env.core("cell-a").read_namespaced_pod("slow", env.ns)
    since = next(c.last_transition_time for c in pod.status.conditions if c.type == "Ready")
    available_at = since + timedelta(seconds=2)
    wait_for(lambda: env.counts()["cell-a"] == (1, 0), CONVERGENCE, "counted, not available")
    # No pod event will follow: only the requeue can make it available.
    wait_for(lambda: env.counts()["cell-a"] == (1, 1), 4, "available after minReadySeconds")
    seen_at = datetime.now(UTC)
    assert seen_at >= available_at
    assert seen_at - available_at < timedelta(seconds=0.8)


def test_stopping_an_aggregator_freezes_its_cell(env: Env) -> None:
    env.protector()
    ready_pod(env.core("cell-a"), env.ns, "a-0", LABELS)
    ready_pod(env.core("cell-b"), env.ns, "b-0", LABELS)
    stopped = env.start("cell-a")
    env.start("cell-b")
    wait_for(lambda: env.counts() == {"cell-a": (1, 1), "cell-b": (1, 1)}, 5, "both aggregated")
    stopped.stop()
    frozen = env.cell("cell-a")
    ready_pod(env.core("cell-a"), env.ns, "a-1", LABELS)
    ready_pod(env.core("cell-b"), env.ns, "b-1", LABELS)
    wait_for(lambda: env.counts()["cell-b"] == (2, 2), CONVERGENCE, "running cell updates")
    time.sleep(RATE_MILLIS / 1000 + 0.3)
    assert env.cell("cell-a") == frozen

    # Resuming (the runtime starts it again) catches up.
    stopped.start(env.context(stopped.config))
    env.controllers.append(stopped)
    wait_for(lambda: env.counts()["cell-a"] == (2, 2), 5, "resumed cell catches up")
