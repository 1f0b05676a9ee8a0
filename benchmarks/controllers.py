"""Controller benchmarks: aggregator convergence after a burst of pod events, aggregator CPU per
1,000 pod events, memory per 10,000 cached pods, generator start-up.

    .venv/bin/python benchmarks/controllers.py [--pprs 2000] [--pods-per-cell 5] [--flips 5000]
        [--deployments 1000] [--aggregation-rate-ms N] [--json FILE]

Starts its own sandbox (`core`, `cell-a`, `cell-b` in one `python -m sandbox --controllers none`
process, loopback, temporary state dir) and seeds, from a separate driver process, --pprs
PodProtectors in `core` (each selecting --pods-per-cell ready pods in each cell), their pods in
both cells, and --deployments labelled Deployments in `core` namespace `bench-gen`. Then:

1. memory: a fresh process holding only pod Informers (one per cell) with the aggregator's
   transform reads its own VmRSS before listing and after each informer has synced, then with
   the aggregator's pod index added; a second fresh process does the same without the transform;
2. one AggregatorController per cell runs in this process (always-valid fence); once every
   status is correct (polled by the driver), the driver flips --flips pods to not ready as fast
   as the sandbox takes the status patches and polls the PodProtectors every --poll-interval
   seconds until every cell's availableReplicas is right again;
3. CPU per 1,000 pod events: this process's CPU over the burst minus its main thread's (only
   harness code runs there; the driver is another process), net of the idle rate measured just
   before, divided by the flips; the aggregator threads' own CPU, read from /proc/self/task, is
   printed beside it as a cross-check;
4. the aggregators stop; a GeneratorController (restricted to `bench-gen`) starts, and the
   driver polls until every Deployment has its PodProtector.

Prints a figure block. Exit status 0 when the run completed, 2 when the harness failed, 143 on
SIGTERM. Results and their reading: docs/benchmarks.md, section "Controllers".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# `python benchmarks/controllers.py` puts benchmarks/ first on sys.path, where
# benchmarks/sandbox.py would shadow the `sandbox` package: the repository root goes first.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from harness import (  # noqa: E402
    HarnessError,
    app_container,
    app_container_status,
    cpu_seconds,
    exit_on_sigterm,
    rfc3339,
    rss_mb,
)

CELLS = ("cell-a", "cell-b")
CLUSTERS = ("core", *CELLS)
NAMESPACE = "bench"
GEN_NAMESPACE = "bench-gen"
GROUP, VERSION, PLURAL = "podseidon.kubewharf.io", "v1alpha1", "podprotectors"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_RATE_MS = 1000  # the controllers' default aggregationRate
NEVER_SCHEDULED = "podseidon-bench-never-scheduled"
STOP_TIMEOUT = 15.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- small readings ---------------------------------------------------------------------------


def machine_busy() -> float:
    """Busy CPU-seconds of the whole machine since boot (/proc/stat, idle and iowait excluded)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _CLK_TCK


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process, by thread name (/proc/self/task)."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / _CLK_TCK
        out[thread.name] = out.get(thread.name, 0.0) + seconds
    return out


def thread_group(name: str) -> str:
    if name.startswith("informer-aggregator/"):
        return "pod watches" if name.endswith("/pods") else "podprotector watches"
    if name.startswith("aggregator/"):
        return "reconcile workers"
    if name.startswith("informer-generator"):
        return "generator watches"
    if name.startswith("generator-worker"):
        return "generator workers"
    return "other"


def grouped(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for name, value in after.items():
        group = thread_group(name)
        groups[group] = groups.get(group, 0.0) + value - before.get(name, 0.0)
    return groups


# Stages of the controllers' CPU (``--profile``): entry functions, by (file suffix, name).
PROFILE_STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "watch receive": (("protectors/kube/client.py", "__iter__"),),
    "transform": (
        ("workers/aggregator/controller.py", "trim_pod"),
        ("workers/aggregator/podcache.py", "slim_pod"),
        ("workers/generator/plugins.py", "trim"),
    ),
    "index": (("protectors/kube/informer.py", "_put"), ("protectors/kube/informer.py", "_remove")),
    "event handlers": (
        ("workers/aggregator/controller.py", "pod_event"),
        ("workers/aggregator/controller.py", "protector_added"),
        ("workers/aggregator/controller.py", "protector_updated"),
        ("workers/aggregator/controller.py", "protector_deleted"),
        ("workers/generator/controller.py", "on_add"),
        ("workers/generator/controller.py", "on_update"),
        ("workers/generator/controller.py", "_protector_event"),
        ("workers/generator/controller.py", "_protector_update"),
    ),
    "enqueue": (("workers/workqueue.py", "add"),),
    "dequeue": (("workers/workqueue.py", "get"), ("workers/workqueue.py", "done")),
    "parse protector": (("protectors/model.py", "from_dict"),),
    "candidate pods": (("workers/aggregator/index.py", "for_selector"),),
    "reconcile": (
        ("workers/aggregator/reconcile.py", "reconcile_cell"),
        ("workers/generator/decide.py", "decide"),
    ),
    "summarize": (("protectors/summarize.py", "summarize"),),
    "serialize": (
        ("protectors/model.py", "to_dict"),
        ("kubernetes/client/api_client.py", "sanitize_for_serialization"),
    ),
    "HTTP request": (("protectors/kube/client.py", "request"),),
    "metrics": (
        ("workers/aggregator/observer.py", "reconciled"),
        ("workers/aggregator/observer.py", "status_written"),
        ("workers/aggregator/observer.py", "pool"),
        ("workers/generator/observer.py", "reconciled"),
    ),
}


def stage_profiler() -> Any:
    import json as stdlib_json

    from threadprofile import StageProfiler

    return StageProfiler(
        PROFILE_STAGES,
        {"decode": (orjson.loads,), "serialize": (orjson.dumps, stdlib_json.dumps)},
    )


def profile_window(profiler: Any, before: Any) -> dict[str, dict[str, float]]:
    from threadprofile import grouped as stage_groups
    from threadprofile import window

    return stage_groups(window(before, profiler.snapshot()), thread_group)


