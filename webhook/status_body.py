"""The JSON body of a status write, without serializing again what the previous write sent.

A PodProtector under a stream of deletions carries up to a hundred admission buckets, and the
model serializes each one field by field (about 2 µs a bucket, 0.2 ms a write). A write built on
our own previous write (the usual case: the status writer starts from the object it sent)
shares almost every bucket, and every untouched cell, with it, as the very same immutable
objects. Their JSON is taken from the previous body; only new objects go through ``to_dict``.

The result equals ``protector.to_dict()``: objects the quota changed are copies built in code
(``evolve``, ``dataclasses.replace``), which serialize every field like the Go types; the
object's head and the status's summary are written here the same way, and unchanged objects
are the ones whose JSON was produced by ``to_dict`` before. Unlike ``to_dict``, the body shares
the protector's metadata dict and its spec's JSON (made once per spec object) instead of
copying them: it is only serialized, never changed. tests/unit/test_status_body.py compares the
two over sequences of quota runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from operator import is_
from typing import Any

from protectors.model import Bucket, CellStatus, PodProtector, Spec, Status, copy_json


@dataclass(frozen=True)
class _CellJson:
    """One cell as last written: the object, its JSON, and its buckets' JSON in order."""

    cell: CellStatus
    json: dict[str, Any]
    buckets: tuple[Bucket, ...]
    bucket_json: list[Any]


_Cells = dict[str, _CellJson]


class StatusBodies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per PodProtector key: the status object last written, and its cells' JSON by cellID.
        self._last: dict[str, tuple[Status, _Cells]] = {}
        # Per key: the body last built and its cells, until it is written.
        self._built: dict[str, tuple[dict[str, Any], _Cells]] = {}
        # Per key: a spec object and its JSON.
        self._specs: dict[str, tuple[Spec, dict[str, Any]]] = {}

    def body(self, key: str, protector: PodProtector, base: PodProtector) -> dict[str, Any]:
        """``protector.to_dict()``, reusing the JSON of whatever ``base`` shares with the last
        body written for ``key``. ``protector`` must come from ``base.with_status(...)``."""
        status = protector.status
        with self._lock:
            last = self._last.get(key)
        if status is None or last is None or base.status is not last[0]:
            return protector.to_dict()
        if _parsed(protector) or _parsed(status):
            return protector.to_dict()  # keeps the keys it was parsed with: not ours to redo
        built: _Cells = {}
        out = self._head(key, protector)
        out["status"] = _status_json(status, last[1], built)
        with self._lock:
            self._built[key] = (out, built)
        return out

    def _head(self, key: str, protector: PodProtector) -> dict[str, Any]:
        """Everything of ``protector.to_dict()`` but its status. The metadata is the
        protector's own dict, not a copy (the body is only serialized), and the spec's JSON is
        made once per spec object: a status write carries the spec it read unchanged."""
        spec = protector.spec
        with self._lock:
            cached = self._specs.get(key)
        if cached is None or cached[0] is not spec:
            cached = (spec, spec.to_dict())
            with self._lock:
                self._specs[key] = cached
        metadata = protector.metadata
        out: dict[str, Any] = {}
        if protector.api_version is not None:
            out["apiVersion"] = protector.api_version
        if protector.kind is not None:
            out["kind"] = protector.kind
        out["metadata"] = metadata if type(metadata) is dict else copy_json(metadata)
        out["spec"] = cached[1]
        for name, value in protector.extra.items():
            out[name] = copy_json(value)
        return out

    def written(self, key: str, protector: PodProtector, body: dict[str, Any]) -> None:
        """``body`` (the JSON of ``protector``) was accepted by the core cluster."""
        with self._lock:
            built = self._built.pop(key, None)
        if protector.status is None or not isinstance(body.get("status"), dict):
            return self.forget(key)
        if built is not None and built[0] is body:
            cells = built[1]
        else:
            cells = _cells_of(protector.status, body["status"])
        with self._lock:
            self._last[key] = (protector.status, cells)

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)
            self._built.pop(key, None)
            self._specs.pop(key, None)


def _parsed(obj: object) -> bool:
    # Objects from from_dict write back exactly the keys they came with; only those built in
    # code (dataclasses.replace) serialize every field the same way, which the shells rely on.
    return getattr(obj, "_shape", None) is not None


