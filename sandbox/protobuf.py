"""Decoding of the few Kubernetes protobuf request bodies kubectl sends.

kubectl's typed clients (`kubectl create namespace`, `kubectl drain`'s evictions, ...) send
`application/vnd.kubernetes.protobuf` bodies even to servers that answer in JSON. The sandbox
speaks JSON, so it turns those bodies back into JSON for the handful of kinds involved; other
kinds get a 415 that names the kind, so a user knows to use `kubectl create -f` instead.

Wire format: the 4 magic bytes `k8s\\0`, then a runtime.Unknown message
{typeMeta{apiVersion, kind}, raw, contentEncoding, contentType} whose `raw` is the object.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# A schema maps field number → (json name, type); a type is "string", "int", "bool",
# "bytes", "time", a nested schema dict, ("map", value type) or ("list", item type).
Schema = dict[int, tuple[str, Any]]

OWNER_REFERENCE: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"),
    10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("list", OWNER_REFERENCE)),
    14: ("finalizers", ("list", "string")),
}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int"),
    2: ("preconditions", {1: ("uid", "string"), 2: ("resourceVersion", "string")}),
    3: ("orphanDependents", "bool"),
    4: ("propagationPolicy", "string"),
    5: ("dryRun", ("list", "string")),
}
KINDS: dict[str, Schema] = {
    "Namespace": {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("finalizers", ("list", "string"))}),
        3: ("status", {1: ("phase", "string")}),
    },
    "Eviction": {1: ("metadata", OBJECT_META), 2: ("deleteOptions", DELETE_OPTIONS)},
    "DeleteOptions": DELETE_OPTIONS,
    "ConfigMap": {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
}
_TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}
_UNKNOWN: Schema = {
    1: ("typeMeta", _TYPE_META),
    2: ("raw", "bytes"),
    3: ("contentEncoding", "string"),
    4: ("contentType", "string"),
}


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _scalar(kind: Any, value: Any) -> Any:
    if kind == "string":
        return value.decode("utf-8")
    if kind == "bytes":
        import base64

        return base64.b64encode(value).decode()
    if kind == "int":
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "bool":
        return bool(value)
    if kind == "time":
        parts = decode_message(value, {1: ("seconds", "int"), 2: ("nanos", "int")})
        t = datetime.fromtimestamp(parts.get("seconds", 0), UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(kind, dict):
        return decode_message(value, kind)
    raise ProtobufError(f"unknown field type {kind!r}")


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind = spec
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = decode_message(value, {1: ("key", "string"), 2: ("value", kind[1])})
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        elif isinstance(kind, tuple) and kind[0] == "list":
            out.setdefault(name, []).append(_scalar(kind[1], value))
        else:
            out[name] = _scalar(kind, value)
    # Non-pointer Go fields are always encoded; drop their zero values as JSON omits them.
    return {
        k: v for k, v in out.items() if v not in ("", None) and not (k == "generation" and v == 0)
    }


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object; ProtobufError when not supported."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing protobuf magic prefix")
    envelope = decode_message(body[len(MAGIC) :], _UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtobufError(
            f"the sandbox cannot decode protobuf bodies of kind {kind or 'unknown'}; "
            "send JSON (for kubectl, use `kubectl create -f` / `kubectl apply -f`)"
        )
    raw = envelope.get("raw")
    obj = decode_message(_raw_bytes(raw), schema)
    return {"kind": kind, "apiVersion": type_meta.get("apiVersion", ""), **obj}


def _raw_bytes(raw: Any) -> bytes:
    import base64

    # decode_message renders `bytes` fields as base64 text for JSON; undo that here.
    return base64.b64decode(raw) if isinstance(raw, str) else b""
