"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge patch is Kubernetes' own: maps merge, `null` deletes, and some lists merge by
a key instead of being replaced. The real apiserver reads the merge keys from Go struct tags;
the sandbox keeps a table of the list fields that matter for built-in types, keyed by field
name (the same name always has the same strategy in the types the sandbox serves).
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(Exception):
    """The patch could not be applied (the apiserver answers 422)."""


class PatchDecodeError(Exception):
    """The patch body is malformed (the apiserver answers 400)."""


# --- RFC 7386 ------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# --- RFC 6902 ------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'Unable to parse path "{path}": missing leading slash')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    try:
        idx = int(token)
    except ValueError:
        raise PatchError(f"Unable to access invalid index: {token}") from None
    limit = len(container) if for_add else len(container) - 1
    if idx < 0 or idx > limit:
        raise PatchError(f"Unable to access invalid index: {idx}")
    return idx


def _parent(doc: Any, tokens: list[str], op: str) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(
                    f"{op} operation does not apply: doc is missing path: "
                    f"/{'/'.join(tokens)}: missing value"
                )
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, False)]
        else:
            raise PatchError(
                f"{op} operation does not apply: doc is missing path: "
                f"/{'/'.join(tokens)}: missing value"
            )
    return node, tokens[-1]


def _get(doc: Any, tokens: list[str], op: str) -> Any:
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, op)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(
                f"{op} operation does not apply: doc is missing path: "
                f"/{'/'.join(tokens)}: missing value"
            )
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, False)]
    raise PatchError(f"{op} operation does not apply: doc is missing path: /{'/'.join(tokens)}")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, "add")
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, True), value)
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str], op: str = "remove") -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("remove operation does not apply: cannot remove the document root")
    parent, last = _parent(doc, tokens, op)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, False))
    raise PatchError(f"{op} operation does not apply: doc is missing path: /{'/'.join(tokens)}")


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchDecodeError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchDecodeError("Unexpected kind: missing op")
        name = op["op"]
        tokens = _pointer(str(op.get("path", "")))
        if name == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif name == "remove":
            doc, _ = _remove(doc, tokens)
        elif name == "replace":
            if not tokens:
                doc = copy.deepcopy(op.get("value"))
                continue
            parent, last = _parent(doc, tokens, "replace")
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError(
                        "replace operation does not apply: doc is missing key: "
                        f"/{'/'.join(tokens)}: missing value"
                    )
                parent[last] = copy.deepcopy(op.get("value"))
            elif isinstance(parent, list):
                parent[_index(parent, last, False)] = copy.deepcopy(op.get("value"))
            else:
                raise PatchError("replace operation does not apply: doc is missing path")
        elif name in ("move", "copy"):
            source = _pointer(str(op.get("from", "")))
            if name == "move":
                doc, value = _remove(doc, source, "move")
            else:
                value = copy.deepcopy(_get(doc, source, "copy"))
            doc = _add(doc, tokens, value)
        elif name == "test":
            actual = _get(doc, tokens, "test") if tokens else doc
            if actual != op.get("value"):
                raise PatchError(f"testing value /{'/'.join(tokens)} failed: test failed")
        else:
            raise PatchDecodeError(f"Unexpected kind: {name}")
    return doc


# --- strategic merge patch -------------------------------------------------------------------

# List fields that merge by a key (patchStrategy:"merge", patchMergeKey:...) in built-in types.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "taints": "key",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "addresses": "type",
    "webhooks": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "podIPs": "ip",
}
# Lists of scalars that merge as sets (patchStrategy:"merge" without a key).
MERGE_SCALAR_LISTS = frozenset({"finalizers"})


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise PatchDecodeError("strategic merge patch must be a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = dict(target)
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field_name = k.split("/", 1)[1]
            drop = set(map(_hashable, v or []))
            if isinstance(result.get(field_name), list):
                result[field_name] = [x for x in result[field_name] if _hashable(x) not in drop]
            continue
        if v is None:
            result.pop(k, None)
            continue
        current = result.get(k)
        if isinstance(v, dict):
            if v.get("$patch") == "delete":
                result.pop(k, None)
            else:
                result[k] = _smp_map(current if isinstance(current, dict) else {}, v)
        elif isinstance(v, list):
            result[k] = _smp_list(k, current if isinstance(current, list) else [], v)
        else:
            result[k] = copy.deepcopy(v)
    if isinstance(retain, list):
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _hashable(x: Any) -> Any:
    return repr(x) if isinstance(x, dict | list) else x


def _smp_list(field_name: str, current: list[Any], patch: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field_name)
    if key is not None and all(isinstance(x, dict) for x in patch):
        # A `$patch: replace` element replaces the whole list with the other elements.
        if any(x.get("$patch") == "replace" for x in patch):
            return [
                {k: v for k, v in x.items() if k != "$patch"}
                for x in patch
                if x.get("$patch") != "replace"
            ]
        result = [copy.deepcopy(x) for x in current]
        positions = {
            x.get(key): i for i, x in enumerate(result) if isinstance(x, dict) and key in x
        }
        deleted: set[Any] = set()
        for item in patch:
            ident = item.get(key)
            if item.get("$patch") == "delete":
                deleted.add(ident)
                continue
            if ident in positions:
                idx = positions[ident]
                result[idx] = _smp_map(result[idx], item)
            else:
                positions[ident] = len(result)
                result.append(_smp_map({}, item))
        return [x for x in result if not (isinstance(x, dict) and x.get(key) in deleted)]
    if field_name in MERGE_SCALAR_LISTS:
        result = list(current)
        for x in patch:
            if x not in result:
                result.append(x)
        return result
    return copy.deepcopy(patch)
