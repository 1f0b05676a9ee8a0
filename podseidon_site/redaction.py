"""Configured file paths (kubeconfigs, TLS certificate and key) never reach a page or an API
response: error messages from the clients name them, so every outgoing text is passed through
`redact`, and every API response through `RedactingJSONRenderer`."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.renderers import JSONRenderer

PLACEHOLDER = "<configured file>"


def secret_paths() -> list[str]:
    """Configured file paths that must never appear on a page (kubeconfigs, TLS files)."""
    cfg = settings.PODSEIDON
    paths = [cfg.core.kubeconfig, *(c.kubeconfig for c in cfg.cells)]
    tls = getattr(cfg.webhook, "tls", None)
    if tls is not None:
        paths += [tls.cert_file, tls.key_file]
    # Longest first, so a path that contains another is replaced whole.
    return sorted({p for p in paths if p}, key=len, reverse=True)


def redact(text: object) -> str:
    """An error message fit for a page: configured file paths replaced by a placeholder."""
    out = "" if text is None else str(text)
    for path in secret_paths():
        out = out.replace(path, PLACEHOLDER)
    return out


class RedactingJSONRenderer(JSONRenderer):
    """DRF's JSON, with configured file paths replaced wherever they occur in the body: one
    place for every endpoint, present and future."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        body = super().render(data, accepted_media_type, renderer_context)
        for path in secret_paths():
            # As the path appears inside a JSON string (quotes and backslashes escaped).
            encoded = json.dumps(path, ensure_ascii=False)[1:-1].encode()
            body = body.replace(encoded, PLACEHOLDER.encode())
        return body
