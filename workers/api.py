"""REST endpoints for the controllers (`/api/v1/controllers/`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from podseidon_site.api import (
    ActionResponseSerializer,
    CanOperate,
    DryRunActionRequestSerializer,
    action_response,
    errors,
)
from workers import services
from workers.serializers import ControllerSerializer


class ControllerListSerializer(serializers.Serializer):
    controllers = ControllerSerializer(many=True)
    redis_error = serializers.CharField(allow_null=True)


class ControllerList(APIView):
    @extend_schema(
        responses={200: ControllerListSerializer, **errors(401)},
        summary="Controllers: leaders, heartbeats, switches and last errors",
        tags=["controllers"],
    )
    def get(self, request: Request) -> Response:
        states = services.controller_states()
        data = {
            "controllers": list(states["controllers"].values()),
            "redis_error": states["redis_error"],
        }
        return Response(ControllerListSerializer(data).data)


class ControllerSwitchView(APIView):
    """Pause/resume ``generator`` or ``monitor`` (aggregators: under their cell)."""

    permission_classes = [CanOperate]
    paused = True

    def post(self, request: Request, name: str) -> Response:
        body = DryRunActionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        return action_response(
            services.set_controller_paused(
                request.user, name, self.paused, reason=data["reason"], dry_run=data["dry_run"]
            )
        )


class ControllerPause(ControllerSwitchView):
    paused = True

    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404)},
        summary="Pause the generator or the monitor",
        tags=["controllers"],
    )
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)


class ControllerResume(ControllerSwitchView):
    paused = False

    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404)},
        summary="Resume the generator or the monitor",
        tags=["controllers"],
    )
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)
