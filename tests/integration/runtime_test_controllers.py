"""Test-only controllers for the runtime's integration tests.

A worker started with ``PODSEIDON_TEST_CONTROLLERS=tests.integration.runtime_test_controllers:
factory`` runs one ``TickingController`` per key the configuration asks for (generator, one
aggregator per cell, monitor) instead of the real controllers. Each one patches an annotation of
its own ConfigMap in the core cluster every 200 ms through the fenced client, so the sandbox's
write log shows who wrote with which token; the monitor one only reports an error each tick, so
the leader state has a "last reconcile error" to show.
"""

from __future__ import annotations

import os
import threading

from podseidon_site.config import PodseidonConfig
from protectors.kube.client import KubeError, Resource
from workers.controller import ControllerContext, LostLeadership
from workers.registry import controller_keys

CONFIGMAPS = Resource("", "v1", "configmaps")
NAMESPACE_ENV = "PODSEIDON_TEST_NAMESPACE"
INTERVAL = 0.2
SIMULATED_ERROR = "simulated reconcile error"


def configmap_name(key: str) -> str:
    return "runtime-" + key.replace("/", "-")


class TickingController:
    def __init__(self, name: str, namespace: str, *, fail: bool = False) -> None:
        self.name = name
        self.namespace = namespace
        self.fail = fail
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, context: ControllerContext) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(context, self._stop), name=f"tick:{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self, context: ControllerContext, stop: threading.Event) -> None:
        tick = 0
        name = configmap_name(self.name)
        while not stop.wait(INTERVAL):
            tick += 1
            if self.fail:
                context.report(SIMULATED_ERROR)
                continue
            patch = {"metadata": {"annotations": {"podseidon.test/tick": str(tick)}}}
            try:
                try:
                    context.core.patch(CONFIGMAPS, self.namespace, name, patch)
                except KubeError as error:
                    if not error.is_not_found:
                        raise
                    context.core.create(
                        CONFIGMAPS,
                        self.namespace,
                        {"metadata": {"name": name, **patch["metadata"]}},
                    )
                context.report(None)
            except (KubeError, LostLeadership) as error:
                context.report(str(error))


def factory(config: PodseidonConfig) -> list[TickingController]:
    namespace = os.environ.get(NAMESPACE_ENV, "default")
    return [
        TickingController(key, namespace, fail=key == "monitor") for key in controller_keys(config)
    ]
