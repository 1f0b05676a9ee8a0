"""`benchmarks/console.py` at toy sizes, so that the script cannot rot unnoticed.

Checks that it runs end to end, prints every figure line and its verdict, and that the console
asked no cluster for anything; the verdict itself is not asserted (a busy CI machine may be
noisy enough to miss the ratio).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIGURES = ("api first page", "api filter+sort", "html first page", "html middle page")


def test_console_benchmark_runs() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "console.py"),
            *("--sizes", "10,100,200", "--repeats", "3", "--warmup", "1"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout
    lines = out.splitlines()
    assert lines[0].startswith("=== console benchmark "), out
    number = r"\d+\.\d\d"
    for figure in FIGURES:
        # figure, rows on the page, N=10 median / p95, N=200 median / p95, ratio, like-for-like.
        pattern = (
            rf"{re.escape(figure)} +\d+/\d+ +{number} / {number} +{number} / {number} +{number}"
            rf" +N=\d+ {number} +{number}$"
        )
        assert any(re.match(pattern, line) for line in lines), f"no {figure!r} line:\n{out}"
    assert "fleet N=200: 8 namespaces, 2 cells" in out
    assert "cluster clients asked for during the run: 0 (must be 0)" in out
    assert re.search(r"^page as fast as 10: (PASS|FAIL) \(", out, re.MULTILINE), out


def test_console_benchmark_refuses_bad_sizes() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "console.py"), "--sizes", "200,10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "need at least two increasing positive sizes" in done.stderr
