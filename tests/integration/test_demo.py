"""`make demo` and `make demo-incident`, as a newcomer would run them.

The demo is started exactly as the Makefile starts it (only its directory and ports differ), the
incident story is played against it (the story checks each step itself and exits non-zero when
the product misbehaves), and Ctrl-C must then leave no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from demo.layout import CELLS, NAMESPACE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FREE_PORTS = ("--console-port", "0", "--webhook-port", "0")


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line or environment names `text` (the demo's directory is in
    every child's PODSEIDON_CONFIG, so gunicorn and Celery workers are found too)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command}")
    return found


def test_demo_runs_the_incident_and_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    out = tmp_path / "demo.out"
    with open(out, "wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--root", str(root), *FREE_PORTS],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while not (root / "layout.json").exists():
            assert demo.poll() is None, f"demo exited early:\n{out.read_text()}"
            assert time.monotonic() < deadline, f"demo not up in 240 s:\n{out.read_text()}"
            time.sleep(0.5)
        layout = json.loads((root / "layout.json").read_text())
        banner = out.read_text()
        assert "password: " in banner and "make demo-incident" in banner

        token = (root / "admin.token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{layout['ports']['console']}/api/v1/podprotectors/?namespace={NAMESPACE}",
            headers={"Authorization": f"Token {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            page = json.loads(response.read())
        by_name = {row["name"]: row for row in page["results"]}
        # Three labelled Deployments and the StatefulSet; the unlabelled `batch` gets none.
        assert set(by_name) == {
            "deployment-web",
            "deployment-api",
            "deployment-cache",
            "statefulset-db",
        }
        assert (by_name["deployment-web"]["required"], by_name["deployment-web"]["total"]) == (5, 6)
        assert {c["cell_id"] for c in by_name["statefulset-db"]["cells"]} == set(CELLS)

        story = subprocess.run(
            [sys.executable, "-m", "demo.incident", "--root", str(root), "--pause", "0"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert story.returncode == 0, f"{story.stdout}\n{story.stderr}"
        assert "The end." in story.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert code == 0, out.read_text()
    assert "stopped." in out.read_text()
    leftovers = processes_mentioning(str(root))
    assert not leftovers, "processes left behind:\n" + "\n".join(leftovers)
    assert not (root / "layout.json").exists()
