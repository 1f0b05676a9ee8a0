"""The shared Informer (list + watch + index) against a real API server (sandbox or cluster)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kubernetes import client as k8s

from podseidon_site.config import ClusterAccess
from protectors.kube.client import PODS, KubeClient
from protectors.kube.informer import (
    Backoff,
    FunctionHandler,
    Informer,
    keep_metadata_and_status,
    namespace_index,
)

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def handler(self) -> FunctionHandler:
        return FunctionHandler(
            add=lambda o: self._log("add", o),
            update=lambda old, new: self._log("update", new),
            delete=lambda o: self._log("delete", o),
        )

    def _log(self, kind: str, obj: dict) -> None:
        with self.lock:
            self.events.append((kind, obj["metadata"]["name"]))

    def seen(self, kind: str, name: str) -> bool:
        with self.lock:
            return (kind, name) in self.events


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _pod(name: str, labels: dict[str, str]) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="nginx")]),
    )


@pytest.fixture
def kube(clusters) -> KubeClient:
    return KubeClient.from_access(ClusterAccess(kubeconfig=str(clusters.kubeconfigs["cell-a"])))


@pytest.fixture
def cell_namespace(clusters):
    import uuid

    name = f"inf-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(clusters.api("cell-a"))
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name, core
    core.delete_namespace(name)


def test_lists_watches_and_indexes(kube: KubeClient, cell_namespace) -> None:
    namespace, core = cell_namespace
    core.create_namespaced_pod(namespace, _pod("before", {"app": "a"}))
    informer = Informer(kube, PODS, namespace=namespace, transform=keep_metadata_and_status)
    informer.add_index("namespace", namespace_index)
    informer.add_index("app", lambda o: [o["metadata"].get("labels", {}).get("app", "")])
    recorder = Recorder()
    informer.add_handler(recorder.handler())
    informer.start()
    try:
        assert informer.wait_synced(10)
        assert recorder.seen("add", "before")
        core.create_namespaced_pod(namespace, _pod("after", {"app": "b"}))
        wait_for(lambda: recorder.seen("add", "after"))
        core.patch_namespaced_pod("after", namespace, {"metadata": {"labels": {"app": "a"}}})
        wait_for(lambda: recorder.seen("update", "after"))
        names = {p["metadata"]["name"] for p in informer.by_index("app", "a")}
        assert names == {"before", "after"}
        assert informer.by_index("app", "b") == []
        assert len(informer.by_index("namespace", namespace)) == 2
        # The transform keeps the cache small: no container specs.
        assert "containers" not in (informer.get(f"{namespace}/before").get("spec") or {})
        core.delete_namespaced_pod("before", namespace)
        wait_for(lambda: recorder.seen("delete", "before"))
        assert informer.get(f"{namespace}/before") is None
        assert [p["metadata"]["name"] for p in informer.by_index("app", "a")] == ["after"]
    finally:
        informer.stop()


def test_watch_resumes_after_the_server_ends_it(kube: KubeClient, cell_namespace) -> None:
    namespace, core = cell_namespace
    informer = Informer(kube, PODS, namespace=namespace, watch_timeout_seconds=1)
    recorder = Recorder()
    informer.add_handler(recorder.handler())
    informer.start()
    try:
        assert informer.wait_synced(10)
        time.sleep(1.5)  # the first watch has timed out and been reopened by now
        core.create_namespaced_pod(namespace, _pod("late", {"app": "x"}))
        wait_for(lambda: recorder.seen("add", "late"))
        adds = [e for e in recorder.events if e == ("add", "late")]
        assert len(adds) == 1, "a resumed watch must not replay what the cache already has"
    finally:
        informer.stop()


def test_quiet_watch_ends_at_the_read_timeout_and_resumes(kube: KubeClient, cell_namespace) -> None:
    """Nothing arrives on a quiet watch (no bookmark within the test, on the sandbox's real
    cadence or a real cluster's): the read timeout ends it, the informer watches again without
    backing off or relisting, and still sees the next change once."""
    namespace, core = cell_namespace
    opened: list[str | None] = []

    class Counting(KubeClient):
        def watch(self, *args, **kwargs):
            opened.append(kwargs.get("resource_version"))
            return super().watch(*args, **kwargs)

    counting = Counting(kube.api_client)
    informer = Informer(counting, PODS, namespace=namespace, watch_read_timeout=0.3)
    recorder = Recorder()
    informer.add_handler(recorder.handler())
    informer.start()
    try:
        assert informer.wait_synced(10)
        listed_at = informer.resource_version
        wait_for(lambda: len(opened) >= 3, timeout=10)
        assert set(opened) == {listed_at}, "each new watch resumes from the listed version"
        core.create_namespaced_pod(namespace, _pod("late", {"app": "x"}))
        wait_for(lambda: recorder.seen("add", "late"))
        assert recorder.events.count(("add", "late")) == 1
    finally:
        informer.stop()


def test_relists_after_410_gone_and_reports_what_it_missed(
    clusters, kube: KubeClient, cell_namespace
) -> None:
    clusters.require_sandbox("the sandbox's small, known watch history window (300 events)")
    namespace, core = cell_namespace
    core.create_namespaced_pod(namespace, _pod("doomed", {"app": "x"}))
    informer = Informer(kube, PODS, namespace=namespace)
    recorder = Recorder()
    informer.add_handler(recorder.handler())
    informer.start()
    assert informer.wait_synced(10)
    informer.stop()
    stale_rv = informer.resource_version
    core.delete_namespaced_pod("doomed", namespace)
    core.create_namespaced_pod(namespace, _pod("newcomer", {"app": "x"}))
    for i in range(320):  # push the stale resourceVersion out of the sandbox's window of 300
        core.patch_namespaced_pod(
            "newcomer", namespace, {"metadata": {"annotations": {"n": str(i)}}}
        )
    # A real apiserver answers a too-old watch with an ERROR event carrying a 410 Status.
    first = next(iter(kube.watch(PODS, namespace, resource_version=stale_rv, timeout_seconds=2)))
    assert first["type"] == "ERROR"
    assert first["object"]["code"] == 410
    informer.start()
    try:
        wait_for(lambda: recorder.seen("delete", "doomed") and recorder.seen("add", "newcomer"))
        assert informer.get(f"{namespace}/doomed") is None
        assert informer.resource_version != stale_rv
    finally:
        informer.stop()


def test_unreachable_server_backs_off_and_recovers(tmp_path, clusters) -> None:
    clusters.require_sandbox("a kubeconfig whose server is https://127.0.0.1:PORT, to redirect")
    kubeconfig = clusters.kubeconfigs["cell-a"].read_text()
    # Point at a port nobody listens on: the informer must keep retrying, never sync, not crash.
    broken = tmp_path / "broken.kubeconfig"
    import re

    broken.write_text(re.sub(r"https://127\.0\.0\.1:\d+", "https://127.0.0.1:9", kubeconfig))
    failures: list[float] = []

    class Observer:
        def listed(self, *args) -> None: ...

        def relist_needed(self, *args) -> None: ...

        def event(self, *args) -> None: ...

        def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
            failures.append(retry_in)

    informer = Informer(
        KubeClient.from_access(ClusterAccess(kubeconfig=str(broken))),
        PODS,
        observer=Observer(),
        backoff=Backoff(initial=0.05, maximum=0.2),
    )
    informer.start()
    try:
        wait_for(lambda: len(failures) >= 3, timeout=10)
        assert not informer.has_synced
        assert max(failures) <= 0.2
    finally:
        informer.stop()
