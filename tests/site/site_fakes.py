"""Helpers for the REST API tests: a configuration with core, cell-a and cell-b; fake clusters
(in-memory objects, JSON and merge patches applied by the sandbox's own patch code); a
PodProtector cache fed from the fake core; users in each role; a cell at a closed port."""

from __future__ import annotations

import copy
import itertools
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from console import cache as cache_module
from protectors.kube.client import KubeError, Resource
from sandbox.patch import PatchError, json_patch, merge_patch

WEBHOOK_NAME = "podseidon.kubewharf.io"
# The field selectors the services send, and where each field is.
FIELDS = {
    "involvedObject.name": lambda obj: (obj.get("involvedObject") or {}).get("name"),
    "spec.nodeName": lambda obj: (obj.get("spec") or {}).get("nodeName"),
}
REMOVE_CELL_ONCE = "podseidon.kubewharf.io/remove-cell-once"


class FakeCluster:
    """Just enough of an API server for the services: get, list, patch, create, /version.

    With ``generator`` set, every list first does what the generator would: PodProtectors that
    carry ``remove-cell-once`` lose the named cells from status and the annotation.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.objects: dict[tuple[str, str, str], dict] = {}
        self._rv = itertools.count(100)
        self.writes: list[tuple[str, str, Any]] = []
        self.events: list[dict] = []
        self.fail_patches_for: set[str] = set()
        self.generator = False
        self._lock = threading.RLock()

    def _key(self, resource: Resource, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (resource.plural, namespace or "", name)

    def _missing(self, resource: Resource, name: str) -> KubeError:
        return KubeError(404, "NotFound", f'{resource.plural} "{name}" not found')

    def add(self, resource: Resource, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.objects[self._key(resource, meta.get("namespace"), meta["name"])] = obj
        return copy.deepcopy(obj)

    def request(self, method: str, path: str, **_: Any) -> Any:
        if method == "GET" and path == "/version":
            return {"gitVersion": "v1.24.0-fake"}
        raise KubeError(404, "NotFound", path)

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        obj = self.objects.get(self._key(resource, namespace, name))
        if obj is None:
            raise self._missing(resource, name)
        return copy.deepcopy(obj)

    def run_generator(self) -> int:
        """Carry out every remove-cell-once now; returns how many protectors changed."""
        done = 0
        with self._lock:
            for key, obj in list(self.objects.items()):
                annotations = obj["metadata"].get("annotations") or {}
                value = annotations.get(REMOVE_CELL_ONCE)
                if key[0] != "podprotectors" or value is None:
                    continue
                cells = {c.strip() for c in value.split(",")}
                status = obj.get("status") or {}
                status["cells"] = [c for c in status.get("cells") or [] if c["cellID"] not in cells]
                annotations = {k: v for k, v in annotations.items() if k != REMOVE_CELL_ONCE}
                obj["metadata"]["annotations"] = annotations
                obj["metadata"]["resourceVersion"] = str(next(self._rv))
                done += 1
        return done

    def create(self, resource: Resource, namespace: str | None, obj: dict) -> dict:
        if resource.plural != "events":
            raise KubeError(
                405, "MethodNotAllowed", f"the fake creates only events, not {resource}"
            )
        with self._lock:
            self.events.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def replace(self, resource: Resource, namespace: str | None, name: str, obj: dict) -> dict:
        key = self._key(resource, namespace, name)
        with self._lock:
            current = self.objects.get(key)
            if current is None:
                raise self._missing(resource, name)
            wanted = (obj.get("metadata") or {}).get("resourceVersion")
            if wanted != current["metadata"]["resourceVersion"]:
                raise KubeError(409, "Conflict", "the object has been modified")
            new = copy.deepcopy(obj)
            new["metadata"]["uid"] = current["metadata"].get("uid")
            new["metadata"]["resourceVersion"] = str(next(self._rv))
            self.objects[key] = new
            self.writes.append(("PUT", name, obj))
        return copy.deepcopy(new)

    def list(self, resource: Resource, namespace: str | None = None, **kwargs: Any) -> dict:
        if self.generator and resource.plural == "podprotectors":
            self.run_generator()
        return {
            "items": self.select(resource, namespace, **kwargs),
            "metadata": {"resourceVersion": str(next(self._rv))},
        }

    def select(self, resource: Resource, namespace: str | None = None, **kwargs: Any) -> list:
        """Copies of the objects a list would return, as they are now."""
        from protectors.selectors import parse_selector_string

        selector = kwargs.get("label_selector")
        parsed = parse_selector_string(selector) if selector else None
        field = kwargs.get("field_selector")
        items = []
        for (plural, ns, _name), obj in sorted(self.objects.items()):
            if plural != resource.plural or (namespace and ns != namespace):
                continue
            if parsed and not parsed.matches(obj["metadata"].get("labels") or {}):
                continue
            if field:
                key, _, value = field.partition("=")
                assert key in FIELDS, f"the fake cannot select on {key}"
                if FIELDS[key](obj) != value:
                    continue
            items.append(copy.deepcopy(obj))
        return items

    list_all = list

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        **_: Any,
    ) -> FakeWatch:
        return FakeWatch(self, resource, namespace, label_selector, timeout_seconds)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        sub: str = "",
    ) -> dict:
        if name in self.fail_patches_for:
            raise KubeError(500, "InternalError", "injected failure")
        key = self._key(resource, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise self._missing(resource, name)
        if patch_type == "json":
            try:
                new = json_patch(copy.deepcopy(current), patch)
            except PatchError as error:
                raise KubeError(422, "Invalid", str(error)) from None
        else:
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise KubeError(409, "Conflict", "the object has been modified")
            new = merge_patch(copy.deepcopy(current), patch)
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = new
        self.writes.append(("PATCH", name, patch))
        return copy.deepcopy(new)


class FakeWatch:
    """A watch on a FakeCluster: an event for each object of the selection that changes after
    it opens (ADDED, MODIFIED, DELETED, seen by resourceVersion), with the fake generator run
    first when it is on, until ``close()`` or ``timeout_seconds``. (It compares snapshots
    every 10 ms: the fakes have no event log.)"""

    def __init__(
        self,
        cluster: FakeCluster,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        timeout_seconds: int | None,
    ) -> None:
        self._cluster = cluster
        self._resource = resource
        self._namespace = namespace
        self._selector = label_selector
        self._timeout = float(timeout_seconds or 60)
        self._closed = threading.Event()
        self._seen = self._snapshot()
        self.opened = threading.Event()

    def _snapshot(self) -> dict[str, dict]:
        items = self._cluster.select(self._resource, self._namespace, label_selector=self._selector)
        return {f"{o['metadata'].get('namespace')}/{o['metadata']['name']}": o for o in items}

    def __iter__(self):
        self.opened.set()
        ends = time.monotonic() + self._timeout
        while not self._closed.wait(0.01) and time.monotonic() < ends:
            if self._cluster.generator and self._resource.plural == "podprotectors":
                self._cluster.run_generator()
            now = self._snapshot()
            for key, obj in now.items():
                before = self._seen.get(key)
                if before is None:
                    yield {"type": "ADDED", "object": obj}
                elif before["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                    yield {"type": "MODIFIED", "object": obj}
            for key in self._seen.keys() - now.keys():
                yield {"type": "DELETED", "object": self._seen[key]}
            self._seen = now

    def close(self) -> None:
        self._closed.set()


class StubInformer:
    """What ProtectorCache needs of an Informer, over a fixed list of objects."""

    def __init__(self, objects: list[dict], synced: bool = True) -> None:
        self.store = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objects}
        self.synced = synced

    def add_handler(self, handler) -> None:
        for obj in self.store.values():
            handler.on_add(obj)

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self.synced

    @property
    def has_synced(self) -> bool:
        return self.synced

    def start(self) -> None:
        pass

    def get_by_name(self, namespace: str, name: str) -> dict | None:
        return self.store.get(f"{namespace}/{name}")

    def items(self) -> list[dict]:
        return list(self.store.values())

    def stop(self, timeout: float | None = None) -> None:
        pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig_at(path: Path, port: int) -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: t}}
contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
"""
    )
    return path


