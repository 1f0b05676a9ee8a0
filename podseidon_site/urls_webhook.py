"""Routes of the webhook role (PODSEIDON_ROLE=webhook): reviews, probes and metrics only."""

from django.conf import settings
from django.urls import path

from podseidon_site.views import healthz, metrics
from webhook.views import admission_review, readyz

_prefix = settings.PODSEIDON.webhook.path_prefix.lstrip("/")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path(
        f"{_prefix}/<str:cell_id>" if _prefix else "<str:cell_id>",
        admission_review,
        name="admission-review",
    ),
]
