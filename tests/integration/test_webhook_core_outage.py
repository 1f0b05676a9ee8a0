"""A hung core cluster (its sandbox process stopped with SIGSTOP, as a frozen kube-apiserver):
protected deletions get the webhook's own 500 naming the core cluster well before
kube-apiserver's deadline, and a burst of them does not hold the server threads that
unprotected deletions need.

The core cluster runs in a sandbox process of its own here, so that freezing it leaves the
cells (whose apiservers call the webhook) running. Needs the sandbox: a real core apiserver
cannot be frozen from a test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.integration.conftest import start_sandbox, stop_sandbox
from tests.integration.webhook_env import (
    Webhook,
    create_protector,
    install_crd,
    ready_pod,
    register,
    start_webhook,
    write_aggregation,
)

pytestmark = pytest.mark.integration

WRITE_TIMEOUT_MS = 1000
REVIEW_TIMEOUT_S = 5  # the registration's timeoutSeconds (webhook_env's default)
BURST = 200
GUARDED = {"app": "guarded"}
FREE = {"app": "free"}


@dataclass
class Outage:
    core_process: object
    core_api: k8s.ApiClient
    cell: k8s.CoreV1Api
    webhook: Webhook
    ns: str

    @contextlib.contextmanager
    def core_frozen(self) -> Iterator[None]:
        os.kill(self.core_process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.core_process.pid, signal.SIGCONT)


def _cell_client(kubeconfig: Path) -> k8s.CoreV1Api:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = BURST + 8
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


@pytest.fixture(scope="module")
def outage(tmp_path_factory) -> Iterator[Outage]:
    if os.environ.get("PODSEIDON_TEST_KUBECONFIGS"):
        pytest.skip("freezes the core cluster's process: needs the sandbox")
    work = tmp_path_factory.mktemp("core-outage")
    core_state, cells_state = work / "core", work / "cells"
    core_state.mkdir()
    cells_state.mkdir()
    core_process = start_sandbox(core_state, ("core",))
    cells_process = None
    hook = None
    try:
        cells_process = start_sandbox(cells_state, ("cell-a", "cell-b"))
        kubeconfigs = {
            "core": core_state / "core.kubeconfig",
            "cell-a": cells_state / "cell-a.kubeconfig",
            "cell-b": cells_state / "cell-b.kubeconfig",
        }
        core_api = k8s_config.new_client_from_config(config_file=str(kubeconfigs["core"]))
        install_crd(core_api)
        hook = start_webhook(
            work,
            kubeconfigs,
            tls_dir=work / "tls",
            webhook_options={"core_write_timeout_millis": WRITE_TIMEOUT_MS},
        )
        register(hook, "cell-a")
        cell = _cell_client(kubeconfigs["cell-a"])
        ns = f"outage-{uuid.uuid4().hex[:6]}"
        k8s.CoreV1Api(core_api).create_namespace({"metadata": {"name": ns}})
        cell.create_namespace({"metadata": {"name": ns}})
        # minAvailable 0 and plenty available: with the core answering, every deletion is
        # admitted, so a refusal can only come from the core cluster's silence.
        create_protector(core_api, ns, "guard", 0, GUARDED)
        write_aggregation(core_api, ns, "guard", {"cell-a": 10_000})
        yield Outage(core_process, core_api, cell, hook, ns)
    finally:
        os.kill(core_process.pid, signal.SIGCONT)
        if hook is not None:
            hook.stop()
        if cells_process is not None:
            stop_sandbox(cells_process)
        stop_sandbox(core_process)


def _delete(cell: k8s.CoreV1Api, ns: str, name: str) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        cell.delete_namespaced_pod(name, ns, _request_timeout=30)
        status, message = 200, ""
    except k8s.ApiException as error:
        status = error.status
        try:
            message = json.loads(error.body).get("message", "")
        except (TypeError, ValueError):
            message = str(error.body)
    return status, message, time.monotonic() - started


def _pods(outage: Outage, prefix: str, count: int, labels: dict[str, str]) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(count)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: ready_pod(outage.cell, outage.ns, n, labels), names))
    return names


def _wait_until_answered(outage: Outage, deadline: float) -> None:
    """After SIGCONT: protected deletions are admitted again (the breaker's probe closed it)."""
    (probe,) = _pods(outage, f"probe-{uuid.uuid4().hex[:4]}", 1, GUARDED)
    while True:
        status, message, _ = _delete(outage.cell, outage.ns, probe)
        if status == 200:
            return
        assert time.monotonic() < deadline, f"still refused after the core came back: {message}"
        time.sleep(0.2)


def test_protected_deletion_gets_our_500_well_before_the_apiserver_deadline(
    outage: Outage,
) -> None:
    (pod,) = _pods(outage, "lone", 1, GUARDED)
    with outage.core_frozen():
        status, message, elapsed = _delete(outage.cell, outage.ns, pod)
    print(f"protected deletion with the core frozen: {status} after {elapsed:.2f} s: {message}")
    assert status == 500, message
    assert (
        f"cannot record the admission of pod {outage.ns}/{pod} in PodProtector "
        f"{outage.ns}/guard: core cluster did not answer within {WRITE_TIMEOUT_MS} ms"
    ) in message, message
    assert "context deadline exceeded" not in message
    # Our answer comes after the write budget, far from kube-apiserver's 5 s.
    assert elapsed < REVIEW_TIMEOUT_S * 0.6, f"{elapsed:.2f} s: {message}"
    # Refused, so the pod is still there; and the webhook recovers once the core answers.
    assert outage.cell.read_namespaced_pod(pod, outage.ns).metadata.deletion_timestamp is None
    _wait_until_answered(outage, time.monotonic() + 20)
    assert _delete(outage.cell, outage.ns, pod)[0] == 200


def _unmatched_review(ns: str, name: str) -> bytes:
    """The AdmissionReview kube-apiserver sends for a pod no PodProtector selects."""
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "operation": "DELETE",
                "namespace": ns,
                "name": name,
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "userInfo": {"username": "test"},
                "oldObject": {
                    "metadata": {"name": name, "namespace": ns, "uid": name, "labels": FREE},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                },
            },
        }
    ).encode()