def install_cache(objects: list[dict], *, synced: bool = True) -> cache_module.ProtectorCache:
    from django.conf import settings

    cache = cache_module.ProtectorCache(StubInformer(objects, synced))  # type: ignore[arg-type]
    cache_module._cache = cache
    cache_module._cache_config = settings.PODSEIDON
    return cache


def install_workloads(
    by_kind: dict[str, list[dict]], *, synced: bool = True
) -> cache_module.WorkloadCache:
    """The console's source-workload cache over fixed objects, per kind (`deployments.apps`)."""
    from django.conf import settings

    informers = {kind: StubInformer(objs, synced) for kind, objs in by_kind.items()}
    workloads = cache_module.WorkloadCache(informers)  # type: ignore[arg-type]
    cache_module._workloads = workloads
    cache_module._workloads_config = settings.PODSEIDON
    return workloads


def api_as(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def protector(
    namespace: str,
    name: str,
    *,
    required: int = 1,
    cells: dict[str, int] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    lag: int | None = None,
) -> dict:
    cells = {"cell-a": 3, "cell-b": 3} if cells is None else cells
    total = sum(cells.values())
    summary: dict[str, Any] = {
        "totalReplicas": total,
        "aggregatedAvailableReplicas": total,
        "estimatedAvailableReplicas": total,
    }
    if lag is not None:
        summary["maxLatencyMillis"] = lag
    return {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": {
                "podseidon.kubewharf.io/source-kind": "Deployment",
                "podseidon.kubewharf.io/source-name": name,
                "podseidon.kubewharf.io/source-group": "apps",
                "podseidon.kubewharf.io/source-resource": "deployments",
                **(labels or {}),
            },
            "annotations": annotations or {},
        },
        "spec": {"minAvailable": required, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "cells": [
                {
                    "cellID": cell,
                    "aggregation": {"totalReplicas": n, "availableReplicas": n},
                    "admissionHistory": {"buckets": []},
                }
                for cell, n in cells.items()
            ],
            "summary": summary,
        },
    }


