"""The Celery side of the controllers: a bootstep of the Worker blueprint.

``celery -A podseidon_site worker`` is all an operator runs. When the worker starts, this step
builds the controllers from the configuration and starts a ``ControllerManager`` in the worker's
main process (election threads, one per controller key), and serves Prometheus metrics; on
shutdown (warm or cold) it stops the controllers and releases their leases so a standby worker
takes over within one retry period. It sits on the Worker blueprint, not the Consumer one: the
consumer restarts whenever the broker connection drops, and leadership must not follow that.

The worker's pool defaults to ``threads`` (env/setting ``CELERY_WORKER_POOL``): with
``prefork`` the controllers still live in the parent process only, but children are forked from
a process with running threads, which we would rather avoid. See docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import bootsteps

logger = logging.getLogger("podseidon.workers.bootstep")

METRICS_PORT_ENV = "PODSEIDON_METRICS_PORT"


def metrics_port(config_port: int, environ: Any = None) -> int:
    """``PODSEIDON_METRICS_PORT`` if set (0 = off), else the configured ``metrics.port``."""
    environ = os.environ if environ is None else environ
    raw = environ.get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return config_port
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{METRICS_PORT_ENV} must be a port number or 0, not {raw!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"{METRICS_PORT_ENV} must be a port number or 0, not {raw!r}")
    return port


class ControllerRuntimeStep(bootsteps.StartStopStep):
    """Start/stop the controller runtime with the worker (main process)."""

    label = "Podseidon controllers"
    # After the pool: with prefork the initial children are forked before our threads exist.
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.manager = None

    def start(self, worker: Any) -> None:
        import redis
        from django.conf import settings

        from podseidon_site.metrics import start_metrics_server
        from workers.keys import settings_keys
        from workers.leases import Holder, Timings
        from workers.registry import build_controllers
        from workers.runtime import ControllerManager
        from workers.switches import load_paused

        pool = getattr(worker, "pool_cls", None)
        if getattr(pool, "__module__", "") == "celery.concurrency.prefork":
            logger.warning(
                "controllers run in the worker's main process; with the prefork pool its "
                "children are forked from a process running controller threads. Prefer "
                "the threads pool (CELERY_WORKER_POOL=threads, the default)."
            )
        config = settings.PODSEIDON
        timings = Timings.from_config(config.leader_election)
        # Redis calls must fail well within the renew deadline, so a hung connection is noticed.
        timeout = max(0.2, min(timings.retry_period, 2.0))
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        port = metrics_port(config.metrics.port)
        if port:
            try:
                start_metrics_server(port)
                logger.info("metrics on :%d", port)
            except OSError as error:
                logger.error("cannot serve metrics on :%d: %s", port, error)
        self.manager = ControllerManager(
            config,
            build_controllers(config),
            client=client,
            keys=settings_keys(),
            switch_loader=load_paused,
            holder=Holder.for_this_process(getattr(worker, "hostname", "") or ""),
            timings=timings,
        )
        self.manager.start()

    def stop(self, worker: Any) -> None:
        manager, self.manager = self.manager, None
        if manager is not None:
            manager.stop()
            manager.client.close()

    def terminate(self, worker: Any) -> None:
        self.stop(worker)

    def shutdown(self, worker: Any) -> None:
        self.stop(worker)
