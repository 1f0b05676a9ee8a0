"""REST API routes: `/api/v1/...`, the OpenAPI schema and its browsable UIs (served from the
drf-spectacular-sidecar package's static files: no CDN)."""

from django.contrib.auth.decorators import login_required
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from audit import api as audit_api
from console import api as console_api
from console import protector_api as protectors_api
from podseidon_site.api import not_found
from webhook import api as webhook_api
from workers import api as workers_api

app_name = "api"

v1 = [
    path("overview/", protectors_api.Overview.as_view(), name="overview"),
    path("podprotectors/", protectors_api.ProtectorList.as_view(), name="podprotectors"),
    path(
        "podprotectors/<str:namespace>/<str:name>/",
        protectors_api.ProtectorDetail.as_view(),
        name="podprotector",
    ),
    path("cells/", protectors_api.CellList.as_view(), name="cells"),
    path(
        "cells/<str:cell_id>/remove-from-protectors/",
        protectors_api.RemoveCell.as_view(),
        name="cell-remove",
    ),
    path(
        "cells/<str:cell_id>/plan-deletion/",
        console_api.PlanDeletion.as_view(),
        name="cell-plan-deletion",
    ),
    path(
        "cells/<str:cell_id>/aggregator/pause/",
        protectors_api.AggregatorPause.as_view(),
        name="aggregator-pause",
    ),
    path(
        "cells/<str:cell_id>/aggregator/resume/",
        protectors_api.AggregatorResume.as_view(),
        name="aggregator-resume",
    ),
    path("webhook/", webhook_api.WebhookList.as_view(), name="webhook"),
    path(
        "webhook/disable-all/", webhook_api.WebhookDisableAll.as_view(), name="webhook-disable-all"
    ),
    path(
        "webhook/<str:cell_id>/disable/",
        webhook_api.WebhookDisable.as_view(),
        name="webhook-disable",
    ),
    path(
        "webhook/<str:cell_id>/enable/", webhook_api.WebhookEnable.as_view(), name="webhook-enable"
    ),
    path(
        "webhook/<str:cell_id>/restore/",
        webhook_api.WebhookRestore.as_view(),
        name="webhook-restore",
    ),
    path("controllers/", workers_api.ControllerList.as_view(), name="controllers"),
    path(
        "controllers/<str:name>/pause/",
        workers_api.ControllerPause.as_view(),
        name="controller-pause",
    ),
    path(
        "controllers/<str:name>/resume/",
        workers_api.ControllerResume.as_view(),
        name="controller-resume",
    ),
    path("audit/", audit_api.AuditList.as_view(), name="audit"),
    path("audit/<int:pk>/", audit_api.AuditDetail.as_view(), name="audit-record"),
    path("operations/", audit_api.OperationList.as_view(), name="operations"),
    path("operations/<int:pk>/", audit_api.OperationDetail.as_view(), name="operation"),
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api:schema")),
        name="docs",
    ),
    path(
        "redoc/",
        login_required(SpectacularRedocView.as_view(url_name="api:schema")),
        name="redoc",
    ),
    *[path(f"v1/{p.pattern}", p.callback, name=p.name) for p in v1],
    re_path(r"^", not_found),
]
