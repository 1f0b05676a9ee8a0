"""`benchmarks/sandbox.py` at toy sizes, so that the script cannot rot unnoticed.

Only checks that it runs end to end and prints its figure block; the throughput verdict is
not asserted (a busy CI machine may well miss 500 writes/s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.integration

FIGURE_LINES = (
    "=== sandbox benchmark ",
    "seed pods:",
    "seed podprotectors:",
    "list pods (all):",
    "list pods labelSelector=app:",
    "writes:",
    "  pod-status-patch",
    "  ppr-status-put",
    "sandbox CPU:",
    "other CPU:",
    "watch delivery, ms",
    "  pods (1 watch):",
    "  podprotectors (1 watch):",
    "RESULT: ",
)


def run_benchmark(script: str, *args: str, timeout: float) -> str:
    """Run benchmarks/<script> with `args`; its standard output, once it exited 0."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def test_sandbox_benchmark_runs(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    out = run_benchmark(
        "sandbox.py",
        *("--pods", "200", "--protectors", "20", "--watches", "2", "--seconds", "2"),
        *("--clients", "4", "--json", str(figures)),
        timeout=180,
    )
    lines = out.splitlines()
    for prefix in FIGURE_LINES:
        assert any(line.startswith(prefix) for line in lines), f"no {prefix!r} line:\n{out}"
    result = next(line for line in lines if line.startswith("RESULT: "))
    assert result.split()[1] in ("PASS", "FAIL")

    data = json.loads(figures.read_text())
    assert data["seed"]["pods"]["count"] == 200
    assert data["lists"]["pods (all)"]["items"] == 200
    assert data["lists"]["pods labelSelector=app"]["items"] == 10
    assert data["writes"]["ok"] > 0
    for kind in ("pods", "podprotectors"):
        # Every successful write reached every watch of its kind.
        assert data["watches"][kind]["missing"] == 0, data["watches"][kind]
        assert data["watches"][kind]["matched"] > 0


def test_webhook_benchmark_runs(tmp_path: Path) -> None:
    """`benchmarks/webhook.py` at toy sizes, one compared configuration included."""
    figures = tmp_path / "webhook.json"
    out = run_benchmark(
        "webhook.py",
        *("--protectors", "100", "--deletes", "5", "--warm-up", "3"),
        *("--concurrent", "6", "--rounds", "1", "--idle-rounds", "1", "--idle-seconds", "2.5"),
        *("--reviews", "200", "--aggregator-seconds", "2", "--json", str(figures)),
        *("--compare", "batch_window_millis=0,bucket_refresh_after_millis=0"),
        timeout=300,
    )
    assert "target median <= 50 us: PASS" in out
    assert out.count("protected - unmatched = ") == 2, out
    writes = [line for line in out.splitlines() if "writes per admitted deletion over 1" in line]
    assert len(writes) == 2, out
    assert "reviews straight at the webhook" in out
    assert "unmatched DELETE after 2.5 s of quiet" in out
    assert "while an aggregator writes the same PodProtector's status" in out

    data = json.loads(figures.read_text())
    assert data["warm_up_rounds"] == 3
    for kind in ("bare", "unmatched", "protected"):
        assert data["delete_ms"][kind]["median"] > 0
        assert data["delete_ms"][kind]["n"] == 5  # the warm-up rounds are not measured
    assert data["status_put_ms"]["median"] > 0
    assert (
        data["protected_minus_unmatched_over_put"]
        == (data["configurations"]["default"]["protected_minus_unmatched_over_put"])
    )
    assert data["unmatched_review_server_ms"]["median_ms"] > 0
    idle = data["idle_delete_ms"]
    assert (idle["idle_seconds"], idle["after_idle"]["n"], idle["back_to_back"]["n"]) == (2.5, 1, 2)
    assert data["reviews_per_second"] > 0 and data["reviews_answered"] == 200
    assert 0 < data["writes_per_admitted_deletion"] <= 1
    assert data["with_aggregator"]["delete_ms"]["n"] > 0
    # The phases come from the webhook's own histogram: every deletion was parsed, looked up,
    # and the protected ones written.
    phases = data["configurations"]["default"]["phases"]
    assert {"server", "parse", "index", "quota", "status_write", "response"} <= set(phases)
    assert phases["status_write"]["count"] >= 5


def test_webhook_ab_benchmark_runs(tmp_path: Path) -> None:
    """`benchmarks/webhook_ab.py` against this very checkout, at a toy size."""
    figures = tmp_path / "ab.json"
    out = run_benchmark(
        "webhook_ab.py", str(REPO), "--deletes", "5", "--json", str(figures), timeout=300
    )
    assert "ms smaller here than in the other checkout" in out
    data = json.loads(figures.read_text())
    for side in ("this", "other"):
        assert data[side]["refused"] == 0
        assert data[side]["protected_ms"] > 0 and data[side]["status_put_ms"] > 0
