"""The aggregator controller's event handling and write decisions, against an in-memory API.

The fake below serves list, watch and writes from dicts, so the real Informers, work queue and
worker threads run unchanged; the sandbox-backed tests in tests/integration cover the wire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from podseidon_site.config import (
    AggregatorConfig,
    CellConfig,
    ClusterAccess,
    PodseidonConfig,
    UpdateTriggerConfig,
)
from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME
from protectors.health import PodHealth
from protectors.kube.client import KubeError, Resource
from protectors.kube.informer import object_key
from protectors.selectors import parse_selector_string
from protectors.timefmt import format_micro_time
from workers.aggregator.controller import AggregatorController, aggregation_rate, trim_pod
from workers.aggregator.index import pod_slots, protector_slots
from workers.aggregator.podcache import HEALTH_FIELD
from workers.aggregator.reconcile import history_defaults
from workers.aggregator.update_trigger import dummy_pod, labels_for_selector
from workers.controller import AlwaysValidFence, ControllerContext

CELL = "cell-a"


class FakeStream:
    def __init__(self, kube: FakeKube, plural: str, after: int, selector: str | None) -> None:
        self.kube, self.plural, self.after = kube, plural, after
        self.selector = parse_selector_string(selector or "")
        self.closed = False

    def __iter__(self) -> Iterator[dict]:
        position = self.after
        with self.kube.cond:
            while not self.closed:
                pending = [(rv, e) for rv, e in self.kube.events[self.plural] if rv > position]
                if self.plural in self.kube.paused:
                    pending = []
                if not pending:
                    self.kube.cond.wait(0.05)
                    continue
                for rv, event in pending:
                    position = rv
                    labels = (event["object"].get("metadata") or {}).get("labels")
                    if self.selector.matches(labels):
                        self.kube.cond.release()
                        try:
                            yield event
                        finally:
                            self.kube.cond.acquire()
                    if self.closed:
                        return

    def close(self) -> None:
        self.closed = True


class FakeKube:
    """Just enough of KubeClient: list_all, watch, replace_status, patch, create."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 0
        self.objects: dict[str, dict[str, dict]] = {"pods": {}, "podprotectors": {}}
        self.events: dict[str, list[tuple[int, dict]]] = {"pods": [], "podprotectors": []}
        self.writes: list[tuple[str, str, dict]] = []
        self.conflicts = 0  # fail this many status writes with 409
        self.conflicted = 0  # status writes answered 409
        self.paused: set[str] = set()  # watches of these resources deliver nothing for now

    def _store(self, plural: str, obj: dict, event: str) -> dict:
        self.rv += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        key = object_key(obj)
        if event == "DELETED":
            self.objects[plural].pop(key, None)
        else:
            self.objects[plural][key] = obj
        self.events[plural].append((self.rv, {"type": event, "object": obj}))
        self.cond.notify_all()
        return obj

    def put(self, plural: str, obj: dict) -> dict:
        with self.cond:
            exists = object_key(obj) in self.objects[plural]
            return self._store(plural, obj, "MODIFIED" if exists else "ADDED")

    def remove(self, plural: str, key: str) -> None:
        with self.cond:
            self._store(plural, self.objects[plural][key], "DELETED")

    def get_obj(self, plural: str, key: str) -> dict:
        with self.cond:
            return self.objects[plural][key]

    # -- KubeClient surface ---------------------------------------------------------------

    def list_all(self, resource: Resource, namespace=None, *, label_selector=None, **_):
        selector = parse_selector_string(label_selector or "")
        with self.cond:
            items = [
                o
                for o in self.objects[resource.plural].values()
                if selector.matches((o.get("metadata") or {}).get("labels"))
            ]
            return {"metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def watch(self, resource: Resource, namespace=None, *, resource_version=None, **kwargs):
        return FakeStream(
            self, resource.plural, int(resource_version or 0), kwargs.get("label_selector")
        )

    def replace_status(self, resource: Resource, namespace, name, obj: dict) -> dict:
        key = f"{namespace}/{name}"
        with self.cond:
            current = self.objects[resource.plural].get(key)
            if current is None:
                raise KubeError(404, "NotFound", "gone")
            if (
                self.conflicts > 0
                or obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
            ):
                self.conflicts = max(self.conflicts - 1, 0)
                self.conflicted += 1
                raise KubeError(409, "Conflict", "the object has been modified")
            self.writes.append(("status", key, obj))
            return self._store(
                resource.plural, {**current, "status": obj.get("status")}, "MODIFIED"
            )

    def patch(self, resource: Resource, namespace, name, patch: dict, **_) -> dict:
        key = f"{namespace}/{name}"
        with self.cond:
            current = self.objects[resource.plural].get(key)
            if current is None:
                raise KubeError(404, "NotFound", "gone")
            annotations = {
                **(current["metadata"].get("annotations") or {}),
                **patch["metadata"]["annotations"],
            }
            self.writes.append(("patch", key, patch))
            updated = {**current, "metadata": {**current["metadata"], "annotations": annotations}}
            return self._store(resource.plural, updated, "MODIFIED")

    def create(self, resource: Resource, namespace, obj: dict) -> dict:
        with self.cond:
            if object_key(obj) in self.objects[resource.plural]:
                raise KubeError(409, "AlreadyExists", "exists")
            self.writes.append(("create", object_key(obj), obj))
            return self._store(resource.plural, obj, "ADDED")


# -- objects --------------------------------------------------------------------------------


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_pod(name: str, *, ready: bool = True, since: datetime | None = None, labels=None) -> dict:
    since = since or datetime.now(UTC) - timedelta(hours=1)
    return {
        "metadata": {"name": name, "namespace": "demo", "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "c", "ready": ready}],
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": ts(since),
                },
            ],
        },
    }


