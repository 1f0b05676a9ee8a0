"""Write throughput and watch-delivery latency of the sandbox kube-apiserver.

    .venv/bin/python benchmarks/sandbox.py [--pods 10000] [--protectors 1000] [--watches 10]
        [--seconds 20] [--clients 8] [--json FILE] [--check]

Starts its own `python -m sandbox` (one cluster `core` on a free loopback port, temporary
state dir), installs the PodProtector CRD, seeds pods and podprotectors, opens watches from
the resourceVersion of the seed lists, then runs a closed-loop write load from --clients
concurrent HTTPS clients (one aiohttp session each, bearer token, TLS verified against the
sandbox CA) for --seconds. Watches run in a separate process so that their receive times are
not delayed by the load generator's event loop; both processes stamp with CLOCK_MONOTONIC,
which is shared by all processes of the machine.

Prints a figure block and a RESULT line for the target "≥ 500 writes/s sustained with 10,000
pods, 1,000 podprotectors and 10 open watches". Exit status: 0 when the run completed (PASS or
FAIL), 1 on FAIL with --check, 2 when the harness itself failed. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml
from harness import (
    HarnessError,
    app_container,
    app_container_status,
    cpu_seconds,
    exit_on_sigterm,
    rfc3339,
    rss_mb,
)

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "deploy" / "crds" / "podprotectors.yaml"
CLUSTER = "core"
NAMESPACE = "bench"
PPR_GROUP, PPR_VERSION, PPR_PLURAL = "podseidon.kubewharf.io", "v1alpha1", "podprotectors"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"
PPR_PATH = f"/apis/{PPR_GROUP}/{PPR_VERSION}/namespaces/{NAMESPACE}/{PPR_PLURAL}"
MERGE_PATCH = "application/merge-patch+json"
TARGET_WRITES_PER_SECOND = 500
TARGET_SIZES = (10000, 1000, 10)  # pods, podprotectors, watches
PODS_PER_APP = 10
# Write mix: (kind, weight). Creates and deletes are paired so the pod count stays put.
WRITE_MIX = (
    ("pod-status-patch", 40),
    ("ppr-status-put", 25),
    ("pod-label-patch", 25),
    ("pod-create", 5),
    ("pod-delete", 5),
)
WATCH_KIND_OF_WRITE = {
    "pod-status-patch": "pods",
    "pod-label-patch": "pods",
    "pod-create": "pods",
    "pod-delete": "pods",
    "ppr-status-put": "podprotectors",
}
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
LIST_TIMEOUT = aiohttp.ClientTimeout(total=180)
READY_TIMEOUT = 30.0
DRAIN_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


# --- /proc readings ---------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int, int]:
    """(total, idle incl. iowait, steal) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    # guest time is already counted in user/nice.
    return sum(values[:8]), idle, steal


@dataclass
class CpuSample:
    t: float
    procs: dict[str, float]
    machine: tuple[int, int, int]


def sample_cpu(pids: dict[str, int]) -> CpuSample:
    procs = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            procs[name] = cpu_seconds(pid)
    return CpuSample(time.monotonic(), procs, machine_ticks())


# --- the sandbox process ---------------------------------------------------------------------


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    url: str
    token: str
    ca_file: Path
    log_file: Path


# `python -c` prologue for --gc-stats: time every collection of the sandbox's cyclic garbage
# collector (CLOCK_MONOTONIC end time, generation, seconds) into a file, then run the sandbox
# exactly as `python -m sandbox` would.
GC_BOOTSTRAP = """
import atexit, gc, runpy, sys, time
path = sys.argv.pop(1)
pauses, started = [], [0.0]
def timer(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        pauses.append((time.monotonic(), info["generation"], time.perf_counter() - started[0]))
def dump():
    with open(path, "w") as f:
        f.writelines("%.6f %d %.6f\\n" % p for p in pauses)
gc.callbacks.append(timer)
atexit.register(dump)
sys.argv[0] = "sandbox"
runpy.run_module("sandbox", run_name="__main__", alter_sys=True)
"""


