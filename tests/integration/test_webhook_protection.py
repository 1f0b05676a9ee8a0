"""Pod deletions through the clusters' API servers, judged by our webhook (gunicorn, TLS, 3
workers) registered in both cells — the product's core promise, end to end.

The webhook is registered as https://127.0.0.1:PORT with its CA bundle, so real clusters
(PODSEIDON_TEST_KUBECONFIGS) must run their kube-apiserver on this machine's network (host
network: a kube-apiserver process, k3s, minikube --driver=none); one inside a container (kind)
cannot reach this loopback and every call fails by the failurePolicy.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client as k8s

from tests.integration.webhook_env import (
    DENIED_429,
    RETRY_409,
    WebhookEnv,
    create_protector,
    delete_review,
    install_crd,
    read_protector,
    ready_pod,
    register,
    start_webhook,
    unregister,
    write_aggregation,
)

pytestmark = pytest.mark.integration

CELLS = ("cell-a", "cell-b")


@pytest.fixture(scope="module")
def env(clusters, tmp_path_factory) -> Iterator[WebhookEnv]:
    install_crd(clusters.api("core"))
    work = tmp_path_factory.mktemp("webhook-protection")
    hook = start_webhook(work, clusters.kubeconfigs, tls_dir=work / "tls")
    try:
        for cell in CELLS:
            register(hook, cell)
        yield WebhookEnv(clusters, hook)
    finally:
        for cell in CELLS:
            unregister(clusters.api(cell))
        assert hook.stop() == 0


@pytest.fixture
def ns(env: WebhookEnv) -> Iterator[str]:
    name = f"wh-{uuid.uuid4().hex[:8]}"
    for cluster in ("core", *CELLS):
        env.core(cluster).create_namespace({"metadata": {"name": name}})
    yield name
    for cluster in ("core", *CELLS):
        with contextlib.suppress(k8s.ApiException):
            env.core(cluster).delete_namespace(name)


def _delete(env: WebhookEnv, cell: str, ns: str, name: str) -> tuple[int, str]:
    try:
        env.core(cell).delete_namespaced_pod(name, ns)
        return 200, ""
    except k8s.ApiException as error:
        return error.status, json.loads(error.body).get("message", "")


def _evict(env: WebhookEnv, cell: str, ns: str, name: str) -> tuple[int, str]:
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    }
    try:
        env.core(cell).create_namespaced_pod_eviction(name, ns, body)
        return 201, ""
    except k8s.ApiException as error:
        return error.status, json.loads(error.body).get("message", "")


def _wait_until_webhook_sees(env: WebhookEnv, ns: str, name: str, estimated: int) -> None:
    """The webhook judges from its watch cache; give it the moment a watch event takes."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, _body = env.webhook.get("/readyz")
        protector = read_protector(env.clusters.api("core"), ns, name)
        if status == 200 and protector.status.summary.estimated_available_replicas == estimated:
            time.sleep(0.3)  # the status write's watch event reaches every worker's cache
            return
        time.sleep(0.05)
    raise AssertionError("protector status never settled")


def _setup(
    env: WebhookEnv, ns: str, per_cell: dict[str, int], min_available: int, **kwargs
) -> None:
    labels = {"app": "web"}
    for cell, count in per_cell.items():
        for i in range(count):
            ready_pod(env.core(cell), ns, f"{cell}-{i}", labels)
    create_protector(env.clusters.api("core"), ns, "protector", min_available, labels, **kwargs)
    write_aggregation(env.clusters.api("core"), ns, "protector", per_cell)
    _wait_until_webhook_sees(env, ns, "protector", sum(per_cell.values()))


def test_one_deletion_per_cell_then_rejected(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 3, "cell-b": 4}, min_available=5)
    assert _delete(env, "cell-a", ns, "cell-a-0") == (200, "")
    assert _delete(env, "cell-b", ns, "cell-b-0") == (200, "")
    code, message = _delete(env, "cell-a", ns, "cell-a-1")
    assert code in (409, 429)
    assert message.startswith('admission webhook "podseidon.kubewharf.io" denied the request: ')
    assert f"PodProtector {ns}/protector" in message
    assert RETRY_409 in message if code == 409 else DENIED_429 in message
    # Each cell recorded its admitted deletion as a bucket.
    protector = read_protector(env.clusters.api("core"), ns, "protector")
    buckets = {c.cell_id: len(c.admission_history.buckets) for c in protector.status.cells}
    assert buckets == {"cell-a": 1, "cell-b": 1}
    assert protector.status.summary.estimated_available_replicas == 5
    env.core("cell-a").read_namespaced_pod("cell-a-1", ns)  # still there


