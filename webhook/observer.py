"""The webhook's one observer: every log line and metric of the component goes through here.

Metric names follow design.md §6. Labels stay bounded: cell IDs come from the config, results and
codes from small enums; namespaces and users are added only when the operator opts in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

from prometheus_client import Counter, Histogram

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
    "Requests answered with an HTTP error instead of an AdmissionReview verdict.",
    ["cell", "code"],
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
STATUS_WRITES = Counter(
    "webhook_status_write",
    "PodProtector status writes made by the webhook.",
    ["pool"],
)
POOL = "podprotector-update"


class WebhookObserver:
    def __init__(self, options: MetricsConfig | None = None) -> None:
        options = options or MetricsConfig()
        self._namespace_labels = options.namespace_labels
        self._user_labels = options.user_labels

    def beat(self) -> None:
        HEARTBEAT.labels("webhook").set(time.time())

    # -- requests ----------------------------------------------------------------------------

    def request_done(
        self, cell_id: str, review: ReviewRequest, verdict: Verdict, seconds: float
    ) -> None:
        namespace = review.namespace if self._namespace_labels else ""
        user = review.username if self._user_labels else ""
        REQUEST.labels(cell_id, "true" if verdict.allowed else "false", namespace, user).observe(
            seconds
        )
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

    def http_error(self, cell_id: str, code: int, message: str) -> None:
        HTTP_ERROR.labels(cell_id, str(code)).inc()
        log = logger.warning if code < 500 else logger.error
        log("answered HTTP %d for cell %s: %s", code, cell_id, message)

    # -- DecisionObserver ---------------------------------------------------------------------

    def pod_in_protector(
        self, cell_id: str, protector: PodProtector, result: str, rejected: bool
    ) -> None:
        namespace = protector.namespace if self._namespace_labels else ""
        HANDLE_POD_IN_PPR.labels(cell_id, result, "true" if rejected else "false", namespace).inc()

    # -- BatchObserver -----------------------------------------------------------------------

    def batch_executed(self, key: Hashable, size: int) -> None:
        BATCH_SIZE.labels(POOL).observe(size)

    def batch_retry(self, key: Hashable, size: int, delay: float) -> None:
        BATCH_RETRY.labels(POOL).inc()
        logger.info(
            "status of PodProtector %s changed under us; retrying %d in %.2fs", key, size, delay
        )

    def status_written(self, key: str, size: int) -> None:
        STATUS_WRITES.labels(POOL).inc()