def _unprotected_during_burst(outage: Outage, tag: str) -> tuple[list[float], list[int]]:
    """Reviews of unprotected pod deletions, sent one after another on a kept-alive connection
    (as kube-apiserver does) while BURST protected pods are deleted at once through the cell's
    apiserver; their latencies, and the burst's statuses.

    The unprotected reviews go straight to the webhook so that what is timed is the webhook's
    answer, not the queue of 200 deletions in the cell's apiserver in front of it."""
    guarded = _pods(outage, f"g{tag}", BURST, GUARDED)
    host, port = outage.webhook.url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(
        host, int(port), context=outage.webhook.ssl_context(), timeout=30
    )
    latencies: list[float] = []
    burst_done = threading.Event()
    barrier = threading.Barrier(BURST + 1)

    def burst(name: str) -> int:
        barrier.wait(timeout=30)
        return _delete(outage.cell, outage.ns, name)[0]

    def sequential() -> None:
        barrier.wait(timeout=30)
        i = 0
        while not burst_done.is_set():
            started = time.monotonic()
            connection.request(
                "POST",
                f"/cell-a?timeout={REVIEW_TIMEOUT_S}s",
                _unmatched_review(outage.ns, f"free-{tag}-{i}"),
                {"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
            latencies.append(time.monotonic() - started)
            assert response.status == 200 and answer["response"]["allowed"], answer
            i += 1

    try:
        with ThreadPoolExecutor(max_workers=BURST + 1) as pool:
            unprotected = pool.submit(sequential)
            statuses = list(pool.map(burst, guarded))
            burst_done.set()
            unprotected.result(timeout=60)
    finally:
        connection.close()
    return latencies, statuses


def _figures(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.1f} ms, mean "
        f"{statistics.mean(values) * 1000:.1f} ms, max {max(values) * 1000:.0f} ms "
        f"over {len(values)}"
    )


def test_burst_of_protected_deletions_does_not_starve_unprotected_ones(outage: Outage) -> None:
    # Side by side: the same burst with the core answering, then with it frozen.
    healthy, healthy_statuses = _unprotected_during_burst(outage, "h")
    assert healthy_statuses.count(200) == BURST
    with outage.core_frozen():
        frozen, frozen_statuses = _unprotected_during_burst(outage, "f")
    _wait_until_answered(outage, time.monotonic() + 20)
    # Every protected deletion was refused (fail closed), with our answer, not a timeout.
    assert frozen_statuses == [500] * BURST
    figures = (
        f"unprotected reviews during the burst: core answering {_figures(healthy)}; "
        f"core frozen {_figures(frozen)}"
    )
    print(figures)
    # The target is 20 %; on this shared 2-CPU machine the bound leaves room for scheduling
    # noise (single reviews stall up to 0.5 s under load, core answering or not), and
    # docs/benchmarks.md records the measured ratios. What must never happen is a review that
    # waits for a write budget (1 s) or for kube-apiserver's deadline behind protected ones.
    assert statistics.mean(frozen) <= 1.5 * statistics.mean(healthy) + 0.005, figures
    assert max(frozen) < 0.9 * WRITE_TIMEOUT_MS / 1000, figures
