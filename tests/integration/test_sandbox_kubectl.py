"""The real kubectl against the clusters (sandbox or real): the commands operators use."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from .conftest import REPO, Clusters, kubectl_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not on PATH"),
]

POD_YAML = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  containers: [{{name: c, image: nginx}}]
"""

PPR_YAML = """
apiVersion: podseidon.kubewharf.io/v1alpha1
kind: PodProtector
metadata: {name: protector}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"""


class Kubectl:
    def __init__(self, clusters: Clusters, cluster: str = "core") -> None:
        self.kubeconfig = str(clusters.kubeconfigs[cluster])

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [kubectl_path() or "kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture
def kubectl(clusters: Clusters) -> Kubectl:
    return Kubectl(clusters)


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"kc-{uuid.uuid4().hex[:8]}"
    # `kubectl create namespace` sends a protobuf body: the sandbox must decode it.
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def table_rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_api_resources(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", str(REPO / "deploy" / "crds" / "podprotectors.yaml"))
    out = kubectl.run("api-resources").stdout
    rows = {r[0]: r for r in table_rows(out)[1:]}
    assert rows["pods"][1:] == ["po", "v1", "true", "Pod"]
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["podprotectors"][1:] == [
        "ppr",
        "podseidon.kubewharf.io/v1alpha1",
        "true",
        "PodProtector",
    ]


def test_get_pods_and_json(kubectl: Kubectl, ns: str) -> None:
    kubectl.run("-n", ns, "apply", "-f", "-", stdin=POD_YAML.format(name="web-0"))
    rows = table_rows(kubectl.run("-n", ns, "get", "pods").stdout)
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows[1][:4] == ["web-0", "0/1", "Pending", "0"]

    wide = table_rows(kubectl.run("-n", ns, "get", "pods", "-o", "wide").stdout)
    assert wide[0][:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]

    listed = kubectl.json("-n", ns, "get", "pods")
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web-0"]
    assert listed["items"][0]["spec"]["containers"][0]["image"] == "nginx"


def test_label_annotate_patch_delete(kubectl: Kubectl, ns: str) -> None:
    kubectl.run("-n", ns, "apply", "-f", "-", stdin=POD_YAML.format(name="web-1"))
    kubectl.run("-n", ns, "label", "pod", "web-1", "tier=front")
    kubectl.run("-n", ns, "annotate", "pod", "web-1", "note=x")
    kubectl.run(
        "-n",
        ns,
        "patch",
        "pod",
        "web-1",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/idx","value":"1"}]',
    )
    kubectl.run(
        "-n",
        ns,
        "patch",
        "pod",
        "web-1",
        "--type=merge",
        "-p",
        '{"metadata":{"annotations":{"merged":"yes"}}}',
    )
    obj = kubectl.json("-n", ns, "get", "pod", "web-1")
    assert obj["metadata"]["labels"] == {"app": "web", "tier": "front", "idx": "1"}
    assert obj["metadata"]["annotations"]["note"] == "x"
    assert obj["metadata"]["annotations"]["merged"] == "yes"

    failed = kubectl.run(
        "-n",
        ns,
        "patch",
        "pod",
        "web-1",
        "--type=json",
        "-p",
        '[{"op":"test","path":"/metadata/name","value":"other"}]',
        check=False,
    )
    assert failed.returncode != 0

    kubectl.run("-n", ns, "label", "pod", "web-1", "tier-")
    assert "tier" not in kubectl.json("-n", ns, "get", "pod", "web-1")["metadata"]["labels"]

    kubectl.run("-n", ns, "delete", "pod", "web-1", "--timeout=20s")
    out = kubectl.run("-n", ns, "get", "pods").stderr
    assert "No resources found" in out


def test_get_ppr_shows_printer_columns(kubectl: Kubectl, ns: str) -> None:
    kubectl.run("apply", "-f", str(REPO / "deploy" / "crds" / "podprotectors.yaml"))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/podprotectors.podseidon.kubewharf.io",
    )
    kubectl.run("-n", ns, "apply", "-f", "-", stdin=PPR_YAML)
    rows = table_rows(kubectl.run("-n", ns, "get", "ppr").stdout)
    assert rows[0] == ["NAME", "REQUIRED", "AGGREGATED", "ESTIMATED", "AGE"]
    assert rows[1][:2] == ["protector", "2"]
    wide = kubectl.run("-n", ns, "get", "ppr", "-o", "wide").stdout.splitlines()[0]
    assert "BUCKET LAG" in wide

    kubectl.run(
        "-n",
        ns,
        "patch",
        "ppr",
        "protector",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"summary":{"totalReplicas":4,'
        '"aggregatedAvailableReplicas":4,"estimatedAvailableReplicas":3}}}',
    )
    rows = table_rows(kubectl.run("-n", ns, "get", "ppr").stdout)
    assert rows[1][:4] == ["protector", "2", "4", "3"]

    invalid = kubectl.run(
        "-n",
        ns,
        "apply",
        "-f",
        "-",
        stdin=PPR_YAML.replace("minAvailable: 2", "minAvailable: -1"),
        check=False,
    )
    assert invalid.returncode != 0
    assert "should be greater than or equal to 0" in invalid.stderr


def test_cordon(clusters: Clusters, kubectl: Kubectl) -> None:
    clusters.require_sandbox("a throwaway cluster to add a Node to")
    name = f"node-{uuid.uuid4().hex[:6]}"
    kubectl.run(
        "apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
    )
    try:
        kubectl.run("cordon", name)
        assert kubectl.json("get", "node", name)["spec"]["unschedulable"] is True
        rows = table_rows(kubectl.run("get", "node", name).stdout)
        assert "SchedulingDisabled" in rows[1][1]
        kubectl.run("uncordon", name)
        assert not kubectl.json("get", "node", name)["spec"].get("unschedulable")
    finally:
        kubectl.run("delete", "node", name, check=False)
