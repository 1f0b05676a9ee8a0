"""`benchmarks/controllers.py` at toy sizes, so that the script cannot rot unnoticed.

Only checks that it runs end to end and prints its figure block; the figures themselves mean
nothing at these sizes. The second test runs it the way it runs against real clusters
(``--kubeconfigs``), on a sandbox started here, and checks that it cleaned up after itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kubernetes import client, config

from .conftest import CLUSTER_NAMES, start_sandbox, stop_sandbox
from .test_benchmark_smoke import run_benchmark

pytestmark = pytest.mark.integration

FIGURE_LINES = (
    "=== controllers benchmark ",
    "machine:",
    "clusters:",
    "seed:",
    "memory:",
    "cold start:",
    "idle:",
    "burst:",
    "convergence:",
    "write rate:",
    "target:",
    "aggregator CPU:",
    "    status writes/s:",
    "generator:",
    "              restarted with all 5 in place:",
)
TOY = (
    *("--pprs", "10", "--flips", "20", "--deployments", "5"),
    *("--aggregation-rate-ms", "200", "--idle-seconds", "0.5", "--clients", "4"),
    *("--poll-interval", "0.2", "--generator-poll-interval", "0.1", "--timeout", "60"),
)


def check_figures(out: str, figures: Path) -> dict:
    lines = out.splitlines()
    for prefix in FIGURE_LINES:
        assert any(line.startswith(prefix) for line in lines), f"no {prefix!r} line:\n{out}"
    data = json.loads(figures.read_text())
    assert data["seed_pods"]["count"] == 100  # 10 protectors x 5 pods x 2 cells
    assert data["memory"]["pods"] == data["memory_untransformed"]["pods"] == 100
    assert data["cold"]["converged"] and data["burst"]["converged"]
    assert data["burst"]["flips"] == 20
    assert data["burst"]["counts"]["status_writes"] > 0
    assert data["burst"]["needed_writes"] == 20  # every flip hits its own protector and cell
    assert data["write_rate"]["writes"] == 40  # 10 protectors x two writes per cell
    assert data["generator"]["writes"]["protector creates"] == 5
    restart = data["generator"]["restart"]
    assert restart["reconciles"] >= 5 and restart["writes"] == 0  # all in place: verified
    return data


def test_controllers_benchmark_runs(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    out = run_benchmark("controllers.py", *TOY, "--profile", "--json", str(figures), timeout=180)
    data = check_figures(out, figures)
    assert "reconcile workers" in data["profile_burst"]
    assert any(line.startswith("profile (burst") for line in out.splitlines())


def test_controllers_benchmark_one_process_per_cell(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    out = run_benchmark(
        "controllers.py", *TOY, "--process-per-cell", "--json", str(figures), timeout=180
    )
    assert "aggregators: one process per cell" in out
    check_figures(out, figures)


def test_controllers_benchmark_against_given_clusters(tmp_path: Path) -> None:
    """With PODSEIDON_TEST_KUBECONFIGS the clusters are those; otherwise a sandbox of our own,
    addressed only through its kubeconfigs, as real clusters would be."""
    external = os.environ.get("PODSEIDON_TEST_KUBECONFIGS")
    sandbox = None
    if external:
        folder = Path(external)
    else:
        folder = tmp_path / "state"
        folder.mkdir()
        sandbox = start_sandbox(folder, CLUSTER_NAMES, ("--history-window", "5000"))
    try:
        figures = tmp_path / "figures.json"
        out = run_benchmark(
            "controllers.py",
            *TOY,
            *("--kubeconfigs", str(folder), "--json", str(figures)),
            timeout=240,
        )
        assert f"clusters:     real clusters ({folder});" in out
        check_figures(out, figures)
        # Its namespaces are gone (or going): nothing is left behind in a real cluster.
        kubeconfigs = dict(
            line.split("=", 1)
            for line in out.splitlines()[0].removeprefix("clusters: ").split(", ")
        )
        for name in CLUSTER_NAMES:
            api = config.new_client_from_config(config_file=kubeconfigs[name])
            try:
                left = {
                    ns.metadata.name
                    for ns in client.CoreV1Api(api).list_namespace().items
                    if ns.status.phase == "Active"
                }
            finally:
                api.close()
            assert not left & {"bench", "bench-gen"}, (name, left)
    finally:
        if sandbox is not None:
            assert stop_sandbox(sandbox) == 0
