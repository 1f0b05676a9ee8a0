"""The webhook's client-certificate gate (webhook/client_auth.py): who reaches which path.

The TLS side (a certificate another CA signed fails the handshake) is gunicorn's and is tested
on the real process in tests/integration/test_webhook_client_auth.py; here the middleware gets
a socket that reports what the handshake verified.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from podseidon_site.config import parse_config
from webhook.client_auth import ClientCertificateMiddleware, certificate_names
from webhook.observer import HTTP_ERROR

APISERVER = {
    "subject": ((("organizationName", "system:masters"),), (("commonName", "kube-apiserver"),)),
    "subjectAltName": (("DNS", "apiserver.example"), ("IP Address", "10.0.0.1")),
}


class FakeSocket:
    def __init__(self, cert: dict[str, Any] | None) -> None:
        self.cert = cert

    def getpeercert(self) -> dict[str, Any] | None:
        return self.cert


def _config(**tls: Any):
    return parse_config(
        {
            "cells": [{"id": "cell-a"}],
            "webhook": {"tls": {"cert_file": "tls.crt", "key_file": "tls.key", **tls}},
        }
    )


def _ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("judged")


def _call(config, path: str, cert: dict[str, Any] | None, *, socket: bool = True):
    with override_settings(PODSEIDON=config):
        middleware = ClientCertificateMiddleware(_ok)
        extra = {"gunicorn.socket": FakeSocket(cert)} if socket else {}
        return middleware(RequestFactory().post(path, b"{}", "application/json", **extra))


def _refusals(cell: str) -> float:
    return HTTP_ERROR.labels(cell, "403", "client-cert")._value.get()


def test_without_a_client_ca_the_middleware_is_not_installed() -> None:
    with override_settings(PODSEIDON=_config()), pytest.raises(MiddlewareNotUsed):
        ClientCertificateMiddleware(_ok)


def test_a_caller_without_a_certificate_reaches_only_the_probes() -> None:
    config = _config(client_ca_file="ca.crt")
    assert _call(config, "/healthz", None).content == b"judged"
    assert _call(config, "/readyz", None).content == b"judged"
    before = _refusals("cell-a")
    response = _call(config, "/cell-a", None)
    assert response.status_code == 403
    body = orjson.loads(response.content)
    # A Status, so that kube-apiserver quotes the message in "failed calling webhook".
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"].startswith("client certificate required: only kube-apiserver")
    assert _refusals("cell-a") == before + 1
    assert _call(config, "/metrics", None).status_code == 403
    # Not behind gunicorn (no socket to ask): refused as well.
    assert _call(config, "/cell-a", APISERVER, socket=False).status_code == 403


def test_a_caller_cannot_mint_metric_labels() -> None:
    config = _config(client_ca_file="ca.crt")
    before = _refusals("unknown")
    assert _call(config, "/made-up-cell-name", None).status_code == 403
    assert _refusals("unknown") == before + 1
    assert _refusals("made-up-cell-name") == 0


def test_a_verified_certificate_gets_its_review_judged() -> None:
    config = _config(client_ca_file="ca.crt")
    assert _call(config, "/cell-a", APISERVER).content == b"judged"


@pytest.mark.parametrize(
    ("allowed", "judged"),
    [
        (["kube-apiserver"], True),  # the subject CN
        (["apiserver.example"], True),  # a DNS name
        (["10.0.0.1"], False),  # IP addresses are not names
        (["someone-else"], False),
    ],
)
def test_client_names_allow_list(allowed: list[str], judged: bool) -> None:
    config = _config(client_ca_file="ca.crt", client_names=allowed)
    response = _call(config, "/cell-a", APISERVER)
    if judged:
        assert response.content == b"judged"
    else:
        assert response.status_code == 403
        assert orjson.loads(response.content)["message"] == (
            "client certificate (kube-apiserver, apiserver.example) is not in "
            "webhook.tls.client_names"
        )


def test_strict_mode_exempts_no_probe() -> None:
    config = _config(client_ca_file="ca.crt", probes_without_client_cert=False)
    assert _call(config, "/readyz", None).status_code == 403
    assert _call(config, "/readyz", APISERVER).content == b"judged"


def test_certificate_names() -> None:
    assert certificate_names(APISERVER) == ["kube-apiserver", "apiserver.example"]
    assert certificate_names({}) == []