def sandbox_options() -> str:
    """`python -m sandbox --help`, to pass only the options this sandbox version has."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise HarnessError("`python -m sandbox --help` did not finish within 60 s") from None
    if done.returncode != 0:
        raise HarnessError(f"`python -m sandbox --help` failed: {done.stderr[-500:]}")
    return done.stdout


def start_sandbox(
    state_dir: Path,
    history_window: int,
    extra: list[str],
    profile: Path | None = None,
    gc_log: Path | None = None,
) -> Sandbox:
    log_file = state_dir.parent / "sandbox.log"
    args = [sys.executable]
    if profile is not None:
        args += ["-m", "cProfile", "-o", str(profile)]
    if gc_log is not None:
        args += ["-c", GC_BOOTSTRAP, str(gc_log)]
    else:
        args += ["-m", "sandbox"]
    args += [
        "--cluster",
        f"{CLUSTER}=0",
        "--state-dir",
        str(state_dir),
        "--history-window",
        str(history_window),
        "--host",
        "127.0.0.1",
        "--log-level",
        "WARNING",
        *extra,
    ]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = _wait_ready(proc, state_dir / f"{CLUSTER}.ready", log_file)
    except BaseException:  # including SIGTERM's SystemExit: never leave it running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    token = (state_dir / f"{CLUSTER}.token").read_text().strip()
    return Sandbox(proc, state_dir, url, token, state_dir / "ca.crt", log_file)


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log_file: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:]
            raise HarnessError(f"sandbox exited with {proc.returncode}; its log ends:\n{tail}")
        if time.monotonic() > deadline:
            raise HarnessError(f"sandbox not ready within {READY_TIMEOUT:.0f} s")
        time.sleep(0.05)
    url = ready.read_text().strip()
    if not url.startswith("https://127.0.0.1:"):
        raise HarnessError(f"sandbox is not on loopback: {url}")
    return url


def stop_process(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def ssl_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


# --- HTTP client ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    t_send: float
    t_done: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)


class Client:
    """One simulated API client: its own aiohttp session (and so its own connections)."""

    def __init__(self, url: str, token: str, ctx: ssl.SSLContext, limit: int = 1) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=REQUEST_TIMEOUT,
            read_bufsize=1 << 20,
        )

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Reply:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        t_send = time.monotonic()
        async with self.session.request(
            method, self.url + path, data=data, headers=headers, timeout=timeout or REQUEST_TIMEOUT
        ) as resp:
            raw = await resp.read()
        return Reply(resp.status, raw, t_send, time.monotonic())

    async def close(self) -> None:
        await self.session.close()


# --- objects ----------------------------------------------------------------------------------


def app_label(i: int) -> str:
    return f"app-{i:05d}"


def pod_body(name: str, app: str, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [app_container()],
        "serviceAccountName": "default",
    }
    if node is not None:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": app, "tier": "bench", "pod-template-hash": "7d9c8b6f5"},
            "annotations": {"bench.podseidon.io/seeded": "true"},
        },
        "spec": spec,
    }


def ppr_body(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{PPR_GROUP}/{PPR_VERSION}",
        "kind": "PodProtector",
        "metadata": {"name": name},
        "spec": {"minAvailable": PODS_PER_APP // 2, "selector": {"matchLabels": {"app": app}}},
    }


def pod_status_patch(seq: int, ready: bool) -> dict[str, Any]:
    now = rfc3339(time.time())
    flag = "True" if ready else "False"
    return {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
            "podIP": f"10.{(seq >> 16) & 255}.{(seq >> 8) & 255}.{seq & 255}",
            "containerStatuses": [
                # restartCount unique per write, so that no patch is a no-op.
                app_container_status(ready, now, restart_count=seq)
            ],
        }
    }


def ppr_status(seq: int, rng: random.Random) -> dict[str, Any]:
    now = rfc3339(time.time())
    available = rng.randint(PODS_PER_APP // 2, PODS_PER_APP)
    return {
        "cells": [
            {
                "cellID": CLUSTER,
                "aggregation": {
                    "totalReplicas": PODS_PER_APP,
                    "availableReplicas": available,
                    "readyReplicas": available,
                    "scheduledReplicas": PODS_PER_APP,
                    "runningReplicas": PODS_PER_APP,
                    "lastEventTime": now,
                },
                "admissionHistory": {
                    "buckets": [{"startTime": now, "podName": f"pod-{seq}", "counter": 1}]
                },
            }
        ],
        "summary": {
            "totalReplicas": PODS_PER_APP,
            "aggregatedAvailableReplicas": available,
            "estimatedAvailableReplicas": available - 1,
            # Unique per write, so that no PUT is a no-op.
            "maxLatencyMillis": seq,
            "aggregatedReady": available,
            "aggregatedScheduled": PODS_PER_APP,
            "aggregatedRunning": PODS_PER_APP,
        },
    }


# --- setup and seeding ------------------------------------------------------------------------


async def expect(reply: Reply, what: str, allowed: tuple[int, ...] = ()) -> Reply:
    if not reply.ok and reply.status not in allowed:
        raise HarnessError(f"{what}: HTTP {reply.status}: {reply.body[:300]!r}")
    return reply


async def install(client: Client) -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    await expect(
        await client.request(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
        ),
        "create CRD",
        (409,),
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        reply = await client.request("GET", PPR_PATH + "?limit=1")
        if reply.ok:
            break
        if time.monotonic() > deadline:
            raise HarnessError(f"podprotectors not served: HTTP {reply.status}")
        await asyncio.sleep(0.1)
    await expect(
        await client.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}),
        "create namespace",
        (409,),
    )


@dataclass
class SeedResult:
    what: str
    count: int
    seconds: float
    sandbox_cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def seed(
    clients: list[Client],
    what: str,
    path: str,
    bodies: list[dict[str, Any]],
    sandbox_pid: int,
) -> SeedResult:
    queue = deque(bodies)
    failures: list[str] = []

    async def worker(client: Client) -> None:
        while queue and not failures:
            body = queue.popleft()
            reply = await client.request("POST", path, body)
            if not reply.ok:
                failures.append(f"HTTP {reply.status}: {reply.body[:200]!r}")

    cpu0, t0 = cpu_seconds(sandbox_pid), time.monotonic()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(sandbox_pid) - cpu0
    if failures:
        raise HarnessError(f"seeding {what} failed: {failures[0]}")
    return SeedResult(what, len(bodies), elapsed, cpu)


@dataclass
class ListTiming:
    what: str
    items: int
    bytes: int
    seconds: list[float]


async def timed_list(client: Client, what: str, path: str, repeat: int) -> tuple[ListTiming, Any]:
    timing = ListTiming(what, 0, 0, [])
    body: Any = None
    for _ in range(repeat):
        reply = await expect(await client.request("GET", path, timeout=LIST_TIMEOUT), what)
        timing.seconds.append(reply.t_done - reply.t_send)
        timing.bytes = len(reply.body)
        body = reply.json()
        timing.items = len(body["items"])
    return timing, body


# --- watches (separate process) ---------------------------------------------------------------


@dataclass
class WatchSpec:
    kind: str  # "pods" or "podprotectors"
    path: str
    resource_version: str


def watch_worker(conn: Any, url: str, token: str, ca_file: str, specs: list[WatchSpec]) -> None:
    """Entry point of the watch process: open the watches, report ready, record every event
    until told to stop, send the records back."""
    try:
        asyncio.run(_watch_main(conn, url, token, Path(ca_file), specs))
    except Exception as exc:  # report instead of dying silently
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _watch_main(
    conn: Any, url: str, token: str, ca_file: Path, specs: list[WatchSpec]
) -> None:
    loop = asyncio.get_running_loop()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context(ca_file), limit=0),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        read_bufsize=1 << 22,
    )
    # Per watch: event (rv, type, name, receive time), highest rv seen, end reason.
    events: list[list[tuple[int, str, str, float]]] = [[] for _ in specs]
    highest = [int(s.resource_version) for s in specs]
    ended: list[str | None] = [None] * len(specs)
    opened = [asyncio.Event() for _ in specs]
    progress = asyncio.Event()

    async def run(i: int, spec: WatchSpec) -> None:
        query = f"?watch=1&resourceVersion={spec.resource_version}"
        try:
            async with session.get(url + spec.path + query) as resp:
                if resp.status != 200:
                    ended[i] = f"HTTP {resp.status}"
                    return
                opened[i].set()
                record = events[i].append
                loads, now = orjson.loads, time.monotonic
                async for line in resp.content:
                    t = now()
                    if not line.strip():
                        continue
                    event = loads(line)
                    kind = event["type"]
                    if kind == "ERROR":
                        ended[i] = f"ERROR event: {event['object'].get('message')}"
                        return
                    if kind == "BOOKMARK":
                        continue
                    meta = event["object"]["metadata"]
                    rv = int(meta["resourceVersion"])
                    record((rv, kind, meta["name"], t))
                    highest[i] = rv
                    progress.set()
                ended[i] = "closed by the server"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended[i] = f"{type(exc).__name__}: {exc}"
        finally:
            opened[i].set()
            progress.set()

    tasks = [loop.create_task(run(i, s)) for i, s in enumerate(specs)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), READY_TIMEOUT)
        conn.send(("ready", list(ended)))
        try:
            message = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            return  # the benchmark gave up
        targets: dict[str, int] = message[1]
        deadline = loop.time() + DRAIN_TIMEOUT

        def drained() -> bool:
            return all(
                ended[i] is not None or highest[i] >= targets.get(s.kind, 0)
                for i, s in enumerate(specs)
            )

        while not drained() and loop.time() < deadline:
            progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), max(0.0, deadline - loop.time()))
        drain_ok = drained()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
    conn.send(("done", {"events": events, "ended": ended, "drained": drain_ok}))


class WatchProcess:
    def __init__(self, url: str, token: str, ca_file: Path, specs: list[WatchSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.specs = specs
        self.proc = ctx.Process(
            target=watch_worker,
            args=(child, url, token, str(ca_file), specs),
            name="bench-watches",
            daemon=True,
        )
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    async def receive(self, timeout: float) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self.conn.poll, timeout)
        if not ready:
            raise HarnessError(f"watch process silent for {timeout:.0f} s")
        try:
            message = await loop.run_in_executor(None, self.conn.recv)
        except EOFError:
            raise HarnessError("watch process exited unexpectedly") from None
        if message[0] == "error":
            raise HarnessError(f"watch process failed: {message[1]}")
        return message

    def stop(self) -> None:
        # Closing our end first ends a child still waiting for "stop" (EOFError).
        self.conn.close()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# --- load ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Write:
    kind: str
    status: int  # 0: no HTTP answer (exception)
    t_send: float
    t_done: float
    rv: int = 0
    name: str = ""
    error: str = ""


@dataclass
class LoadClient:
    index: int
    client: Client
    rng: random.Random
    pod_names: list[str]
    protectors: dict[str, dict[str, Any]]  # owned: name → last stored object
    seq: Any
    records: list[Write]
    created: deque[str] = field(default_factory=deque)
    created_count: int = 0

    async def run(self, deadline: float) -> None:
        kinds = [k for k, _ in WRITE_MIX]
        weights = [w for _, w in WRITE_MIX]
        owned = sorted(self.protectors)
        while time.monotonic() < deadline:
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "ppr-status-put" and not owned:
                kind = "pod-status-patch"
            if kind == "pod-delete" and not self.created:
                kind = "pod-create"
            t_send = time.monotonic()
            try:
                write = await self.one(kind, owned)
            except (aiohttp.ClientError, TimeoutError) as exc:
                write = Write(kind, 0, t_send, time.monotonic(), error=type(exc).__name__)
            self.records.append(write)

    async def one(self, kind: str, owned: list[str]) -> Write:
        seq = next(self.seq)
        c = self.client
        if kind == "pod-status-patch":
            name = self.rng.choice(self.pod_names)
            reply = await c.request(
                "PATCH",
                f"{PODS_PATH}/{name}/status",
                pod_status_patch(seq, self.rng.random() < 0.8),
                MERGE_PATCH,
            )
        elif kind == "pod-label-patch":
            name = self.rng.choice(self.pod_names)
            patch = {"metadata": {"labels": {"bench.podseidon.io/rev": str(seq)}}}
            reply = await c.request("PATCH", f"{PODS_PATH}/{name}", patch, MERGE_PATCH)
        elif kind == "ppr-status-put":
            name = self.rng.choice(owned)
            current = self.protectors[name]
            body = {**current, "status": ppr_status(seq, self.rng)}
            reply = await c.request("PUT", f"{PPR_PATH}/{name}/status", body)
            if reply.ok:
                self.protectors[name] = reply.json()
            elif reply.status == 409:
                # Should not happen (each client owns its protectors); resync and go on.
                fresh = await c.request("GET", f"{PPR_PATH}/{name}")
                if fresh.ok:
                    self.protectors[name] = fresh.json()
        elif kind == "pod-create":
            self.created_count += 1
            name = f"bench-c{self.index}-{self.created_count}"
            app = app_label(self.rng.randrange(max(1, len(self.pod_names) // PODS_PER_APP)))
            # Bound to a node no sandbox kubelet owns, so that built-in controllers (when
            # enabled) leave it alone and every write stays the benchmark's own.
            node = f"node-{self.rng.randrange(100):03d}"
            reply = await c.request("POST", PODS_PATH, pod_body(name, app, node))
            if reply.ok:
                self.created.append(name)
        elif kind == "pod-delete":
            name = self.created.popleft()
            reply = await c.request("DELETE", f"{PODS_PATH}/{name}?gracePeriodSeconds=0")
        else:
            raise AssertionError(kind)
        write = Write(kind, reply.status, reply.t_send, reply.t_done, name=name)
        if reply.ok:
            write.rv = int(reply.json()["metadata"]["resourceVersion"])
        else:
            try:
                write.error = str(reply.json().get("reason") or reply.status)
            except (orjson.JSONDecodeError, AttributeError):
                write.error = str(reply.status)
        return write


# --- figures ------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def summarize_latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
        "min": min(values),
    }


def latency_text(stats: dict[str, float]) -> str:
    if not stats:
        return "no samples"
    return (
        f"p50 {ms(stats['p50'])}  p95 {ms(stats['p95'])}  p99 {ms(stats['p99'])}  "
        f"max {ms(stats['max'])}"
    )


def split_watches(total: int) -> tuple[int, int]:
    """(pod watches, podprotector watches): about one in five watches podprotectors."""
    if total <= 0:
        return 0, 0
    if total == 1:
        return 1, 0
    ppr = max(1, round(total / 5))
    return total - ppr, ppr


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything measured; reported once the sandbox has stopped (its GC log is written
    at exit)."""

    specs: list[WatchSpec]
    seeds: list[SeedResult] = field(default_factory=list)
    lists: list[ListTiming] = field(default_factory=list)
    records: list[Write] = field(default_factory=list)
    t0: float = 0.0
    t_end: float = 0.0
    # CPU samples at t0, t0 + 1 s, ... and at the end of the load.
    samples: list[CpuSample] = field(default_factory=list)
    after: CpuSample | None = None
    watch_data: dict[str, Any] = field(default_factory=dict)
    rss_seeded: float = 0.0
    rss_end: float = 0.0


