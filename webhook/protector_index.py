"""Which PodProtectors protect a pod: an index over the informer's cache, not a scan.

Each protector is filed under one ``(namespace, key, value)`` taken from its selector's
``matchLabels`` (any one will do: a pod must carry all of them to match). A pod is looked up under
each of its own labels, plus the protectors whose selectors have no ``matchLabels`` at all; only
those candidates are matched in full. With 10,000 protectors that each select their own app, a
lookup touches one or two candidates instead of 10,000.

The status is parsed only when a status write needs it (``get``). Every status write (ours, the
aggregator's) reaches every webhook process through its watch, and parsing a status with a
hundred admission buckets costs about half a millisecond; most of those versions are replaced
before a write of that protector starts in that process. ``matching`` hands out the protectors
without their status, and ``admitted_at`` answers the one question a review asks of it (the
repeat review of a just-admitted pod) from the object as delivered. Spec and metadata are parsed
at once: the index needs the selector, and a malformed spec is rejected when it arrives; a
malformed status makes ``get`` ignore the protector, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime

from protectors.model import PodProtector, PodProtectorFormatError
from protectors.selectors import SelectorError
from protectors.timefmt import parse_time

logger = logging.getLogger(__name__)

_ANY = "\x00any"  # the bucket for selectors without matchLabels; not a valid label key


class _Entry:
    """One cached PodProtector: its object as the watch delivered it (shared with the informer's
    store, never modified), the spec parsed, the whole object parsed on first use."""

    __slots__ = ("_full", "_invalid", "_uids", "raw", "shell")

    def __init__(self, raw: dict, shell: PodProtector) -> None:
        self.raw = raw
        self.shell = shell
        self._full: PodProtector | None = None if raw.get("status") is not None else shell
        self._invalid = False
        # Per cell ID: its buckets as delivered and their podUIDs, listed on first use. Every
        # review of a protected pod asks (the first one of a DELETE finds nothing), and the
        # version a DELETE's repeat reviews see is the one the next DELETE's first review sees.
        self._uids: dict[str, tuple[list, list]] = {}

    @property
    def protector(self) -> PodProtector | None:
        """None when the status cannot be parsed: such a protector is ignored, as one with a
        bad spec is when it arrives."""
        full = self._full
        if full is None and not self._invalid:
            # Two threads may both parse a fresh version; both get the same value.
            try:
                full = self._full = PodProtector.from_dict(self.raw)
            except PodProtectorFormatError as error:
                self._invalid = True
                logger.warning("ignoring PodProtector %s: %s", self.shell.key, error)
        return full

    def admitted_at(self, cell_id: str, pod_uid: str) -> datetime | None:
        full = self._full
        if full is not None:
            cell = full.status.cell(cell_id) if full.status is not None else None
            starts = [b.start_time for b in cell.buckets if b.pod_uid == pod_uid] if cell else []
            return max(starts, default=None)
        if self._invalid:
            return None
        try:
            listed = self._uids.get(cell_id)
            if listed is None:
                listed = self._uids[cell_id] = self._list(cell_id)
            buckets, uids = listed
            matches = uids.count(pod_uid)
            if matches == 0:
                return None
            if matches == 1:
                return parse_time(buckets[uids.index(pod_uid)]["startTime"])
            # Only the matching buckets' times are parsed (usually one of a hundred).
            return max(parse_time(b["startTime"]) for b in buckets if b.get("podUID") == pod_uid)
        except (AttributeError, TypeError, KeyError, ValueError):
            # Not the shape the model reads: let the full parse decide (and log) it.
            return None if self.protector is None else self.admitted_at(cell_id, pod_uid)

    def _list(self, cell_id: str) -> tuple[list, list]:
        for cell in self.raw["status"].get("cells") or []:
            if cell.get("cellID") == cell_id:
                buckets = (cell.get("admissionHistory") or {}).get("buckets") or []
                return buckets, [b.get("podUID") for b in buckets]
        return [], []


def _only_status_changed(old: dict, new: dict) -> bool:
    if old.keys() != new.keys():
        return False
    for name, value in new.items():
        if name == "metadata":
            before = old.get("metadata") or {}
            if before.keys() != value.keys() or any(
                before[k] != v for k, v in value.items() if k not in _VOLATILE_METADATA
            ):
                return False
        elif name != "status" and old[name] != value:
            return False
    return True


# Changed by every write, status writes included; nothing the index or a review reads.
_VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})


class ProtectorIndex:
    """An Informer event handler that keeps parsed PodProtectors and the label index."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, _Entry] = {}
        self._slot: dict[str, tuple[str, str, str]] = {}
        self._index: dict[tuple[str, str, str], dict[str, _Entry]] = {}

    # -- EventHandler ------------------------------------------------------------------------

    def on_add(self, obj: dict) -> None:
        self._upsert(obj)

    def on_update(self, old: dict, new: dict) -> None:
        if _only_status_changed(old, new):
            metadata = new.get("metadata") or {}
            key = f"{metadata.get('namespace')}/{metadata.get('name')}"
            with self._lock:
                entry = self._by_key.get(key)
                if entry is not None and entry.raw is old:
                    # Most updates are status writes (ours, the aggregator's): keep the parsed
                    # spec and the index slot, take the new object and resourceVersion.
                    fresh = _Entry(new, entry.shell.evolve(metadata=dict(metadata)))
                    self._by_key[key] = fresh
                    slot = self._slot.get(key)
                    if slot is not None:
                        self._index[slot][key] = fresh
                    return
        self._upsert(new)

    def on_delete(self, obj: dict) -> None:
        metadata = obj.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        with self._lock:
            self._drop(key)

    # -- lookups -----------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> PodProtector | None:
        """The protector with its status (parsed on first use of each version)."""
        entry = self._by_key.get(f"{namespace}/{name}")
        return entry.protector if entry is not None else None

    def resource_version(self, namespace: str, name: str) -> str | None:
        """The cached version's resourceVersion (None when not cached), without parsing."""
        entry = self._by_key.get(f"{namespace}/{name}")
        return entry.shell.resource_version if entry is not None else None

    def admitted_at(self, namespace: str, name: str, cell_id: str, pod_uid: str) -> datetime | None:
        """Start of the newest bucket of ``pod_uid`` in ``cell_id``, without parsing the status."""
        entry = self._by_key.get(f"{namespace}/{name}")
        return entry.admitted_at(cell_id, pod_uid) if entry is not None else None

    def __len__(self) -> int:
        return len(self._by_key)

    def matching(self, namespace: str, labels: Mapping[str, str]) -> list[PodProtector]:
        """Protectors in ``namespace`` whose ``selector`` matches ``labels``, sorted by name;
        without their status (``get`` has it)."""
        index = self._index
        candidates: list[_Entry] = []
        with self._lock:
            bucket = index.get((namespace, _ANY, ""))
            if bucket:
                candidates.extend(bucket.values())
            for key, value in labels.items():
                bucket = index.get((namespace, key, value))
                if bucket:
                    candidates.extend(bucket.values())
        matched = [e.shell for e in candidates if e.shell.spec.label_selector.matches(labels)]
        if len(matched) > 1:
            matched.sort(key=lambda p: p.name)
        return matched

    # -- internals ---------------------------------------------------------------------------

    def _upsert(self, obj: dict) -> None:
        try:
            shell = PodProtector.from_dict({k: v for k, v in obj.items() if k != "status"})
            selector = shell.spec.label_selector
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
            slot = (shell.namespace, label_key, label_value)
        else:
            slot = (shell.namespace, _ANY, "")
        key = shell.key
        entry = _Entry(obj, shell)
        with self._lock:
            self._drop(key)
            self._by_key[key] = entry
            if selector.matches_nothing:
                return  # a nil selector protects nothing; keep it only for get()
            self._slot[key] = slot
            self._index.setdefault(slot, {})[key] = entry

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
