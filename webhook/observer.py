"""The webhook's one observer: every log line and metric of the component goes through here.

Metric names follow design.md §6. Labels stay bounded: cell IDs come from the config, results and
codes from small enums; namespaces and users are added only when the operator opts in.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from podseidon_site.config import MetricsConfig
from podseidon_site.metrics import HEARTBEAT
from protectors.model import PodProtector
from webhook import history
from webhook.review import ReviewRequest, Verdict

logger = logging.getLogger("podseidon.webhook")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUEST = Histogram(
    "webhook_request",
    "Time to answer one AdmissionReview, in seconds.",
    ["cell", "allowed", "namespace", "user"],
    buckets=_LATENCY_BUCKETS,
)
HANDLE_POD_IN_PPR = Counter(
    "webhook_handle_pod_in_ppr",
    "Pod deletions judged against one PodProtector, by result.",
    ["cell", "result", "rejected", "namespace"],
)
HTTP_ERROR = Counter(
    "webhook_http_error",
    "Reviews answered with an error instead of a judgement: HTTP errors, and 500 verdicts when "
    "an admission could not be recorded in the core cluster.",
    ["cell", "code", "cause"],
)
# The values of HTTP_ERROR's `cause` label (and of Verdict.cause); nothing else is ever used.
ERROR_CAUSES = (
    "malformed",  # 400: not an AdmissionReview we can answer
    "unknown-cell",  # 400: the URL names a cell the configuration lacks
    "too-large",  # 413
    "client-cert",  # 403: no or a refused client certificate (webhook.tls.client_ca_file)
    "cold-start",  # 500: webhook.cold_start_delay_seconds
    "not-synced",  # 500: PodProtector cache not synced
    "cell-unreachable",  # 500: the evicted pod could not be read from its cell
    "internal",  # 500: a bug
    "deadline",  # 500 verdict: the review's deadline passed waiting for its batch
    "core-timeout",  # 500 verdict: the core cluster did not answer the status write in time
    "core-unavailable",  # 500 verdict: failing fast, a recent write got no answer (breaker open)
    "core-busy",  # 500 verdict: too many reviews of the process already wait for the core
    "core-error",  # 500 verdict: the core cluster answered the status write with an error
)
CORE_UNANSWERED = Gauge(
    "webhook_core_unanswered",
    "1 while this webhook process refuses protected reviews at once because the core cluster "
    "did not answer a status write (probing once a second), else 0.",
    multiprocess_mode="livemax",
)
BATCH_RETRY = Counter(
    "retrybatch_submit_retry_count",
    "Batches that had to run again after a 409 Conflict on the status write.",
    ["pool"],
)
BATCH_SIZE = Histogram(
    "retrybatch_execute_batch_size",
    "Requests decided by one batch execution (one status write at most).",
    ["pool"],
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
)
# Fine enough below a millisecond to tell where an unmatched review's 0.1-0.4 ms go.
_PHASE_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00015,
    0.0002,
    0.0003,
    0.0004,
    0.0006,
    0.0008,
    0.0012,
    0.0016,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
PHASE = Histogram(
    "webhook_phase_seconds",
    "Where the time of AdmissionReviews goes, by phase (see PHASES).",
    ["phase"],
    buckets=_PHASE_BUCKETS,
)
# The values of PHASE's label: per review unless marked.
PHASES = (
    "server",  # the WSGI call of a POST, from Django's handler to the built response
    "parse",  # reading and parsing the body
    "index",  # looking up the pod's PodProtectors
    "batch_wait",  # submitted to a batch until that batch starts (window, queue, backoff)
    "quota",  # per batch: the protector's freshest copy, the quota and the status body
    "status_write",  # per write: the PUT of the status to the core cluster
    "response",  # building and encoding the answer
)
STATUS_WRITES = Counter(
    "webhook_status_write",
    "PodProtector status writes made by the webhook.",
    ["pool"],
)
STATUS_CONFLICTS = Counter(
    "webhook_status_write_conflict",
    "Status writes answered 409 Conflict and retried at once on a freshly read PodProtector.",
    ["pool"],
)
POOL = "podprotector-update"


# -- after the answer ------------------------------------------------------------------------
#
# A review's metrics, its history entry and its log line change nothing in the answer, so the
# webhook's WSGI entry point (webhook/wsgi.py) has them recorded once the answer is on the wire:
# between ``deferring()`` and ``flush()`` the observer calls below are queued per thread instead
# of made. A protected deletion's reviews observe a dozen series (each a lock and a write to the
# multiprocess file); they are on the critical path of every deletion otherwise.

_pending = threading.local()
_Method = TypeVar("_Method", bound=Callable[..., None])


def deferring() -> list[tuple[Callable[..., Any], tuple[Any, ...]]]:
    """Queue this thread's observations from now on, until ``flush``; returns the queue."""
    queued: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    left = getattr(_pending, "queue", None)
    _pending.queue = queued
    if left:
        _run(left)  # a request that was never closed: its observations still count
    return queued