def make_protector(name: str = "web", *, min_ready_seconds: int = 0, status=None) -> dict:
    obj = {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {
            "minAvailable": 1,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": {"app": "web"}},
            "admissionHistoryConfig": {"aggregationRateMillis": 20},
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def wait_for(condition: Callable[[], object], timeout: float = 3.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def cell_of(kube: FakeKube, key: str = "demo/web") -> dict | None:
    obj = kube.get_obj("podprotectors", key)
    for cell in (obj.get("status") or {}).get("cells") or ():
        if cell["cellID"] == CELL:
            return cell
    return None


def available(kube: FakeKube, key: str = "demo/web") -> int | None:
    cell = cell_of(kube, key)
    return cell["aggregation"]["availableReplicas"] if cell else None


def status_writes(kube: FakeKube) -> int:
    return sum(1 for verb, *_ in kube.writes if verb == "status")


@pytest.fixture
def env():
    core, cell = FakeKube(), FakeKube()
    started: list[AggregatorController] = []
    reports: list[str | None] = []

    def start(**aggregator) -> AggregatorController:
        config = PodseidonConfig(
            core=ClusterAccess(kubeconfig="/dev/null"),
            cells=[CellConfig(id=CELL, kubeconfig="/dev/null")],
            aggregator=AggregatorConfig(**aggregator),
        )
        controller = AggregatorController(config, CELL)
        context = ControllerContext(
            config=config,
            core=core,  # type: ignore[arg-type]
            cells={CELL: cell},  # type: ignore[dict-item]
            fence=AlwaysValidFence(),
            report=reports.append,
        )
        controller.start(context)
        started.append(controller)
        return controller

    yield core, cell, start, reports
    for controller in started:
        controller.stop()


# -- tests ----------------------------------------------------------------------------------


def test_pods_are_counted_and_written_once(env):
    core, cell, start, reports = env
    cell.put("pods", make_pod("a"))
    cell.put("pods", make_pod("b"))
    cell.put("pods", make_pod("c", labels={"app": "db"}))
    core.put("podprotectors", make_protector())
    start()
    wait_for(lambda: available(core) == 2)
    time.sleep(0.2)
    assert status_writes(core) == 1  # our own write's event does not trigger another
    assert reports and all(r is None for r in reports)

    cell.put("pods", make_pod("d"))
    wait_for(lambda: available(core) == 3)
    cell.remove("pods", "demo/a")
    wait_for(lambda: available(core) == 2)


def test_unchanged_pod_events_write_nothing(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    core.put("podprotectors", make_protector())
    start()
    wait_for(lambda: available(core) == 1)
    writes = status_writes(core)
    pod = cell.get_obj("pods", "demo/a")
    cell.put("pods", {**pod, "metadata": {**pod["metadata"], "annotations": {"x": "y"}}})
    time.sleep(0.2)
    assert status_writes(core) == writes


def test_conflict_is_requeued(env):
    core, cell, start, reports = env
    cell.put("pods", make_pod("a"))
    core.conflicts = 2
    core.put("podprotectors", make_protector())
    start()
    wait_for(lambda: available(core) == 1)
    assert core.conflicts == 0
    assert all(r is None for r in reports)  # a conflict is not an error worth reporting


def test_writes_ahead_of_a_lagging_cache_do_not_conflict(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    core.put("podprotectors", make_protector())
    start()
    wait_for(lambda: available(core) == 1)
    with core.cond:
        core.paused.add("podprotectors")  # our writes' events are late
    for count, name in enumerate(("b", "c", "d"), start=2):
        cell.put("pods", make_pod(name))
        wait_for(lambda count=count: available(core) == count)
    assert core.conflicted == 0  # each write was based on the previous one, not the cache
    with core.cond:
        core.paused.clear()
    time.sleep(0.2)  # the late events arrive: nothing left to write
    assert status_writes(core) == 4
    assert core.conflicted == 0


def test_other_cells_writes_do_not_trigger_us_but_ours_do(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    core.put("podprotectors", make_protector())
    controller = start()
    wait_for(lambda: available(core) == 1)
    writes = status_writes(core)
    # Another cell's aggregator writes its own cell: nothing to do for cell-a.
    current = core.get_obj("podprotectors", "demo/web")
    other = {"cellID": "cell-b", "aggregation": {"totalReplicas": 1, "availableReplicas": 1}}
    status = {**current["status"], "cells": [*current["status"]["cells"], other]}
    core.put("podprotectors", {**current, "status": status})
    time.sleep(0.2)
    assert status_writes(core) == writes
    # The webhook adds an old bucket to cell-a: it is expired against the sync time.
    current = core.get_obj("podprotectors", "demo/web")
    old = format_micro_time(controller.sync_time - timedelta(seconds=5))
    cells = [
        {**c, "admissionHistory": {"buckets": [{"startTime": old, "podUID": "u1"}]}}
        if c["cellID"] == CELL
        else c
        for c in current["status"]["cells"]
    ]
    core.put("podprotectors", {**current, "status": {**current["status"], "cells": cells}})
    wait_for(lambda: cell_of(core)["admissionHistory"]["buckets"] == [])
    # The summary written counts both cells.
    summary = core.get_obj("podprotectors", "demo/web")["status"]["summary"]
    assert summary["aggregatedAvailableReplicas"] == 2


def test_newer_bucket_waits_in_the_pool_until_the_next_pod_event(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    core.put("podprotectors", make_protector())
    controller = start()
    wait_for(lambda: available(core) == 1)
    current = core.get_obj("podprotectors", "demo/web")
    future = format_micro_time(datetime.now(UTC) + timedelta(milliseconds=300))
    cells = [
        {**c, "admissionHistory": {"buckets": [{"startTime": future, "podUID": "u1"}]}}
        for c in current["status"]["cells"]
    ]
    core.put("podprotectors", {**current, "status": {**current["status"], "cells": cells}})
    wait_for(lambda: controller.pool_size == 1)
    time.sleep(0.5)  # the bucket's moment passes, but no pod event proves the stream moved
    assert len(cell_of(core)["admissionHistory"]["buckets"]) == 1
    assert controller.pool_size == 1
    # Any pod event, even one of an unrelated pod, wakes the pool.
    cell.put("pods", make_pod("other", labels={"app": "unrelated"}))
    wait_for(lambda: cell_of(core)["admissionHistory"]["buckets"] == [])
    wait_for(lambda: controller.pool_size == 0)


def test_min_ready_seconds_requeue(env):
    core, cell, start, _ = env
    # The wire carries whole seconds, so ``since`` is up to 1 s in the past already: with
    # minReadySeconds 2 the pod becomes available at least 1 s from now, whatever the start-up
    # takes on a slow machine.
    since = datetime.now(UTC).replace(microsecond=0)
    cell.put("pods", make_pod("a", since=since))
    core.put("podprotectors", make_protector(min_ready_seconds=2))
    start()
    wait_for(lambda: available(core) == 0)
    # No event will come: only the requeue makes the pod available, at since + 2 s.
    wait_for(lambda: available(core) == 1, timeout=4)
    assert datetime.now(UTC) >= since + timedelta(seconds=2)


def test_stop_freezes_and_start_resumes(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    core.put("podprotectors", make_protector())
    controller = start()
    wait_for(lambda: available(core) == 1)
    controller.stop()
    assert not controller.running
    cell.put("pods", make_pod("b"))
    time.sleep(0.3)
    assert available(core) == 1
    config = controller.config
    context = ControllerContext(
        config=config,
        core=core,  # type: ignore[arg-type]
        cells={CELL: cell},  # type: ignore[dict-item]
        fence=AlwaysValidFence(),
    )
    controller.start(context)
    wait_for(lambda: available(core) == 2)


def test_deleted_protector_leaves_the_pool(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    future = format_micro_time(datetime.now(UTC) + timedelta(hours=1))
    status = {
        "cells": [
            {
                "cellID": CELL,
                "aggregation": {"totalReplicas": 0, "availableReplicas": 0},
                "admissionHistory": {"buckets": [{"startTime": future, "podUID": "u"}]},
            }
        ],
        "summary": {},
    }
    core.put("podprotectors", make_protector(status=status))
    controller = start()
    wait_for(lambda: controller.pool_size == 1)
    core.remove("podprotectors", "demo/web")
    wait_for(lambda: controller.pool_size == 0)


def test_update_trigger_creates_and_bumps_the_dummy_pod(env):
    _core, cell, start, _ = env
    controller = start(
        pod_label_selector="tier=protected",
        update_trigger=UpdateTriggerConfig(enabled=True, interval_seconds=0.05),
    )
    wait_for(lambda: "default/podseidon-update-trigger" in cell.objects["pods"])
    dummy = cell.get_obj("pods", "default/podseidon-update-trigger")
    assert dummy["metadata"]["labels"]["tier"] == "protected"  # visible to our own watch
    first = dummy["metadata"]["annotations"][ANNOTATION_UPDATE_TRIGGER_TIME]
    wait_for(
        lambda: cell.get_obj("pods", "default/podseidon-update-trigger")["metadata"]["annotations"][
            ANNOTATION_UPDATE_TRIGGER_TIME
        ]
        != first
    )
    # Its events move the sync time.
    wait_for(lambda: controller.sync_time is not None)
    before = controller.sync_time
    wait_for(lambda: controller.sync_time > before)


def test_status_algorithm_takes_times_from_the_pods(env):
    core, cell, start, _ = env
    created = datetime(2026, 1, 1, tzinfo=UTC)
    pod = make_pod("a")
    pod["metadata"]["creationTimestamp"] = ts(created)
    pod["status"]["conditions"][1]["lastTransitionTime"] = ts(created + timedelta(seconds=3))
    cell.put("pods", pod)
    core.put("podprotectors", make_protector())
    controller = start(sync_time_algorithm="status")
    wait_for(lambda: available(core) == 1)
    assert controller.sync_time == created + timedelta(seconds=3)
    assert cell_of(core)["aggregation"]["lastEventTime"] == "2026-01-01T00:00:03.000000Z"


def test_invalid_protector_is_reported(env):
    core, _cell, start, reports = env
    bad = make_protector("bad")
    bad["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "Nope"}]}
    core.put("podprotectors", bad)
    start()
    wait_for(lambda: any(r and "demo/bad" in r for r in reports))


# -- small pure helpers ----------------------------------------------------------------------


def test_index_slots():
    pod = make_pod("a", labels={"app": "web", "tier": "1"})
    assert sorted(pod_slots(pod)) == sorted(["demo\x00*", "demo\x00app=web", "demo\x00tier=1"])
    assert list(protector_slots(make_protector())) == ["demo\x00app=web"]
    wide = make_protector()
    wide["spec"]["aggregationSelector"] = {}
    assert list(protector_slots(wide)) == ["demo\x00*"]  # namespace-wide
    nil = make_protector()
    nil["spec"]["aggregationSelector"] = {"matchExpressions": [{"key": "a", "operator": "Bad"}]}
    assert list(protector_slots(nil)) == []


def test_trim_pod_keeps_what_aggregation_reads():
    pod = make_pod("a")
    pod["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    pod["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        ANNOTATION_UPDATE_TRIGGER_TIME: "x",
    }
    trimmed = trim_pod(pod)
    assert set(trimmed) == {"metadata", "status", HEALTH_FIELD}
    assert trimmed[HEALTH_FIELD] == PodHealth.from_pod(pod)
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["metadata"]["annotations"] == {ANNOTATION_UPDATE_TRIGGER_TIME: "x"}
    assert set(trimmed["status"]) == {"phase", "conditions"}
    assert "managedFields" in pod["metadata"]  # the original is not modified


def test_aggregation_rate_per_protector():
    defaults = history_defaults(PodseidonConfig().admission_history)
    assert aggregation_rate(make_protector(), defaults) == timedelta(milliseconds=20)
    plain = make_protector()
    del plain["spec"]["admissionHistoryConfig"]
    assert aggregation_rate(plain, defaults) == timedelta(seconds=1)


# (pod label selector, labels for the dummy pod or None)
@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ("", {}),
        ("tier=protected", {"tier": "protected"}),
        ("tier in (a, b),watched", {"tier": "a", "watched": "true"}),
        ("tier!=x", {}),
        ("!watched", {}),
        ("tier notin (a),tier", {"tier": "true"}),
        ("tier=a,tier=b", None),  # nothing satisfies it
        ("replicas>3", None),  # cannot be derived
    ],
)
def test_dummy_pod_labels_satisfy_the_pod_selector(selector, labels):
    assert labels_for_selector(selector) == labels


def test_dummy_pod_is_never_scheduled():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pod = dummy_pod("trigger", "default", {"tier": "protected"}, now)
    assert "nodeName" not in pod["spec"]
    assert pod["spec"]["schedulerName"] != "default-scheduler"
    assert pod["spec"]["nodeSelector"]
    assert pod["metadata"]["annotations"][ANNOTATION_UPDATE_TRIGGER_TIME] == format_micro_time(now)


def test_lookups_find_protectors_and_pods_through_the_indexes():
    from protectors.kube.client import PODPROTECTORS, PODS
    from protectors.kube.informer import Informer
    from workers.aggregator.index import PodCandidates, ProtectorLookup, aggregation_selector

    core, cell = FakeKube(), FakeKube()
    by_label = make_protector("by-label")
    wider = make_protector("wider")
    wider["spec"]["aggregationSelector"] = {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]
    }
    elsewhere = make_protector("elsewhere")
    elsewhere["metadata"]["namespace"] = "other"
    for obj in (by_label, wider, elsewhere):
        core.put("podprotectors", obj)
    for name, labels in (("w", {"app": "web"}), ("a", {"app": "api"}), ("d", {"app": "db"})):
        cell.put("pods", make_pod(name, labels=labels))

    protectors = Informer(core, PODPROTECTORS)  # type: ignore[arg-type]
    lookup = ProtectorLookup(protectors)
    pods = Informer(cell, PODS)  # type: ignore[arg-type]
    candidates = PodCandidates(pods)
    protectors.start()
    pods.start()
    try:
        assert protectors.wait_synced(2) and pods.wait_synced(2)
        assert lookup.matching("demo", {"app": "web"}) == {"demo/by-label", "demo/wider"}
        assert lookup.matching("demo", {"app": "api"}) == {"demo/wider"}
        assert lookup.matching("demo", {"app": "db"}) == set()
        assert lookup.matching("other", {"app": "web"}) == {"other/elsewhere"}
        names = lambda found: sorted(p["metadata"]["name"] for p in found)  # noqa: E731
        assert names(candidates.for_selector("demo", aggregation_selector(by_label))) == ["w"]
        assert names(candidates.for_selector("demo", aggregation_selector(wider))) == [
            "a",
            "d",
            "w",
        ]  # namespace-wide candidates; the selector is applied by reconcile
        assert candidates.for_selector("other", aggregation_selector(by_label)) == []
    finally:
        protectors.stop()
        pods.stop()


def reconciles() -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("aggregator_reconcile_count", {"cell": CELL, "error": "none"})
        or 0.0
    )


def test_pod_events_that_change_no_count_reconcile_nothing(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    core.put("podprotectors", make_protector())
    controller = start()
    wait_for(lambda: available(core) == 1)
    time.sleep(0.1)
    before, synced = reconciles(), controller.sync_time
    pod = cell.get_obj("pods", "demo/a")
    cell.put("pods", {**pod, "status": {**pod["status"], "podIP": "10.0.0.9"}})
    wait_for(lambda: controller.sync_time > synced)  # the event arrived and moved the clock
    time.sleep(0.2)  # past the protector's aggregationRate (20 ms)
    assert reconciles() == before
    cell.put("pods", make_pod("a", ready=False))
    wait_for(lambda: available(core) == 0)
    assert reconciles() > before


def test_status_writes_send_the_status_and_the_preconditions_only(env):
    core, cell, start, _ = env
    cell.put("pods", make_pod("a"))
    protector = make_protector()
    protector["metadata"]["annotations"] = {"big": "x" * 1000}
    protector["metadata"]["uid"] = "u-1"
    core.put("podprotectors", protector)
    start()
    wait_for(lambda: available(core) == 1)
    verb, _key, body = core.writes[-1]
    assert verb == "status"
    assert set(body["metadata"]) == {"name", "namespace", "resourceVersion", "uid"}
    assert body["kind"] == "PodProtector" and body["spec"] == protector["spec"]
    stored = core.get_obj("podprotectors", "demo/web")
    assert stored["metadata"]["annotations"] == {"big": "x" * 1000}  # untouched
