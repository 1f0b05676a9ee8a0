"""`benchmarks/controllers.py` at toy sizes, so that the script cannot rot unnoticed.

Only checks that it runs end to end and prints its figure block; the figures themselves mean
nothing at these sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_benchmark_smoke import run_benchmark

pytestmark = pytest.mark.integration

FIGURE_LINES = (
    "=== controllers benchmark ",
    "machine:",
    "seed:",
    "memory:",
    "cold start:",
    "idle:",
    "burst:",
    "convergence:",
    "aggregator CPU:",
    "    status writes/s:",
    "generator:",
)


def test_controllers_benchmark_runs(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    out = run_benchmark(
        "controllers.py",
        *("--pprs", "10", "--flips", "20", "--deployments", "5"),
        *("--aggregation-rate-ms", "200", "--idle-seconds", "0.5", "--clients", "4"),
        *("--poll-interval", "0.2", "--generator-poll-interval", "0.1", "--timeout", "60"),
        *("--json", str(figures)),
        timeout=120,
    )
    lines = out.splitlines()
    for prefix in FIGURE_LINES:
        assert any(line.startswith(prefix) for line in lines), f"no {prefix!r} line:\n{out}"

    data = json.loads(figures.read_text())
    assert data["seed_pods"]["count"] == 100  # 10 protectors x 5 pods x 2 cells
    assert data["memory"]["pods"] == data["memory_untransformed"]["pods"] == 100
    assert data["cold"]["converged"] and data["burst"]["converged"]
    assert data["burst"]["flips"] == 20
    assert data["burst"]["counts"]["status_writes"] > 0
    assert data["generator"]["writes"]["protector creates"] == 5
