"""Runtime switches: pause or resume one controller, durably, honoured within a retry period.

The switch lives in the Django database (``workers.ControllerSwitch``), so it survives restarts
of every worker and of Redis. After the change is committed a message goes out on the Redis
channel ``<prefix>:events``; every worker's runtime listens and applies it at once. The runtime
also re-reads all switches every retry period (2 s by default), so a lost message (Redis down,
worker reconnecting) costs at most that long.

What pausing means: the worker holding the controller's lease keeps it (no other worker takes
over), stops the controller and revokes its fence, so no write of that controller goes out until
it is resumed. The console and the API call ``set_paused``; ``list_switches`` shows them all.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from workers.keys import (
    SWITCH_EVENT,
    RedisKeys,
    encode_event,
    is_controller_key,
    settings_keys,
    settings_redis,
)
from workers.models import ControllerSwitch

logger = logging.getLogger("podseidon.workers.switches")


def _user_name(user: Any) -> str:
    if user is None:
        return ""
    get_username = getattr(user, "get_username", None)
    return str(get_username() if callable(get_username) else user)[:150]


def set_paused(key: str, paused: bool, *, user: Any, reason: str = "") -> ControllerSwitch:
    """Pause (``paused=True``) or resume the controller ``key``; returns the stored switch.

    ``user`` is a Django user or a plain name (recorded as ``changed_by``). Raises ValueError
    for a key that is not ``generator``, ``monitor`` or ``aggregator/<cellID>``.
    """
    if not is_controller_key(key):
        raise ValueError(
            f"{key!r} is not a controller key (generator, monitor or aggregator/<cellID>)"
        )
    with transaction.atomic():
        switch, _ = ControllerSwitch.objects.update_or_create(
            controller_key=key,
            defaults={
                "paused": bool(paused),
                "reason": reason or "",
                "changed_by": _user_name(user),
                "changed_at": timezone.now(),
            },
        )
        transaction.on_commit(lambda: publish_event(SWITCH_EVENT, key))
    logger.info(
        "controller %s %s by %s%s",
        key,
        "paused" if paused else "resumed",
        switch.changed_by or "(unknown)",
        f": {reason}" if reason else "",
    )
    return switch


def is_paused(key: str) -> bool:
    return ControllerSwitch.objects.filter(controller_key=key, paused=True).exists()


def list_switches() -> list[ControllerSwitch]:
    """Every switch ever flipped (paused or not), ordered by controller key."""
    return list(ControllerSwitch.objects.order_by("controller_key"))


def load_paused() -> dict[str, bool]:
    """controller key → paused, for the runtime (keys without a row are running).

    Called from the runtime's own thread, which keeps its database connection between calls;
    after a failure the connection is closed so the next call reconnects.
    """
    try:
        return dict(ControllerSwitch.objects.values_list("controller_key", "paused"))
    except Exception:
        connection.close()
        raise


def publish_event(
    kind: str, key: str, *, client: Any = None, keys: RedisKeys | None = None
) -> bool:
    """Tell every worker's runtime; best effort (they re-read the switches periodically)."""
    keys = keys or settings_keys()
    own = client is None
    try:
        client = client or settings_redis()
        client.publish(keys.events, encode_event(kind, key))
        return True
    except Exception as error:  # Redis down: the periodic re-read picks the change up
        logger.warning("could not announce %s of %s on Redis: %s", kind, key, error)
        return False
    finally:
        if own and client is not None:
            client.close()
