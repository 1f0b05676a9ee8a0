"""Switch the webhook off and on in one worker cluster, audited; and show its state.

**Disable** replaces the ``objectSelector`` of every webhook in the ``podseidon.kubewharf.io``
ValidatingWebhookConfiguration with the runbook's never-matching selector, so kube-apiserver
stops sending pod deletions and evictions to us: from then on **nothing protects that cell's
pods**. **Enable** restores exactly the selectors that were there before.

Where the previous selectors are kept: in an annotation on the configuration object itself
(``podseidon.kubewharf.io/disabled-selectors``), written by the same JSON patch that disables.
- One atomic write: there is no moment where the selector is gone but not yet saved.
- The saved selectors live exactly as long as the disabled state they belong to. If someone
  re-registers the webhook (``manage.py webhookconfig --apply``, a deploy pipeline), the new
  object carries fresh selectors and no annotation, and we will not later "restore" a stale
  selector over it, which a database copy would do.
- It survives losing the console's database, and kubectl users see why the webhook is off.
The audit record of the disable also keeps a copy (in ``result.saved``) for people.

**Restore from configuration** is for a webhook disabled outside the console (the runbook's
``kubectl patch``: never-matching selector, nothing saved, so *Enable* has nothing to restore).
It re-registers the cell's webhook as the product's configuration renders it
(``webhook.registration``, the object ``manage.py webhookconfig`` prints, caBundle included),
replacing the object with the resourceVersion it was read at; other people's annotations and
labels are kept. The audit record keeps the selectors it replaced.

Every action is idempotent. Disable and enable are JSON patches guarded by ``test`` operations
on the object's resourceVersion and on each selector they replace, restore a replace carrying
the resourceVersion, so an edit racing ours makes ours fail (then we re-read and decide again)
instead of being overwritten. Each change leaves a Kubernetes Event on the configuration
(``kubectl describe validatingwebhookconfiguration podseidon.kubewharf.io`` in the cell).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from audit.actions import (
    ActionResult,
    Done,
    Failure,
    InvalidAction,
    clean_reason,
    kube_cause,
    require_operator,
    run_action,
)
from audit.models import Action, Outcome
from protectors import constants
from protectors.clusters import client_for, config, recorder_for
from protectors.kube.client import VALIDATING_WEBHOOKS, KubeClient, KubeError
from webhook.registration import configured_ca_bundle, render_webhook_configuration

NEVER_MATCHING_SELECTOR = {"matchLabels": {"this-selector-does": "not-match-anything"}}
SAVED_ANNOTATION = f"{constants.PREFIX}disabled-selectors"
CONFIG_NAME = constants.WEBHOOK_CONFIG_NAME
STATE_TIMEOUT = 3.0
ATTEMPTS = 3

ENABLED = "enabled"
DISABLED_BY_CONSOLE = "disabled-by-console"
DISABLED_ELSEWHERE = "disabled-by-someone-else"
PARTLY_DISABLED = "partly-disabled"
NOT_REGISTERED = "not-registered"
UNREACHABLE = "unreachable"
ERROR = "error"

WHAT_DISABLE_DOES = (
    "Pod deletions and evictions in this cell are no longer sent to the webhook: nothing stops "
    "them from taking a workload below its minimum. Re-enable as soon as the incident allows."
)
WHAT_ENABLE_DOES = (
    "Restores the saved objectSelector: pod deletions and evictions in this cell are judged "
    "again, and refused when they would take a workload below its minimum."
)
WHAT_RESTORE_DOES = (
    "Re-registers the webhook of this cell exactly as the configuration renders it (selectors, "
    "failurePolicy, URL, caBundle: what `manage.py webhookconfig` prints), replacing what "
    "someone else changed: pod deletions and evictions are judged again."
)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _saved(obj: Mapping[str, Any]) -> dict | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(SAVED_ANNOTATION)
    if raw is None:
        return None
    try:
        saved = json.loads(raw)
    except ValueError:
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("selectors"), dict) else None


def _webhooks(obj: Mapping[str, Any]) -> list[dict]:
    return [w for w in obj.get("webhooks") or [] if isinstance(w, dict)]


def classify(obj: Mapping[str, Any] | None) -> str:
    if obj is None:
        return NOT_REGISTERED
    off = [w.get("objectSelector") == NEVER_MATCHING_SELECTOR for w in _webhooks(obj)]
    if _saved(obj) is not None:
        # Saved selectors but none disabled: the configuration was re-applied outside the console
        # (kubectl apply keeps an annotation it does not manage). It guards pods again; the
        # stale annotation is overwritten by the next disable.
        return DISABLED_BY_CONSOLE if any(off) else ENABLED
    if off and all(off):
        return DISABLED_ELSEWHERE
    if any(off):
        return PARTLY_DISABLED
    return ENABLED


def _read(client: KubeClient) -> dict | None:
    try:
        return client.get(VALIDATING_WEBHOOKS, None, CONFIG_NAME)
    except KubeError as error:
        if error.is_not_found:
            return None
        raise


def cell_state(cell_id: str) -> dict:
    """State of the webhook registration in one worker cluster (never raises for the cluster)."""
    cfg = config()
    base: dict[str, Any] = {
        "cell": cell_id,
        "dry_run": cfg.webhook.dry_run,
        "failure_policy": None,
        "configured_failure_policy": cfg.webhook.failure_policy,
        "object_selectors": {},
        "saved_selectors": None,
        "disabled_by": None,
        "disabled_at": None,
        "resource_version": None,
        "error": None,
    }
    try:
        obj = _read(client_for(cell_id, timeout=STATE_TIMEOUT))
    except KubeError as error:
        return {
            **base,
            "state": UNREACHABLE if error.status == 0 else ERROR,
            "error": kube_cause(error),
        }
    if obj is None:
        return {**base, "state": NOT_REGISTERED}
    webhooks = _webhooks(obj)
    saved = _saved(obj) or {}
    return {
        **base,
        "state": classify(obj),
        "failure_policy": webhooks[0].get("failurePolicy") if webhooks else None,
        "object_selectors": {w.get("name", ""): w.get("objectSelector") for w in webhooks},
        "saved_selectors": saved.get("selectors"),
        "disabled_by": saved.get("disabledBy"),
        "disabled_at": saved.get("disabledAt"),
        "resource_version": (obj.get("metadata") or {}).get("resourceVersion"),
    }


def all_states() -> list[dict]:
    cells = config().cell_ids
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(cells)))) as pool:
        return list(pool.map(cell_state, cells))


# -- disable / enable ---------------------------------------------------------------------------


def _disable_patch(obj: Mapping[str, Any], user_name: str) -> tuple[list[dict], dict]:
    ops: list[dict] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": obj["metadata"]["resourceVersion"],
        }
    ]
    selectors: dict[str, Any] = {}
    for index, webhook in enumerate(_webhooks(obj)):
        name = webhook.get("name", "")
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": name})
        # null = there was no objectSelector (which matches everything).
        selectors[name] = webhook.get("objectSelector")
        ops.append(
            {
                "op": "add",  # "add" replaces an existing member and creates a missing one
                "path": f"/webhooks/{index}/objectSelector",
                "value": NEVER_MATCHING_SELECTOR,
            }
        )
    saved = {
        "selectors": selectors,
        "disabledBy": user_name,
        "disabledAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    value = json.dumps(saved, sort_keys=True, separators=(",", ":"))
    if (obj.get("metadata") or {}).get("annotations"):
        ops.append(
            {
                "op": "add",
                "path": f"/metadata/annotations/{_escape(SAVED_ANNOTATION)}",
                "value": value,
            }
        )
    else:
        ops.append(
            {"op": "add", "path": "/metadata/annotations", "value": {SAVED_ANNOTATION: value}}
        )
    return ops, saved


def _enable_patch(obj: Mapping[str, Any], saved: Mapping[str, Any]) -> list[dict]:
    ops: list[dict] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": obj["metadata"]["resourceVersion"],
        }
    ]
    by_name = {w.get("name", ""): i for i, w in enumerate(_webhooks(obj))}
    for name, selector in saved["selectors"].items():
        index = by_name.get(name)
        if index is None:
            continue  # that webhook is gone from the configuration; nothing to restore
        current = _webhooks(obj)[index].get("objectSelector")
        if current != NEVER_MATCHING_SELECTOR:
            raise Failure(
                f"webhook {name!r} was edited after the console disabled it (its objectSelector "
                "is no longer the never-matching one); not overwriting that edit. Check the "
                "configuration and re-register it with `manage.py webhookconfig --apply`.",
                code="conflict",
                status=409,
                result={"current": current, "saved": selector},
            )
        path = f"/webhooks/{index}/objectSelector"
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": name})
        ops.append({"op": "test", "path": path, "value": NEVER_MATCHING_SELECTOR})
        if selector is None:
            ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "replace", "path": path, "value": selector})
    ops.append({"op": "remove", "path": f"/metadata/annotations/{_escape(SAVED_ANNOTATION)}"})
    return ops


def _patched(client: KubeClient, ops: list[dict]) -> dict | None:
    """Apply a JSON patch and return the object; None when someone changed it since we read
    it (read again)."""
    try:
        return client.patch(VALIDATING_WEBHOOKS, None, CONFIG_NAME, ops, patch_type="json")
    except KubeError as error:
        if _racing(error):
            return None
        raise


def _event(cell_id: str, obj: Mapping[str, Any], reason: str, message: str) -> None:
    # Cluster-scoped: the Event goes to the cell's "default" namespace; kubectl describe finds it.
    recorder_for(cell_id).normal(obj, reason, message)


def _selectors_text(selectors: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{name or '(unnamed)'}: {json.dumps(sel, sort_keys=True) if sel is not None else 'none'}"
        for name, sel in selectors.items()
    )


def _racing(error: KubeError) -> bool:
    # A failed `test` is 422 Invalid; a changed resourceVersion can also surface as 409.
    return error.status in (409, 422)


def _not_registered(cell_id: str, detail: str) -> Failure:
    return Failure(
        f"no webhook is registered in {cell_id}{detail}; register it with "
        f"`manage.py webhookconfig --cell {cell_id} --apply`",
        code="not_registered",
        status=409,
        result={"cell": cell_id, "state": NOT_REGISTERED},
    )


def _kept_changing(cell_id: str) -> Failure:
    return Failure(
        f"the webhook configuration in {cell_id} kept changing under us ({ATTEMPTS} attempts)",
        code="conflict",
        status=409,
    )


def _disable_work(cell_id: str, user_name: str, dry_run: bool) -> Done:
    client = client_for(cell_id)
    for _attempt in range(ATTEMPTS):
        obj = _read(client)
        state = classify(obj)
        if obj is None:
            return Done(
                Outcome.SUCCEEDED,
                f"no webhook is registered in {cell_id}: nothing to disable "
                "(its pod deletions are not guarded)",
                {"cell": cell_id, "state": NOT_REGISTERED, "changed": False},
            )
        if state == DISABLED_BY_CONSOLE:
            saved = _saved(obj)
            return Done(
                Outcome.SUCCEEDED,
                f"already disabled by the console in {cell_id}; the first saved selectors are kept",
                {"cell": cell_id, "state": state, "changed": False, "saved": saved},
            )
        if state == DISABLED_ELSEWHERE:
            return Done(
                Outcome.SUCCEEDED,
                f"already disabled in {cell_id} outside the console (never-matching selector, "
                "nothing saved); nothing changed",
                {"cell": cell_id, "state": state, "changed": False},
            )
        ops, saved = _disable_patch(obj, user_name)
        if dry_run:
            return Done(
                Outcome.SUCCEEDED,
                f"would disable the webhook in {cell_id}, saving its selectors",
                {"cell": cell_id, "state": state, "changed": True, "saved": saved, "patch": ops},
            )
        written = _patched(client, ops)
        if written is None:
            continue
        _event(
            cell_id,
            written,
            "WebhookDisabled",
            f"Disabled by {user_name} through the console (never-matching objectSelector); "
            f"saved: {_selectors_text(saved['selectors'])}",
        )
        return Done(
            Outcome.SUCCEEDED,
            f"webhook disabled in {cell_id}: its pod deletions are no longer guarded",
            {"cell": cell_id, "state": DISABLED_BY_CONSOLE, "changed": True, "saved": saved},
        )
    raise _kept_changing(cell_id)


def _enable_work(cell_id: str, user_name: str, dry_run: bool) -> Done:
    client = client_for(cell_id)
    for _attempt in range(ATTEMPTS):
        obj = _read(client)
        state = classify(obj)
        if obj is None:
            raise _not_registered(cell_id, "")
        if state in (DISABLED_ELSEWHERE, PARTLY_DISABLED):
            raise Failure(
                f"the webhook in {cell_id} was disabled outside the console: no saved selector "
                "to restore exactly; use Restore from configuration (console, or "
                f"POST /api/v1/webhook/{cell_id}/restore/) to re-register it as configured",
                code="not_disabled_by_console",
                status=409,
                result={"cell": cell_id, "state": state},
            )
        if state == ENABLED and _saved(obj) is None:
            return Done(
                Outcome.SUCCEEDED,
                f"the webhook in {cell_id} is already enabled; nothing changed",
                {"cell": cell_id, "state": state, "changed": False},
            )
        if state == ENABLED:
            # Re-applied or edited outside the console since it disabled it: keep those
            # selectors (never overwrite someone's edit), drop the saved ones that no longer apply.
            ops = _enable_patch(obj, {"selectors": {}})  # restores nothing, drops the annotation
            if not dry_run and _patched(client, ops) is None:
                continue
            return Done(
                Outcome.SUCCEEDED,
                f"the webhook in {cell_id} was already re-enabled outside the console; its "
                "current selectors are kept and the stale saved ones "
                + ("would be " if dry_run else "")
                + "dropped",
                {"cell": cell_id, "state": state, "changed": True, "patch": ops},
            )
        saved = _saved(obj) or {"selectors": {}}
        ops = _enable_patch(obj, saved)
        if dry_run:
            return Done(
                Outcome.SUCCEEDED,
                f"would re-enable the webhook in {cell_id}, restoring the saved selectors",
                {
                    "cell": cell_id,
                    "state": state,
                    "changed": True,
                    "restored": saved["selectors"],
                    "patch": ops,
                },
            )
        written = _patched(client, ops)
        if written is None:
            continue
        _event(
            cell_id,
            written,
            "WebhookEnabled",
            f"Re-enabled by {user_name} through the console with the saved objectSelector: "
            f"{_selectors_text(saved['selectors'])}",
        )
        return Done(
            Outcome.SUCCEEDED,
            f"webhook re-enabled in {cell_id} with its saved selectors",
            {"cell": cell_id, "state": ENABLED, "changed": True, "restored": saved["selectors"]},
        )
    raise _kept_changing(cell_id)


RESTORABLE = (DISABLED_ELSEWHERE, PARTLY_DISABLED)


def _configured_object(cell_id: str, current: Mapping[str, Any]) -> tuple[dict, str]:
    """What the configuration renders for the cell, with the caBundle it names, and where that
    caBundle came from. Without a readable CA in the configuration (the console's pods need
    not hold the webhook's certificate) the registered caBundle is kept."""
    cfg = config()
    try:
        pem, source = configured_ca_bundle(cfg)
    except OSError as error:
        if cfg.webhook.ca_bundle_file:  # named for this purpose: not reading it is an error
            raise Failure(
                f"cannot read webhook.ca_bundle_file: {error.strerror}; nothing changed",
                code="config_error",
                status=409,
            ) from None
        pem, source = None, None
    try:
        obj = render_webhook_configuration(cfg, cell_id, ca_bundle_pem=pem)
    except ValueError as error:
        raise Failure(f"{error}; nothing changed", code="config_error", status=409) from None
    if pem is None:
        registered = {w.get("name"): w.get("clientConfig") or {} for w in _webhooks(current)}
        source = "kept from the registered object"
        for webhook in obj["webhooks"]:
            bundle = registered.get(webhook["name"], {}).get("caBundle")
            if bundle:
                webhook["clientConfig"]["caBundle"] = bundle
            else:
                source = "none (none configured, none registered)"
    return obj, str(source)


def _restore_work(cell_id: str, user_name: str, dry_run: bool) -> Done:
    client = client_for(cell_id)
    for _attempt in range(ATTEMPTS):
        current = _read(client)
        state = classify(current)
        if current is None:
            raise _not_registered(cell_id, ": nothing to restore")
        if state == DISABLED_BY_CONSOLE:
            raise Failure(
                f"the webhook in {cell_id} was disabled by the console: Re-enable restores "
                "exactly the selectors it saved",
                code="disabled_by_console",
                status=409,
                result={"cell": cell_id, "state": state},
            )
        if state not in RESTORABLE:
            return Done(
                Outcome.SUCCEEDED,
                f"the webhook in {cell_id} is {state}: nothing to restore; nothing changed",
                {"cell": cell_id, "state": state, "changed": False},
            )
        rendered, ca_source = _configured_object(cell_id, current)
        metadata = current.get("metadata") or {}
        annotations = {
            k: v for k, v in (metadata.get("annotations") or {}).items() if k != SAVED_ANNOTATION
        }
        body = {
            **rendered,
            "metadata": {
                **rendered["metadata"],
                "labels": {**(metadata.get("labels") or {}), **rendered["metadata"]["labels"]},
                "resourceVersion": metadata.get("resourceVersion"),
                **({"annotations": annotations} if annotations else {}),
            },
        }
        previous = {w.get("name", ""): w.get("objectSelector") for w in _webhooks(current)}
        restored = {w["name"]: w.get("objectSelector") for w in rendered["webhooks"]}
        result = {
            "cell": cell_id,
            "state": state,
            "changed": True,
            "previous": {
                "object_selectors": previous,
                "resource_version": metadata.get("resourceVersion"),
            },
            "restored": restored,
            "ca_bundle": ca_source,
        }
        if dry_run:
            return Done(
                Outcome.SUCCEEDED,
                f"would re-register the webhook in {cell_id} from the configuration",
                {**result, "object": body},
            )
        try:
            written = client.replace(VALIDATING_WEBHOOKS, None, CONFIG_NAME, body)
        except KubeError as error:
            if _racing(error):
                continue
            raise
        _event(
            cell_id,
            written,
            "WebhookRestored",
            f"Restored from the configuration by {user_name} through the console: "
            f"objectSelector {_selectors_text(restored)} (was {_selectors_text(previous)}); "
            f"caBundle {ca_source}",
        )
        result["state"] = classify(written)
        return Done(
            Outcome.SUCCEEDED,
            f"webhook re-registered in {cell_id} from the configuration: its pod deletions "
            "are judged again",
            result,
        )
    raise _kept_changing(cell_id)


def _require_cell(cell_id: str) -> None:
    if config().cell(cell_id) is None:
        raise InvalidAction(f"unknown cell {cell_id!r}", field="cell", code="unknown_cell")


def _cell_action(
    user: Any,
    cell_id: str,
    reason: Any,
    dry_run: bool,
    action: Action,
    work: Callable[[str, str, bool], Done],
) -> ActionResult:
    require_operator(user)
    reason = clean_reason(reason)
    _require_cell(cell_id)
    return run_action(
        user=user,
        action=action,
        target=f"webhook/{cell_id}",
        reason=reason,
        parameters={"cell": cell_id},
        dry_run=dry_run,
        work=lambda: work(cell_id, user.get_username(), dry_run),
    )


def disable(user: Any, cell_id: str, *, reason: Any, dry_run: bool = False) -> ActionResult:
    return _cell_action(user, cell_id, reason, dry_run, Action.WEBHOOK_DISABLE, _disable_work)


def enable(user: Any, cell_id: str, *, reason: Any, dry_run: bool = False) -> ActionResult:
    return _cell_action(user, cell_id, reason, dry_run, Action.WEBHOOK_ENABLE, _enable_work)


def restore(user: Any, cell_id: str, *, reason: Any, dry_run: bool = False) -> ActionResult:
    """Re-register the cell's webhook from the configuration (after a disable outside the
    console); the record keeps the selectors it replaced."""
    return _cell_action(user, cell_id, reason, dry_run, Action.WEBHOOK_RESTORE, _restore_work)


def disable_all(user: Any, *, reason: Any, dry_run: bool = False) -> ActionResult:
    """Disable in every configured cell (in parallel); one audit record for the whole action."""
    require_operator(user)
    reason = clean_reason(reason)
    cells = config().cell_ids
    user_name = user.get_username()

    def one(cell_id: str) -> dict:
        try:
            done = _disable_work(cell_id, user_name, dry_run)
            return {
                "cell": cell_id,
                "outcome": done.outcome,
                "message": done.message,
                **{k: v for k, v in done.result.items() if k != "cell"},
            }
        except Failure as failure:
            return {"cell": cell_id, "outcome": Outcome.FAILED, "message": failure.message}
        except KubeError as error:
            return {"cell": cell_id, "outcome": Outcome.FAILED, "message": kube_cause(error)}

    def work() -> Done:
        with ThreadPoolExecutor(max_workers=min(8, len(cells))) as pool:
            per_cell = list(pool.map(one, cells))
        failed = [c for c in per_cell if c["outcome"] == Outcome.FAILED]
        result = {"cells": per_cell}
        if not failed:
            return Done(Outcome.SUCCEEDED, f"disabled in all {len(cells)} cells", result)
        names = ", ".join(f"{c['cell']} ({c['message']})" for c in failed)
        if len(failed) == len(cells):
            return Done(Outcome.FAILED, f"failed in every cell: {names}", result)
        return Done(Outcome.PARTIAL, f"failed in {len(failed)} of {len(cells)}: {names}", result)

    return run_action(
        user=user,
        action=Action.WEBHOOK_DISABLE_ALL,
        target="webhook/*",
        reason=reason,
        parameters={"cells": cells},
        dry_run=dry_run,
        work=work,
    )


__all__ = [
    "all_states",
    "cell_state",
    "disable",
    "disable_all",
    "enable",
    "restore",
]
