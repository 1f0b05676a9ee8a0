"""`kubectl drain` against a sandbox running its controllers (cluster `ctl-drain` of
`controller_clusters`): cordon shows as SchedulingDisabled, the pods are evicted, the kubelet
finishes their graceful deletion so the drain completes, and the ReplicaSet replaces them on
the node that is left."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from .conftest import Clusters, kubectl_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not on PATH"),
]

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: drain}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
      volumes: [{name: scratch, emptyDir: {}}]
"""


def test_drain_evicts_pods_and_completes(controller_clusters: Clusters) -> None:
    kubeconfig = str(controller_clusters.kubeconfigs["ctl-drain"])

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_path() or "kubectl", "--kubeconfig", kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
        return proc

    def pods() -> list[dict[str, Any]]:
        out = kubectl("get", "pods", "-n", "drain", "-l", "app=web", "-o", "json").stdout
        return json.loads(out)["items"]

    def running_ready(pod: dict[str, Any]) -> bool:
        ready = [c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"]
        return (
            pod["status"].get("phase") == "Running"
            and bool(ready)
            and ready[0]["status"] == "True"
            and not pod["metadata"].get("deletionTimestamp")
        )

    kubectl("create", "namespace", "drain")
    # Everything starts on sandbox-node-0: keep sandbox-node-1 cordoned meanwhile.
    kubectl("cordon", "sandbox-node-1")
    try:
        kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
        kubectl("rollout", "status", "-n", "drain", "deployment/web", "--timeout=20s")
        before = pods()
        assert {p["spec"]["nodeName"] for p in before} == {"sandbox-node-0"}
        kubectl("uncordon", "sandbox-node-1")

        started = time.monotonic()
        out = kubectl(
            "drain",
            "sandbox-node-0",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=30s",
        )
        assert time.monotonic() - started < 25
        text = out.stdout + out.stderr
        assert "node/sandbox-node-0 cordoned" in text
        for pod in before:
            assert f"evicting pod drain/{pod['metadata']['name']}" in text
            assert f"pod/{pod['metadata']['name']} evicted" in text
        assert "node/sandbox-node-0 drained" in text

        nodes = {
            line.split()[0]: line.split()[1]
            for line in kubectl("get", "nodes", "--no-headers").stdout.splitlines()
        }
        assert nodes["sandbox-node-0"] == "Ready,SchedulingDisabled"
        assert nodes["sandbox-node-1"] == "Ready"

        # The evicted pods are gone and their replacements run on the other node.
        deadline = time.monotonic() + 10
        while True:
            now = pods()
            if len(now) == 3 and all(running_ready(p) for p in now):
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
        old_names = {p["metadata"]["name"] for p in before}
        assert not old_names & {p["metadata"]["name"] for p in now}
        assert {p["spec"]["nodeName"] for p in now} == {"sandbox-node-1"}
    finally:
        kubectl("uncordon", "sandbox-node-0")
        kubectl("uncordon", "sandbox-node-1")
        kubectl("delete", "namespace", "drain", "--wait=false")
