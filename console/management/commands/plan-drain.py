"""``manage.py plan-drain --cell X --node N``: would draining node N be blocked now?

Prints the drain planner's answer (console/planner.py) as a table, or as the REST API's JSON
with ``--json``. The PodProtectors are listed afresh from the core cluster: a one-shot process
has no watch cache to read them from. Nothing is written. With ``--check`` the exit status is 3
when some pod would be refused, for scripts that gate maintenance on it.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actions import InvalidAction, kube_cause
from console import planning
from podseidon_site.redaction import redact
from protectors.health import HealthCriterion
from protectors.kube.client import KubeError

BLOCKED_EXIT = 3


class Command(BaseCommand):
    help = "Plan a node drain: which pods the webhook would let go now, without writing anything."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cell", required=True, help="the cell (worker cluster) ID")
        parser.add_argument("--node", required=True, help="the node to drain")
        parser.add_argument("--selector", help="only pods matching this label selector")
        parser.add_argument("--namespace", help="only pods of this namespace")
        parser.add_argument(
            "--health-criterion",
            choices=[c.value for c in HealthCriterion],
            help="what the evictions ask for (default: each pod's own annotation, else Available)",
        )
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
        parser.add_argument(
            "--check",
            action="store_true",
            help=f"exit with status {BLOCKED_EXIT} when some pod would be refused",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            selection = planning.Selection(
                node=options["node"],
                selector=options["selector"] or None,
                namespace=options["namespace"] or None,
            )
            plan = planning.plan(
                options["cell"],
                selection,
                criterion=planning.parse_criterion(options["health_criterion"]),
                fresh_protectors=True,
            )
        except InvalidAction as error:
            raise CommandError(redact(error.message)) from None
        except KubeError as error:
            raise CommandError(f"the cluster failed: {redact(kube_cause(error))}") from None
        answer = planning.plan_as_dict(plan, selection)
        if options["json"]:
            self.stdout.write(json.dumps(answer, indent=2))
        else:
            self._print(answer)
        if options["check"] and answer["blocked"]:
            raise SystemExit(BLOCKED_EXIT)

    def _print(self, answer: dict[str, Any]) -> None:
        out = self.stdout.write
        node = answer["selection"]["node"]
        refused = answer["counts"]["refused"]
        if answer["blocked"]:
            out(f"{answer['cell']}/{node}: BLOCKED, {refused} pod(s) would be refused now")
        else:
            out(f"{answer['cell']}/{node}: not blocked")
        for note in answer["notes"]:
            out(f"note: {note}")
        if answer["protectors"]:
            out("")
            out(
                _table(
                    [
                        "PODPROTECTOR",
                        "MIN",
                        "AVAILABLE",
                        "HERE",
                        "ADMITTED",
                        "REFUSED",
                        "CAN GO NOW",
                    ],
                    [
                        [
                            f"{p['namespace']}/{p['name']}",
                            p["min_available"],
                            f"{p['aggregated_available']}/{p['estimated_available']}",
                            p["requested"],
                            p["admitted"],
                            p["refused"],
                            p["can_go_now"],
                        ]
                        for p in answer["protectors"]
                    ],
                )
            )
        out("")
        rows = []
        for pod in answer["pods"]:
            verdict = pod["verdict"]
            if pod["refusal"]:
                verdict += f" {pod['refusal']['code']}"
            if pod["contended"]:
                verdict += " (contended)"
            rows.append([f"{pod['namespace']}/{pod['name']}", verdict, pod["reason"]])
        out(_table(["POD", "VERDICT", "WHY"], rows) if rows else "no pods on this node match")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