async def sample_seconds(pids: dict[str, int], t0: float, n: int, out: list[CpuSample]) -> None:
    for k in range(1, n + 1):
        await asyncio.sleep(max(0.0, t0 + k - time.monotonic()))
        out.append(sample_cpu(pids))


async def benchmark(args: argparse.Namespace, sandbox: Sandbox) -> Run:
    pid = sandbox.proc.pid
    ctx = ssl_context(sandbox.ca_file)
    clients = [Client(sandbox.url, sandbox.token, ctx) for _ in range(args.clients)]
    admin = Client(sandbox.url, sandbox.token, ctx)
    watch_proc: WatchProcess | None = None
    try:
        await install(admin)
        n_apps = max(1, args.pods // PODS_PER_APP)
        pod_names = [f"pod-{i:05d}" for i in range(args.pods)]
        pods = [
            pod_body(name, app_label(i % n_apps), f"node-{i % 100:03d}")
            for i, name in enumerate(pod_names)
        ]
        pprs = [ppr_body(f"ppr-{i:05d}", app_label(i % n_apps)) for i in range(args.protectors)]
        n_pod_w, n_ppr_w = split_watches(args.watches)
        run = Run(specs=[])
        print(f"seeding {len(pods)} pods and {len(pprs)} podprotectors ...", flush=True)
        run.seeds.append(await seed(clients, "pods", PODS_PATH, pods, pid))
        if pprs:
            run.seeds.append(await seed(clients, "podprotectors", PPR_PATH, pprs, pid))
        run.rss_seeded = rss_mb(pid)

        timing, pod_list = await timed_list(admin, "pods (all)", "/api/v1/pods", 3)
        run.lists.append(timing)
        selector = quote(f"app={app_label(min(7, n_apps - 1))}")
        timing, _ = await timed_list(
            admin, "pods labelSelector=app", f"{PODS_PATH}?labelSelector={selector}", 10
        )
        run.lists.append(timing)
        ppr_path_all = f"/apis/{PPR_GROUP}/{PPR_VERSION}/{PPR_PLURAL}"
        timing, ppr_list = await timed_list(admin, "podprotectors (all)", ppr_path_all, 3)
        run.lists.append(timing)
        pod_rv = pod_list["metadata"]["resourceVersion"]
        ppr_rv = ppr_list["metadata"]["resourceVersion"]
        del pod_list

        run.specs = [WatchSpec("pods", "/api/v1/pods", pod_rv) for _ in range(n_pod_w)]
        run.specs += [WatchSpec("podprotectors", ppr_path_all, ppr_rv) for _ in range(n_ppr_w)]
        if run.specs:
            watch_proc = WatchProcess(sandbox.url, sandbox.token, sandbox.ca_file, run.specs)
            _, failed = await watch_proc.receive(READY_TIMEOUT + 30)
            if any(failed):
                raise HarnessError(f"watches failed to open: {failed}")

        seq = itertools.count(1)
        owned: list[dict[str, dict[str, Any]]] = [{} for _ in clients]
        for i, item in enumerate(ppr_list["items"]):
            owned[i % len(clients)][item["metadata"]["name"]] = item
        load = [
            LoadClient(
                i, c, random.Random(args.seed * 1000 + i), pod_names, owned[i], seq, run.records
            )
            for i, c in enumerate(clients)
        ]
        pids = {"sandbox": pid, "load": os.getpid()}
        if watch_proc is not None:
            pids["watches"] = watch_proc.pid
        print(f"write load for {args.seconds:g} s from {len(load)} clients ...", flush=True)
        run.samples.append(sample_cpu(pids))
        run.t0 = run.samples[0].t
        sampler = asyncio.get_running_loop().create_task(
            sample_seconds(pids, run.t0, int(args.seconds), run.samples)
        )
        await asyncio.gather(*(lc.run(run.t0 + args.seconds) for lc in load))
        run.t_end = time.monotonic()
        run.after = sample_cpu(pids)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler

        targets: dict[str, int] = defaultdict(int)
        for w in run.records:
            if w.rv:
                kind = WATCH_KIND_OF_WRITE[w.kind]
                targets[kind] = max(targets[kind], w.rv)
        run.watch_data = {"events": [], "ended": [], "drained": True}
        if watch_proc is not None:
            watch_proc.conn.send(("stop", dict(targets)))
            _, run.watch_data = await watch_proc.receive(DRAIN_TIMEOUT + 30)
        run.rss_end = rss_mb(pid)
        return run
    finally:
        for c in [*clients, admin]:
            await c.close()
        if watch_proc is not None:
            watch_proc.stop()


@dataclass
class GcPauses:
    """Collections of the sandbox's cyclic GC during the load window (--gc-stats)."""

    by_generation: dict[int, list[float]]
    longest: tuple[float, int, float] | None  # (seconds after t0, generation, pause)


def read_gc_log(path: Path, t0: float, t_end: float) -> GcPauses | None:
    if not path.exists():
        return None
    by_gen: dict[int, list[float]] = defaultdict(list)
    longest: tuple[float, int, float] | None = None
    for line in path.read_text().splitlines():
        t, gen, pause = line.split()
        if not t0 <= float(t) <= t_end:
            continue
        by_gen[int(gen)].append(float(pause))
        if longest is None or float(pause) > longest[2]:
            longest = (float(t) - float(pause) - t0, int(gen), float(pause))
    return GcPauses(dict(by_gen), longest)


def report(
    args: argparse.Namespace,
    out: dict[str, Any],
    run: Run,
    gc_pauses: GcPauses | None,
    sandbox_status: int | None,
) -> bool:
    """Print the figure block and the RESULT line; fill `out` for --json. True on PASS."""
    n_pod_w = sum(1 for s in run.specs if s.kind == "pods")
    n_ppr_w = len(run.specs) - n_pod_w
    ncpu = os.cpu_count() or 1
    print()
    print(
        f"=== sandbox benchmark {time.strftime('%Y-%m-%d %H:%M')}: {args.pods} pods, "
        f"{args.protectors} podprotectors, {len(run.specs)} watches ({n_pod_w} pods, {n_ppr_w} "
        f"podprotectors), {args.clients} clients, {args.seconds:g} s ==="
    )
    print(
        f"machine:            {ncpu} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load generator, watch process and "
        "sandbox all share these CPUs"
    )
    print(
        f"sandbox:            1 cluster, history window {args.history_window}, built-in "
        f"controllers: {out.get('controllers', 'n/a')}"
    )
    out["config"] = {
        "pods": args.pods,
        "protectors": args.protectors,
        "watches": {"pods": n_pod_w, "podprotectors": n_ppr_w},
        "clients": args.clients,
        "seconds": args.seconds,
        "cpus": ncpu,
        "python": platform.python_version(),
    }
    _report_setup(run, out)
    rate, error_rate = _report_writes(run, args.seconds, out)
    per_cpu = _report_cpu(run, ncpu, gc_pauses, out)
    watches_complete = _report_watches(run, out)
    if sandbox_status is None:
        print(f"sandbox did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM; killed")
    elif sandbox_status != 0:
        print(f"sandbox exit status {sandbox_status} on SIGTERM")

    target_sizes = (args.pods, args.protectors, len(run.specs)) == TARGET_SIZES
    why = []
    if rate < TARGET_WRITES_PER_SECOND:
        why.append(f"{rate:.0f} writes/s < {TARGET_WRITES_PER_SECOND}")
    if not watches_complete:
        why.append("watches missed events")
    if error_rate >= 0.01:
        why.append(f"error rate {error_rate:.1%}")
    passed = not why
    core_share = TARGET_WRITES_PER_SECOND / per_cpu if per_cpu else float("inf")
    print(
        f"RESULT: {'PASS' if passed else 'FAIL'} ≥ {TARGET_WRITES_PER_SECOND} writes/s sustained "
        f"with {args.pods} pods, {args.protectors} podprotectors and {len(run.specs)} open "
        f"watches: {rate:.0f}/s over {args.seconds:g} s; {per_cpu:.0f} writes per sandbox "
        f"CPU-s, so {TARGET_WRITES_PER_SECOND}/s costs {core_share:.0%} of one core"
        + (f" ({'; '.join(why)})" if why else "")
        + ("" if target_sizes else " [not the target sizes 10000/1000/10]")
    )
    out["result"] = {"pass": passed, "target_sizes": target_sizes, "reasons": why}
    return passed


def _report_setup(run: Run, out: dict[str, Any]) -> None:
    out["seed"] = {}
    for s in run.seeds:
        per_cpu = f"{s.count / s.sandbox_cpu:.0f}" if s.sandbox_cpu else "-"
        print(
            f"seed {s.what + ':':<15}{s.count} in {s.seconds:.2f} s = {s.rate:.0f}/s "
            f"(sandbox CPU {s.sandbox_cpu:.2f} s = {per_cpu} creates per sandbox CPU-s)"
        )
        out["seed"][s.what] = {
            "count": s.count,
            "seconds": s.seconds,
            "per_second": s.rate,
            "sandbox_cpu_seconds": s.sandbox_cpu,
        }
    out["lists"] = {}
    for lt in run.lists:
        print(
            f"list {lt.what + ':':<24}{lt.items} items, {lt.bytes / 1e6:.1f} MB, median "
            f"{ms(statistics.median(lt.seconds))} ms (min {ms(min(lt.seconds))}, max "
            f"{ms(max(lt.seconds))}) over {len(lt.seconds)}, no write load"
        )
        out["lists"][lt.what] = {"items": lt.items, "bytes": lt.bytes, "seconds": lt.seconds}


def _ok(w: Write) -> bool:
    return 200 <= w.status < 300


def _report_writes(run: Run, window: float, out: dict[str, Any]) -> tuple[float, float]:
    """Successful writes answered inside the window; returns (writes/s, error rate)."""
    t_stop = run.t0 + window
    in_window = [w for w in run.records if _ok(w) and w.t_done <= t_stop]
    errors = sum(1 for w in run.records if not _ok(w))
    rate = len(in_window) / window
    per_second = Counter(int(w.t_done - run.t0) for w in in_window)
    series = [per_second.get(i, 0) for i in range(int(window))]
    print(
        f"writes:             {len(in_window)} ok in {window:g} s = {rate:.0f}/s, "
        f"errors {errors} (median second {statistics.median(series or [0]):.0f}/s, "
        f"slowest {min(series or [0])}/s)"
    )
    out["writes"] = {
        "ok": len(in_window),
        "per_second": rate,
        "errors": errors,
        "per_second_series": series,
        "kinds": {},
    }
    by_kind: dict[str, list[Write]] = defaultdict(list)
    for w in run.records:
        by_kind[w.kind].append(w)
    for kind, _ in WRITE_MIX:
        ws = by_kind.get(kind, [])
        good = [w for w in ws if _ok(w)]
        n_ok = sum(1 for w in good if w.t_done <= t_stop)
        bad = Counter(w.error or str(w.status) for w in ws if not _ok(w))
        rtt = summarize_latency([w.t_done - w.t_send for w in good])
        bad_text = ", ".join(f"{k} x{v}" for k, v in bad.items()) or "0"
        print(
            f"  {kind:<18}{n_ok / window:6.0f}/s  errors {bad_text:<4} request "
            f"{latency_text(rtt)}{' ms' if rtt else ''}"
        )
        out["writes"]["kinds"][kind] = {
            "per_second": n_ok / window,
            "errors": dict(bad),
            "request_seconds": rtt,
        }
    if series:
        print(f"  writes by second:        {' '.join(str(v) for v in series)}")
    return rate, (errors / len(run.records) if run.records else 1.0)


def _report_cpu(run: Run, ncpu: int, gc_pauses: GcPauses | None, out: dict[str, Any]) -> float:
    """CPU over the load window and second by second; returns writes per sandbox CPU-s."""
    first, after = run.samples[0], run.after
    assert after is not None
    dt = after.t - first.t
    cpu = {k: after.procs.get(k, 0.0) - first.procs.get(k, 0.0) for k in first.procs}
    busy = _busy_seconds(first, after)
    steal = (after.machine[2] - first.machine[2]) / _CLK_TCK
    sandbox_cpu = cpu.get("sandbox", 0.0)
    # Every write answered while the CPU was being measured, late finishers included.
    writes = sum(1 for w in run.records if _ok(w) and run.t0 <= w.t_done <= run.t_end)
    per_cpu = writes / sandbox_cpu if sandbox_cpu else 0.0
    print(
        f"sandbox CPU:        {sandbox_cpu:.2f} s in {dt:.2f} s ({sandbox_cpu / dt:.0%} of one "
        f"core) = {per_cpu:.0f} writes per sandbox CPU-second; RSS {run.rss_seeded:.0f} MB "
        f"seeded, {run.rss_end:.0f} MB at end"
    )
    print(
        f"other CPU:          load generator {cpu.get('load', 0.0):.2f} s, watch process "
        f"{cpu.get('watches', 0.0):.2f} s; machine busy {busy:.2f} of {ncpu * dt:.2f} CPU-s "
        f"({max(0.0, busy - sum(cpu.values())):.2f} s not ours, steal {steal:.2f} s)"
    )
    sandbox_share, machine_share = [], []
    for a, b in itertools.pairwise(run.samples):
        span = b.t - a.t
        sandbox_share.append((b.procs.get("sandbox", 0) - a.procs.get("sandbox", 0)) / span)
        machine_share.append(_busy_seconds(a, b) / span / ncpu)
    if sandbox_share:
        print(f"  sandbox % of a core:     {' '.join(f'{v:.0%}' for v in sandbox_share)}")
        print(f"  machine % busy:          {' '.join(f'{v:.0%}' for v in machine_share)}")
    out["cpu"] = {
        "window_seconds": dt,
        "sandbox_seconds": sandbox_cpu,
        "load_generator_seconds": cpu.get("load", 0.0),
        "watch_process_seconds": cpu.get("watches", 0.0),
        "machine_busy_seconds": busy,
        "steal_seconds": steal,
        "writes_per_sandbox_cpu_second": per_cpu,
        "sandbox_share_by_second": sandbox_share,
        "machine_share_by_second": machine_share,
        "sandbox_rss_mb": {"seeded": run.rss_seeded, "end": run.rss_end},
    }
    if gc_pauses is not None:
        parts = []
        for gen in sorted(gc_pauses.by_generation):
            v = gc_pauses.by_generation[gen]
            parts.append(f"gen{gen} {len(v)} x, {ms(sum(v))} ms (max {ms(max(v))})")
        line = ", ".join(parts) or "no collections"
        if gc_pauses.longest is not None:
            at, gen, pause = gc_pauses.longest
            line += f"; longest {ms(pause)} ms (gen{gen}) at +{at:.1f} s"
        print(f"sandbox GC:         {line}")
        out["gc"] = {
            "by_generation": {str(g): v for g, v in gc_pauses.by_generation.items()},
            "longest": gc_pauses.longest,
        }
    return per_cpu


def _report_watches(run: Run, out: dict[str, Any]) -> bool:
    """Watch delivery latency, writes matched to events by resourceVersion; returns whether
    every watch saw every write of its kind."""
    print("watch delivery, ms (write response received → event received on the watch):")
    write_rv: dict[str, dict[int, Write]] = defaultdict(dict)
    for w in run.records:
        if _ok(w):
            write_rv[WATCH_KIND_OF_WRITE[w.kind]][w.rv] = w
    out["watches"] = {}
    complete = True
    slowest: tuple[float, float] | None = None  # (latency, seconds after t0)
    for kind in ("pods", "podprotectors"):
        indexes = [i for i, s in enumerate(run.specs) if s.kind == kind]
        if not indexes:
            continue
        from_done: list[float] = []
        from_send: list[float] = []
        missing = received = 0
        problems = []
        for i in indexes:
            events = run.watch_data["events"][i]
            received += len(events)
            seen = {rv: t for rv, _type, _name, t in events}
            for rv, w in write_rv[kind].items():
                t = seen.get(rv)
                if t is None:
                    missing += 1
                    continue
                from_done.append(t - w.t_done)
                from_send.append(t - w.t_send)
                if slowest is None or t - w.t_done > slowest[0]:
                    slowest = (t - w.t_done, w.t_done - run.t0)
            if run.watch_data["ended"][i]:
                problems.append(run.watch_data["ended"][i])
        done_stats, send_stats = summarize_latency(from_done), summarize_latency(from_send)
        early = sum(1 for v in from_done if v < 0)
        count = len(indexes)
        label = f"{kind} ({count} watch{'es' if count > 1 else ''}):"
        print(
            f"  {label:<27}{latency_text(done_stats)}  | from request sent: "
            f"p50 {ms(send_stats.get('p50', 0))}  p99 {ms(send_stats.get('p99', 0))}"
        )
        print(
            f"  {'':<27}{len(from_done)} matched of {len(write_rv[kind]) * count} expected, "
            f"{missing} missing, {received} events received, {early} before the write response"
            + (f"; {'; '.join(problems)}" if problems else "")
        )
        complete = complete and missing == 0 and not problems
        out["watches"][kind] = {
            "watches": count,
            "from_response_seconds": done_stats,
            "from_send_seconds": send_stats,
            "matched": len(from_done),
            "missing": missing,
            "received": received,
            "before_response": early,
            "problems": problems,
        }
    if slowest is not None:
        print(f"  slowest delivery: write answered at +{slowest[1]:.1f} s ({ms(slowest[0])} ms)")
    if not run.watch_data.get("drained", True):
        print("  watches did not catch up within the drain timeout")
        complete = False
    return complete


def _busy_seconds(a: CpuSample, b: CpuSample) -> float:
    total = b.machine[0] - a.machine[0]
    idle = b.machine[1] - a.machine[1]
    return (total - idle) / _CLK_TCK


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=10000, help="pods to seed (default 10000)")
    parser.add_argument(
        "--protectors", type=int, default=1000, help="podprotectors to seed (default 1000)"
    )
    parser.add_argument(
        "--watches",
        type=int,
        default=10,
        help="open watches; about one in five on podprotectors, the rest on pods (default 10)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration (default 20)")
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent writing clients (default 8)"
    )
    parser.add_argument(
        "--history-window",
        type=int,
        default=None,
        help="sandbox watch history in events (default: pods + podprotectors + 10000, enough "
        "for watches opened at the seed lists; larger windows keep more old versions alive)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the write mix")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--check", action="store_true", help="exit 1 when the result is FAIL")
    parser.add_argument(
        "--controllers",
        default="none",
        help="the sandbox's --controllers (built-in controllers: all, none, a list), passed "
        "when the sandbox has that option (default none: measure the API server alone)",
    )
    diagnose = parser.add_mutually_exclusive_group()
    diagnose.add_argument(
        "--gc-stats",
        action="store_true",
        help="time the sandbox's garbage collections (runs it through a small `python -c` "
        "prologue instead of `-m sandbox`)",
    )
    diagnose.add_argument(
        "--sandbox-profile",
        type=Path,
        help="run the sandbox under cProfile and write its stats here (slows it down)",
    )
    args = parser.parse_args(argv)
    if args.pods < 1 or args.clients < 1 or args.seconds < 1 or args.protectors < 0:
        parser.error("--pods and --clients must be ≥ 1, --seconds ≥ 1, --protectors ≥ 0")
    if args.watches < 0:
        parser.error("--watches must be ≥ 0")
    if args.history_window is None:
        args.history_window = args.pods + args.protectors + 10000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="podseidon-bench-"))
    state_dir = tmp / "state"
    gc_log = tmp / "gc.log" if args.gc_stats else None
    sandbox: Sandbox | None = None
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d")}
    code = 2
    try:
        print(f"starting sandbox (state in {state_dir}) ...", flush=True)
        profile = args.sandbox_profile.resolve() if args.sandbox_profile else None
        extra = []
        if "--controllers" in sandbox_options():
            extra += ["--controllers", args.controllers]
            out["controllers"] = args.controllers
        else:
            out["controllers"] = "n/a"
        sandbox = start_sandbox(state_dir, args.history_window, extra, profile, gc_log)
        print(f"sandbox pid {sandbox.proc.pid} at {sandbox.url}", flush=True)
        run = asyncio.run(benchmark(args, sandbox))
        status = stop_process(sandbox.proc)
        gc_pauses = read_gc_log(gc_log, run.t0, run.t_end) if gc_log else None
        passed = report(args, out, run, gc_pauses, status)
        code = 1 if args.check and not passed else 0
        if args.json is not None:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    except (HarnessError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(f"benchmark harness error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if sandbox is not None:
            with contextlib.suppress(OSError):
                tail = sandbox.log_file.read_text(errors="replace")[-2000:]
                if tail:
                    print(f"--- sandbox log tail ---\n{tail}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    finally:
        if sandbox is not None:
            stop_process(sandbox.proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
