"""Which controllers a worker runs, from the configuration.

- ``generator`` always: it generates PodProtectors for the workload kinds that have a
  protection selector (none when there are none) and carries out ``remove-cell-once`` on every
  PodProtector, generated or hand-made;
- ``aggregator/<cellID>`` for every configured cell;
- ``monitor`` when ``generator.monitor`` is on.

Every worker builds all of them; the leases decide which worker runs which. Tests replace the
whole set with ``PODSEIDON_TEST_CONTROLLERS=module:factory`` (``factory(config)`` returns the
controllers), which is how the runtime is tested without the real controllers.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping

from podseidon_site.config import PodseidonConfig
from workers.controller import Controller
from workers.keys import aggregator_key, is_controller_key

TEST_CONTROLLERS_ENV = "PODSEIDON_TEST_CONTROLLERS"

ControllerFactory = Callable[[PodseidonConfig], Iterable[Controller]]


def controller_keys(config: PodseidonConfig) -> list[str]:
    """The lease keys of every controller the configuration asks for, in start order."""
    keys = ["generator"]
    keys += [aggregator_key(cell_id) for cell_id in config.cell_ids]
    if config.generator.monitor:
        keys.append("monitor")
    return keys


def _configured_controllers(config: PodseidonConfig) -> list[Controller]:
    # Imported here: each controller package pulls in its informers and domain code, which a
    # process that only reads switches or leader state does not need.
    controllers: list[Controller] = []
    for key in controller_keys(config):
        if key == "generator":
            from workers.generator.controller import GeneratorController

            controllers.append(GeneratorController(config))
        elif key == "monitor":
            from workers.monitor.controller import MonitorController

            controllers.append(MonitorController(config))
        else:
            from workers.aggregator.controller import AggregatorController

            controllers.append(AggregatorController(config, key.removeprefix("aggregator/")))
    return controllers


def load_factory(spec: str) -> ControllerFactory:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{TEST_CONTROLLERS_ENV} expects MODULE:FACTORY, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def build_controllers(
    config: PodseidonConfig, environ: Mapping[str, str] | None = None
) -> list[Controller]:
    """Construct every controller this worker may run (none is started)."""
    environ = os.environ if environ is None else environ
    override = environ.get(TEST_CONTROLLERS_ENV)
    if override:
        controllers = list(load_factory(override)(config))
    else:
        controllers = _configured_controllers(config)
    seen: set[str] = set()
    for controller in controllers:
        if not is_controller_key(controller.name):
            raise ValueError(f"controller name {controller.name!r} is not a valid lease key")
        if controller.name in seen:
            raise ValueError(f"two controllers are named {controller.name!r}")
        seen.add(controller.name)
    return controllers
