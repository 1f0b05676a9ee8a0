"""The update trigger: a dummy pod in the cell whose annotation is bumped on a timer, so a quiet
cell still produces pod events and its sync time keeps moving (design.md §4 "Aggregator").

The pod is never scheduled: it names a scheduler nobody serves and a node selector no node
carries. It carries the labels the aggregator's own pod selector requires, or the aggregator
would not see its events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from podseidon_site.config import UpdateTriggerConfig
from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME, PREFIX
from protectors.kube.client import PODS, KubeClient, KubeError
from protectors.selectors import Operator, SelectorError, parse_selector_string
from protectors.timefmt import format_micro_time

__all__ = ["LABEL_UPDATE_TRIGGER", "UpdateTrigger", "dummy_pod", "labels_for_selector"]

logger = logging.getLogger("podseidon.aggregator")

LABEL_UPDATE_TRIGGER = f"{PREFIX}update-trigger"
NEVER_SCHEDULED = f"{PREFIX}update-trigger-never-scheduled"


def labels_for_selector(selector: str) -> dict[str, str] | None:
    """Labels that satisfy the aggregator's pod label selector, or None when no label set
    can be derived (then the dummy pod may be invisible to the aggregator)."""
    try:
        parsed = parse_selector_string(selector)
    except SelectorError:
        return None
    labels: dict[str, str] = {}
    for requirement in parsed.requirements:
        if requirement.operator in (Operator.EQUALS, Operator.IN):
            labels[requirement.key] = requirement.values[0]
        elif requirement.operator is Operator.EXISTS:
            labels[requirement.key] = "true"
    return labels if parsed.matches(labels) else None


def dummy_pod(
    name: str, namespace: str, labels: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**labels, LABEL_UPDATE_TRIGGER: "true"},
            "annotations": {ANNOTATION_UPDATE_TRIGGER_TIME: format_micro_time(now)},
        },
        "spec": {
            "schedulerName": NEVER_SCHEDULED,
            "nodeSelector": {NEVER_SCHEDULED: "true"},
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}],
        },
    }


class UpdateTrigger:
    """Keeps the dummy pod and bumps its annotation every ``interval_seconds``."""

    def __init__(
        self,
        client: KubeClient,
        config: UpdateTriggerConfig,
        *,
        pod_label_selector: str = "",
        on_result: Callable[[Exception | None], None] = lambda error: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._config = config
        self._on_result = on_result
        self._clock = clock
        labels = labels_for_selector(pod_label_selector)
        if labels is None:
            logger.warning(
                "update trigger: no label set satisfies the pod label selector %r; the dummy "
                "pod will not be seen by the aggregator",
                pod_label_selector,
            )
            labels = {}
        self._labels = labels
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def bump(self) -> None:
        """Bump the annotation once, creating the pod when it is missing."""
        now = self._clock()
        name, namespace = self._config.dummy_pod_name, self._config.dummy_pod_namespace
        patch = {
            "metadata": {"annotations": {ANNOTATION_UPDATE_TRIGGER_TIME: format_micro_time(now)}}
        }
        try:
            self._client.patch(PODS, namespace, name, patch)
        except KubeError as error:
            if not error.is_not_found:
                raise
            try:
                self._client.create(PODS, namespace, dummy_pod(name, namespace, self._labels, now))
            except KubeError as create_error:
                if create_error.status != 409:  # created meanwhile: next bump patches it
                    raise

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.bump()
                self._on_result(None)
            except Exception as error:  # keep ticking: the next bump may succeed
                self._on_result(error)
            self._stopping.wait(float(self._config.interval_seconds))

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name="update-trigger", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
