"""Webhook benchmarks: index match time, DELETE latency with/without the webhook, review
throughput, and status writes per admitted deletion.

    .venv/bin/python benchmarks/webhook.py [--protectors 10000] [--deletes 200] [--clients 16]
        [--rounds 3] [--compare OPTION=MILLIS[,OPTION=MILLIS]]...

Starts its own sandbox clusters and the real webhook (gunicorn, TLS, 3 workers) on loopback,
prints its figures and exits. Latencies are reported as ratios measured side by side in one run,
because this machine is shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
import timeit
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

from tests.integration.conftest import start_sandbox, stop_sandbox  # noqa: E402
from tests.integration.webhook_env import (  # noqa: E402
    create_protector,
    install_crd,
    ready_pod,
    register,
    start_webhook,
    unregister,
    write_aggregation,
)
from webhook.protector_index import ProtectorIndex  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_index(protectors: int) -> dict[str, float]:
    """Median time of one pod→protectors lookup with N protectors in one namespace."""
    index = ProtectorIndex()
    for i in range(protectors):
        index.on_add(
            {
                "apiVersion": "podseidon.kubewharf.io/v1alpha1",
                "kind": "PodProtector",
                "metadata": {"name": f"p{i}", "namespace": "bench", "resourceVersion": "1"},
                "spec": {
                    "minAvailable": 1,
                    "selector": {"matchLabels": {"app": f"app-{i}", "tier": "web"}},
                },
            }
        )
    target = protectors // 2
    labels = {"app": f"app-{target}", "tier": "web", "pod-template-hash": "abc12", "team": "x"}
    assert [p.name for p in index.matching("bench", labels)] == [f"p{target}"]
    timer = timeit.Timer(lambda: index.matching("bench", labels))
    loops = 2000
    samples = [t / loops * 1e6 for t in timer.repeat(repeat=25, number=loops)]
    # The naive alternative, side by side: a scan over every protector in the namespace.
    everything = [index.get("bench", f"p{i}") for i in range(protectors)]
    scan = timeit.Timer(
        lambda: [p for p in everything if p.spec.label_selector.matches(labels)]
    ).repeat(repeat=5, number=5)
    scan_us = statistics.median(t / 5 * 1e6 for t in scan)
    return {"median_us": statistics.median(samples), "p_max_us": max(samples), "scan_us": scan_us}


def review_rate(hook, body: bytes, total: int, clients: int) -> tuple[float, int]:
    """Reviews per second from ``clients`` threads, each on its own kept-alive connection,
    as kube-apiserver's HTTP/1.1 client pool would send them."""
    import http.client

    host, port = hook.url.removeprefix("https://").split(":")
    local = threading.local()
    ok = 0
    lock = threading.Lock()

    def one(_: int) -> None:
        nonlocal ok
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPSConnection(
                host, int(port), context=hook.ssl_context(), timeout=30
            )
        connection.request("POST", "/cell-a", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status == 200:
            with lock:
                ok += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - started), ok


