"""Strict field validation of built-in kinds (``?fieldValidation=Strict``), as kube-apiserver
answers it: a field the kind does not define is a 400 ``strict decoding error``.

Custom resources are checked against their CRD schema (`schema.unknown_fields`); built-in kinds
are checked against the field tables of the official `kubernetes` client's models, which are
generated from the apiserver's own OpenAPI document, so the sandbox does not carry a second copy
of every built-in schema. A kind the client has no model for is not checked.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\((\w+), (.+)\)$")
# openapi_types of leaves: values of these types are not walked into.
_LEAVES = frozenset({"str", "int", "float", "bool", "object", "datetime", "date", "bytearray"})


@cache
def _model(name: str) -> type | None:
    from kubernetes.client import models

    model = getattr(models, name, None)
    return model if isinstance(model, type) and hasattr(model, "attribute_map") else None


def model_name(version: str, kind: str) -> str:
    """The client's model class for a kind served at ``version`` (``V1Service``)."""
    return f"{version[:1].upper()}{version[1:]}{kind}"


def _walk(type_name: str, value: Any, path: str, out: list[str]) -> None:
    if type_name in _LEAVES or value is None:
        return
    if match := _LIST.match(type_name):
        if isinstance(value, list):
            for index, item in enumerate(value):
                _walk(match.group(1), item, f"{path}[{index}]", out)
        return
    if match := _DICT.match(type_name):
        if isinstance(value, dict):
            for key, item in value.items():
                _walk(match.group(2), item, f"{path}[{key}]", out)
        return
    model = _model(type_name)
    if model is None or not isinstance(value, dict):
        return
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        attr = by_json.get(key)
        if attr is None:
            out.append(child)
            continue
        _walk(model.openapi_types[attr], item, child, out)


def unknown_builtin_fields(version: str, kind: str, obj: dict[str, Any]) -> list[str] | None:
    """Paths of fields ``obj`` sets that the kind does not define, or None when the kind is
    unknown to the client (then nothing can be said)."""
    name = model_name(version, kind)
    if _model(name) is None:
        return None
    out: list[str] = []
    _walk(name, obj, "", out)
    return out
