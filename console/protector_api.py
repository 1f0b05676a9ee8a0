"""REST endpoints for PodProtectors and cells (`/api/v1/podprotectors/`, `/api/v1/cells/`)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.serializers import OperationSerializer, OperationStartedSerializer
from console import services
from console.cache import RowFilter, protector_cache
from console.protector_serializers import (
    CellListSerializer,
    OverviewSerializer,
    ProtectorDetailSerializer,
    ProtectorPageSerializer,
    ProtectorQuerySerializer,
    ProtectorRowSerializer,
    RemoveCellRequestSerializer,
)
from podseidon_site.api import (
    ActionResponseSerializer,
    CanOperate,
    DryRunActionRequestSerializer,
    action_response,
    errors,
)
from workers import services as worker_services


class Overview(APIView):
    @extend_schema(
        responses={200: OverviewSerializer, **errors(401)},
        summary="The overview: clusters, controllers, webhook per cell, counts (at risk, "
        "dangling) and recent rejections per cell",
        tags=["overview"],
    )
    def get(self, request: Request) -> Response:
        return Response(OverviewSerializer(services.overview()).data)


class ProtectorList(APIView):
    @extend_schema(
        parameters=[ProtectorQuerySerializer],
        responses={200: ProtectorPageSerializer, **errors(400, 401, 502, 503)},
        summary="PodProtectors from the cache, filtered, sorted and paginated",
        operation_id="podprotectors_list",
        tags=["podprotectors"],
    )
    def get(self, request: Request) -> Response:
        query = ProtectorQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        row_filter = RowFilter(
            namespace=q.get("namespace"),
            name=q.get("name"),
            source_kind=q.get("source_kind"),
            source_name=q.get("source_name"),
            at_risk=q.get("at_risk"),
            cell=q.get("cell"),
        )
        page = protector_cache().query(
            row_filter, sort=q["sort"], page=q["page"], page_size=q["page_size"]
        )
        return Response(
            {
                "count": page.count,
                "page": page.page,
                "page_size": page.page_size,
                "pages": page.pages,
                "results": ProtectorRowSerializer(page.rows, many=True).data,
            }
        )


class ProtectorDetail(APIView):
    @extend_schema(
        responses={200: ProtectorDetailSerializer, **errors(401, 404, 502, 503)},
        summary="One PodProtector: spec, every cell, source workload, recent events",
        tags=["podprotectors"],
    )
    def get(self, request: Request, namespace: str, name: str) -> Response:
        detail = services.protector_detail(namespace, name)
        if detail is None:
            raise NotFound(f"no PodProtector {namespace}/{name}")
        return Response(ProtectorDetailSerializer(detail).data)


class CellList(APIView):
    @extend_schema(
        responses={200: CellListSerializer, **errors(401)},
        summary="Cells: totals across PodProtectors, reachability, aggregator leader and switch",
        tags=["cells"],
    )
    def get(self, request: Request) -> Response:
        return Response(CellListSerializer(services.list_cells()).data)


class RemoveCell(APIView):
    permission_classes = [CanOperate]

    @extend_schema(
        request=RemoveCellRequestSerializer,
        responses={
            200: OpenApiResponse(ActionResponseSerializer, description="Dry run: the counts"),
            202: OpenApiResponse(
                OperationStartedSerializer,
                description="Started (or already running for the same selection): poll "
                "`status_url` for progress, the result counts and the audit record",
            ),
            **errors(400, 401, 403, 404, 502),
        },
        summary="Remove this cell from every (or every matching) PodProtector",
        description=(
            "Applies the `remove-cell-once` annotation to every matching PodProtector that has "
            "the cell in its status; the generator then drops the cell's aggregation and "
            "buckets and removes the annotation. Use it when a cell is gone for good: its pods "
            "stop counting toward every workload's availability. The work runs as a tracked "
            "operation (thousands of PodProtectors take a while): the answer is 202 with the "
            "operation and its `status_url`. The operation ends `succeeded` only once no "
            "targeted PodProtector's status holds the cell; if some still do after the "
            "confirmation timeout it ends `partial` and `result.still_pending` names them "
            "with why. Counts: `annotated`, `already_pending`, `not_in_status`, `failed`, then "
            "`removed` and `pending`. It is audited once, when it ends. An aggregator that is "
            "not paused writes the cell back on its next pod event: set `pause_aggregator` to "
            "pause it first (a separate `controller-pause` audit record). Asking again while "
            "it runs returns the running operation. `dry_run` lists and counts within the "
            "request (200) without writing."
        ),
        tags=["cells"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        body = RemoveCellRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        selection = {
            "cell_id": cell_id,
            "reason": data["reason"],
            "namespace": data.get("namespace"),
            "label_selector": data.get("label_selector"),
            "names": data.get("names"),
            "pause_aggregator": data["pause_aggregator"],
        }
        if data["dry_run"]:
            result = services.remove_cell_from_protectors(request.user, dry_run=True, **selection)
            return action_response(result)
        operation, started = services.start_cell_removal(request.user, **selection)
        payload = OperationSerializer(operation, context={"request": request}).data
        return Response(
            {
                "operation_id": operation.pk,
                "status_url": payload["status_url"],
                "started": started,
                "operation": payload,
            },
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": payload["status_url"]},
        )


class AggregatorSwitch(APIView):
    permission_classes = [CanOperate]
    paused = True

    def post(self, request: Request, cell_id: str) -> Response:
        body = DryRunActionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = worker_services.set_aggregator_paused(
            request.user, cell_id, self.paused, reason=data["reason"], dry_run=data["dry_run"]
        )
        return action_response(result)


class AggregatorPause(AggregatorSwitch):
    paused = True

    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404)},
        summary="Pause this cell's aggregator (its counts in status stop changing)",
        tags=["cells"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        return super().post(request, cell_id)


class AggregatorResume(AggregatorSwitch):
    paused = False

    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404)},
        summary="Resume this cell's aggregator",
        tags=["cells"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        return super().post(request, cell_id)