def _cells_of(status: Status, json: dict[str, Any]) -> _Cells:
    """The cells of a status whose body was not built here (the first write of a key)."""
    cells: _Cells = {}
    cells_json = json.get("cells") or []
    if len(cells_json) != len(status.cells):
        return cells
    for cell, cell_json in zip(status.cells, cells_json, strict=True):
        buckets = (cell_json.get("admissionHistory") or {}).get("buckets") or []
        if len(buckets) == len(cell.buckets):
            cells[cell.cell_id] = _CellJson(cell, cell_json, cell.buckets, buckets)
    return cells


def _status_json(status: Status, last: _Cells, built: _Cells) -> dict[str, Any]:
    # As Status.to_dict() of a status built in code, with the cells taken from the last body.
    cells: list[Any] = []
    out: dict[str, Any] = {"cells": cells}
    if status.summary is not None:
        out["summary"] = status.summary.to_dict()
    for name, value in status.extra.items():
        out[name] = copy_json(value)
    for cell in status.cells:
        before = last.get(cell.cell_id)
        if before is not None and before.cell is cell:
            now = before
        elif _parsed(cell) or _parsed(cell.admission_history):
            cells.append(cell.to_dict())
            continue
        else:
            now = _cell_json(cell, before)
        built[cell.cell_id] = now
        cells.append(now.json)
    return out


def _same(new: tuple[Bucket, ...], old: tuple[Bucket, ...] | list[Bucket]) -> bool:
    # Identity, element by element, at C speed.
    return len(new) == len(old) and all(map(is_, new, old))


def _buckets_json(buckets: tuple[Bucket, ...], before: _CellJson | None) -> list[Any]:
    """The JSON of ``buckets``, taken from ``before`` where the objects are the same ones.

    The quota's writes change a history in two ways: buckets appended at the end, and the
    oldest folded into one by compaction; both leave a run of the previous buckets in order.
    """
    if before is None:
        return [b.to_dict() for b in buckets]
    old, old_json = before.buckets, before.bucket_json
    # Appended: the previous buckets, then new ones.
    if len(buckets) >= len(old) and _same(buckets[: len(old)], old):
        return old_json + [b.to_dict() for b in buckets[len(old) :]]
    # Compacted: one new bucket for the oldest, then a run of the previous ones, then new ones.
    if len(buckets) > 1:
        second = buckets[1]
        for start in range(min(len(old), _FOLD_SEARCH)):
            if old[start] is second:
                run = min(len(old) - start, len(buckets) - 1)
                if _same(buckets[1 : 1 + run], old[start : start + run]):
                    return (
                        [buckets[0].to_dict()]
                        + old_json[start : start + run]
                        + [b.to_dict() for b in buckets[1 + run :]]
                    )
                break
    # Anything else (a refreshed startTime reorders them): match object by object.
    by_id = {id(b): i for i, b in enumerate(old)}
    out = []
    for bucket in buckets:
        i = by_id.get(id(bucket))
        out.append(old_json[i] if i is not None and old[i] is bucket else bucket.to_dict())
    return out


# How far into the previous buckets the first survivor of a compaction is looked for (a
# compaction folds as many as the batch added, plus one).
_FOLD_SEARCH = 16


def _cell_json(cell: CellStatus, before: _CellJson | None) -> _CellJson:
    buckets = cell.buckets
    bucket_json = _buckets_json(buckets, before)
    history = cell.admission_history
    if (
        before is not None
        # A cell as parsed writes back the keys it came with; ours writes every field.
        and not _parsed(before.cell)
        and not _parsed(before.cell.admission_history)
        and before.cell.aggregation is cell.aggregation
        and before.cell.extra is cell.extra
        and before.cell.admission_history.extra is history.extra
    ):
        # Only the buckets changed: the rest of the previous cell's JSON stands.
        out = dict(before.json)
        out["admissionHistory"] = {**before.json["admissionHistory"], "buckets": bucket_json}
    else:
        out = cell.with_buckets(()).to_dict()
        out["admissionHistory"]["buckets"] = bucket_json
    return _CellJson(cell, out, buckets, bucket_json)
