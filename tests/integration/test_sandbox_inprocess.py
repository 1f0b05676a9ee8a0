"""The sandbox's in-process extension points (what phase 2 controllers and the webhook
dispatcher build on): admission hooks and direct reads/writes/watches without HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sandbox.cluster import AdmissionRequest, Cluster, DeleteOptions
from sandbox.errors import ApiError, status_body

pytestmark = pytest.mark.integration


def pod(name: str, labels: dict[str, str] | None = None, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def deny_message() -> dict[str, Any]:
    return status_body(429, 'admission webhook "podseidon.kubewharf.io" denied the request: no')


def test_deletecollection_stops_at_first_denial() -> None:
    async def scenario() -> None:
        cluster = Cluster("t")
        pods = cluster.resource("", "pods")
        for i in range(3):
            await cluster.create(pods, "default", pod(f"batch-{i}", {"app": "batch"}))
        seen: list[tuple[str, str, str]] = []

        async def hook(req: AdmissionRequest) -> None:
            if req.operation != "DELETE" or req.resource.plural != "pods":
                return
            assert req.old_object is not None
            victim = req.old_object["metadata"]["name"]
            seen.append((req.name, victim, str(req.options.get("gracePeriodSeconds"))))
            if victim == "batch-1":
                raise ApiError(deny_message())

        cluster.add_admission_hook(hook)
        with pytest.raises(ApiError) as exc:
            await cluster.delete_collection(
                pods, "default", DeleteOptions(), label_selector="app=batch"
            )
        assert exc.value.code == 429
        assert exc.value.body["message"].startswith('admission webhook "podseidon.kubewharf.io"')
        left = [p["metadata"]["name"] for p in cluster.list(pods, "default").items]
        assert left == ["batch-1", "batch-2"]
        # Per-pod reviews of a collection carry an empty name and the request's options; an
        # unscheduled pod is admitted three times (the marking update, then the final removal
        # with the watch cache's stale copy and with the marked object), as recorded in 42.
        assert seen == [("", "batch-0", "None")] * 3 + [("", "batch-1", "None")]

    asyncio.run(scenario())


def test_eviction_runs_create_hook_and_skips_delete_hook() -> None:
    async def scenario() -> None:
        cluster = Cluster("t")
        pods = cluster.resource("", "pods")
        await cluster.create(pods, "default", pod("web-0", node="node-1"))
        calls: list[tuple[str, str]] = []

        async def hook(req: AdmissionRequest) -> None:
            calls.append((req.operation, req.subresource))

        cluster.add_admission_hook(hook)
        status = await cluster.evict(
            "default",
            "web-0",
            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0"}},
        )
        assert status == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }
        assert calls == [("CREATE", "eviction")]
        terminating = cluster.get(pods, "default", "web-0")
        assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30

        # The kubelet's final delete.
        await cluster.delete(pods, "default", "web-0", DeleteOptions(grace_period_seconds=0))
        assert cluster.find(pods, "default", "web-0") is None

    asyncio.run(scenario())


def test_in_process_watch_and_writes() -> None:
    async def scenario() -> None:
        cluster = Cluster("t")
        pods = cluster.resource("", "pods")
        watcher = cluster.watch(pods, "default", label_selector="app=web")
        await cluster.create(pods, "default", pod("a", {"app": "web"}))
        await cluster.create(pods, "default", pod("b", {"app": "db"}))
        await cluster.patch(
            pods,
            "default",
            "a",
            "application/merge-patch+json",
            {"status": {"phase": "Running"}},
            subresource="status",
        )
        await cluster.patch(
            pods,
            "default",
            "a",
            "application/merge-patch+json",
            {"metadata": {"labels": {"app": "other"}}},
        )
        events = []
        async for kind, obj in watcher:
            events.append((kind, obj["metadata"]["name"], obj.get("status", {}).get("phase")))
            if len(events) == 3:
                break
        watcher.close()
        # Leaving the selector shows up as DELETED, as the apiserver's watch cache reports it.
        assert events == [
            ("ADDED", "a", "Pending"),
            ("MODIFIED", "a", "Running"),
            ("DELETED", "a", "Running"),
        ]

    asyncio.run(scenario())