def client_for(kubeconfig: Path, pool: int = 64) -> k8s.CoreV1Api:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def timed_deletes(core: k8s.CoreV1Api, ns: str, names: list[str], clients: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(name: str) -> None:
        started = time.perf_counter()
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespaced_pod(name, ns)
        with lock:
            latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, names))
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protectors", type=int, default=10000)
    parser.add_argument("--deletes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--batch-window-ms", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="bursts per webhook configuration")
    parser.add_argument(
        "--compare",
        action="append",
        type=_webhook_options,
        default=[],
        metavar="OPTION=MILLIS[,OPTION=MILLIS]",
        help="also measure the status writes of a webhook with these options, side by side "
        "with the default, e.g. --compare bucket_refresh_after_millis=0",
    )
    args = parser.parse_args()

    figures = bench_index(args.protectors)
    print(f"index: {args.protectors} protectors in one namespace")
    print(
        f"  match median {figures['median_us']:.1f} us (worst repeat {figures['p_max_us']:.1f})"
        f"; full scan {figures['scan_us']:.0f} us; ratio scan/index "
        f"{figures['scan_us'] / figures['median_us']:.0f}x"
    )
    print(f"  target median <= 50 us: {'PASS' if figures['median_us'] <= 50 else 'FAIL'}")

    with tempfile.TemporaryDirectory(prefix="podseidon-bench-") as tmp:
        work = Path(tmp)
        state = work / "sandbox"
        state.mkdir()
        sandbox = start_sandbox(state, ("core", "cell-a", "cell-b"))
        kubeconfigs = {n: state / f"{n}.kubeconfig" for n in ("core", "cell-a", "cell-b")}
        core_api = k8s_config.new_client_from_config(config_file=str(kubeconfigs["core"]))
        install_crd(core_api)
        options = {}
        if args.batch_window_ms is not None:
            options["batch_window_millis"] = args.batch_window_ms
        hook = start_webhook(work, kubeconfigs, tls_dir=work / "tls", webhook_options=options)
        print(f"webhook batch window: {options.get('batch_window_millis', 'default')} ms")
        # Other webhook options, measured side by side with the default in the same run.
        extra_hooks = {}
        try:
            for i, extra_options in enumerate(args.compare):
                (work / f"compare-{i}").mkdir()
                label = ",".join(f"{k}={v}" for k, v in extra_options.items())
                extra_hooks[label] = start_webhook(
                    work / f"compare-{i}",
                    kubeconfigs,
                    tls_dir=work / "tls",
                    webhook_options={**options, **extra_options},
                )
        except BaseException:
            for extra in (hook, *extra_hooks.values()):
                extra.stop()
            stop_sandbox(sandbox)
            raise
        try:
            cell = client_for(kubeconfigs["cell-a"])
            ns = f"bench-{uuid.uuid4().hex[:6]}"
            for name in ("core", "cell-a"):
                client_for(kubeconfigs[name]).create_namespace({"metadata": {"name": ns}})
            n = args.deletes
            hooks = {"default": hook, **extra_hooks}
            labels = {"app": "bench"}
            names = [f"p{i}" for i in range(n * (len(hooks) + 1))]
            for name in names:
                ready_pod(cell, ns, name, labels)
            unused = iter(names)
            create_protector(core_api, ns, "bench", 0, labels)
            write_aggregation(core_api, ns, "bench", {"cell-a": 10 * n * len(hooks)})
            time.sleep(1)
            # Side by side: the same number of pods deleted through each webhook and with none,
            # interleaved in blocks so drift on a shared machine hits all alike.
            latencies: dict[str, list[float]] = {label: [] for label in (*hooks, "without")}
            block = max(n // 5, 1)
            for _ in range(0, n, block):
                for label in latencies:
                    if label != "without":
                        register(hooks[label], "cell-a")
                        time.sleep(0.3)
                    chosen = [next(unused) for _ in range(block)]
                    latencies[label] += timed_deletes(cell, ns, chosen, 1)
                    if label != "without":
                        unregister(cell.api_client)
                        time.sleep(0.3)
            without = latencies["without"]
            print(f"pod DELETE through the sandbox, sequential, {len(without)} each:")
            for label, values in latencies.items():
                ratio = ""
                if label != "without":
                    ratio = (
                        f"; ratio to without: median "
                        f"{statistics.median(values) / statistics.median(without):.2f}x, p99 "
                        f"{percentile(values, 0.99) / percentile(without, 0.99):.2f}x"
                    )
                print(
                    f"  {label:<40} median {statistics.median(values) * 1000:.2f} ms, "
                    f"p99 {percentile(values, 0.99) * 1000:.2f} ms{ratio}"
                )

            # Reviews per second straight at the webhook, 16 concurrent clients.
            body = json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {
                        "uid": "bench",
                        "operation": "DELETE",
                        "namespace": ns,
                        "name": "x",
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "userInfo": {"username": "bench"},
                        "oldObject": {
                            "metadata": {
                                "name": "x",
                                "namespace": ns,
                                "uid": "u-x",
                                "labels": {"app": "other"},
                            },
                            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                        },
                    },
                }
            ).encode()
            total = 4000
            rate, ok = review_rate(hook, body, total, args.clients)
            print(
                f"reviews straight at the webhook, {args.clients} keep-alive clients: "
                f"{rate:.0f}/s ({ok}/{total} answered 200)"
            )

            print(f"status writes per admitted deletion, {args.concurrent} concurrent deletions:")
            report_writes(
                {"default": hook, **extra_hooks},
                cell,
                core_api,
                kubeconfigs,
                args.concurrent,
                args.rounds,
            )
        finally:
            hook.stop()
            for extra in extra_hooks.values():
                extra.stop()
            stop_sandbox(sandbox)
    return 0


