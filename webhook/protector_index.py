"""Which PodProtectors protect a pod: an index over the informer's cache, not a scan.

Each protector is filed under one ``(namespace, key, value)`` taken from its selector's
``matchLabels`` (any one will do: a pod must carry all of them to match). A pod is looked up under
each of its own labels, plus the protectors whose selectors have no ``matchLabels`` at all; only
those candidates are matched in full. With 10,000 protectors that each select their own app, a
lookup touches one or two candidates instead of 10,000.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from protectors.model import PodProtector, PodProtectorFormatError
from protectors.selectors import SelectorError

logger = logging.getLogger(__name__)

_ANY = "\x00any"  # the bucket for selectors without matchLabels; not a valid label key


class ProtectorIndex:
    """An Informer event handler that keeps parsed PodProtectors and the label index."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, PodProtector] = {}
        self._slot: dict[str, tuple[str, str, str]] = {}
        self._index: dict[tuple[str, str, str], dict[str, PodProtector]] = {}

    # -- EventHandler ------------------------------------------------------------------------

    def on_add(self, obj: dict) -> None:
        self._upsert(obj)

    def on_update(self, old: dict, new: dict) -> None:
        self._upsert(new)

    def on_delete(self, obj: dict) -> None:
        metadata = obj.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        with self._lock:
            self._drop(key)

    # -- lookups -----------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> PodProtector | None:
        return self._by_key.get(f"{namespace}/{name}")

    def __len__(self) -> int:
        return len(self._by_key)

    def matching(self, namespace: str, labels: Mapping[str, str]) -> list[PodProtector]:
        """Protectors in ``namespace`` whose ``selector`` matches ``labels``, sorted by name."""
        index = self._index
        candidates: list[PodProtector] = []
        with self._lock:
            bucket = index.get((namespace, _ANY, ""))
            if bucket:
                candidates.extend(bucket.values())
            for key, value in labels.items():
                bucket = index.get((namespace, key, value))
                if bucket:
                    candidates.extend(bucket.values())
        matched = [p for p in candidates if p.spec.label_selector.matches(labels)]
        if len(matched) > 1:
            matched.sort(key=lambda p: p.name)
        return matched

    # -- internals ---------------------------------------------------------------------------

    def _upsert(self, obj: dict) -> None:
        try:
            protector = PodProtector.from_dict(obj)
            selector = protector.spec.label_selector
        except (PodProtectorFormatError, SelectorError) as error:
            metadata = obj.get("metadata") or {}
            logger.warning(
                "ignoring PodProtector %s/%s: %s",
                metadata.get("namespace"),
                metadata.get("name"),
                error,
            )
            self.on_delete(obj)
            return
        required = selector.required_labels
        if required:
            label_key, label_value = required[0]
            slot = (protector.namespace, label_key, label_value)
        else:
            slot = (protector.namespace, _ANY, "")
        key = protector.key
        with self._lock:
            self._drop(key)
            self._by_key[key] = protector
            if selector.matches_nothing:
                return  # a nil selector protects nothing; keep it only for get()
            self._slot[key] = slot
            self._index.setdefault(slot, {})[key] = protector

    def _drop(self, key: str) -> None:
        self._by_key.pop(key, None)
        slot = self._slot.pop(key, None)
        if slot is None:
            return
        bucket = self._index.get(slot)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._index[slot]