def deep_size(roots: list[Any]) -> int:
    """Bytes of every distinct object reachable from ``roots`` (dicts, lists and scalars)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
    return total


# --- objects ----------------------------------------------------------------------------------


def app_of(i: int) -> str:
    return f"app-{i:05d}"


def ppr_name(i: int) -> str:
    return f"ppr-{i:05d}"


def pod_name(i: int, j: int) -> str:
    return f"{app_of(i)}-{j}"


def pod_body(i: int, j: int, cell_index: int, sandbox: bool = True) -> dict[str, Any]:
    """A pod as a ReplicaSet would create it (the aggregator's transform drops most of it).

    On the sandbox it names a node; on a real cluster it names a scheduler nobody serves, so
    no scheduler, kubelet or pod garbage collector ever touches it (the driver writes its
    status)."""
    app = app_of(i)
    placement: dict[str, Any] = (
        {"nodeName": f"node-{(i * 7 + j) % 100:03d}"}
        if sandbox
        else {"schedulerName": NEVER_SCHEDULED}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i, j),
            "labels": {"app": app, "pod-template-hash": "5d8f7c9b4d", "tier": "bench"},
            "annotations": {"bench.podseidon.io/seeded": "true"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-5d8f7c9b4d",
                    "uid": f"00000000-0000-4000-8000-{cell_index:02d}{i:010d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            **placement,
            "serviceAccountName": "default",
            "containers": [app_container()],
        },
    }


def pod_status(ready: bool, since: str, started: str, ip: str) -> dict[str, Any]:
    """A kubelet-like status merge patch; the whole conditions list, so no condition is lost."""
    flag = "True" if ready else "False"
    return {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "Ready", "status": flag, "lastTransitionTime": since},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": since},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            ],
            "hostIP": "192.168.0.10",
            "podIP": ip,
            "startTime": started,
            "containerStatuses": [app_container_status(ready, started)],
        }
    }


def pod_ip(cell_index: int, i: int, j: int) -> str:
    n = i * 16 + j
    return f"10.{cell_index}.{(n >> 8) & 255}.{n & 255}"


def ppr_body(i: int, min_available: int, rate_ms: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "minAvailable": min_available,
        "selector": {"matchLabels": {"app": app_of(i)}},
    }
    if rate_ms is not None:
        spec["admissionHistoryConfig"] = {"aggregationRateMillis": rate_ms}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PodProtector",
        "metadata": {"name": ppr_name(i)},
        "spec": spec,
    }


def deployment_body(k: int, protect_label: str) -> dict[str, Any]:
    name = f"gen-{k:05d}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {protect_label: "true", "app": name}},
        "spec": {
            "replicas": 10,
            # Paused: a real cluster's deployment controller then creates no ReplicaSet (and
            # no pods); the generator reads only replicas, selector and strategy.
            "paused": True,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/bench/app"}]},
            },
        },
    }


def micro_now() -> str:
    """Now as a metav1.MicroTime."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def choose_flips(pprs: int, per_cell: int, flips: int, seed: int) -> list[tuple[str, int, int]]:
    """``flips`` pods (cell, ppr, index) spread over the protectors: pod 0 of every protector
    in cell-a, then in cell-b, then pod 1 in cell-a, ...; sent in a shuffled order."""
    chosen: list[tuple[str, int, int]] = []
    for j in range(per_cell):
        for cell in CELLS:
            for i in range(pprs):
                if len(chosen) == flips:
                    break
                chosen.append((cell, i, j))
    random.Random(seed).shuffle(chosen)
    return chosen


# --- the driver process: seeding, the burst, polling ------------------------------------------


def cluster_access(kubeconfig: str) -> tuple[str, dict[str, str], ssl.SSLContext]:
    """Server URL, auth headers and TLS context from a kubeconfig (its current context)."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(
        config_file=kubeconfig, client_configuration=configuration, persist_config=False
    )
    headers = {"Accept": "application/json"}
    token = configuration.get_api_key_with_prefix("authorization")
    if token:
        headers["Authorization"] = token
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        context = ssl._create_unverified_context()  # the kubeconfig says so
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return configuration.host.rstrip("/"), headers, context


class Api:
    """aiohttp access to one cluster, as its kubeconfig says (token or client certificate)."""

    def __init__(self, kubeconfig: str, name: str, limit: int, sandbox: bool) -> None:
        self.url, headers, context = cluster_access(kubeconfig)
        if sandbox and not self.url.startswith("https://127.0.0.1:"):
            raise HarnessError(f"cluster {name} is not on loopback: {self.url}")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=limit),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=120),
            read_bufsize=1 << 20,
        )

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as response:
            return response.status, await response.read()

    async def write(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str = "application/json",
        allowed: tuple[int, ...] = (),
    ) -> None:
        """A write that must succeed; retried a few times on a connection error or a 5xx."""
        for attempt in range(3):
            try:
                status, raw = await self.call(method, path, body, content_type)
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt == 2:
                    raise HarnessError(f"{method} {path}: {error}") from None
                continue
            if 200 <= status < 300 or status in allowed:
                return
            if status < 500 or attempt == 2:
                raise HarnessError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")

    async def close(self) -> None:
        await self.session.close()


def ppr_path(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


def pods_path(name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{NAMESPACE}/pods"
    return base if name is None else f"{base}/{name}"


async def run_jobs(
    jobs: deque[Any], workers: int, fn: Callable[[Any], Awaitable[None]]
) -> tuple[float, float, float]:
    """Run ``fn(job)`` for every job from ``workers`` coroutines; (start, first send, end)."""
    first: list[float] = []

    async def worker() -> None:
        while jobs:
            job = jobs.popleft()
            if not first:
                first.append(time.monotonic())
            await fn(job)

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return start, (first[0] if first else start), time.monotonic()


class Driver:
    """What the driver process does on command; every method returns a JSON-able dict."""

    def __init__(self, kubeconfigs: dict[str, str], clients: int, sandbox: bool) -> None:
        self.clients = clients
        self.sandbox = sandbox
        self.api = {name: Api(kubeconfigs[name], name, clients, sandbox) for name in CLUSTERS}

    async def close(self) -> None:
        for api in self.api.values():
            await api.close()

    async def setup(self) -> dict[str, Any]:
        if not self.sandbox:
            # A real cluster may hold anything: never seed into (or later delete) a namespace
            # this benchmark did not create.
            for name, namespace in [(n, NAMESPACE) for n in CLUSTERS] + [("core", GEN_NAMESPACE)]:
                status, _ = await self.api[name].call("GET", f"/api/v1/namespaces/{namespace}")
                if status != 404:
                    raise HarnessError(
                        f"namespace {namespace} exists in {name} (HTTP {status}); delete it "
                        "first, the benchmark seeds and deletes it"
                    )
        for name in CLUSTERS:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            await self.api[name].write("POST", "/api/v1/namespaces", body, allowed=(409,))
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GEN_NAMESPACE}}
        await self.api["core"].write("POST", "/api/v1/namespaces", body, allowed=(409,))
        return {}

    async def seed_pods(self, pprs: int, per_cell: int) -> dict[str, Any]:
        long_ago = time.time() - 3600
        started, since = rfc3339(long_ago - 30), rfc3339(long_ago)
        jobs: deque[tuple[int, int, int]] = deque(
            (c, i, j) for i in range(pprs) for j in range(per_cell) for c in range(len(CELLS))
        )

        async def create(job: tuple[int, int, int]) -> None:
            c, i, j = job
            api = self.api[CELLS[c]]
            await api.write("POST", pods_path(), pod_body(i, j, c, self.sandbox))
            status = pod_status(True, since, started, pod_ip(c, i, j))
            await api.write("PATCH", pods_path(pod_name(i, j)) + "/status", status, MERGE_PATCH)

        count = len(jobs)
        start, _, end = await run_jobs(jobs, self.clients, create)
        return {"count": count, "seconds": end - start}

    async def seed_pprs(self, pprs: int, min_available: int, rate_ms: int | None) -> dict:
        jobs = deque(range(pprs))

        async def create(i: int) -> None:
            await self.api["core"].write(
                "POST", ppr_path(NAMESPACE), ppr_body(i, min_available, rate_ms)
            )

        start, _, end = await run_jobs(jobs, self.clients, create)
        return {"count": pprs, "seconds": end - start}

    async def seed_deployments(self, count: int, protect_label: str) -> dict[str, Any]:
        jobs = deque(range(count))
        path = f"/apis/apps/v1/namespaces/{GEN_NAMESPACE}/deployments"

        async def create(k: int) -> None:
            await self.api["core"].write("POST", path, deployment_body(k, protect_label))

        start, _, end = await run_jobs(jobs, self.clients, create)
        return {"count": count, "seconds": end - start}

    async def converge(
        self,
        expected: dict[str, list[int]],
        total: int,
        interval: float,
        timeout: float,
    ) -> dict[str, Any]:
        """Poll the protectors until every cell's availableReplicas (and totalReplicas) is as
        expected. Returns every poll as (send, done, correct) in CLOCK_MONOTONIC seconds."""
        index = {ppr_name(i): i for i in range(len(expected[CELLS[0]]))}
        polls: list[tuple[float, float, int]] = []
        deadline = time.monotonic() + timeout
        while True:
            t_send = time.monotonic()
            status, raw = await self.api["core"].call("GET", ppr_path(NAMESPACE))
            t_done = time.monotonic()
            if status != 200:
                raise HarnessError(f"list podprotectors: HTTP {status}: {raw[:300]!r}")
            correct = 0
            for item in orjson.loads(raw)["items"]:
                i = index.get(item["metadata"]["name"])
                if i is None:
                    continue
                cells = {
                    c.get("cellID"): c.get("aggregation") or {}
                    for c in (item.get("status") or {}).get("cells") or ()
                }
                if all(
                    cells.get(cell, {}).get("availableReplicas") == expected[cell][i]
                    and cells.get(cell, {}).get("totalReplicas") == total
                    for cell in CELLS
                ):
                    correct += 1
            polls.append((t_send, t_done, correct))
            if correct == len(index) or t_done > deadline:
                return {"polls": polls, "converged": correct == len(index), "count": len(index)}
            await asyncio.sleep(max(0.0, t_send + interval - time.monotonic()))

    async def burst(
        self,
        flips: list[tuple[str, int, int]],
        expected: dict[str, list[int]],
        total: int,
        interval: float,
        timeout: float,
    ) -> dict[str, Any]:
        """Flip the pods to not ready as fast as the sandbox takes it, polling meanwhile."""
        now = time.time()
        since, started = rfc3339(now), rfc3339(now - 3600)
        cell_index = {cell: c for c, cell in enumerate(CELLS)}
        poller = asyncio.get_running_loop().create_task(
            self.converge(expected, total, interval, timeout)
        )
        answered: list[float] = []

        async def flip(job: tuple[str, int, int]) -> None:
            cell, i, j = job
            body = pod_status(False, since, started, pod_ip(cell_index[cell], i, j))
            await self.api[cell].write(
                "PATCH", pods_path(pod_name(i, j)) + "/status", body, MERGE_PATCH
            )
            answered.append(time.monotonic())

        try:
            _, first, end = await run_jobs(deque(flips), self.clients, flip)
        except BaseException:
            poller.cancel()
            raise
        result = await poller
        result.update(first_flip=first, last_flip=end, flips=len(answered))
        return result

    async def write_rate(self, rounds: int) -> dict[str, Any]:
        """How many status writes per second the core cluster sustains: every protector of
        NAMESPACE gets ``rounds`` status PUTs in a row (each on the last one's
        resourceVersion, bumping one cell's lastEventTime, as an aggregator would write),
        ``clients`` protectors at a time. Nothing watches the protectors meanwhile."""
        status, raw = await self.api["core"].call("GET", ppr_path(NAMESPACE))
        if status != 200:
            raise HarnessError(f"list podprotectors: HTTP {status}: {raw[:300]!r}")
        items = orjson.loads(raw)["items"]
        done: list[float] = []

        async def rewrite(item: dict[str, Any]) -> None:
            path = f"{ppr_path(NAMESPACE)}/{item['metadata']['name']}/status"
            for n in range(rounds):
                cell = CELLS[n % len(CELLS)]
                cells = []
                for entry in (item.get("status") or {}).get("cells") or ():
                    if entry.get("cellID") == cell:
                        aggregation = {**entry["aggregation"], "lastEventTime": micro_now()}
                        entry = {**entry, "aggregation": aggregation}
                    cells.append(entry)
                metadata = item["metadata"]
                body = {
                    "apiVersion": item["apiVersion"],
                    "kind": item["kind"],
                    "metadata": {k: metadata[k] for k in ("name", "namespace", "resourceVersion")},
                    "spec": item["spec"],
                    "status": {**item["status"], "cells": cells},
                }
                status, raw = await self.api["core"].call("PUT", path, body)
                if status != 200:
                    raise HarnessError(f"PUT {path}: HTTP {status}: {raw[:300]!r}")
                item = orjson.loads(raw)
                done.append(time.monotonic())

        _, first, end = await run_jobs(deque(items), self.clients, rewrite)
        return {"writes": len(done), "seconds": end - first, "clients": self.clients}

    async def cleanup(self) -> dict[str, Any]:
        """Delete what setup created (real clusters; the sandbox is simply stopped). The
        protectors go first, so no webhook guards the pods when their namespaces go; the
        generator's finalizers are taken off first, as no generator runs any more to do it."""
        core = self.api["core"]
        for path in (
            f"/apis/apps/v1/namespaces/{GEN_NAMESPACE}/deployments",
            ppr_path(GEN_NAMESPACE),
        ):
            status, raw = await core.call("GET", path)
            if status != 200:
                continue
            names = deque(
                item["metadata"]["name"]
                for item in orjson.loads(raw)["items"]
                if item["metadata"].get("finalizers")
            )

            async def release(name: str, path: str = path) -> None:
                body = {"metadata": {"finalizers": None}}
                await core.write("PATCH", f"{path}/{name}", body, MERGE_PATCH, allowed=(404,))

            await run_jobs(names, self.clients, release)
        await self.api["core"].write(
            "DELETE", f"/api/v1/namespaces/{GEN_NAMESPACE}", None, allowed=(404,)
        )
        await self.api["core"].write(
            "DELETE", f"/api/v1/namespaces/{NAMESPACE}", None, allowed=(404,)
        )
        for cell in CELLS:
            await self.api[cell].write(
                "DELETE", f"/api/v1/namespaces/{NAMESPACE}", None, allowed=(404,)
            )
        return {}

    async def wait_count(
        self, namespace: str, count: int, interval: float, timeout: float, ready: Any
    ) -> dict[str, Any]:
        """Poll the protectors of ``namespace`` until there are ``count`` of them."""
        polls: list[tuple[float, float, int]] = []
        deadline = time.monotonic() + timeout
        ready()
        while True:
            t_send = time.monotonic()
            status, raw = await self.api["core"].call("GET", ppr_path(namespace))
            t_done = time.monotonic()
            if status != 200:
                raise HarnessError(f"list podprotectors: HTTP {status}: {raw[:300]!r}")
            n = len(orjson.loads(raw)["items"])
            polls.append((t_send, t_done, n))
            if n >= count or t_done > deadline:
                return {"polls": polls, "done": n >= count}
            await asyncio.sleep(max(0.0, t_send + interval - time.monotonic()))


def driver_main(conn: Any, kubeconfigs: dict[str, str], clients: int, sandbox: bool) -> None:
    """Entry point of the driver process: run commands from the pipe until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    asyncio.run(_driver_loop(conn, kubeconfigs, clients, sandbox))


async def _driver_loop(conn: Any, kubeconfigs: dict[str, str], clients: int, sandbox: bool) -> None:
    driver = Driver(kubeconfigs, clients, sandbox)
    try:
        while True:
            try:
                command, payload = await asyncio.to_thread(conn.recv)
            except EOFError:
                return  # the parent is gone
            if command == "stop":
                return
            if command == "wait_count":
                payload["ready"] = lambda: conn.send(("ready", time.monotonic()))
            try:
                result = await getattr(driver, command)(**payload)
                conn.send(("ok", result))
            except Exception as error:
                conn.send(("error", f"{command}: {type(error).__name__}: {error}"))
    finally:
        await driver.close()


class DriverProcess:
    """The parent's handle on the driver process."""

    def __init__(self, kubeconfigs: dict[str, str], clients: int, sandbox: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=driver_main,
            args=(child, kubeconfigs, clients, sandbox),
            name="controllers-bench-driver",
            daemon=True,
        )
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, command: str, **payload: Any) -> None:
        self.conn.send((command, payload))

    def receive(
        self, timeout: float, expect: str = "ok", tick: Callable[[], None] | None = None
    ) -> Any:
        """The driver's next answer; ``tick`` is called about every second meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.conn.poll(min(1.0, max(deadline - time.monotonic(), 0.0))):
            if time.monotonic() >= deadline:
                raise HarnessError(f"the driver did not answer within {timeout:.0f} s")
            if tick is not None:
                tick()
        kind, value = self.conn.recv()
        if kind == "error":
            raise HarnessError(value)
        if kind != expect:
            raise HarnessError(f"driver sent {kind!r}, expected {expect!r}")
        return value

    def call(self, command: str, wait: float, **payload: Any) -> Any:
        """Run ``command`` and return its result, waiting at most ``wait`` seconds."""
        self.send(command, **payload)
        return self.receive(wait)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop", {}))
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# --- the memory probe (its own process) -------------------------------------------------------


class _QuietObserver:
    def listed(self, informer: str, count: int, resource_version: str) -> None:
        pass

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        print(f"memory probe: {informer}: {error}", file=sys.stderr)

    def relist_needed(self, informer: str, reason: str) -> None:
        pass

    def event(self, informer: str, event_type: str) -> None:
        pass


def memory_probe(conn: Any, kubeconfigs: dict[str, str], timeout: float, transform: bool) -> None:
    """Entry point of a memory process: VmRSS before listing and after each cell's pod Informer
    (with the aggregator's transform, or none) has synced, then with the aggregator's pod
    index added. Sends the readings back through ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send(("ok", _memory_probe(kubeconfigs, timeout, transform)))
    except Exception as error:
        conn.send(("error", f"memory probe: {type(error).__name__}: {error}"))


def _memory_probe(kubeconfigs: dict[str, str], timeout: float, transform: bool) -> dict[str, Any]:
    from podseidon_site.config import AggregatorConfig, ClusterAccess
    from protectors.kube.client import PODS, KubeClient
    from protectors.kube.informer import Informer
    from workers.aggregator.index import PodCandidates
    from workers.aggregator.podcache import pod_transform

    # The transform the aggregator uses with the default configuration.
    trim_pod = pod_transform(AggregatorConfig().sync_time_algorithm)

    clients = {
        cell: KubeClient.from_access(ClusterAccess(kubeconfig=kubeconfigs[cell])) for cell in CELLS
    }
    for client in clients.values():
        client.list(PODS, limit=1)  # load the kubeconfig, open the TLS connection
    gc.collect()
    out: dict[str, Any] = {"rss_before": rss_mb(), "cells": []}
    informers = []
    for cell in CELLS:
        informer = Informer(
            clients[cell],
            PODS,
            name=f"memory/{cell}",
            namespace=NAMESPACE,
            transform=trim_pod if transform else None,
            observer=_QuietObserver(),
        )
        cpu, t0 = time.process_time(), time.monotonic()
        informer.start()
        if not informer.wait_synced(timeout):
            raise HarnessError(f"pod informer of {cell} did not sync within {timeout:.0f} s")
        seconds, cpu = time.monotonic() - t0, time.process_time() - cpu
        gc.collect()
        out["cells"].append(
            {
                "cell": cell,
                "pods": len(informer),
                "sync_seconds": seconds,
                "sync_cpu_seconds": cpu,
                "rss_after": rss_mb(),
            }
        )
        informers.append(informer)
    out["pods"] = sum(len(i) for i in informers)
    out["rss_after"] = out["cells"][-1]["rss_after"]
    out["deep_size_mb"] = deep_size([o for i in informers for o in (*i.items(), *i.keys())])
    out["deep_size_mb"] /= 2**20
    for informer in informers:
        PodCandidates(informer)  # the aggregator's index of pods by namespace and label
    gc.collect()
    out["rss_with_index"] = rss_mb()
    for informer in informers:
        informer.stop(timeout=0)
    for informer in informers:
        informer.stop(timeout=2)
    return out


def run_memory_probe(
    kubeconfigs: dict[str, str], timeout: float, transform: bool
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    process = context.Process(
        target=memory_probe, args=(child, kubeconfigs, timeout, transform), daemon=True
    )
    process.start()
    child.close()
    try:
        if not conn.poll(timeout + 60):
            raise HarnessError("the memory probe did not answer")
        kind, value = conn.recv()
        if kind == "error":
            raise HarnessError(value)
        return value
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


# --- the controllers, in this process ---------------------------------------------------------


def metric(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def generator_writes() -> float:
    """Every write the generator made so far (protectors and workload finalizers, all labels)."""
    from prometheus_client import REGISTRY

    total = 0.0
    for family in REGISTRY.collect():
        if family.name in ("generator_protector_writes", "generator_workload_finalizer_writes"):
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def aggregator_counts() -> dict[str, float]:
    """Reconciles by outcome and status writes, both cells together (prometheus counters)."""
    if CELL_PROCESSES is not None:
        return CELL_PROCESSES.counts()
    return own_aggregator_counts()


def own_aggregator_counts() -> dict[str, float]:
    """``aggregator_counts`` of the aggregators running in this process."""
    from workers.aggregator.observer import ReconcileError

    counts = {"status_writes": 0.0}
    for cell in CELLS:
        for error in ReconcileError:
            counts[error.value] = counts.get(error.value, 0.0) + metric(
                "aggregator_reconcile_count", {"cell": cell, "error": error.value}
            )
        counts["status_writes"] += metric("aggregator_status_write_total", {"cell": cell})
    counts["reconciles"] = sum(v for k, v in counts.items() if k != "status_writes")
    return counts


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def wait_quiet(quiet_for: float, timeout: float, tick: Callable[[], None] | None = None) -> float:
    """Wait until no aggregator reconcile has finished for ``quiet_for`` seconds (any pending
    key would be due within the aggregation delay); returns the time of the last reconcile."""
    deadline = time.monotonic() + timeout
    last = aggregator_counts()["reconciles"]
    last_change = last_tick = time.monotonic()
    while time.monotonic() - last_change < quiet_for:
        if time.monotonic() > deadline:
            raise HarnessError(f"the aggregators did not go quiet within {timeout:.0f} s")
        time.sleep(0.1)
        now = aggregator_counts()["reconciles"]
        if now != last:
            last, last_change = now, time.monotonic()
        if tick is not None and time.monotonic() - last_tick >= 1.0:
            last_tick = time.monotonic()
            tick()
    return last_change


def workers_option(args: argparse.Namespace) -> dict[str, int]:
    """``workers=`` for AggregatorController, or nothing: then the configuration decides."""
    return {} if args.workers is None else {"workers": args.workers}


def default_workers() -> int:
    from podseidon_site.config import AggregatorConfig

    # Older revisions (measured "before") have no aggregator.workers: their default was 2.
    return getattr(AggregatorConfig(), "workers", 2)


def cell_main(conn: Any, kubeconfigs: dict[str, str], cell: str, workers: int | None) -> None:
    """Entry point of a cell's own process (``--process-per-cell``): run its aggregator until
    told to stop, answering the parent's questions about it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from podseidon_site.config import CellConfig, ClusterAccess, PodseidonConfig
    from protectors.kube.client import KubeClient
    from workers.aggregator.controller import AggregatorController
    from workers.controller import AlwaysValidFence, ControllerContext

    config = PodseidonConfig(
        core=ClusterAccess(kubeconfig=kubeconfigs["core"], namespace=NAMESPACE),
        cells=[CellConfig(id=c, kubeconfig=kubeconfigs[c], namespace=NAMESPACE) for c in CELLS],
    )
    reports: list[str] = []
    controller = AggregatorController(
        config, cell, **({} if workers is None else {"workers": workers})
    )
    controller.start(
        ControllerContext(
            config=config,
            core=KubeClient.from_access(config.core),
            cells={c.id: KubeClient.from_access(c) for c in config.cells},
            fence=AlwaysValidFence(),
            report=lambda error: reports.append(error) if error is not None else None,
        )
    )
    conn.send("started")
    try:
        while True:
            command = conn.recv()
            if command == "counts":
                conn.send(own_aggregator_counts())
            elif command == "cpu":
                # The main thread only answers the parent: not the aggregator's CPU.
                conn.send(time.process_time() - time.thread_time())
            elif command == "threads":
                conn.send(thread_cpu())
            elif command == "rss":
                conn.send(rss_mb())
            elif command == "stop":
                controller.stop()
                conn.send(list(reports))
                return
    except EOFError:
        controller.stop()


class CellProcesses:
    """``--process-per-cell``: each cell's aggregator in a process of its own, as with one
    Celery worker per cell (PODSEIDON_CONTROLLERS=aggregator/<cell>)."""

    def __init__(self, kubeconfigs: dict[str, str], workers: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.children = []
        for cell in CELLS:
            conn, child = context.Pipe()
            process = context.Process(
                target=cell_main, args=(child, kubeconfigs, cell, workers), daemon=True
            )
            process.start()
            child.close()
            self.children.append((conn, process))
        for conn, _ in self.children:
            if not conn.poll(60) or conn.recv() != "started":
                raise HarnessError("a cell's aggregator process did not start")

    @property
    def pids(self) -> list[int]:
        return [process.pid for _, process in self.children if process.pid is not None]

    def _ask(self, command: str) -> list[Any]:
        for conn, _ in self.children:
            conn.send(command)
        answers = []
        for conn, _ in self.children:
            if not conn.poll(30):
                raise HarnessError(f"a cell's aggregator process did not answer {command!r}")
            answers.append(conn.recv())
        return answers

    def counts(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for answer in self._ask("counts"):
            for key, value in answer.items():
                total[key] = total.get(key, 0.0) + value
        return total

    def cpu(self) -> float:
        return sum(self._ask("cpu"))

    def threads(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for answer in self._ask("threads"):
            for name, value in answer.items():
                merged[name] = merged.get(name, 0.0) + value
        return merged

    def rss(self) -> float:
        return sum(self._ask("rss"))

    def stop(self) -> list[str]:
        reports = [r for answer in self._ask("stop") for r in answer]
        for _, process in self.children:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        return reports


CELL_PROCESSES: CellProcesses | None = None


def controllers_cpu() -> float:
    """CPU-seconds of the controllers so far: this process minus its main (harness) thread,
    plus the cells' own processes."""
    own = time.process_time() - time.thread_time()
    return own + (CELL_PROCESSES.cpu() if CELL_PROCESSES is not None else 0.0)


def controller_threads() -> dict[str, float]:
    threads = thread_cpu()
    if CELL_PROCESSES is not None:
        threads.update(CELL_PROCESSES.threads())
    return threads


class Timeline:
    """Samples, about once a second, of the aggregators' counters and CPU use."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[dict[str, float]] = []
        self.tick()

    def tick(self) -> None:
        sample = {
            "t": time.monotonic(),
            "controllers": controllers_cpu(),
            **aggregator_counts(),
        }
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                sample[name] = cpu_seconds(pid)
        self.samples.append(sample)

    def series(self) -> dict[str, list[float]]:
        """Per interval between samples: status writes and reconciles per second, and the
        share of one core the controllers, the sandbox and the driver used."""
        out: dict[str, list[float]] = {"seconds": []}
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            span = b["t"] - a["t"]
            if span <= 0:
                continue
            out["seconds"].append(b["t"] - self.samples[0]["t"])
            for key in ("status_writes", "reconciles", "controllers", *self.pids):
                out.setdefault(key, []).append((b.get(key, 0.0) - a.get(key, 0.0)) / span)
        return out


class CpuMark:
    """This process's CPU, its threads' CPU, the sandbox's and the driver's, and the machine's."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.t = time.monotonic()
        self.process = time.process_time()
        # Only harness code runs on the main thread (waiting, polling metrics, these readings);
        # the controllers run on their own threads (and in the cells' processes, if any).
        self.main = time.thread_time()
        self.controllers = controllers_cpu()
        self.threads = controller_threads()
        self.others = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                self.others[name] = cpu_seconds(pid)
        self.machine = machine_busy()

    def since(self, start: CpuMark) -> dict[str, Any]:
        return {
            "seconds": self.t - start.t,
            "process": self.process - start.process,
            "harness": self.main - start.main,
            "controllers": self.controllers - start.controllers,
            "threads": grouped(start.threads, self.threads),
            "others": {k: v - start.others.get(k, 0.0) for k, v in self.others.items()},
            "machine": self.machine - start.machine,
        }


def converged_at(result: dict[str, Any], origin: float) -> dict[str, Any]:
    """When the polls saw every status correct, relative to ``origin``: the first all-correct
    poll's answer (upper bound) and the last not-all-correct poll's request (lower bound), and
    when 50/90/99 % of the protectors were correct."""
    polls = result["polls"]
    count = result["count"]
    out: dict[str, Any] = {"converged": result["converged"], "polls": len(polls)}
    lower = None
    for t_send, t_done, correct in polls:
        if correct < count:
            lower = t_send - origin
        else:
            out["upper"] = t_done - origin
            break
    out["lower"] = max(lower or 0.0, 0.0)
    for share in (0.5, 0.9, 0.99):
        out[f"p{round(share * 100)}"] = next(
            (t_done - origin for _, t_done, correct in polls if correct >= share * count), None
        )
    return out


def run(
    args: argparse.Namespace, kubeconfigs: dict[str, str], sandbox_pid: int | None
) -> dict[str, Any]:
    from podseidon_site.config import (
        CellConfig,
        ClusterAccess,
        GeneratorConfig,
        PodseidonConfig,
    )
    from protectors import constants
    from protectors.kube.client import KubeClient
    from workers.aggregator.controller import AggregatorController
    from workers.controller import AlwaysValidFence, ControllerContext
    from workers.generator.controller import GeneratorController

    global CELL_PROCESSES
    out: dict[str, Any] = {"load_average_start": os.getloadavg()}
    sandbox = sandbox_pid is not None
    pids = {"sandbox": sandbox_pid, "driver": 0} if sandbox else {"driver": 0}

    def sandbox_cpu() -> float:
        return cpu_seconds(sandbox_pid) if sandbox_pid is not None else 0.0

    driver = DriverProcess(kubeconfigs, args.clients, sandbox)
    pids["driver"] = driver.pid
    seeded_here = False
    controllers: list[Any] = []
    reports: list[str] = []
    try:
        # -- seeding ---------------------------------------------------------------------------
        print("installing the CRD, seeding ...", flush=True)
        from kubernetes import config as k8s_config

        from tests.integration.webhook_env import install_crd

        core_api = k8s_config.new_client_from_config(config_file=kubeconfigs["core"])
        try:
            install_crd(core_api)
        finally:
            core_api.close()
        driver.call("setup", args.timeout)
        seeded_here = True
        cpu0 = sandbox_cpu()
        out["seed_pods"] = driver.call(
            "seed_pods", args.timeout * 4, pprs=args.pprs, per_cell=args.pods_per_cell
        )
        out["seed_pods"]["sandbox_cpu"] = sandbox_cpu() - cpu0
        out["seed_pprs"] = driver.call(
            "seed_pprs",
            args.timeout,
            pprs=args.pprs,
            min_available=max(args.pods_per_cell, 1),
            rate_ms=args.aggregation_rate_ms,
        )
        out["seed_deployments"] = driver.call(
            "seed_deployments",
            args.timeout,
            count=args.deployments,
            protect_label=constants.LABEL_PROTECT,
        )
        seeded = out["seed_pods"]
        print(
            f"seeded {seeded['count']} pods in {seeded['seconds']:.1f} s, {args.pprs} "
            f"podprotectors, {args.deployments} Deployments",
            flush=True,
        )

        # -- memory ----------------------------------------------------------------------------
        print("memory probe ...", flush=True)
        out["memory"] = run_memory_probe(kubeconfigs, args.timeout, transform=True)
        out["memory_untransformed"] = run_memory_probe(kubeconfigs, args.timeout, transform=False)

        # -- aggregators: cold start -----------------------------------------------------------
        config = PodseidonConfig(
            core=ClusterAccess(kubeconfig=kubeconfigs["core"], namespace=NAMESPACE),
            cells=[
                CellConfig(id=cell, kubeconfig=kubeconfigs[cell], namespace=NAMESPACE)
                for cell in CELLS
            ],
        )
        rate = (args.aggregation_rate_ms or DEFAULT_RATE_MS) / 1000
        quiet_for = rate * float(config.aggregator.rate_jitter[1]) + 0.3
        per_cell = args.pods_per_cell
        expected = {cell: [per_cell] * args.pprs for cell in CELLS}

        def report(error: str | None) -> None:
            if error is not None:
                reports.append(error)

        gc.collect()
        out["rss_before_aggregators"] = rss_mb()
        profiler = stage_profiler() if args.profile else None
        if profiler is not None:
            profiler.install()  # every controller thread started from now on
        print("aggregators: cold start ...", flush=True)
        counts0 = aggregator_counts()
        mark0 = CpuMark(pids)
        driver.send(
            "converge",
            expected=expected,
            total=per_cell,
            interval=args.poll_interval,
            timeout=args.timeout,
        )
        if args.process_per_cell:
            CELL_PROCESSES = CellProcesses(kubeconfigs, args.workers)
        # As a worker process does (workers/runtime.py): one client per cluster, shared.
        core_client = KubeClient.from_access(config.core)
        for cell in CELLS if CELL_PROCESSES is None else ():
            controller = AggregatorController(config, cell, **workers_option(args))
            context = ControllerContext(
                config=config,
                core=core_client,
                cells={c.id: KubeClient.from_access(c) for c in config.cells},
                fence=AlwaysValidFence(),
                report=report,
            )
            controller.start(context)
            controllers.append(controller)
        cold = driver.receive(args.timeout + 30)
        if not cold["converged"]:
            raise HarnessError("the aggregators' first statuses were not all correct in time")
        out["cold"] = converged_at(cold, mark0.t)
        wait_quiet(quiet_for, args.timeout)
        out["cold"]["cpu"] = CpuMark(pids).since(mark0)
        out["cold"]["counts"] = delta(aggregator_counts(), counts0)
        gc.collect()
        out["rss_aggregators"] = rss_mb() + (CELL_PROCESSES.rss() if CELL_PROCESSES else 0.0)
        mark1 = CpuMark(pids)

        # -- idle baseline ---------------------------------------------------------------------
        time.sleep(args.idle_seconds)
        mark2 = CpuMark(pids)
        out["idle"] = mark2.since(mark1)

        # -- the burst -------------------------------------------------------------------------
        flips = choose_flips(args.pprs, per_cell, args.flips, args.seed)
        after = {cell: list(values) for cell, values in expected.items()}
        for cell, i, _ in flips:
            after[cell][i] -= 1
        print(f"burst: {len(flips)} readiness flips ...", flush=True)
        counts2 = aggregator_counts()
        stages0 = profiler.snapshot() if profiler is not None else None
        mark2 = CpuMark(pids)
        timeline = Timeline(pids)
        driver.send(
            "burst",
            flips=flips,
            expected=after,
            total=per_cell,
            interval=args.poll_interval,
            timeout=args.timeout,
        )
        burst = driver.receive(args.timeout + 30, tick=timeline.tick)
        if not burst["converged"]:
            raise HarnessError("the statuses were not all correct in time after the burst")
        last_reconcile = wait_quiet(quiet_for, args.timeout, tick=timeline.tick)
        timeline.tick()
        mark3 = CpuMark(pids)
        if profiler is not None:
            out["profile_burst"] = profile_window(profiler, stages0)
        out["burst"] = converged_at(burst, burst["first_flip"])
        out["burst"].update(
            flips=burst["flips"],
            flip_seconds=burst["last_flip"] - burst["first_flip"],
            last_reconcile=last_reconcile - burst["first_flip"],
            cpu=mark3.since(mark2),
            counts=delta(aggregator_counts(), counts2),
            window_from_first_flip=mark3.t - burst["first_flip"],
            timeline=timeline.series(),
            timeline_origin=timeline.samples[0]["t"] - burst["first_flip"],
        )
        for controller in controllers:
            controller.stop()
        controllers.clear()
        if CELL_PROCESSES is not None:
            out["burst"]["counts"] = delta(aggregator_counts(), counts2)
            reports += CELL_PROCESSES.stop()
            CELL_PROCESSES = None
        out["reports"] = reports[:5]
        out["report_count"] = len(reports)

        # -- the cluster's own status-write rate, with the aggregators stopped ----------------
        print("status-write rate ...", flush=True)
        mark_w = CpuMark(pids)
        out["write_rate"] = driver.call("write_rate", args.timeout, rounds=2 * len(CELLS))
        out["write_rate"]["cpu"] = CpuMark(pids).since(mark_w)
        out["burst"]["needed_writes"] = len({(cell, i) for cell, i, _ in flips})

        # -- generator start-up ----------------------------------------------------------------
        print("generator start-up ...", flush=True)
        gen_config = PodseidonConfig(
            core=ClusterAccess(kubeconfig=kubeconfigs["core"], namespace=GEN_NAMESPACE),
            cells=[CellConfig(id=cell, kubeconfig=kubeconfigs[cell]) for cell in CELLS],
            generator=GeneratorConfig(),
        )
        generator = GeneratorController(gen_config)
        gen_context = ControllerContext(
            config=gen_config,
            core=KubeClient.from_access(gen_config.core),
            cells={},
            fence=AlwaysValidFence(),
            report=report,
        )
        reports.clear()
        driver.send(
            "wait_count",
            namespace=GEN_NAMESPACE,
            count=args.deployments,
            interval=args.generator_poll_interval,
            timeout=args.timeout,
        )
        driver.receive(30, expect="ready")
        stages4 = profiler.snapshot() if profiler is not None else None
        mark4 = CpuMark(pids)
        generator.start(gen_context)
        controllers.append(generator)
        if not generator.wait_synced(args.timeout):
            raise HarnessError("the generator's caches did not sync")
        synced = time.monotonic() - mark4.t
        counted = driver.receive(args.timeout + 30)
        mark5 = CpuMark(pids)
        if profiler is not None:
            out["profile_generator"] = profile_window(profiler, stages4)
            profiler.uninstall()
        if not counted["done"]:
            raise HarnessError("not every Deployment got its PodProtector in time")
        polls = counted["polls"]
        lower = max([t_send for t_send, _, n in polls if n < args.deployments] or [mark4.t])
        out["generator"] = {
            "workers": gen_config.generator.workers,
            "synced": synced,
            "upper": polls[-1][1] - mark4.t,
            "lower": max(lower - mark4.t, 0.0),
            "cpu": mark5.since(mark4),
            "writes": {
                "protector creates": metric(
                    "generator_protector_writes_total",
                    {"kind": "deployments.apps", "action": "create"},
                ),
                "finalizer adds": metric(
                    "generator_workload_finalizer_writes_total",
                    {"kind": "Deployment", "action": "add"},
                ),
                "conflicts/errors": metric("generator_reconcile_count", {"error": "true"}),
            },
            "reports": reports[:5],
        }

        # -- generator restart: every protector in place, each to be verified ------------------
        print("generator restart ...", flush=True)
        generator.stop()
        controllers.remove(generator)
        verifier = GeneratorController(gen_config)
        reconciled0 = metric("generator_reconcile_count", {"error": "false"})
        writes0 = generator_writes()
        mark6 = CpuMark(pids)
        verifier.start(gen_context)
        controllers.append(verifier)
        deadline = time.monotonic() + args.timeout
        while True:
            done = metric("generator_reconcile_count", {"error": "false"}) - reconciled0
            session = verifier._session
            if done >= args.deployments and session is not None and not len(session.queue):
                break
            if time.monotonic() > deadline:
                raise HarnessError("the restarted generator did not verify every Deployment")
            time.sleep(0.01)
        mark7 = CpuMark(pids)
        out["generator"]["restart"] = {
            "verified": mark7.t - mark6.t,
            "reconciles": done,
            "writes": generator_writes() - writes0,
            "cpu": mark7.since(mark6),
        }
        out["load_average_end"] = os.getloadavg()
        return out
    finally:
        for controller in controllers:
            controller.stop()
        if CELL_PROCESSES is not None:
            CELL_PROCESSES.stop()
            CELL_PROCESSES = None
        if seeded_here and not sandbox:
            print("deleting the benchmark's namespaces ...", flush=True)
            try:
                driver.call("cleanup", 120)
            except HarnessError as error:
                print(f"cleanup failed: {error}", file=sys.stderr)
        driver.stop()


# --- the figure block -------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def not_ours(cpu: dict[str, Any]) -> float:
    """CPU-seconds the machine spent outside this benchmark's processes in a window."""
    return max(0.0, cpu["machine"] - cpu["process"] - sum(cpu["others"].values()))


def print_figures(args: argparse.Namespace, out: dict[str, Any]) -> None:
    pods = out["seed_pods"]["count"]
    rate_ms = args.aggregation_rate_ms or DEFAULT_RATE_MS
    rate_text = f"{rate_ms} ms" + ("" if args.aggregation_rate_ms else " (default)")
    la0, la1 = out["load_average_start"], out["load_average_end"]
    print()
    print(
        f"=== controllers benchmark {time.strftime('%Y-%m-%d %H:%M')}: {args.pprs} podprotectors, "
        f"{pods} pods ({len(CELLS)} cells x {pods // len(CELLS)}), {args.flips} flips, "
        f"aggregationRate {rate_text} ==="
    )
    print(
        f"machine:      {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"{la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f} at start, {la1[0]:.2f} {la1[1]:.2f} "
        f"{la1[2]:.2f} at end"
    )
    s = out["seed_pods"]
    sandbox = args.kubeconfigs is None
    where = "sandbox" if sandbox else f"real clusters ({args.kubeconfigs})"
    placement = "one process per cell" if args.process_per_cell else "both in this process"
    workers = args.workers or default_workers()
    print(f"clusters:     {where}; aggregators: {placement}, {workers} workers each")
    seed_cpu = f"; sandbox CPU {s['sandbox_cpu']:.1f} s" if sandbox else ""
    print(
        f"seed:         {pods} pods in {s['seconds']:.1f} s ({pods / s['seconds']:.0f}/s, create "
        f"+ status patch each{seed_cpu}), {args.pprs} podprotectors "
        f"in {out['seed_pprs']['seconds']:.1f} s, {args.deployments} Deployments in "
        f"{out['seed_deployments']['seconds']:.1f} s"
    )

    m, raw = out["memory"], out["memory_untransformed"]
    per = 10000 / max(m["pods"], 1)
    raw_per = 10000 / max(raw["pods"], 1)
    first, second = m["cells"]
    print(
        f"memory:       pod Informers with the aggregator's transform, {m['pods']} pods: RSS "
        f"{m['rss_before']:.1f} -> {m['rss_after']:.1f} MB = "
        f"{(m['rss_after'] - m['rss_before']) * per:.1f} MB per 10,000 cached pods"
    )
    print(
        f"              first cell +"
        f"{(first['rss_after'] - m['rss_before']) * 10000 / max(first['pods'], 1):.1f}, second "
        f"+{(second['rss_after'] - first['rss_after']) * 10000 / max(second['pods'], 1):.1f} MB "
        f"per 10,000; live objects (deep size) {m['deep_size_mb'] * per:.1f} MB per 10,000; "
        f"the aggregator's pod index +{(m['rss_with_index'] - m['rss_after']) * per:.1f} MB "
        f"per 10,000"
    )
    print(
        f"              without the transform: "
        f"{(raw['rss_after'] - raw['rss_before']) * raw_per:.1f} MB RSS per 10,000 (live "
        f"objects {raw['deep_size_mb'] * raw_per:.1f} MB); informer sync of "
        f"{first['pods']} pods: {first['sync_seconds']:.2f} s, "
        f"{first['sync_cpu_seconds']:.2f} CPU-s"
    )

    cold = out["cold"]
    cc = cold["counts"]
    print(
        f"cold start:   2 aggregators, all {args.pprs} statuses correct {fmt(cold['upper'])} s "
        f"after start (between {fmt(cold['lower'])} and {fmt(cold['upper'])}); "
        f"{cc['status_writes']:.0f} status writes, {cc['conflict']:.0f} conflicts, "
        f"{cc['reconciles']:.0f} reconciles; controllers' CPU "
        f"{cold['cpu']['controllers']:.2f} s; RSS "
        f"{out['rss_before_aggregators']:.0f} -> {out['rss_aggregators']:.0f} MB"
    )
    idle = out["idle"]
    idle_rate = idle["controllers"] / idle["seconds"] if idle["seconds"] else 0.0
    print(
        f"idle:         controllers {idle_rate * 1000:.1f} ms CPU per second (over "
        f"{idle['seconds']:.1f} s)"
    )

    b = out["burst"]
    cpu = b["cpu"]
    events = b["flips"]
    net = cpu["controllers"] - idle_rate * cpu["seconds"]
    threads = cpu["threads"]
    aggregator_threads = sum(
        v
        for k, v in threads.items()
        if k in ("pod watches", "podprotector watches", "reconcile workers")
    )
    bc = b["counts"]
    print(
        f"burst:        {events} readiness flips answered in {b['flip_seconds']:.2f} s "
        f"({events / max(b['flip_seconds'], 1e-9):.0f}/s)"
    )
    print(
        f"convergence:  all {args.pprs} statuses correct {fmt(b['upper'])} s after the first "
        f"flip (between {fmt(b['lower'])} and {fmt(b['upper'])}; 50 % {fmt(b['p50'])}, 90 % "
        f"{fmt(b['p90'])}, 99 % {fmt(b['p99'])} s), {fmt(b['upper'] - b['flip_seconds'])} s "
        f"after the last flip was answered; last reconcile at {b['last_reconcile']:.2f} s"
    )
    w = out["write_rate"]
    sustained = w["writes"] / max(w["seconds"], 1e-9)
    needed = b["needed_writes"]
    floor = needed / max(sustained, 1e-9)
    rate_s = rate_ms / 1000
    target = rate_s + 1.5 * floor
    # Measured from the burst's last pod event: no aggregator can write a count before the
    # event that changes it, and how long the flips themselves take is the driver's and the
    # cluster's business (from the first flip is printed beside it).
    after_last = b["upper"] - b["flip_seconds"]
    b["target"] = {"floor": floor, "seconds": target, "after_last_flip": after_last}
    verdict = "met" if after_last <= target else "MISSED"
    print(
        f"write rate:   the cluster took {w['writes']} status PUTs in {w['seconds']:.2f} s from "
        f"{w['clients']} clients = {sustained:.0f}/s sustained (aggregators stopped, nothing "
        f"watching); the burst needed {needed} (protector x cell pairs whose counts changed): "
        f"floor = {needed} / {sustained:.0f} = {floor:.2f} s"
    )
    print(
        f"target:       all correct within aggregationRate + 1.5 x floor = {rate_s:.2f} + "
        f"{1.5 * floor:.2f} = {target:.2f} s of the burst's last pod event: {after_last:.2f} s, "
        f"{verdict} ((t - aggregationRate) / floor = "
        f"{(after_last - rate_s) / max(floor, 1e-9):.2f}, must be <= 1.5); from the first flip "
        f"{fmt(b['upper'])} s = aggregationRate + {(b['upper'] - rate_s) / max(floor, 1e-9):.2f}"
        f" x floor"
    )
    writes = b["counts"]["status_writes"]
    print(
        f"aggregator CPU: {net / max(events / 1000, 1e-9):.3f} CPU-s per 1,000 pod events, "
        f"{net / max(writes, 1) * 1000:.2f} ms per status write "
        f"(controllers {cpu['controllers']:.2f} s over {cpu['seconds']:.1f} s, minus idle "
        f"{idle_rate * cpu['seconds']:.2f} s, / {events} events; harness thread "
        f"{cpu['harness']:.2f} s not counted); aggregator threads "
        f"{aggregator_threads:.2f} s = pod watches {threads.get('pod watches', 0):.2f}, "
        f"podprotector watches {threads.get('podprotector watches', 0):.2f}, reconcile workers "
        f"{threads.get('reconcile workers', 0):.2f}"
    )
    print(
        f"              {bc['reconciles']:.0f} reconciles, {bc['status_writes']:.0f} status "
        f"writes ({bc['status_writes'] / max(events, 1):.2f} per pod event), "
        f"{bc['conflict']:.0f} conflicts; sandbox CPU {fmt(cpu['others'].get('sandbox'))} s, "
        f"driver {cpu['others'].get('driver', 0):.2f} s, machine busy {cpu['machine']:.2f} of "
        f"{(os.cpu_count() or 1) * cpu['seconds']:.2f} CPU-s ({not_ours(cpu):.2f} s not ours)"
    )
    series = b["timeline"]
    if series["seconds"]:
        print("  second by second from the burst's start (CPU as a share of one core):")
        rows = (
            ("status writes/s", "status_writes", "{:.0f}"),
            ("controllers CPU", "controllers", "{:.0%}"),
            ("sandbox CPU", "sandbox", "{:.0%}"),
            ("driver CPU", "driver", "{:.0%}"),
        )
        for label, key, form in rows:
            if key not in series:
                continue
            values = " ".join(form.format(v) for v in series.get(key, []))
            print(f"    {label + ':':<18}{values}")
    g = out["generator"]
    gcpu = g["cpu"]["threads"]
    gen_threads = gcpu.get("generator workers", 0) + gcpu.get("generator watches", 0)
    n = args.deployments
    print(
        f"generator:    {n} labelled Deployments -> {n} podprotectors {fmt(g['upper'])} s after "
        f"start (between {fmt(g['lower'])} and {fmt(g['upper'])}; caches synced at "
        f"{g['synced']:.2f} s; {n / max(g['upper'], 1e-9):.0f} Deployments/s, {g['workers']} "
        f"workers)"
    )
    w = g["writes"]
    print(
        f"              generator threads {gen_threads:.2f} CPU-s = "
        f"{gen_threads / max(n, 1) * 1000:.2f} ms per Deployment (controllers' CPU "
        f"{g['cpu']['controllers']:.2f} s); {w['protector creates']:.0f} creates, "
        f"{w['finalizer adds']:.0f} finalizer patches, {w['conflicts/errors']:.0f} failed "
        f"reconciles; sandbox CPU {fmt(g['cpu']['others'].get('sandbox'))} s"
    )
    if "profile_burst" in out:
        print_profile("burst, per pod event", out["profile_burst"], events)
    if "profile_generator" in out:
        print_profile("generator start-up, per Deployment", out["profile_generator"], n)
    r = g["restart"]
    print(
        f"              restarted with all {n} in place: every Deployment verified "
        f"{r['verified']:.2f} s after start ({r['reconciles']:.0f} reconciles, "
        f"{r['writes']:.0f} writes; generator threads "
        f"{sum(v for k, v in r['cpu']['threads'].items() if k.startswith('generator')):.2f} CPU-s)"
    )
    if out.get("report_count"):
        print(f"reported errors: {out['report_count']} (first: {out['reports'][0]})")
    if g["reports"]:
        print(f"generator reported errors: {g['reports']}")


def print_profile(title: str, groups: dict[str, dict[str, float]], per: int) -> None:
    """The stage profile of one window: CPU per stage and thread group, in µs per unit."""
    print(f"profile ({title}; µs of profiled CPU, inflated by the profiler: read the shares):")
    for group, stages in sorted(groups.items(), key=lambda item: -sum(item[1].values())):
        total = sum(stages.values())
        if total < 0.005:
            continue
        parts = ", ".join(
            f"{stage} {seconds / max(per, 1) * 1e6:.0f} ({seconds / total:.0%})"
            for stage, seconds in sorted(stages.items(), key=lambda item: -item[1])
            if seconds / total >= 0.005
        )
        print(f"  {group}: {total / max(per, 1) * 1e6:.0f} = {parts}")


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pprs", type=int, default=2000, help="podprotectors (default 2000)")
    parser.add_argument(
        "--pods-per-cell",
        type=int,
        default=5,
        help="pods each podprotector selects in each of the 2 cells (default 5)",
    )
    parser.add_argument(
        "--flips", type=int, default=5000, help="pods flipped to not ready (default 5000)"
    )
    parser.add_argument(
        "--deployments", type=int, default=1000, help="labelled Deployments (default 1000)"
    )
    parser.add_argument(
        "--aggregation-rate-ms",
        type=int,
        default=None,
        help="set spec.admissionHistoryConfig.aggregationRateMillis on every podprotector "
        "(default: unset, so the controllers' default of 1000 ms applies)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reconcile workers per aggregator (default: the configuration's aggregator.workers)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=16,
        help="concurrent HTTP requests of the driver when seeding and flipping (default 16)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.5,
        help="seconds between polls of the podprotectors' statuses (default 0.5)",
    )
    parser.add_argument(
        "--generator-poll-interval",
        type=float,
        default=0.25,
        help="seconds between counts of the generated podprotectors (default 0.25)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="length of the idle CPU baseline before the burst (default 3)",
    )
    parser.add_argument(
        "--history-window",
        type=int,
        default=None,
        help="the sandbox's --history-window (default 2 x pods + flips + 10000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the flip order")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="limit for each phase, seconds (seeding pods gets 4x) (default 300)",
    )
    parser.add_argument(
        "--process-per-cell",
        action="store_true",
        help="run each cell's aggregator in a process of its own (as one Celery worker per "
        "cell would) instead of both in the benchmark process",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="charge the controllers' CPU to stages (decode, transform, index, ..., HTTP) "
        "during the burst and the generator start-up; slows them 2-4x",
    )
    parser.add_argument(
        "--kubeconfigs",
        type=Path,
        help="run against real clusters instead of a sandbox: a folder with core, cell-a and "
        "cell-b kubeconfigs (NAME.kubeconfig or NAME); namespaces bench and bench-gen must not "
        "exist, and are deleted afterwards",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.pprs < 1 or args.pods_per_cell < 1 or args.deployments < 1 or args.clients < 1:
        parser.error("--pprs, --pods-per-cell, --deployments and --clients must be >= 1")
    if not 0 < args.flips <= args.pprs * args.pods_per_cell * len(CELLS):
        parser.error("--flips must be between 1 and the number of pods")
    if args.profile and args.process_per_cell:
        parser.error("--profile profiles this process's threads: not with --process-per-cell")
    if args.aggregation_rate_ms is not None and args.aggregation_rate_ms <= 0:
        parser.error("--aggregation-rate-ms must be > 0")
    if args.history_window is None:
        args.history_window = 2 * args.pprs * args.pods_per_cell * len(CELLS) + args.flips + 10000
    return args


def find_kubeconfigs(folder: Path) -> dict[str, str]:
    """``core``, ``cell-a`` and ``cell-b`` kubeconfigs in ``folder``, named ``NAME.kubeconfig``
    or ``NAME`` (the layout of PODSEIDON_TEST_KUBECONFIGS)."""
    found = {}
    for name in CLUSTERS:
        for candidate in (folder / f"{name}.kubeconfig", folder / name):
            if candidate.is_file():
                found[name] = str(candidate)
                break
        else:
            raise HarnessError(f"{folder} has no kubeconfig for {name} ({name}.kubeconfig)")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    from tests.integration.conftest import start_sandbox

    tmp = Path(tempfile.mkdtemp(prefix="podseidon-ctlbench-"))
    state_dir = tmp / "state"
    state_dir.mkdir()
    sandbox = None
    code = 2
    try:
        if args.kubeconfigs is not None:
            kubeconfigs = find_kubeconfigs(args.kubeconfigs)
            print(f"clusters: {', '.join(f'{n}={kubeconfigs[n]}' for n in CLUSTERS)}", flush=True)
            out = run(args, kubeconfigs, None)
        else:
            print(f"starting sandbox (state in {state_dir}) ...", flush=True)
            sandbox = start_sandbox(
                state_dir, CLUSTERS, ("--history-window", str(args.history_window))
            )
            kubeconfigs = {name: str(state_dir / f"{name}.kubeconfig") for name in CLUSTERS}
            out = run(args, kubeconfigs, sandbox.pid)
        out["date"] = time.strftime("%Y-%m-%d %H:%M")
        out["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        print_figures(args, out)
        if args.json is not None:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
        code = 0
    except (HarnessError, OSError, RuntimeError) as error:
        print(f"benchmark harness error: {type(error).__name__}: {error}", file=sys.stderr)
        log = state_dir.parent / f"{state_dir.name}.log"
        with contextlib.suppress(OSError):
            tail = log.read_text(errors="replace")[-2000:]
            if tail:
                print(f"--- sandbox log tail ---\n{tail}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    finally:
        if sandbox is not None and sandbox.poll() is None:
            sandbox.send_signal(signal.SIGTERM)
            try:
                sandbox.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                sandbox.kill()
                sandbox.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
