"""Stopping is prompt on a quiet watch: every component that keeps a watch open (generator,
aggregator, monitor, the webhook's PodProtector cache) stops within a second although no event
and no bookmark arrives on its watches.

A real apiserver may send nothing on a watch for a minute or more; the stop must not wait for
the next byte (a leader losing its lease, a paused aggregator, a worker's SIGTERM all stop
controllers). On the sandbox this runs on clusters of its own with bookmarks off and nothing
writing; against real clusters every watch is restricted to a fresh namespace, where a bookmark
comes about once a minute, much later than the second allowed here.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from podseidon_site.config import CellConfig, ClusterAccess, GeneratorConfig, PodseidonConfig
from protectors import constants
from protectors.kube.client import KubeClient
from protectors.kube.informer import Informer
from tests.integration.conftest import NO_BOOKMARKS, start_sandbox, stop_sandbox
from tests.integration.webhook_env import install_crd
from webhook.runtime import WebhookRuntime
from workers.aggregator.controller import AggregatorController
from workers.controller import AlwaysValidFence, ControllerContext
from workers.generator.controller import GeneratorController
from workers.monitor.controller import MonitorController

pytestmark = pytest.mark.integration

NAMES = ("core", "cell-a", "cell-b")
STOP_WITHIN = 1.0
# How long a stop may take before the test gives up on it (today's bug: until the next event).
GIVE_UP_AFTER = 10.0


@dataclass
class Quiet:
    kubeconfigs: dict[str, Path]
    namespace: str


@pytest.fixture(scope="module")
def quiet(clusters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quiet]:
    process = None
    if clusters.is_sandbox:
        state_dir = tmp_path_factory.mktemp("sandbox-quiet") / "state"
        state_dir.mkdir()
        process = start_sandbox(state_dir, NAMES, NO_BOOKMARKS)
        kubeconfigs = {name: state_dir / f"{name}.kubeconfig" for name in NAMES}
    else:
        kubeconfigs = dict(clusters.kubeconfigs)
    namespace = f"quiet-{uuid.uuid4().hex[:8]}"
    apis = {name: k8s_config.new_client_from_config(str(kubeconfigs[name])) for name in NAMES}
    try:
        install_crd(apis["core"])
        for api in apis.values():
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        yield Quiet(kubeconfigs, namespace)
        for api in apis.values():
            with contextlib.suppress(k8s.ApiException):
                k8s.CoreV1Api(api).delete_namespace(namespace)
    finally:
        for api in apis.values():
            api.close()
        if process is not None:
            assert stop_sandbox(process) == 0


def _config(quiet: Quiet) -> PodseidonConfig:
    kubeconfigs, namespace = quiet.kubeconfigs, quiet.namespace
    return PodseidonConfig(
        core=ClusterAccess(kubeconfig=str(kubeconfigs["core"]), namespace=namespace),
        cells=[
            CellConfig(id=cell, kubeconfig=str(kubeconfigs[cell]), namespace=namespace)
            for cell in ("cell-a", "cell-b")
        ],
        generator=GeneratorConfig(
            protection_selectors={
                "deployments.apps": constants.DEFAULT_PROTECTION_SELECTOR,
                "statefulsets.apps": constants.DEFAULT_PROTECTION_SELECTOR,
            }
        ),
    )


def _context(config: PodseidonConfig) -> ControllerContext:
    return ControllerContext(
        config=config,
        core=KubeClient.from_access(config.core),
        cells={cell.id: KubeClient.from_access(cell) for cell in config.cells},
        fence=AlwaysValidFence(),
    )


def _wait_watching(informers: list[Informer]) -> None:
    """Until every informer has listed and its thread waits on an open, quiet watch."""
    deadline = time.monotonic() + 15
    while not all(i.has_synced and i.watching for i in informers):
        if time.monotonic() > deadline:
            state = {i.name: (i.has_synced, i.watching) for i in informers}
            raise AssertionError(f"informers not watching within 15 s: {state}")
        time.sleep(0.02)
    # Let each thread get from opening the watch to blocking on its socket.
    time.sleep(0.3)


def _timed_stop(stop: Callable[[], None]) -> float:
    """Seconds ``stop`` took; fails at GIVE_UP_AFTER rather than waiting for a hung stop."""
    done = threading.Event()

    def run() -> None:
        stop()
        done.set()

    started = time.monotonic()
    threading.Thread(target=run, name="quiet-stop", daemon=True).start()
    assert done.wait(GIVE_UP_AFTER), f"stop still blocked after {GIVE_UP_AFTER} s"
    return time.monotonic() - started


def _assert_prompt_stop(stop: Callable[[], None], informers: list[Informer]) -> None:
    _wait_watching(informers)
    took = _timed_stop(stop)
    print(f"stop took {took:.3f} s with {len(informers)} quiet watches")
    assert not [i.name for i in informers if i.running], "informer threads still running"
    assert took <= STOP_WITHIN, f"stop took {took:.2f} s on a quiet watch"


def test_generator_stops_promptly(quiet: Quiet) -> None:
    config = _config(quiet)
    controller = GeneratorController(config)
    controller.start(_context(config))
    session = controller._session
    assert session is not None
    _assert_prompt_stop(controller.stop, session._informers())


def test_aggregator_stops_promptly(quiet: Quiet) -> None:
    config = _config(quiet)
    controller = AggregatorController(config, "cell-a")
    controller.start(_context(config))
    run = controller._run
    assert run is not None
    _assert_prompt_stop(controller.stop, [run.protectors, run.pods])


def test_monitor_stops_promptly(quiet: Quiet) -> None:
    config = _config(quiet)
    controller = MonitorController(config)
    controller.start(_context(config))
    run = controller._run
    assert run is not None
    _assert_prompt_stop(controller.stop, [run.informer])


def test_webhook_protector_cache_stops_promptly(quiet: Quiet) -> None:
    runtime = WebhookRuntime(_config(quiet))
    runtime.start()
    _assert_prompt_stop(runtime.stop, [runtime.informer])
