"""Custom resource validation against a CRD's structural openAPIV3Schema.

Covers what CRDs in this project use: types, required, minimum/maximum, lengths, pattern, enum,
item counts, additionalProperties, nullable, int-or-string, preserve-unknown-fields; applies
`default`s and prunes unknown fields like the apiserver. Errors are field causes shaped as the
apiserver's field.Error (reason, message, field) so `errors.invalid` renders the same 422.
"""

from __future__ import annotations

import re
from typing import Any

Cause = dict[str, str]

_TYPE_NAMES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


def _go_value(value: Any) -> str:
    """A value as the apiserver prints it in `Invalid value: ...` messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return str(value)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {_go_value(value)}: {detail}",
        "field": path,
    }


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    py = _TYPE_NAMES.get(expected)
    return py is None or isinstance(value, py)


def validate(schema: dict[str, Any], value: Any, path: str = "") -> list[Cause]:
    """Field causes for `value` against `schema` (empty when valid)."""
    causes: list[Cause] = []
    _validate(schema, value, path, causes)
    return causes


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _validate(schema: dict[str, Any], value: Any, path: str, causes: list[Cause]) -> None:
    if not schema:
        return
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            causes.append(
                {
                    "reason": "FieldValueTypeInvalid",
                    "message": f'Invalid value: "null": {path} in body must be of type '
                    f'{schema["type"]}: "null"',
                    "field": path,
                }
            )
        return
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            causes.append(_invalid(path, value, f"{path} in body must be of type int-or-string"))
            return
    elif expected and not _type_ok(expected, value):
        causes.append(
            {
                "reason": "FieldValueTypeInvalid",
                "message": f'Invalid value: "{_json_type(value)}": {path} in body must be of type '
                f'{expected}: "{_json_type(value)}"',
                "field": path,
            }
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_go_value(v) for v in schema["enum"])
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f"Unsupported value: {_go_value(value)}: supported values: {supported}",
                "field": path,
            }
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        _numeric(schema, value, path, causes)
    elif isinstance(value, str):
        _string(schema, value, path, causes)
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(
                _invalid(
                    path,
                    len(value),
                    f"{path} in body should have at least {schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                {
                    "reason": "FieldValueTooMany",
                    "message": f"Too many: {len(value)}: must have at most "
                    f"{schema['maxItems']} items",
                    "field": path,
                }
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _validate(items, item, f"{path}[{i}]", causes)
    elif isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                causes.append(
                    {
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                        "field": _child(path, name),
                    }
                )
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, child in value.items():
            if name in props:
                _validate(props[name], child, _child(path, name), causes)
            elif isinstance(extra, dict):
                _validate(extra, child, _child(path, name), causes)


def _numeric(schema: dict[str, Any], value: float, path: str, causes: list[Cause]) -> None:
    if "minimum" in schema:
        lo = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= lo:
            causes.append(
                _invalid(path, value, f"{path} in body should be greater than {_go_value(lo)}")
            )
        elif value < lo:
            causes.append(
                _invalid(
                    path,
                    value,
                    f"{path} in body should be greater than or equal to {_go_value(lo)}",
                )
            )
    if "maximum" in schema:
        hi = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= hi:
            causes.append(
                _invalid(path, value, f"{path} in body should be less than {_go_value(hi)}")
            )
        elif value > hi:
            causes.append(
                _invalid(
                    path, value, f"{path} in body should be less than or equal to {_go_value(hi)}"
                )
            )
    if "multipleOf" in schema and schema["multipleOf"] and value % schema["multipleOf"]:
        causes.append(
            _invalid(path, value, f"{path} in body should be a multiple of {schema['multipleOf']}")
        )


def _string(schema: dict[str, Any], value: str, path: str, causes: list[Cause]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(
            _invalid(
                path, value, f"{path} in body should be at least {schema['minLength']} chars long"
            )
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "message": f"Too long: may not be longer than {schema['maxLength']}",
                "field": path,
            }
        )
    pattern = schema.get("pattern")
    if pattern and re.search(pattern, value) is None:
        causes.append(_invalid(path, value, f"{path} in body should match '{pattern}'"))


# --- defaulting and pruning ----------------------------------------------------------------


def default_and_prune(schema: dict[str, Any], value: Any, root: bool = True) -> Any:
    """Apply schema defaults and drop fields the schema does not declare.

    apiVersion, kind and metadata at the root are never pruned (the apiserver handles them).
    """
    if not schema or not isinstance(value, dict | list):
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [default_and_prune(items, v, False) for v in value]
        return value
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return value
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    out: dict[str, Any] = {}
    for name, child in value.items():
        if root and name in ("apiVersion", "kind", "metadata"):
            out[name] = child
        elif name in props:
            out[name] = default_and_prune(props[name], child, False)
        elif isinstance(extra, dict):
            out[name] = default_and_prune(extra, child, False)
        elif extra is True or preserve:
            out[name] = child
    for name, child_schema in props.items():
        if name not in out and isinstance(child_schema, dict) and "default" in child_schema:
            out[name] = default_and_prune(child_schema, child_schema["default"], False)
    return out


def unknown_fields(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Paths of fields the schema would prune (what fieldValidation=Strict rejects)."""
    out: list[str] = []
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                out += unknown_fields(items, v, f"{path}[{i}]")
        return out
    if not isinstance(value, dict):
        return out
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for name, child in value.items():
        child_path = _child(path, name)
        if not path and name in ("apiVersion", "kind", "metadata"):
            continue
        if name in props:
            out += unknown_fields(props[name], child, child_path)
        elif isinstance(extra, dict):
            out += unknown_fields(extra, child, child_path)
        elif extra is not True:
            out.append(child_path)
    return out
