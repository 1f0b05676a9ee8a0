"""The sandbox process itself: authentication, TLS, persistence across restarts, shutdown."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, watch

from .conftest import Clusters, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration


def _server_and_ca(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    import base64

    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    return cluster["server"], ctx


@pytest.mark.parametrize("token", [None, "wrong"])
def test_unauthorized_without_valid_token(clusters: Clusters, token: str | None) -> None:
    # A real cluster may admit a request without a token as system:anonymous (then 403).
    clusters.require_sandbox("the sandbox's bearer-token-only authentication")
    server, ctx = _server_and_ca(clusters.kubeconfigs["core"])
    req = urllib.request.Request(server + "/api/v1/namespaces")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx, timeout=5)
    assert exc.value.code == 401
    assert json.loads(exc.value.read()) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def test_clusters_are_independent(clusters: Clusters) -> None:
    clusters.require_sandbox("the sandbox process serving several clusters")
    a = client.CoreV1Api(clusters.api("cell-a"))
    b = client.CoreV1Api(clusters.api("cell-b"))
    a.create_namespaced_config_map("default", {"metadata": {"name": "only-in-a"}})
    try:
        with pytest.raises(client.ApiException) as exc:
            b.read_namespaced_config_map("only-in-a", "default")
        assert exc.value.status == 404
    finally:
        a.delete_namespaced_config_map("only-in-a", "default")


def test_persist_keeps_objects_and_resource_versions(tmp_path: Path, clusters: Clusters) -> None:
    clusters.require_sandbox("the sandbox's --persist, restarted in the test")
    state = tmp_path / "state"
    state.mkdir()
    proc = start_sandbox(state, ("solo",), ("--persist",))
    try:
        api = config.new_client_from_config(config_file=str(state / "solo.kubeconfig"))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "kept"}})
        cm = core.create_namespaced_config_map(
            "kept", {"metadata": {"name": "cm"}, "data": {"a": "1"}}
        )
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "things", "kind": "Thing"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "example.com",
            "v1",
            "kept",
            "things",
            {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}},
        )
        last_rv = int(core.list_namespace().metadata.resource_version)
        api.close()
    finally:
        assert stop_sandbox(proc) == 0

    proc = start_sandbox(state, ("solo",), ("--persist",))
    try:
        api = config.new_client_from_config(config_file=str(state / "solo.kubeconfig"))
        core = client.CoreV1Api(api)
        again = core.read_namespaced_config_map("cm", "kept")
        assert again.data == {"a": "1"}
        assert again.metadata.resource_version == cm.metadata.resource_version
        assert again.metadata.uid == cm.metadata.uid
        thing = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "example.com", "v1", "kept", "things", "t"
        )
        assert thing["metadata"]["name"] == "t"
        created = core.create_namespaced_config_map("kept", {"metadata": {"name": "new"}})
        assert int(created.metadata.resource_version) > last_rv
        api.close()
    finally:
        assert stop_sandbox(proc) == 0


def test_sigterm_ends_open_watches(tmp_path: Path, clusters: Clusters) -> None:
    clusters.require_sandbox("a sandbox process to SIGTERM")
    state = tmp_path / "state"
    state.mkdir()
    proc = start_sandbox(state, ("solo",))
    api = config.new_client_from_config(config_file=str(state / "solo.kubeconfig"))
    core = client.CoreV1Api(api)
    ended = threading.Event()

    def consume() -> None:
        try:
            for _ in watch.Watch().stream(core.list_namespace, timeout_seconds=60):
                pass
        except Exception:  # the stream may end either way
            pass
        ended.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert stop_sandbox(proc) == 0
    assert time.monotonic() - started < 10
    assert ended.wait(10), "the watch stream did not end on shutdown"
    api.close()


def test_write_latency_delays_writes_not_reads_nor_throughput(
    tmp_path: Path, clusters: Clusters
) -> None:
    """--write-latency stands in for kube-apiserver's and etcd's share of a write: every write
    waits that long, reads do not, and concurrent writes wait side by side."""
    clusters.require_sandbox("the sandbox's --write-latency option")
    latency = 0.2
    state = tmp_path / "state"
    state.mkdir()
    process = start_sandbox(state, ("core",), ("--write-latency", str(latency)))
    try:
        api = client.CoreV1Api(config.new_client_from_config(str(state / "core.kubeconfig")))
        started = time.monotonic()
        api.create_namespaced_config_map("default", {"metadata": {"name": "first"}})
        assert time.monotonic() - started >= latency
        started = time.monotonic()
        for _ in range(3):
            api.read_namespaced_config_map("first", "default")
        assert time.monotonic() - started < latency
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                api.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
                api.patch_namespaced_config_map(f"cm-{i}", "default", {"data": {"k": "v"}})
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        elapsed = time.monotonic() - started
        assert not errors
        # 16 writes one after the other would take 3.2 s; side by side two rounds of 0.2 s.
        assert 2 * latency <= elapsed < 8 * latency, elapsed
    finally:
        assert stop_sandbox(process) == 0