def webhook_configuration(selector: dict | None) -> dict:
    hook: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "clientConfig": {"url": "https://127.0.0.1:1/cell"},
        "failurePolicy": "Fail",
        "sideEffects": "NoneOnDryRun",
        "admissionReviewVersions": ["v1"],
    }
    if selector is not None:
        hook["objectSelector"] = selector
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_NAME},
        "webhooks": [hook],
    }


def finished_operation(api: APIClient, started: Any, timeout: float = 15.0) -> dict:
    """Poll the status URL of a started operation (a 202 answer) until it has ended."""
    assert started.status_code == 202, started.content
    url = started.json()["status_url"]
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(url).json()
        if body["state"] != "running":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"operation still running after {timeout} s: {body}")
        time.sleep(0.02)


class Gate:
    """Holds every PodProtector patch until opened, so a test can look at a running removal."""

    def __init__(self, core: FakeCluster, monkeypatch: Any) -> None:
        self.open_event = threading.Event()
        self.waiting = threading.Semaphore(0)
        original = core.patch

        def held_patch(*args, **kwargs):
            self.waiting.release()
            assert self.open_event.wait(15), "the test never opened the gate"
            return original(*args, **kwargs)

        monkeypatch.setattr(core, "patch", held_patch)

    def open(self) -> None:
        self.open_event.set()


class MetricsServer:
    """A real HTTP server answering /metrics with whatever exposition text the test sets (a
    stand-in for one webhook process's :9090); ``status`` other than 200 answers an error."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.text.encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.text = ""
        self.status = 200
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def set_rejections(self, per_cell: dict[str, dict[str, int]]) -> None:
        """Expose webhook_handle_pod_in_ppr as the webhook does: per cell, result counts."""
        from prometheus_client import CollectorRegistry, Counter, generate_latest

        registry = CollectorRegistry()
        counter = Counter(
            "webhook_handle_pod_in_ppr",
            "Pod deletions judged against one PodProtector, by result.",
            ["cell", "result", "rejected", "namespace"],
            registry=registry,
        )
        for cell, results in per_cell.items():
            for result, count in results.items():
                rejected = "false" if result in ("Ok", "AlreadyUnhealthy") else "true"
                counter.labels(cell, result, rejected, "").inc(count)
        self.text = generate_latest(registry).decode()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
