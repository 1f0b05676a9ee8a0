"""The PodProtector wire model (`podseidon.kubewharf.io/v1alpha1`, design.md §3).

Every class is a frozen dataclass: algorithms build new objects with `evolve` (or
`dataclasses.replace`, the same at three times the cost) instead of editing one that a cache or
another thread may be holding.

Two serialization rules meet here:

* An object parsed with `from_dict` remembers which keys it had (and which were `null`), so
  `to_dict(from_dict(x)) == x`: status written by another client round-trips exactly.
* An object built by code (including any `replace` of a parsed one) serializes like the Go API
  types: required fields always, optional ones only when non-zero.

Unknown keys anywhere in spec and status are kept in each object's `extra` and written back, so
an older reader does not strip fields a newer writer added. `metadata` is kept verbatim.
Mappings inside the model (`metadata`, selectors, `extra`) are shared, not copied, by
`replace`: treat them as read-only. `from_dict` and `to_dict` copy them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import cache, cached_property
from itertools import pairwise
from typing import Any, ClassVar, Self

from protectors import constants
from protectors.selectors import LabelSelector, SelectorError
from protectors.timefmt import format_micro_time, parse_time

__all__ = [
    "WRITTEN_FIELD_PATHS",
    "AdmissionHistory",
    "AdmissionHistoryConfig",
    "Aggregation",
    "Bucket",
    "CellStatus",
    "PodProtector",
    "PodProtectorFormatError",
    "Spec",
    "Status",
    "Summary",
    "copy_json",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class PodProtectorFormatError(ValueError):
    """A PodProtector (or part of one) that does not match the API. `path` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data, as plain dicts and lists (read-only mappings too);
    faster than copy.deepcopy."""
    if isinstance(value, Mapping):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [copy_json(v) for v in value]
    return value


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


# --- codecs: how one field's JSON value becomes a Python value and back ------------------


class _Codec:
    def parse(self, raw: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value

    def is_empty(self, value: Any) -> bool:
        return value is None or value == 0 or value == "" or value == () or value == {}

    def children(self) -> tuple[_Field, ...]:
        return ()


class _Int(_Codec):
    def __init__(self, minimum: int = INT32_MIN, maximum: int = INT32_MAX) -> None:
        self.minimum, self.maximum = minimum, maximum

    def parse(self, raw: Any, path: str) -> int:
        # bool is an int in Python but never in JSON; floats are refused as Go refuses them.
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise PodProtectorFormatError(path, f"expected an integer, got {_type_name(raw)}")
        if raw < self.minimum:
            raise PodProtectorFormatError(path, f"must be >= {self.minimum}, got {raw}")
        if raw > self.maximum:
            raise PodProtectorFormatError(path, f"must be <= {self.maximum}, got {raw}")
        return raw


class _Str(_Codec):
    def parse(self, raw: Any, path: str) -> str:
        if not isinstance(raw, str):
            raise PodProtectorFormatError(path, f"expected a string, got {_type_name(raw)}")
        return raw


class _MicroTime(_Codec):
    def parse(self, raw: Any, path: str) -> datetime:
        try:
            return parse_time(raw)
        except ValueError as exc:
            raise PodProtectorFormatError(path, str(exc)) from None

    def dump(self, value: datetime) -> str:
        return format_micro_time(value)


class _Object(_Codec):
    """A JSON object kept verbatim (metadata)."""

    def parse(self, raw: Any, path: str) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise PodProtectorFormatError(path, f"expected an object, got {_type_name(raw)}")
        return copy_json(raw)

    def dump(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return copy_json(value)

    def is_empty(self, value: Any) -> bool:
        # `{}` is a real value: as a selector it selects everything, unlike an absent one.
        return value is None


class _Selector(_Object):
    """A LabelSelector kept verbatim, but validated so a bad one fails at parse time."""

    def parse(self, raw: Any, path: str) -> dict[str, Any]:
        value = super().parse(raw, path)
        try:
            LabelSelector.from_dict(value)
        except SelectorError as exc:
            raise PodProtectorFormatError(path, str(exc)) from None
        return value


class _Nested(_Codec):
    def __init__(self, cls: type[_WireObject]) -> None:
        self.cls = cls

    def parse(self, raw: Any, path: str) -> _WireObject:
        return self.cls.from_dict(raw, path=path)

    def dump(self, value: _WireObject) -> dict[str, Any]:
        return value.to_dict()

    def is_empty(self, value: Any) -> bool:
        return value is None or not value.to_dict()

    def children(self) -> tuple[_Field, ...]:
        return self.cls._FIELDS


class _ListOf(_Nested):
    def parse(self, raw: Any, path: str) -> tuple[_WireObject, ...]:
        if not isinstance(raw, list):
            raise PodProtectorFormatError(path, f"expected an array, got {_type_name(raw)}")
        return tuple(self.cls.from_dict(item, path=f"{path}[{i}]") for i, item in enumerate(raw))

    def dump(self, value: tuple[_WireObject, ...]) -> list[dict[str, Any]]:
        return [item.to_dict() for item in value]

    def is_empty(self, value: Any) -> bool:
        return not value


@dataclass(frozen=True)
class _Field:
    wire: str
    attr: str
    codec: _Codec
    # Written even when zero/empty by objects built in code (Go: no `omitempty`).
    always_written: bool = False
    # `from_dict` refuses an object without it.
    required: bool = False


@dataclass(frozen=True)
class _Shape:
    """Which keys a parsed object had, and which of them were JSON null."""

    present: frozenset[str]
    nulls: frozenset[str]


# --- the generic parse/serialize over a field table -----------------------------------------


@cache
def _data_fields(cls: type) -> frozenset[str]:
    """Every dataclass field of a model class but ``_shape`` (``extra`` included)."""
    return frozenset(f.name for f in fields(cls) if f.name != "_shape")


class _WireObject:
    _FIELDS: ClassVar[tuple[_Field, ...]] = ()
    _WIRE_NAMES: ClassVar[frozenset[str]] = frozenset()
    _DUMP_PLAN: ClassVar[tuple[tuple[str, str, Any, Any, bool], ...]] = ()

    # Unknown keys, written back verbatim.
    extra: Mapping[str, Any]
    # Set only by from_dict. Subclasses declare it with init=False, so `replace()` yields an
    # object without one, which then serializes like the Go types.
    _shape: _Shape | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._WIRE_NAMES = frozenset(f.wire for f in cls._FIELDS)
        # What to_dict needs of each field, looked up once: it runs for every bucket written.
        cls._DUMP_PLAN = tuple(
            (f.wire, f.attr, f.codec.dump, f.codec.is_empty, f.always_written) for f in cls._FIELDS
        )

    def evolve(self, **changes: Any) -> Self:
        """``dataclasses.replace(self, **changes)`` for the hot paths (the quota, summarize),
        at a third of its cost: the field values are copied without running ``__init__``, which
        has nothing to check or default for a copy. As with ``replace``, the copy has no
        ``_shape`` (it serializes like the Go types) and none of the cached properties."""
        cls = type(self)
        names = _data_fields(cls)
        if not names.issuperset(changes):
            unknown = sorted(set(changes) - names)
            raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
        new = object.__new__(cls)
        values = new.__dict__
        mine = self.__dict__
        for name in names:
            values[name] = mine[name]
        values.update(changes)
        values["_shape"] = None
        return new

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Self:
        """Parse the JSON form; raises `PodProtectorFormatError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise PodProtectorFormatError(path, f"expected an object, got {_type_name(data)}")
        values: dict[str, Any] = {}
        present: set[str] = set()
        nulls: set[str] = set()
        for f in cls._FIELDS:
            field_path = f"{path}.{f.wire}" if path else f.wire
            if f.wire not in data:
                if f.required:
                    raise PodProtectorFormatError(field_path, "required field is missing")
                continue
            present.add(f.wire)
            raw = data[f.wire]
            if raw is None:
                if f.required:
                    raise PodProtectorFormatError(field_path, "required field must not be null")
                nulls.add(f.wire)
                continue
            values[f.attr] = f.codec.parse(raw, field_path)
        extra = {k: copy_json(v) for k, v in data.items() if k not in cls._WIRE_NAMES}
        obj = cls(**values, extra=extra)
        obj._validate(path)
        object.__setattr__(obj, "_shape", _Shape(frozenset(present), frozenset(nulls)))
        return obj

    def _validate(self, path: str) -> None:
        """Cross-field checks after parsing; overridden where needed."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a fresh dict the caller may change)."""
        out: dict[str, Any] = {}
        shape = self._shape
        if shape is None:
            values = self.__dict__
            for wire, attr, dump, is_empty, always in self._DUMP_PLAN:
                value = values[attr]
                if value is None or (not always and is_empty(value)):
                    continue
                out[wire] = dump(value)
        else:
            for f in self._FIELDS:
                # Parsed and untouched: write back exactly the keys that came in.
                if f.wire not in shape.present:
                    continue
                value = getattr(self, f.attr)
                out[f.wire] = None if f.wire in shape.nulls else f.codec.dump(value)
        for key, value in self.extra.items():
            out[key] = copy_json(value)
        return out


_NON_NEGATIVE = _Int(minimum=0)
_INT32 = _Int()
_INT64 = _Int(INT64_MIN, INT64_MAX)
_STR = _Str()
_TIME = _MicroTime()


# --- spec -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AdmissionHistoryConfig(_WireObject):
    """Per-object overrides of the admission history defaults; None or <= 0 = the default."""

    max_concurrent_lag: int | None = None
    compact_threshold: int | None = None
    aggregation_rate_millis: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    # No minimum in the API; history_config ignores values <= 0.
    _FIELDS = (
        _Field("maxConcurrentLag", "max_concurrent_lag", _INT32),
        _Field("compactThreshold", "compact_threshold", _INT32),
        _Field("aggregationRateMillis", "aggregation_rate_millis", _INT32),
    )


@dataclass(frozen=True, kw_only=True)
class Spec(_WireObject):
    min_available: int
    min_ready_seconds: int = 0
    selector: Mapping[str, Any]
    aggregation_selector: Mapping[str, Any] | None = None
    admission_history_config: AdmissionHistoryConfig | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("minAvailable", "min_available", _NON_NEGATIVE, always_written=True, required=True),
        # No minimum in the API; health treats a negative value as 0.
        _Field("minReadySeconds", "min_ready_seconds", _INT32, always_written=True),
        _Field("selector", "selector", _Selector(), always_written=True, required=True),
        _Field("aggregationSelector", "aggregation_selector", _Selector()),
        _Field(
            "admissionHistoryConfig", "admission_history_config", _Nested(AdmissionHistoryConfig)
        ),
    )

    @cached_property
    def label_selector(self) -> LabelSelector:
        """`selector` as a matcher: which pods this protector guards."""
        return LabelSelector.from_dict(self.selector)

    @cached_property
    def aggregation_label_selector(self) -> LabelSelector:
        """Which pods count toward availability; `selector` when no aggregationSelector."""
        if self.aggregation_selector is None:
            return self.label_selector
        return LabelSelector.from_dict(self.aggregation_selector)


# --- status ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Aggregation(_WireObject):
    """One cell's count of the protector's pods, as of `last_event_time`."""

    total_replicas: int = 0
    available_replicas: int = 0
    ready_replicas: int = 0
    scheduled_replicas: int = 0
    running_replicas: int = 0
    last_event_time: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("totalReplicas", "total_replicas", _NON_NEGATIVE, always_written=True),
        _Field("availableReplicas", "available_replicas", _NON_NEGATIVE, always_written=True),
        _Field("readyReplicas", "ready_replicas", _NON_NEGATIVE),
        _Field("scheduledReplicas", "scheduled_replicas", _NON_NEGATIVE),
        _Field("runningReplicas", "running_replicas", _NON_NEGATIVE),
        _Field("lastEventTime", "last_event_time", _TIME),
    )


@dataclass(frozen=True, kw_only=True)
class Bucket(_WireObject):
    """One admitted deletion (`pod_uid`), or a compacted run of old ones (`counter`)."""

    start_time: datetime
    pod_uid: str | None = None
    pod_name: str | None = None
    end_time: datetime | None = None
    counter: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("startTime", "start_time", _TIME, always_written=True, required=True),
        _Field("podUID", "pod_uid", _STR),
        _Field("podName", "pod_name", _STR),
        _Field("endTime", "end_time", _TIME),
        _Field("counter", "counter", _INT32),
    )

    @property
    def weight(self) -> int:
        """How many deletions this bucket stands for (`counter`, or 1 for a single pod)."""
        return self.counter if self.counter and self.counter > 0 else 1

    @property
    def end(self) -> datetime:
        """The latest moment covered: `end_time`, or `start_time` for a single-pod bucket."""
        return self.end_time or self.start_time


@dataclass(frozen=True, kw_only=True)
class AdmissionHistory(_WireObject):
    buckets: tuple[Bucket, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    # Always written (`"buckets": []`), matching what the recorded status writers send.
    _FIELDS = (_Field("buckets", "buckets", _ListOf(Bucket), always_written=True),)

    # Every status write summarizes first, and the webhook's quota summarizes the same
    # histories again on each batch: these are computed once per (immutable) history.
    @cached_property
    def pending(self) -> int:
        """How many admitted deletions the buckets stand for."""
        return sum(b.weight for b in self.buckets)

    @cached_property
    def in_order(self) -> bool:
        """Whether the buckets are sorted by startTime (oldest first)."""
        buckets = self.buckets
        return all(a.start_time <= b.start_time for a, b in pairwise(buckets))

    def known(self, *, pending: int | None = None, in_order: bool | None = None) -> Self:
        """Seed ``pending`` and ``in_order`` when the caller knows them (compaction keeps the
        pending count and sorts; appending a newer bucket keeps the order), so that they are
        not counted again over every bucket."""
        if pending is not None:
            self.__dict__["pending"] = pending
        if in_order is not None:
            self.__dict__["in_order"] = in_order
        return self


@dataclass(frozen=True, kw_only=True)
class CellStatus(_WireObject):
    cell_id: str
    aggregation: Aggregation = field(default_factory=Aggregation)
    admission_history: AdmissionHistory = field(default_factory=AdmissionHistory)
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("cellID", "cell_id", _STR, always_written=True, required=True),
        _Field("aggregation", "aggregation", _Nested(Aggregation), always_written=True),
        _Field(
            "admissionHistory",
            "admission_history",
            _Nested(AdmissionHistory),
            always_written=True,
        ),
    )

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        return self.admission_history.buckets

    def with_buckets(
        self,
        buckets: Iterable[Bucket],
        *,
        pending: int | None = None,
        in_order: bool | None = None,
    ) -> CellStatus:
        """This cell with other buckets; ``pending``/``in_order``: see AdmissionHistory.known."""
        history = self.admission_history.evolve(buckets=tuple(buckets))
        return self.evolve(admission_history=history.known(pending=pending, in_order=in_order))


@dataclass(frozen=True, kw_only=True)
class Summary(_WireObject):
    total_replicas: int = 0
    aggregated_available_replicas: int = 0
    # May go negative: admitted deletions are subtracted before the aggregator confirms them.
    estimated_available_replicas: int = 0
    # None (omitted) when no cell has pending buckets and a lastEventTime.
    max_latency_millis: int | None = None
    aggregated_ready: int = 0
    aggregated_scheduled: int = 0
    aggregated_running: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("totalReplicas", "total_replicas", _INT32, always_written=True),
        _Field(
            "aggregatedAvailableReplicas",
            "aggregated_available_replicas",
            _INT32,
            always_written=True,
        ),
        _Field(
            "estimatedAvailableReplicas",
            "estimated_available_replicas",
            _INT32,
            always_written=True,
        ),
        _Field("maxLatencyMillis", "max_latency_millis", _INT64),
        _Field("aggregatedReady", "aggregated_ready", _INT32),
        _Field("aggregatedScheduled", "aggregated_scheduled", _INT32),
        _Field("aggregatedRunning", "aggregated_running", _INT32),
    )


@dataclass(frozen=True, kw_only=True)
class Status(_WireObject):
    cells: tuple[CellStatus, ...] = ()
    summary: Summary = field(default_factory=Summary)
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("cells", "cells", _ListOf(CellStatus), always_written=True),
        _Field("summary", "summary", _Nested(Summary), always_written=True),
    )

    def _validate(self, path: str) -> None:
        # `cells` is a list-map keyed by cellID; a duplicate would make "the cell" ambiguous.
        seen: set[str] = set()
        for index, cell in enumerate(self.cells):
            if cell.cell_id in seen:
                where = f"{path}.cells[{index}].cellID" if path else f"cells[{index}].cellID"
                raise PodProtectorFormatError(where, f"duplicate cell ID {cell.cell_id!r}")
            seen.add(cell.cell_id)

    def cell(self, cell_id: str) -> CellStatus | None:
        return next((c for c in self.cells if c.cell_id == cell_id), None)

    def with_cell(self, cell: CellStatus) -> Status:
        """This status with `cell` replacing the one of the same ID, or appended."""
        cells = list(self.cells)
        for index, existing in enumerate(cells):
            if existing.cell_id == cell.cell_id:
                cells[index] = cell
                break
        else:
            cells.append(cell)
        return self.evolve(cells=tuple(cells))

    def without_cells(self, cell_ids: Iterable[str]) -> Status:
        drop = set(cell_ids)
        return replace(self, cells=tuple(c for c in self.cells if c.cell_id not in drop))


# --- the object -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PodProtector(_WireObject):
    api_version: str | None = constants.API_VERSION
    kind: str | None = constants.KIND
    metadata: Mapping[str, Any] = field(default_factory=dict)
    spec: Spec
    status: Status | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _shape: _Shape | None = field(default=None, init=False, repr=False, compare=False)

    _FIELDS = (
        _Field("apiVersion", "api_version", _STR, always_written=True),
        _Field("kind", "kind", _STR, always_written=True),
        _Field("metadata", "metadata", _Object(), always_written=True),
        _Field("spec", "spec", _Nested(Spec), always_written=True, required=True),
        _Field("status", "status", _Nested(Status)),
    )

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Self:
        obj = super().from_dict(data, path=path)
        if obj._shape is not None and "apiVersion" not in obj._shape.present:
            object.__setattr__(obj, "api_version", None)
        if obj._shape is not None and "kind" not in obj._shape.present:
            object.__setattr__(obj, "kind", None)
        return obj

    def _validate(self, path: str) -> None:
        if self.kind not in (None, constants.KIND):
            raise PodProtectorFormatError(
                f"{path}.kind" if path else "kind", f"expected {constants.KIND}, got {self.kind!r}"
            )

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")

    @property
    def namespace(self) -> str:
        return self.metadata.get("namespace", "")

    @property
    def uid(self) -> str:
        return self.metadata.get("uid", "")

    @property
    def resource_version(self) -> str:
        return self.metadata.get("resourceVersion", "")

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def key(self) -> str:
        """`namespace/name`, the form used in messages and cache keys."""
        return f"{self.namespace}/{self.name}"

    def with_status(self, status: Status | None) -> PodProtector:
        return self.evolve(status=status)


# --- the list of everything the model may write ---------------------------------------------


def _walk(prefix: str, fields: Iterable[_Field], visit: Callable[[str], None]) -> None:
    for f in fields:
        path = f"{prefix}.{f.wire}"
        visit(path)
        suffix = "[]" if isinstance(f.codec, _ListOf) else ""
        _walk(path + suffix, f.codec.children(), visit)


def _written_paths() -> tuple[str, ...]:
    paths: list[str] = []
    _walk("spec", Spec._FIELDS, paths.append)
    _walk("status", Status._FIELDS, paths.append)
    return tuple(paths)


# JSON paths (below spec and status) that `to_dict` can emit for objects built in code; the
# CRD schema must declare every one of them or the apiserver prunes it. Selectors are written
# verbatim as `metav1.LabelSelector`, so only the selector fields themselves are listed.
WRITTEN_FIELD_PATHS: tuple[str, ...] = _written_paths()
