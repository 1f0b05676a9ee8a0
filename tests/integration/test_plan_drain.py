"""The drain planner against what really happens: `manage.py plan-drain` plans a node's drain,
then the real `kubectl drain` drains it through our webhook (gunicorn, TLS, 3 workers)
registered in the cell. Planned refusals must be refused (the pods are still there), planned
admissions must pass (the pods are gone), and the plan itself must write nothing."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.integration.conftest import REPO, Clusters, kubectl_path
from tests.integration.webhook_env import (
    Webhook,
    create_protector,
    install_crd,
    pod_on_node,
    read_protector,
    register,
    start_webhook,
    unregister,
    write_aggregation,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not on PATH"),
]

CELL = "cell-a"
DENIED = 'admission webhook "podseidon.kubewharf.io" denied the request: '
# name -> (pods on the node, aggregated available, minAvailable, maxConcurrentLag)
PROTECTORS = {
    "roomy": (3, 5, 1, None),  # room for all three
    "tight": (2, 2, 2, None),  # none may go: 429, retried by kubectl until its timeout
    "part": (3, 4, 2, None),  # two of three
    "buffered": (3, 10, 1, 1),  # one at a time: the others get 409 and kubectl gives up
}


@pytest.fixture(scope="module")
def webhook(clusters: Clusters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    if not clusters.is_sandbox:
        pytest.skip(
            "needs the sandbox: a real kube-apiserver cannot call a webhook on this machine's "
            "loopback, and the test makes up a node"
        )
    install_crd(clusters.api("core"))
    work = tmp_path_factory.mktemp("plan-drain")
    hook = start_webhook(work, clusters.kubeconfigs, tls_dir=work / "tls")
    try:
        register(hook, CELL)
        yield hook
    finally:
        unregister(clusters.api(CELL))
        assert hook.stop() == 0


def _wait_until_webhook_sees(clusters: Clusters, webhook: Webhook, ns: str) -> None:
    """The webhook judges from its watch cache: wait until every protector's counts are in
    status and its readiness answers, then give the watch event a moment to reach all workers."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        totals = {
            name: read_protector(clusters.api("core"), ns, name).status for name in PROTECTORS
        }
        if webhook.get("/readyz")[0] == 200 and all(
            status is not None
            and status.summary.aggregated_available_replicas == PROTECTORS[name][1]
            for name, status in totals.items()
        ):
            time.sleep(0.5)
            return
        time.sleep(0.1)
    raise AssertionError("the protectors' status never settled")


def _plan(webhook: Webhook, node: str) -> dict:
    result = subprocess.run(
        [sys.executable, "manage.py", "plan-drain", "--cell", CELL, "--node", node, "--json"],
        cwd=REPO,
        env=webhook.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _versions(clusters: Clusters, ns: str) -> dict[str, str]:
    return {
        name: read_protector(clusters.api("core"), ns, name).resource_version for name in PROTECTORS
    }


def test_the_plan_is_what_kubectl_drain_then_meets(clusters: Clusters, webhook: Webhook) -> None:
    ns = f"plan-{uuid.uuid4().hex[:8]}"
    node = f"plan-node-{uuid.uuid4().hex[:6]}"
    cell = k8s.CoreV1Api(clusters.api(CELL))
    core_api = k8s.CoreV1Api(clusters.api("core"))
    for api in (core_api, cell):
        api.create_namespace({"metadata": {"name": ns}})
    cell.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    try:
        for name, (pods, available, minimum, lag) in PROTECTORS.items():
            for i in range(pods):
                pod_on_node(cell, ns, f"{name}-{i}", {"app": name}, node)
            history = {"maxConcurrentLag": lag} if lag else None
            create_protector(
                clusters.api("core"), ns, name, minimum, {"app": name}, history=history
            )
            write_aggregation(clusters.api("core"), ns, name, {CELL: available})
        pod_on_node(cell, ns, "loose", {"app": "nobody"}, node)
        pod_on_node(cell, ns, "tight-sick", {"app": "tight"}, node, ready=False)
        _wait_until_webhook_sees(clusters, webhook, ns)

        before = _versions(clusters, ns)
        plan = _plan(webhook, node)
        assert _versions(clusters, ns) == before, "planning wrote a PodProtector"

        verdicts = {p["name"]: p for p in plan["pods"] if p["namespace"] == ns}
        shared = ("part-", "buffered-")  # some of their pods go, some stay: counted below
        assert {n: p["verdict"] for n, p in verdicts.items() if not n.startswith(shared)} == {
            **dict.fromkeys(("roomy-0", "roomy-1", "roomy-2"), "admitted"),
            **dict.fromkeys(("tight-0", "tight-1"), "refused"),
            "loose": "unprotected",
            "tight-sick": "already-unhealthy",
        }
        assert all(p["contended"] for n, p in verdicts.items() if n.startswith(shared))
        per_protector = {p["name"]: p for p in plan["protectors"]}
        refused = {name: per_protector[name]["refused"] for name in PROTECTORS}
        assert refused == {"roomy": 0, "tight": 2, "part": 1, "buffered": 2}
        assert [per_protector[n]["can_go_now"] for n in PROTECTORS] == [4, 0, 2, 1]
        assert plan["blocked"] is True

        drain = subprocess.run(
            [
                kubectl_path() or "kubectl",
                "--kubeconfig",
                str(clusters.kubeconfigs[CELL]),
                "drain",
                node,
                "--force",
                "--ignore-daemonsets",
                "--timeout=10s",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = drain.stdout + drain.stderr
        assert drain.returncode != 0, output  # something was refused: the drain cannot finish

        survivors = {p.metadata.name for p in cell.list_namespaced_pod(ns).items}
        for name, pod in verdicts.items():
            planned_to_go = pod["verdict"] != "refused"
            if pod["contended"]:
                continue  # which of them go depends on arrival order; counted below
            assert (name not in survivors) == planned_to_go, (name, pod, output)
            if not planned_to_go:
                # kubectl printed exactly the webhook message the plan promised for this pod.
                expected = f'pods/"{name}" -n "{ns}"'
                lines = [line for line in output.splitlines() if expected in line]
                assert any(DENIED + pod["refusal"]["message"] in line for line in lines), (
                    name,
                    output,
                )
        for name in PROTECTORS:
            left = {s for s in survivors if s.startswith(f"{name}-") and s != "tight-sick"}
            assert len(left) == refused[name], (name, survivors, output)
        # The 409s of a full buffer are not retried by kubectl; the 429s are, until --timeout.
        assert "will retry after 5s" in output
    finally:
        with contextlib.suppress(k8s.ApiException):
            cell.delete_node(node)
        for api in (core_api, cell):
            with contextlib.suppress(k8s.ApiException):
                api.delete_namespace(ns)
