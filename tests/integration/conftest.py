"""Fixtures for integration tests: three clusters (`core`, `cell-a`, `cell-b`).

By default a `python -m sandbox` process serves them on free loopback ports. Set
PODSEIDON_TEST_KUBECONFIGS to a folder holding `core`, `cell-a`, `cell-b` kubeconfigs (named
`NAME.kubeconfig` or `NAME`) to run the same tests against real clusters instead; tests that
only make sense on the sandbox skip themselves then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
# In-process tests import `sandbox`; the subprocess runs with cwd=REPO for the same reason.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CLUSTER_NAMES = ("core", "cell-a", "cell-b")
# Small enough that tests can push a resourceVersion out of the watch window quickly.
SANDBOX_HISTORY_WINDOW = 300
# Sandboxes keep kube-apiserver's watch timing (a bookmark about every minute, watches ending
# after 30-60 min unless they ask for timeoutSeconds), so the suite meets what real clusters do.
# A test that truly needs bookmarks sooner passes "--bookmark-interval" in `extra` and says why.
NO_BOOKMARKS = ("--bookmark-interval", "0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: starts real processes (sandbox clusters) on loopback"
    )


@dataclass
class Clusters:
    kubeconfigs: dict[str, Path]
    is_sandbox: bool
    state_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _clients: dict[str, client.ApiClient] = field(default_factory=dict)

    def api(self, name: str = "core") -> client.ApiClient:
        if name not in self._clients:
            self._clients[name] = config.new_client_from_config(
                config_file=str(self.kubeconfigs[name])
            )
        return self._clients[name]

    def require_sandbox(self, needs: str) -> None:
        """Skip against real clusters; ``needs`` names the sandbox-only feature the test uses."""
        if not self.is_sandbox:
            pytest.skip(f"needs {needs}")


def start_sandbox(
    state_dir: Path, names: tuple[str, ...] = CLUSTER_NAMES, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "sandbox",
        "--state-dir",
        str(state_dir),
        "--history-window",
        str(SANDBOX_HISTORY_WINDOW),
        "--log-level",
        "WARNING",
        # Phase-1 and replay tests expect no controllers: pods they create stay unscheduled.
        "--controllers",
        "none",
        *extra,
    ]
    for name in names:
        args += ["--cluster", f"{name}=0"]
    log = open(state_dir.parent / f"{state_dir.name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not all((state_dir / f"{n}.ready").exists() for n in names):
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode}; see {log.name}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("sandbox did not become ready within 30 s")
        time.sleep(0.05)
    return proc


def stop_sandbox(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _external_kubeconfigs(folder: Path) -> dict[str, Path]:
    found = {}
    for name in CLUSTER_NAMES:
        for candidate in (folder / f"{name}.kubeconfig", folder / name):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            raise RuntimeError(f"PODSEIDON_TEST_KUBECONFIGS has no kubeconfig for {name}")
    return found


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    external = os.environ.get("PODSEIDON_TEST_KUBECONFIGS")
    if external:
        yield Clusters(_external_kubeconfigs(Path(external)), is_sandbox=False)
        return
    state_dir = tmp_path_factory.mktemp("sandbox") / "state"
    state_dir.mkdir()
    proc = start_sandbox(state_dir)
    clusters = Clusters(
        {n: state_dir / f"{n}.kubeconfig" for n in CLUSTER_NAMES},
        is_sandbox=True,
        state_dir=state_dir,
        process=proc,
    )
    try:
        yield clusters
    finally:
        for api in clusters._clients.values():
            api.close()
        code = stop_sandbox(proc)
        assert code == 0, f"sandbox exited with {code} on SIGTERM"


@pytest.fixture
def namespace(clusters: Clusters) -> Iterator[str]:
    """A fresh namespace in `core`, deleted (without waiting) afterwards."""
    name = f"it-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(clusters.api("core"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def kubectl_path() -> str | None:
    from shutil import which

    return which("kubectl")


# A second sandbox process with the built-in controllers, tuned for fast tests: `ctl` for the
# controller tests, `ctl-drain` for kubectl drain (which cordons nodes). Pod deletions there
# can be switched off per namespace (tests/integration/sandbox_test_plugins.py).
CONTROLLER_CLUSTER_NAMES = ("ctl", "ctl-drain")
CONTROLLER_ARGS = (
    "--controllers",
    "all",
    "--nodes",
    "2",
    "--kubelet-ready-delay",
    "0.1",
    "--kubelet-grace-cap",
    "0.2",
    "--gc-backoff-initial",
    "0.005",
    "--gc-backoff-max",
    "0.5",
    "--plugin",
    "tests.integration.sandbox_test_plugins:deny_pod_deletes",
)


@pytest.fixture(scope="session")
def controller_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    if os.environ.get("PODSEIDON_TEST_KUBECONFIGS"):
        pytest.skip("needs a sandbox running its built-in controllers")
    state_dir = tmp_path_factory.mktemp("sandbox-controllers") / "state"
    state_dir.mkdir()
    proc = start_sandbox(state_dir, CONTROLLER_CLUSTER_NAMES, CONTROLLER_ARGS)
    clusters = Clusters(
        {n: state_dir / f"{n}.kubeconfig" for n in CONTROLLER_CLUSTER_NAMES},
        is_sandbox=True,
        state_dir=state_dir,
        process=proc,
    )
    try:
        yield clusters
    finally:
        for api in clusters._clients.values():
            api.close()
        code = stop_sandbox(proc)
        assert code == 0, f"sandbox exited with {code} on SIGTERM"
