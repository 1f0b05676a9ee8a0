"""The ValidatingWebhookConfiguration that registers the webhook with one worker cluster, and
the kubeconfig that makes that cluster's kube-apiserver present a client certificate to it."""

from __future__ import annotations

import base64
import copy
from typing import Any
from urllib.parse import urlsplit

from podseidon_site.config import PodseidonConfig
from protectors.constants import WEBHOOK_CONFIG_NAME

# Podseidon's own pods carry this label (deploy/ sets it); they are left out of protection
# unless self-protection is on, so a broken webhook can always be replaced.
SELF_LABEL_KEY = "app.kubernetes.io/part-of"
SELF_LABEL_VALUE = "podseidon"

RULES = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["DELETE"],
        "resources": ["pods"],
        "scope": "Namespaced",
    },
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE"],
        "resources": ["pods/eviction"],
        "scope": "Namespaced",
    },
]


def webhook_path(config: PodseidonConfig, cell_id: str) -> str:
    return f"{config.webhook.path_prefix}/{cell_id}"


def object_selector(config: PodseidonConfig) -> dict[str, Any]:
    selector = copy.deepcopy(config.webhook.object_selector)
    if not config.webhook.self_protection:
        expressions = selector.setdefault("matchExpressions", [])
        expressions.append(
            {"key": SELF_LABEL_KEY, "operator": "NotIn", "values": [SELF_LABEL_VALUE]}
        )
    return selector


def configured_ca_bundle(
    config: PodseidonConfig, override: str | None = None
) -> tuple[bytes | None, str | None]:
    """The PEM to register as caBundle, and which setting named it: ``override`` (the
    command's --ca-bundle), else ``webhook.ca_bundle_file``, else ``webhook.tls.cert_file`` (a
    self-signed certificate is its own CA); (None, None) when none is set. Raises OSError when
    the file named cannot be read."""
    for key, path in (
        ("--ca-bundle", override),
        ("webhook.ca_bundle_file", config.webhook.ca_bundle_file),
        ("webhook.tls.cert_file", config.webhook.tls.cert_file),
    ):
        if path:
            with open(path, "rb") as handle:
                return handle.read(), key
    return None, None


def render_webhook_configuration(
    config: PodseidonConfig,
    cell_id: str,
    *,
    base_url: str | None = None,
    ca_bundle_pem: bytes | None = None,
) -> dict[str, Any]:
    """The object for ``cell_id``; ``base_url`` (or ``webhook.url``) beats ``webhook.service``."""
    if config.cell(cell_id) is None:
        raise ValueError(f"unknown cell {cell_id!r}; configured cells: {config.cell_ids}")
    webhook = config.webhook
    path = webhook_path(config, cell_id)
    client_config: dict[str, Any]
    base_url = base_url or webhook.url
    if base_url:
        client_config = {"url": base_url.rstrip("/") + path}
    elif webhook.service:
        service = dict(webhook.service)
        service["path"] = path
        client_config = {"service": service}
    else:
        raise ValueError("set webhook.url or webhook.service in the config, or pass --url")
    if ca_bundle_pem:
        client_config["caBundle"] = base64.b64encode(ca_bundle_pem).decode("ascii")
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": WEBHOOK_CONFIG_NAME,
            "labels": {SELF_LABEL_KEY: SELF_LABEL_VALUE},
        },
        "webhooks": [
            {
                "name": WEBHOOK_CONFIG_NAME,
                "admissionReviewVersions": ["v1"],
                "clientConfig": client_config,
                "rules": copy.deepcopy(RULES),
                "failurePolicy": webhook.failure_policy,
                "matchPolicy": "Equivalent",
                "sideEffects": "NoneOnDryRun",
                "timeoutSeconds": webhook.timeout_seconds,
                "objectSelector": object_selector(config),
                "namespaceSelector": copy.deepcopy(webhook.namespace_selector),
            }
        ],
    }


def apiserver_user_name(config: PodseidonConfig, *, base_url: str | None = None) -> str:
    """The ``users[].name`` kube-apiserver's admission kubeconfig needs for its calls to this
    webhook: the URL's ``host[:port]`` as written, or ``NAME.NAMESPACE.svc`` (``:PORT`` unless
    443) for a Service. kube-apiserver matches the called ``host:port`` exactly, then
    ``*.``-prefixed suffixes, then (port 443 only) the same without the port, then ``*``."""
    base_url = base_url or config.webhook.url
    if base_url:
        return urlsplit(base_url).netloc.rpartition("@")[2]
    if config.webhook.service:
        service = config.webhook.service
        host = f"{service.get('name', '')}.{service.get('namespace', '')}.svc"
        port = int(service.get("port") or 443)
        return host if port == 443 else f"{host}:{port}"
    raise ValueError("set webhook.url or webhook.service in the config, or pass --url")


def render_admission_kubeconfig(
    config: PodseidonConfig,
    *,
    client_cert: str,
    client_key: str,
    base_url: str | None = None,
) -> dict[str, Any]:
    """The kubeconfig named by ``kubeConfigFile`` in kube-apiserver's AdmissionConfiguration:
    one user, matched to this webhook, presenting the certificate and key files at these paths
    (paths on the apiserver's host, signed by ``webhook.tls.client_ca_file``)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "users": [
            {
                "name": apiserver_user_name(config, base_url=base_url),
                "user": {"client-certificate": client_cert, "client-key": client_key},
            }
        ],
    }
