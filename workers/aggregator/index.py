"""Finding, without scanning, the protectors a pod event concerns and the pods a protector counts.

Both informers index their objects under *slots* of one shape:
- ``namespace/*`` — namespace-wide;
- ``namespace/key=value`` — one exact label.

A pod is filed under its namespace slot and one slot per label. A protector is filed under one
exact label its **aggregation selector** requires (a pod must carry all of them to match, so any
one will do), or under its namespace slot when the selector requires no exact label. A pod event
then looks up its namespace slot and its label slots, and a protector's reconcile lists the pods
in its own slot; only those candidates are matched in full.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from protectors.kube.informer import Informer
from protectors.selectors import LabelSelector, SelectorError

__all__ = [
    "PodCandidates",
    "ProtectorLookup",
    "aggregation_selector",
    "label_slot",
    "namespace_slot",
    "pod_slots",
    "protector_slots",
]

logger = logging.getLogger("podseidon.aggregator")

# "\x00" cannot appear in a namespace or label, so slots cannot collide.
_SEP = "\x00"


def namespace_slot(namespace: str) -> str:
    return f"{namespace}{_SEP}*"


def label_slot(namespace: str, key: str, value: str) -> str:
    return f"{namespace}{_SEP}{key}={value}"


def aggregation_selector(obj: Mapping[str, Any]) -> LabelSelector:
    """The selector counting pods for a raw PodProtector: ``aggregationSelector`` or else
    ``selector``. Raises SelectorError for an invalid one."""
    spec = obj.get("spec") or {}
    chosen = spec.get("aggregationSelector")
    if chosen is None:
        chosen = spec.get("selector")
    return LabelSelector.from_dict(chosen)


def selector_slot(namespace: str, selector: LabelSelector) -> str | None:
    """The one slot a protector with ``selector`` is filed under; None if it matches nothing."""
    if selector.matches_nothing:
        return None
    required = selector.required_labels
    if required:
        key, value = required[0]
        return label_slot(namespace, key, value)
    return namespace_slot(namespace)


# Index values by (namespace, selector as canonical JSON): the informer computes a protector's
# slot for every event of it (twice: old and new), and every status write is such an event.
_SLOT_MEMO: dict[bytes, tuple[str, ...]] = {}
_SLOT_MEMO_MAX = 8192


def _chosen_selector(obj: Mapping[str, Any]) -> Any:
    spec = obj.get("spec") or {}
    chosen = spec.get("aggregationSelector")
    return spec.get("selector") if chosen is None else chosen


def protector_slots(obj: dict) -> Iterable[str]:
    """Index function for the PodProtector informer."""
    namespace = (obj.get("metadata") or {}).get("namespace", "")
    try:
        memo_key = orjson.dumps([namespace, _chosen_selector(obj)], option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (cannot come from the API): compute without the memo
        memo_key = None
    if memo_key is not None:
        slots = _SLOT_MEMO.get(memo_key)
        if slots is not None:
            return slots
    try:
        slot = selector_slot(namespace, aggregation_selector(obj))
    except SelectorError:
        slots = ()
    else:
        slots = () if slot is None else (slot,)
    if memo_key is not None:
        if len(_SLOT_MEMO) >= _SLOT_MEMO_MAX:
            _SLOT_MEMO.clear()
        _SLOT_MEMO[memo_key] = slots
    return slots


def pod_slots(obj: dict) -> Iterable[str]:
    """Index function for the pod informer."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace", "")
    labels = metadata.get("labels") or {}
    return [namespace_slot(namespace), *(label_slot(namespace, k, v) for k, v in labels.items())]


class ProtectorLookup:
    """The protectors (informer keys) whose aggregation selector matches a pod's labels."""

    INDEX = "aggregation-selector"

    def __init__(self, informer: Informer) -> None:
        self._informer = informer
        informer.add_index(self.INDEX, protector_slots)
        self._lock = threading.Lock()
        # key -> (selector as found in the object, parsed): parsed once per change of the
        # selector, not per pod event nor per status write.
        self._selectors: dict[str, tuple[Any, LabelSelector | None]] = {}

    def matching(self, namespace: str, labels: Mapping[str, str] | None) -> set[str]:
        labels = labels or {}
        informer = self._informer
        keys = set(informer.index_keys(self.INDEX, namespace_slot(namespace)))
        for key, value in labels.items():
            keys |= informer.index_keys(self.INDEX, label_slot(namespace, key, value))
        matched = set()
        for key in keys:
            selector = self.selector(key)
            if selector is not None and selector.matches(labels):
                matched.add(key)
        return matched

    def selector(self, key: str) -> LabelSelector | None:
        obj = self._informer.get(key)
        if obj is None:
            self.forget(key)
            return None
        raw = _chosen_selector(obj)
        with self._lock:
            cached = self._selectors.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            selector: LabelSelector | None = aggregation_selector(obj)
        except SelectorError as error:
            logger.warning("ignoring PodProtector %s: invalid aggregation selector: %s", key, error)
            selector = None
        with self._lock:
            self._selectors[key] = (raw, selector)
        return selector

    def forget(self, key: str) -> None:
        with self._lock:
            self._selectors.pop(key, None)


class PodCandidates:
    """The cached pods that may match a protector's aggregation selector in its namespace."""

    INDEX = "namespace-labels"

    def __init__(self, informer: Informer) -> None:
        self._informer = informer
        informer.add_index(self.INDEX, pod_slots)

    def for_selector(self, namespace: str, selector: LabelSelector) -> list[dict]:
        if selector.matches_nothing:
            return []
        informer = self._informer
        slots = [label_slot(namespace, k, v) for k, v in selector.required_labels]
        if not slots:
            return informer.by_index(self.INDEX, namespace_slot(namespace))
        # The rarest required label narrows the most.
        best = min(
            (informer.index_keys(self.INDEX, slot) for slot in slots),
            key=len,
        )
        pods = []
        for key in best:
            pod = informer.get(key)
            if pod is not None:
                pods.append(pod)
        return pods