def report_writes(
    hooks: dict[str, Any],
    cell: k8s.CoreV1Api,
    core_api: Any,
    kubeconfigs: dict[str, Path],
    concurrent: int,
    rounds: int,
) -> None:
    """Bursts of concurrent deletions of one protector's pods, the webhooks taking turns."""
    totals = {label: [0.0, 0.0, 0.0, 0.0] for label in hooks}  # admitted, writes, batches, retries
    for _ in range(rounds):
        for label, hook in hooks.items():
            figures = write_burst(hook, cell, core_api, kubeconfigs, concurrent)
            for i, value in enumerate(figures):
                totals[label][i] += value
    for label, (admitted, writes, batches, retries) in totals.items():
        ratio = writes / admitted if admitted else float("inf")
        verdict = "PASS" if ratio <= 0.2 else "FAIL"
        print(
            f"  {label:<40} {ratio:.2f} writes per admitted deletion over {rounds} bursts "
            f"({admitted:.0f} admitted, {writes:.0f} writes, {batches:.0f} batches, "
            f"{retries:.0f} conflict retries) target <= 0.2: {verdict}"
        )


def write_burst(
    hook: Any,
    cell: k8s.CoreV1Api,
    core_api: Any,
    kubeconfigs: dict[str, Path],
    concurrent: int,
) -> tuple[int, float, float, float]:
    ns = f"burst-{uuid.uuid4().hex[:6]}"
    for name in ("core", "cell-a"):
        client_for(kubeconfigs[name]).create_namespace({"metadata": {"name": ns}})
    register(hook, "cell-a")
    try:
        for i in range(concurrent):
            ready_pod(cell, ns, f"q{i}", {"app": "burst"})
        create_protector(core_api, ns, "burst", 0, {"app": "burst"})
        write_aggregation(core_api, ns, "burst", {"cell-a": 10 * concurrent})
        time.sleep(1)
        before = hook.metrics()
        barrier = threading.Barrier(concurrent)

        def burst(i: int) -> int:
            barrier.wait()
            try:
                cell.delete_namespaced_pod(f"q{i}", ns)
                return 200
            except k8s.ApiException as error:
                return error.status

        with ThreadPoolExecutor(max_workers=concurrent) as pool:
            results = list(pool.map(burst, range(concurrent)))
        after = hook.metrics()
    finally:
        unregister(cell.api_client)
    return (
        results.count(200),
        *(
            _counter(after, metric) - _counter(before, metric)
            for metric in (
                "webhook_status_write_total",
                "retrybatch_execute_batch_size_count",
                "retrybatch_submit_retry_count_total",
            )
        ),
    )


def _webhook_options(text: str) -> dict[str, int]:
    options = {}
    for pair in text.split(","):
        key, _, value = pair.partition("=")
        if not key or not value.isdigit():
            raise argparse.ArgumentTypeError(f"expected OPTION=MILLIS, got {pair!r}")
        options[key] = int(value)
    return options


def _counter(metrics: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


if __name__ == "__main__":
    raise SystemExit(main())
