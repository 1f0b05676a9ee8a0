"""The monitor controller: a PodProtector informer on the core cluster and one debounced
recompute of the global gauges after events (design.md §4 "Monitor")."""

from __future__ import annotations

import threading

from podseidon_site.config import PodseidonConfig
from protectors.kube.client import PODPROTECTORS
from protectors.kube.informer import FunctionHandler, Informer, LoggingInformerObserver
from workers.controller import ControllerContext
from workers.monitor.gauges import MonitorGauges, compute_gauges
from workers.monitor.observer import MonitorObserver
from workers.workqueue import ShutDown, WorkQueue

__all__ = ["MonitorController"]

_KEY = "gauges"


class MonitorController:
    name = "monitor"

    def __init__(
        self,
        config: PodseidonConfig,
        *,
        debounce_seconds: float = 0.5,
        observer: MonitorObserver | None = None,
    ) -> None:
        self.config = config
        self.debounce_seconds = debounce_seconds
        self.observer = observer or MonitorObserver()
        self.last: MonitorGauges | None = None
        self._lock = threading.Lock()
        self._run: _Run | None = None

    def start(self, context: ControllerContext) -> None:
        with self._lock:
            if self._run is not None:
                raise RuntimeError("monitor already started")
            self._run = _Run(self, context)
            self._run.start()

    def stop(self) -> None:
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            run.stop()

    @property
    def running(self) -> bool:
        return self._run is not None


class _ReportingObserver(LoggingInformerObserver):
    """Reports a failing PodProtector watch to the runtime (shown by the console)."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        super().watch_failed(informer, error, retry_in)
        if not self._run.stopping.is_set():
            self._run.context.report(f"{informer}: {error}")


class _Run:
    def __init__(self, controller: MonitorController, context: ControllerContext) -> None:
        self.controller = controller
        self.context = context
        self.stopping = threading.Event()
        # One key: every event within the debounce window shares one recompute.
        self.queue = WorkQueue()
        self.informer = Informer(
            context.core,
            PODPROTECTORS,
            name="monitor/podprotectors",
            namespace=controller.config.core.namespace or None,
            observer=_ReportingObserver(self),
        )
        self.informer.add_handler(
            FunctionHandler(
                add=lambda obj: self.changed(),
                update=lambda old, new: self.changed(),
                delete=lambda obj: self.changed(),
            )
        )
        self.thread = threading.Thread(target=self.work, name="monitor-worker", daemon=True)

    def start(self) -> None:
        self.controller.observer.started()
        self.informer.start()
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.queue.shutdown()
        self.informer.stop()
        if self.thread is not threading.current_thread():
            self.thread.join(5)
        self.controller.observer.stopped()

    def changed(self) -> None:
        self.queue.add(_KEY, self.controller.debounce_seconds)

    def work(self) -> None:
        while not self.stopping.is_set():
            if self.informer.wait_synced(0.2):
                break
        # An empty listing fires no event; publish once anyway.
        self.queue.add(_KEY)
        while not self.stopping.is_set():
            try:
                key = self.queue.get(timeout=1.0)
            except ShutDown:
                return
            if key is None:
                continue
            try:
                gauges = compute_gauges(self.informer.items())
            except Exception as error:  # a bug must not kill the worker
                self.controller.observer.failed(error)
                self.context.report(f"computing gauges: {error}")
            else:
                if not self.stopping.is_set():
                    self.controller.observer.publish(gauges)
                    self.controller.last = gauges
                self.context.report(None)
            finally:
                self.queue.done(key)
