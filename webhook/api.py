"""REST endpoints for the webhook registrations (`/api/v1/webhook/`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
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
from webhook import services
from webhook.serializers import WebhookListSerializer


class WebhookList(APIView):
    @extend_schema(
        responses={200: WebhookListSerializer, **errors(401)},
        summary="Webhook registration state in every worker cluster",
        tags=["webhook"],
    )
    def get(self, request: Request) -> Response:
        data = {
            "cells": services.all_states(),
            "what_disable_does": services.WHAT_DISABLE_DOES,
            "what_enable_does": services.WHAT_ENABLE_DOES,
            "what_restore_does": services.WHAT_RESTORE_DOES,
        }
        return Response(WebhookListSerializer(data).data)


class _WebhookAction(APIView):
    permission_classes = [CanOperate]

    def _body(self, request: Request) -> dict:
        body = DryRunActionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data


class WebhookDisable(_WebhookAction):
    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404, 409, 502)},
        summary="Disable the webhook in one cell (saves the selector to restore)",
        description=services.WHAT_DISABLE_DOES,
        tags=["webhook"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        data = self._body(request)
        return action_response(
            services.disable(request.user, cell_id, reason=data["reason"], dry_run=data["dry_run"])
        )


class WebhookEnable(_WebhookAction):
    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404, 409, 502)},
        summary="Re-enable the webhook in one cell with exactly the saved selector",
        description=services.WHAT_ENABLE_DOES,
        tags=["webhook"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        data = self._body(request)
        return action_response(
            services.enable(request.user, cell_id, reason=data["reason"], dry_run=data["dry_run"])
        )


class WebhookRestore(_WebhookAction):
    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 404, 409, 502)},
        summary="Re-register the webhook of one cell from the configuration (after a disable "
        "outside the console)",
        description=services.WHAT_RESTORE_DOES
        + " Offered when the state is `disabled-by-someone-else` (or `partly-disabled`): "
        "nothing was saved to re-enable exactly. The write is guarded by the resourceVersion it "
        "read; the audit record keeps the selectors it replaced (`result.previous`). "
        "`disabled-by-console` answers 409 (`disabled_by_console`: use enable); an enabled "
        "webhook is left as it is.",
        tags=["webhook"],
    )
    def post(self, request: Request, cell_id: str) -> Response:
        data = self._body(request)
        return action_response(
            services.restore(request.user, cell_id, reason=data["reason"], dry_run=data["dry_run"])
        )


class WebhookDisableAll(_WebhookAction):
    @extend_schema(
        request=DryRunActionRequestSerializer,
        responses={200: ActionResponseSerializer, **errors(400, 401, 403, 502)},
        summary="Disable the webhook in every worker cluster",
        description="Every cell at once. " + services.WHAT_DISABLE_DOES,
        tags=["webhook"],
    )
    def post(self, request: Request) -> Response:
        data = self._body(request)
        return action_response(
            services.disable_all(request.user, reason=data["reason"], dry_run=data["dry_run"])
        )
