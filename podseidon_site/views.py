"""Process-level endpoints that need no login: probes answer kubelets, metrics Prometheus."""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from podseidon_site import metrics as metrics_exposition


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = metrics_exposition.render()
    return HttpResponse(body, content_type=content_type)
