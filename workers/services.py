"""Controllers for the console and the API: who leads, their heartbeats and switches, and the
audited pause/resume actions (through ``workers.switches``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from audit.actions import (
    ActionResult,
    Done,
    InvalidAction,
    clean_reason,
    require_operator,
    run_action,
)
from audit.models import Action, Outcome
from workers.keys import aggregator_key, is_controller_key
from workers.leadership import LeaderState, read_states
from workers.models import ControllerSwitch
from workers.registry import controller_keys
from workers.switches import list_switches, set_paused


def _leader(state: LeaderState | None, now: float) -> dict | None:
    if state is None:
        return None
    return {
        "active": state.is_active(now),
        "worker": state.worker,
        "hostname": state.hostname,
        "pid": state.pid,
        "token": state.token,
        "since": state.since,
        "renewed_at": state.renewed_at,
        "heartbeat_age_seconds": round(max(0.0, now - state.renewed_at.timestamp()), 1),
        "lease_duration_seconds": state.lease_duration,
        "paused": state.paused,
        "running": state.running,
        "released": state.released,
        "last_reconcile_at": state.last_reconcile_at,
        "last_reconcile_failed": state.last_reconcile_failed,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
    }


def _switch(switch: ControllerSwitch | None) -> dict:
    if switch is None:
        return {"paused": False, "reason": "", "changed_by": "", "changed_at": None}
    return {
        "paused": switch.paused,
        "reason": switch.reason,
        "changed_by": switch.changed_by,
        "changed_at": switch.changed_at,
    }


def controller_states(keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Per controller key: its switch and its (last) leader; Redis trouble is reported, not
    raised, so the page still shows the switches."""
    expected = controller_keys(settings.PODSEIDON)
    switches = {s.controller_key: s for s in list_switches()}
    wanted = list(keys) if keys is not None else None
    redis_error = None
    try:
        states = {s.controller: s for s in read_states(wanted)}
    except Exception as error:  # redis.RedisError, or a bad REDIS_URL
        states, redis_error = {}, f"Redis unreachable: {error}"
    names = wanted if wanted is not None else sorted({*expected, *switches, *states})
    now = time.time()
    return {
        "controllers": {
            key: {
                "key": key,
                "configured": key in expected,
                "switch": _switch(switches.get(key)),
                "leader": _leader(states.get(key), now),
            }
            for key in names
        },
        "redis_error": redis_error,
    }


def set_controller_paused(
    user: Any, key: str, paused: bool, *, reason: Any, dry_run: bool = False
) -> ActionResult:
    """Pause or resume one configured controller; doing it twice changes nothing the 2nd time.
    ``dry_run`` reports whether it would change anything, and changes nothing."""
    require_operator(user)
    reason = clean_reason(reason)
    if not is_controller_key(key) or key not in controller_keys(settings.PODSEIDON):
        raise InvalidAction(
            f"{key!r} is not a configured controller", field="controller", code="unknown_controller"
        )

    def work() -> Done:
        current = ControllerSwitch.objects.filter(controller_key=key).first()
        if (current.paused if current is not None else False) == paused:
            state = "paused" if paused else "running"
            return Done(
                Outcome.SUCCEEDED,
                f"{key} was already {state}; nothing changed",
                {"controller": key, "paused": paused, "changed": False},
            )
        if dry_run:
            return Done(
                Outcome.SUCCEEDED,
                f"would {'pause' if paused else 'resume'} {key}",
                {"controller": key, "paused": paused, "changed": True},
            )
        set_paused(key, paused, user=user, reason=reason)
        return Done(
            Outcome.SUCCEEDED,
            f"{key} {'paused' if paused else 'resumed'}; workers apply it within a retry period",
            {"controller": key, "paused": paused, "changed": True},
        )

    return run_action(
        user=user,
        action=Action.CONTROLLER_PAUSE if paused else Action.CONTROLLER_RESUME,
        target=f"controller/{key}",
        reason=reason,
        parameters={"controller": key},
        dry_run=dry_run,
        work=work,
    )


def set_aggregator_paused(
    user: Any, cell_id: str, paused: bool, *, reason: Any, dry_run: bool = False
) -> ActionResult:
    require_operator(user)
    if settings.PODSEIDON.cell(cell_id) is None:
        raise InvalidAction(f"unknown cell {cell_id!r}", field="cell", code="unknown_cell")
    return set_controller_paused(
        user, aggregator_key(cell_id), paused, reason=reason, dry_run=dry_run
    )
