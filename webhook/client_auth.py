"""Only kube-apiserver may post reviews: the client-certificate check behind
``webhook.tls.client_ca_file``.

gunicorn's handshake has already refused every certificate the client CA did not sign
(podseidon_site/gunicorn_webhook.py). Two cases are left for this middleware:

- a caller that presented no certificate. The handshake lets it through only so that kubelet's
  HTTPS probes (which cannot present one) keep working; it reaches /healthz and /readyz and
  nothing else. A forged AdmissionReview never gets to spend a PodProtector's quota.
- ``webhook.tls.client_names``: the certificate's subject CN or one of its DNS names must be
  listed, for operators whose client CA signs more than the apiservers' certificates.

A refusal is a 403 ``Status``, which kube-apiserver quotes in its ``failed calling webhook``
error, and counts in ``webhook_http_error_total`` like the webhook's other non-verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

from webhook.observer import WebhookObserver

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
# gunicorn hands the WSGI app its (TLS) socket under this key.
SOCKET_KEY = "gunicorn.socket"


def peer_certificate(request: HttpRequest) -> dict[str, Any] | None:
    """The verified client certificate of the connection, as ``SSLSocket.getpeercert()`` gives
    it; None without TLS, without a certificate, or when the server cannot tell."""
    sock = request.META.get(SOCKET_KEY)
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        cert = getpeercert()
    except (OSError, ValueError):
        return None
    return cert or None


def certificate_names(cert: dict[str, Any]) -> list[str]:
    """The subject CNs and DNS subject alternative names of a ``getpeercert()`` dict."""
    names = [
        str(value) for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
    ]
    names += [str(value) for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    return names


def _forbidden(message: str) -> HttpResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "code": 403,
    }
    return HttpResponse(orjson.dumps(body), status=403, content_type="application/json")


class ClientCertificateMiddleware:
    """Installed in the webhook role only (settings); off without ``client_ca_file``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        tls = settings.PODSEIDON.webhook.tls
        if tls.client_ca_file is None:
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.allowed_names = frozenset(tls.client_names)
        self.probes_exempt = tls.probes_without_client_cert
        # Its own observer: a refused caller must not start the runtime (cluster watches).
        self.observer = WebhookObserver(settings.PODSEIDON.metrics)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.probes_exempt and request.path_info in PROBE_PATHS:
            return self.get_response(request)
        cert = peer_certificate(request)
        if cert is None:
            return self._refuse(
                request,
                "client certificate required: only kube-apiserver, presenting a certificate "
                "signed by webhook.tls.client_ca_file, may call this webhook",
            )
        if self.allowed_names:
            names = certificate_names(cert)
            if self.allowed_names.isdisjoint(names):
                shown = ", ".join(names) or "no CN or DNS name"
                return self._refuse(
                    request, f"client certificate ({shown}) is not in webhook.tls.client_names"
                )
        return self.get_response(request)

    def _refuse(self, request: HttpRequest, message: str) -> HttpResponse:
        # Only a configured cell becomes a metric label: a caller must not mint label values.
        segment = request.path_info.rstrip("/").rpartition("/")[2]
        cell = segment if settings.PODSEIDON.cell(segment) is not None else "unknown"
        address = request.META.get("REMOTE_ADDR") or "unknown address"
        self.observer.http_error(cell, 403, f"{message} (caller {address})", "client-cert")
        return _forbidden(message)