def test_the_same_through_the_eviction_api(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 3, "cell-b": 4}, min_available=5)
    assert _evict(env, "cell-a", ns, "cell-a-0")[0] == 201
    assert _evict(env, "cell-b", ns, "cell-b-0")[0] == 201
    code, message = _evict(env, "cell-b", ns, "cell-b-1")
    assert code in (409, 429)
    assert f"PodProtector {ns}/protector" in message


def test_once_aggregation_confirms_the_rejection_is_a_429(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 3, "cell-b": 4}, min_available=5)
    assert _delete(env, "cell-a", ns, "cell-a-0")[0] == 200
    assert _delete(env, "cell-b", ns, "cell-b-0")[0] == 200
    # The aggregator catches up: the deleted pods are gone from its counts (buckets stay until
    # it clears them, which this test does not model, so the estimate drops to 3).
    write_aggregation(env.clusters.api("core"), ns, "protector", {"cell-a": 2, "cell-b": 3})
    _wait_until_webhook_sees(env, ns, "protector", 3)
    code, message = _delete(env, "cell-a", ns, "cell-a-1")
    assert code == 429 and DENIED_429 in message


def test_deletecollection_stops_where_the_quota_ends(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 6}, min_available=3)
    with pytest.raises(k8s.ApiException) as error:
        env.core("cell-a").delete_collection_namespaced_pod(ns, label_selector="app=web")
    assert error.value.status in (409, 429)
    survivors = {p.metadata.name for p in env.core("cell-a").list_namespaced_pod(ns).items}
    # 6 available, minimum 3: exactly three could go, in collection order.
    assert len(survivors) == 3
    protector = read_protector(env.clusters.api("core"), ns, "protector")
    assert len(protector.status.cell("cell-a").admission_history.buckets) == 3


def test_max_concurrent_lag_fills_the_buffer(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 10}, min_available=1, history={"maxConcurrentLag": 1})
    assert _delete(env, "cell-a", ns, "cell-a-0")[0] == 200
    code, message = _delete(env, "cell-a", ns, "cell-a-1")
    assert code == 409 and RETRY_409 in message


def test_unhealthy_pods_go_freely_and_repeats_cost_nothing(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 3}, min_available=3, min_ready_seconds=600)
    core = env.core("cell-a")
    ready_pod(core, ns, "unready", {"app": "web"}, ready=False)
    ready_pod(core, ns, "fresh", {"app": "web"}, ready_for=5)  # ready, not yet available
    assert _delete(env, "cell-a", ns, "unready") == (200, "")
    assert _delete(env, "cell-a", ns, "fresh") == (200, "")
    # Every available pod is needed: the minimum is exactly met.
    assert _delete(env, "cell-a", ns, "cell-a-0")[0] == 429
    protector = read_protector(env.clusters.api("core"), ns, "protector")
    assert protector.status.cell("cell-a").admission_history.buckets == ()


def test_repeated_review_for_one_pod_uses_quota_once(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 3}, min_available=1)
    pod = env.core("cell-a").read_namespaced_pod("cell-a-0", ns).to_dict()
    review_body = delete_review(
        ns,
        k8s.ApiClient().sanitize_for_serialization(
            env.core("cell-a").read_namespaced_pod("cell-a-0", ns)
        ),
    )
    for _ in range(3):
        status, _body = env.webhook.post("/cell-a", review_body)
        assert status == 200
    protector = read_protector(env.clusters.api("core"), ns, "protector")
    buckets = protector.status.cell("cell-a").admission_history.buckets
    assert [b.pod_uid for b in buckets] == [pod["metadata"]["uid"]]
    assert protector.status.summary.estimated_available_replicas == 2


def test_terminating_pod_is_allowed_without_a_bucket(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 2}, min_available=2)
    pod = k8s.ApiClient().sanitize_for_serialization(
        env.core("cell-a").read_namespaced_pod("cell-a-0", ns)
    )
    pod["metadata"]["deletionTimestamp"] = "2026-11-21T00:00:00Z"
    _status, body = env.webhook.post("/cell-a", delete_review(ns, pod))
    assert json.loads(body)["response"]["allowed"] is True
    protector = read_protector(env.clusters.api("core"), ns, "protector")
    assert protector.status.cell("cell-a").admission_history.buckets == ()


def test_force_delete_allows_and_records(env: WebhookEnv, ns: str) -> None:
    _setup(env, ns, {"cell-a": 2}, min_available=2)
    core = env.core("cell-a")
    ready_pod(
        core,
        ns,
        "forced",
        {"app": "web"},
        annotations={"podseidon.kubewharf.io/force-delete": "true"},
    )
    pod = k8s.ApiClient().sanitize_for_serialization(core.read_namespaced_pod("forced", ns))
    _status, body = env.webhook.post("/cell-a", delete_review(ns, pod))
    response = json.loads(body)["response"]
    assert response["allowed"] is True
    assert response["auditAnnotations"] == {
        "dry-run": "1",
        "reject-by-podprotector": f"{ns}/protector",
    }
    assert _delete(env, "cell-a", ns, "forced")[0] == 200