def flush(queued: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    """Stop queuing on this thread and make the queued observations."""
    if getattr(_pending, "queue", None) is queued:
        _pending.queue = None
    _run(queued)


def _run(queued: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    for call, args in queued:
        try:
            call(*args)
        except Exception:  # one failing metric must not take the others (or the worker) along
            logger.exception("recording %s failed", getattr(call, "__qualname__", call))
    queued.clear()


def after_answer(method: _Method) -> _Method:
    """Queue the call while this thread defers (see ``deferring``), else make it."""

    @functools.wraps(method)
    def queued_or_now(*args: Any, **kwargs: Any) -> None:
        queue = getattr(_pending, "queue", None)
        if queue is None:
            method(*args, **kwargs)
        elif kwargs:
            queue.append((functools.partial(method, *args, **kwargs), ()))
        else:
            queue.append((method, args))

    return queued_or_now  # type: ignore[return-value]


class WebhookObserver:
    def __init__(self, options: MetricsConfig | None = None) -> None:
        options = options or MetricsConfig()
        self._namespace_labels = options.namespace_labels
        self._user_labels = options.user_labels
        # labels() costs a lock and a tuple per call; every review observes several series.
        self._phases = {name: PHASE.labels(name) for name in PHASES}
        self._requests: dict[tuple[str, str, str, str], Any] = {}
        self._pod_results: dict[tuple[str, str, bool, str], Any] = {}
        self._batch_size = BATCH_SIZE.labels(POOL)
        self._status_writes = STATUS_WRITES.labels(POOL)

    def beat(self) -> None:
        HEARTBEAT.labels("webhook").set(time.time())

    # -- requests ----------------------------------------------------------------------------

    @after_answer
    def request_done(
        self, cell_id: str, review: ReviewRequest, verdict: Verdict, seconds: float
    ) -> None:
        namespace = review.namespace if self._namespace_labels else ""
        user = review.username if self._user_labels else ""
        labels = (cell_id, "true" if verdict.allowed else "false", namespace, user)
        child = self._requests.get(labels)
        if child is None:
            child = self._requests[labels] = REQUEST.labels(*labels)
        child.observe(seconds)
        history.record(cell_id, review, verdict)  # a queue put; Redis is written off this path
        if not verdict.allowed:
            logger.info(
                "rejected %s of pod %s/%s in cell %s: %s (code %d)",
                "eviction" if review.is_pod_eviction else review.operation.lower(),
                review.namespace,
                review.name or "<collection member>",
                cell_id,
                verdict.message,
                verdict.code,
            )

    def http_error(self, cell_id: str, code: int, message: str, cause: str) -> None:
        HTTP_ERROR.labels(cell_id, str(code), cause).inc()
        log = logger.warning if code < 500 else logger.error
        log("answered HTTP %d for cell %s: %s", code, cell_id, message)

    def error_verdict(self, cell_id: str, code: int, cause: str) -> None:
        # request_done logs the rejection with its message; this only counts it.
        HTTP_ERROR.labels(cell_id, str(code), cause).inc()

    def core_silent(self, silent: bool) -> None:
        CORE_UNANSWERED.set(1 if silent else 0)
        if silent:
            logger.error(
                "core cluster did not answer a status write: refusing protected deletions at "
                "once until a probe write is answered"
            )
        else:
            logger.warning("core cluster answers status writes again")

    # -- DecisionObserver ---------------------------------------------------------------------

    @after_answer
    def pod_in_protector(
        self, cell_id: str, protector: PodProtector, result: str, rejected: bool
    ) -> None:
        namespace = protector.namespace if self._namespace_labels else ""
        key = (cell_id, result, rejected, namespace)
        child = self._pod_results.get(key)
        if child is None:
            child = self._pod_results[key] = HANDLE_POD_IN_PPR.labels(
                cell_id, result, "true" if rejected else "false", namespace
            )
        child.inc()

    # -- BatchObserver -----------------------------------------------------------------------

    @after_answer
    def batch_executed(self, key: Hashable, size: int) -> None:
        self._batch_size.observe(size)

    def batch_retry(self, key: Hashable, size: int, delay: float) -> None:
        BATCH_RETRY.labels(POOL).inc()
        logger.info(
            "status of PodProtector %s changed under us; retrying %d in %.2fs", key, size, delay
        )

    @after_answer
    def status_written(self, key: str, size: int) -> None:
        self._status_writes.inc()

    def status_conflict(self, key: str) -> None:
        STATUS_CONFLICTS.labels(POOL).inc()

    @after_answer
    def batch_waited(self, key: Hashable, seconds: float) -> None:
        self._phases["batch_wait"].observe(seconds)

    @after_answer
    def phase(self, name: str, seconds: float) -> None:
        self._phases[name].observe(seconds)
