"""REST endpoint of the drain planner: ``POST /api/v1/cells/{cell}/plan-deletion/``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console import planning
from console.serializers import PlanRequestSerializer, PlanSerializer
from podseidon_site.api import ErrorSerializer, errors


class PlanDeletion(APIView):
    # A POST that writes nothing: every authenticated user (viewer included) may ask.
    # JSON only: a list of pods has no form encoding, and any other body is a clear 415.
    parser_classes = [JSONParser]

    @extend_schema(
        request=PlanRequestSerializer,
        responses={
            200: PlanSerializer,
            **errors(400, 401, 404, 502, 503),
            415: OpenApiResponse(ErrorSerializer, description="The body is not JSON"),
        },
        summary="Plan a drain: which of these pod deletions the webhook would admit now",
        description=(
            "Judges the named pods (a node's, as `kubectl drain` evicts them; a label "
            "selector's; or a list) with the webhook's own decision and the disruption quota, "
            "against the PodProtectors as the console's cache holds them now, as if every "
            "deletion arrived at once (kubectl drain evicts all pods of a node concurrently "
            "and retries a 429 every 5 s). Nothing is written: no bucket is recorded.\n\n"
            "Per pod: `admitted`, `refused` (with the PodProtector, the code 429 or 409 and "
            "the webhook's exact message), `unprotected`, `already-unhealthy`, `terminating`, "
            "`dry-run`, `not-judged` (the registration does not send it to the webhook), "
            "`skipped` (kubectl drain leaves DaemonSet and mirror pods) or `not-found`. "
            "`contended` marks pods whose PodProtector admits only some of the plan's pods: "
            "how many go is exact, which ones depends on arrival order. Per PodProtector, "
            "`can_go_now` is how many of its pods could go at once now.\n\n"
            "404 `unknown_cell` / `unknown_node`; 502 when the cell cannot be read; 503 while "
            "the PodProtector cache is still listing."
        ),
        operation_id="cells_plan_deletion",
        tags=["cells"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        body = PlanRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        selection = planning.Selection(
            node=data.get("node"),
            selector=data.get("selector"),
            namespace=data.get("namespace"),
            pods=tuple((p["namespace"], p["name"]) for p in data.get("pods") or ()),
        )
        plan = planning.plan(
            cell_id,
            selection,
            operation=data["operation"],
            criterion=planning.parse_criterion(data.get("healthCriterion")),
        )
        return Response(planning.plan_as_dict(plan, selection))