def _wide_client(env: WebhookEnv, cell: str) -> k8s.CoreV1Api:
    """A client whose connection pool fits 100 concurrent requests."""
    from kubernetes import config

    configuration = k8s.Configuration()
    config.load_kube_config(
        config_file=str(env.clusters.kubeconfigs[cell]), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 128
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def test_concurrent_deletions_never_overshoot(env: WebhookEnv, ns: str) -> None:
    """100 simultaneous deletions across both cells, 20 randomised rounds, 3 workers: never
    more admitted than available - minAvailable before the aggregator catches up."""
    rng = random.Random(20261121)
    api = env.clusters.api("core")
    wide = {cell: _wide_client(env, cell) for cell in CELLS}
    for round_number in range(20):
        per_cell = {"cell-a": rng.randint(50, 80), "cell-b": rng.randint(50, 80)}
        available = sum(per_cell.values())
        min_available = rng.randint(available // 3, available - 5)
        name = f"round-{round_number}"
        labels = {"round": str(round_number)}
        pods = []
        for cell, count in per_cell.items():
            for i in range(count):
                pod_name = f"r{round_number}-{cell}-{i}"
                ready_pod(env.core(cell), ns, pod_name, labels)
                pods.append((cell, pod_name))
        create_protector(api, ns, name, min_available, labels)
        write_aggregation(api, ns, name, per_cell)
        _wait_until_webhook_sees(env, ns, name, available)
        victims = rng.sample(pods, 100)
        barrier = threading.Barrier(len(victims))

        def delete(victim: tuple[str, str], barrier: threading.Barrier = barrier) -> int:
            barrier.wait()
            try:
                wide[victim[0]].delete_namespaced_pod(victim[1], ns)
                return 200
            except k8s.ApiException as error:
                return error.status

        with ThreadPoolExecutor(max_workers=len(victims)) as pool:
            codes = list(pool.map(delete, victims))
        admitted = codes.count(200)
        assert set(codes) <= {200, 409, 429, 500}, codes
        assert admitted <= available - min_available, (round_number, admitted, codes)
        protector = read_protector(api, ns, name)
        assert protector.status.summary.estimated_available_replicas >= min_available
        # Conservative direction only: a bucket may outlive a request that timed out later.
        assert admitted <= available - protector.status.summary.estimated_available_replicas


def test_global_dry_run_allows_everything_but_records(env: WebhookEnv, ns: str, tmp_path) -> None:
    """A second webhook in dry-run mode (not registered; reviews posted to it directly): the
    quota is spent and measured as if live, yet every deletion is allowed and marked."""
    _setup(env, ns, {"cell-a": 2}, min_available=1)
    hook = start_webhook(
        tmp_path,
        env.clusters.kubeconfigs,
        tls_dir=tmp_path / "tls",
        webhook_options={"dry_run": True},
        workers=1,
    )
    try:
        answers = []
        for name in ("cell-a-0", "cell-a-1"):
            pod = k8s.ApiClient().sanitize_for_serialization(
                env.core("cell-a").read_namespaced_pod(name, ns)
            )
            status, body = hook.post("/cell-a", delete_review(ns, pod))
            assert status == 200
            answers.append(json.loads(body)["response"])
        assert all(a["allowed"] for a in answers)
        assert answers[0]["auditAnnotations"] == {"dry-run": "1"}
        assert answers[1]["auditAnnotations"] == {
            "dry-run": "1",
            "reject-by-podprotector": f"{ns}/protector",
        }
        # The admitted one was recorded exactly as a live webhook would have.
        protector = read_protector(env.clusters.api("core"), ns, "protector")
        buckets = protector.status.cell("cell-a").admission_history.buckets
        assert [b.pod_uid for b in buckets] == [pod_uid(env, ns, "cell-a-0")]
        metrics = hook.metrics()
        # The second is refused as Retry: the first one's unconfirmed bucket holds the quota.
        for result, rejected in (("Ok", "false"), ("Retry", "true")):
            assert (
                f'webhook_handle_pod_in_ppr_total{{cell="cell-a",namespace="",'
                f'rejected="{rejected}",result="{result}"}} 1.0'
            ) in metrics
        assert (
            'webhook_request_count{allowed="true",cell="cell-a",namespace="",user=""} 2.0'
            in metrics
        )
    finally:
        assert hook.stop() == 0


def pod_uid(env: WebhookEnv, ns: str, name: str) -> str:
    return env.core("cell-a").read_namespaced_pod(name, ns).metadata.uid
