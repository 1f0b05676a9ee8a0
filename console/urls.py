"""Console routes: overview, PodProtectors, cells, webhook, the audit log and the drain planner."""

from django.urls import path

from audit import views as audit_views
from console import pages as views
from console import views as planner_views

app_name = "console"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("protectors/", views.protector_list, name="protectors"),
    path(
        "protectors/<str:namespace>/<str:name>/",
        views.protector_detail,
        name="protector",
    ),
    path("cells/", views.cell_list, name="cells"),
    path("cells/<str:cell_id>/remove/", views.cell_remove, name="cell-remove"),
    path("cells/<str:cell_id>/aggregator/pause/", views.aggregator_pause, name="aggregator-pause"),
    path(
        "cells/<str:cell_id>/aggregator/resume/",
        views.aggregator_resume,
        name="aggregator-resume",
    ),
    path("webhook/", views.webhook_page, name="webhook"),
    path("webhook/disable-all/", views.webhook_disable_all, name="webhook-disable-all"),
    path("webhook/<str:cell_id>/disable/", views.webhook_disable, name="webhook-disable"),
    path("webhook/<str:cell_id>/enable/", views.webhook_enable, name="webhook-enable"),
    path("webhook/<str:cell_id>/restore/", views.webhook_restore, name="webhook-restore"),
    path("operations/<int:operation_id>/", views.operation_detail, name="operation"),
    path("audit/", audit_views.audit_list, name="audit"),
    path("plan-drain/", planner_views.plan_drain, name="plan-drain"),
]
