"""``manage.py controllers [status|pause KEY|resume KEY]``: the runtime switches from a shell.

The same calls the console makes (``workers.switches``, ``workers.leadership``), for operators
without a browser at hand and for scripts.
"""

from __future__ import annotations

import getpass
import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.leadership import read_states
from workers.registry import controller_keys
from workers.switches import list_switches, set_paused


class Command(BaseCommand):
    help = "Show controller leaders and switches, or pause/resume one controller."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action", nargs="?", default="status", choices=["status", "pause", "resume"]
        )
        parser.add_argument("key", nargs="?", help="generator, monitor or aggregator/<cellID>")
        parser.add_argument("--reason", default="", help="Why (recorded with the switch).")
        parser.add_argument("--user", default="", help="Who (default: the shell user).")
        parser.add_argument("--json", action="store_true", help="status as JSON")

    def handle(self, *args, action: str, key: str | None, reason: str, user: str, **options):
        if action == "status":
            self._status(as_json=options["json"])
            return
        if not key:
            raise CommandError(f"{action} needs a controller key")
        try:
            switch = set_paused(
                key, action == "pause", user=user or f"{getpass.getuser()} (shell)", reason=reason
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{switch.controller_key}: {'paused' if switch.paused else 'running'}")

    def _status(self, *, as_json: bool) -> None:
        switches = {s.controller_key: s for s in list_switches()}
        try:
            states = {s.controller: s for s in read_states()}
        except Exception as error:  # Redis down: still show the switches
            self.stderr.write(f"leader state unavailable: {error}")
            states = {}
        keys = list(dict.fromkeys([*controller_keys(settings.PODSEIDON), *switches, *states]))
        now = time.time()
        rows = []
        for key in keys:
            switch, state = switches.get(key), states.get(key)
            active = state is not None and state.is_active(now)
            rows.append(
                {
                    "controller": key,
                    "paused": bool(switch and switch.paused),
                    "leader": state.worker if active else None,
                    "holder": state.holder if active else None,
                    "token": state.token if active else None,
                    "since": state.since.isoformat() if active else None,
                    "running": bool(active and state.running),
                    "last_reconcile_at": (
                        state.last_reconcile_at.isoformat()
                        if state and state.last_reconcile_at
                        else None
                    ),
                    "last_error": state.last_error if state else None,
                }
            )
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            leader = f"{row['leader']} token {row['token']}" if row["leader"] else "no leader"
            state = "paused" if row["paused"] else ("running" if row["running"] else "idle")
            error = f"  last error: {row['last_error']}" if row["last_error"] else ""
            self.stdout.write(f"{row['controller']:<30} {state:<8} {leader}{error}")
