"""The sandbox's --admission-control-config-file: kube-apiserver's file format and its rules for
picking the kubeconfig user whose credentials go to a webhook (sandbox/admission_config.py),
and `webhookconfig --apiserver-kubeconfig` naming the user those rules pick."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from podseidon_site.config import parse_config
from sandbox.admission_config import (
    AdmissionConfigError,
    CredentialError,
    CredentialResolver,
    load_admission_config,
)
from webhook.registration import apiserver_user_name, render_admission_kubeconfig


def _kubeconfig(tmp_path: Path, users: list[str], current: str | None = None) -> Path:
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "users": [{"name": name, "user": {"token": f"token-of-{name}"}} for name in users],
    }
    if current:
        data["contexts"] = [{"name": "ctx", "context": {"cluster": "c", "user": current}}]
        data["current-context"] = "ctx"
    path = tmp_path / "admission.kubeconfig"
    path.write_text(yaml.safe_dump(data))
    return path


# (users in the kubeconfig, the webhook's host:port, the user that must be picked)
MATCHES = [
    (["hook.example:8843", "*"], "hook.example:8843", "hook.example:8843"),
    # Without a port in the name only port 443 matches.
    (["hook.example"], "hook.example:8843", None),
    (["hook.example"], "hook.example:443", "hook.example"),
    (["hook.example:443", "hook.example"], "hook.example:443", "hook.example:443"),
    # `*.` stands for leading labels, the port included in the rest.
    (["*.example:8843"], "hook.example:8843", "*.example:8843"),
    (["*.example"], "hook.example:8843", None),
    (["*.example"], "hook.example:443", "*.example"),
    (["*.podseidon.svc:443"], "podseidon-webhook.podseidon.svc:443", "*.podseidon.svc:443"),
    (["*.svc"], "podseidon-webhook.podseidon.svc:443", "*.svc"),
    # The closest wildcard wins; an exact name beats every wildcard.
    (["*.svc", "*.podseidon.svc"], "w.podseidon.svc:443", "*.podseidon.svc"),
    (["*", "w.podseidon.svc"], "w.podseidon.svc:443", "w.podseidon.svc"),
    # Port-qualified names are tried before the bare ones.
    (["*.podseidon.svc", "*.svc:443"], "w.podseidon.svc:443", "*.svc:443"),
    (["*"], "127.0.0.1:9443", "*"),
    (["127.0.0.1:9443"], "127.0.0.1:9443", "127.0.0.1:9443"),
    ([], "127.0.0.1:9443", None),
]


@pytest.mark.parametrize(("users", "target", "picked"), MATCHES)
def test_the_apiservers_matching_rules(
    tmp_path: Path, users: list[str], target: str, picked: str | None
) -> None:
    resolver = CredentialResolver.from_kubeconfig(_kubeconfig(tmp_path, users))
    assert resolver.user_for(target) == picked


def test_the_current_contexts_user_comes_after_the_default(tmp_path: Path) -> None:
    resolver = CredentialResolver.from_kubeconfig(
        _kubeconfig(tmp_path, ["mine", "other"], current="mine")
    )
    assert resolver.user_for("anything:8443") == "mine"
    resolver = CredentialResolver.from_kubeconfig(
        _kubeconfig(tmp_path, ["mine", "*"], current="mine")
    )
    assert resolver.user_for("anything:8443") == "*"


def test_url_and_service_targets(tmp_path: Path) -> None:
    resolver = CredentialResolver.from_kubeconfig(
        _kubeconfig(tmp_path, ["podseidon-webhook.podseidon.svc", "hook.example:8843"])
    )
    assert resolver.for_service("podseidon-webhook", "podseidon", 443).user == (
        "podseidon-webhook.podseidon.svc"
    )
    assert resolver.for_service("podseidon-webhook", "podseidon", 8443) is None
    credentials = resolver.for_url("hook.example:8843")
    assert (
        credentials is not None and credentials.authorization == "Bearer token-of-hook.example:8843"
    )


def test_client_certificates_from_files_relative_to_the_kubeconfig_or_data(
    tmp_path: Path,
) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "client.crt").write_bytes(b"CERT")
    (tmp_path / "pki" / "client.key").write_bytes(b"KEY")
    path = tmp_path / "admission.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "users": [
                    {
                        "name": "files:443",
                        "user": {
                            "client-certificate": "pki/client.crt",
                            "client-key": str(tmp_path / "pki" / "client.key"),
                        },
                    },
                    {
                        "name": "data:443",
                        "user": {
                            "client-certificate-data": base64.b64encode(b"CD").decode(),
                            "client-key-data": base64.b64encode(b"KD").decode(),
                            "username": "u",
                            "password": "p",
                        },
                    },
                    {"name": "gone:443", "user": {"client-certificate": "nope.crt"}},
                ]
            }
        )
    )
    resolver = CredentialResolver.from_kubeconfig(path)
    files = resolver.for_url("files:443")
    assert files is not None
    assert (files.client_cert_pem, files.client_key_pem, files.authorization) == (
        b"CERT",
        b"KEY",
        None,
    )
    data = resolver.for_url("data:443")
    assert data is not None and (data.client_cert_pem, data.client_key_pem) == (b"CD", b"KD")
    assert data.authorization == "Basic " + base64.b64encode(b"u:p").decode()
    with pytest.raises(CredentialError, match=r"nope\.crt: No such file"):
        resolver.for_url("gone:443")


def _admission(tmp_path: Path, plugin: dict[str, Any], version: str = "") -> Path:
    path = tmp_path / "admission.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": version or "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [{"name": "MutatingAdmissionWebhook"}, plugin],
            }
        )
    )
    return path


def test_admission_configuration_inline_and_by_path(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, ["*"])
    inline = {
        "name": "ValidatingAdmissionWebhook",
        "configuration": {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(kubeconfig),
        },
    }
    assert load_admission_config(_admission(tmp_path, inline)).user_for("x:1") == "*"
    (tmp_path / "webhook-admission.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1alpha1",
                "kind": "WebhookAdmission",
                "kubeConfigFile": str(kubeconfig),
            }
        )
    )
    by_path = {"name": "ValidatingAdmissionWebhook", "path": "webhook-admission.yaml"}
    resolver = load_admission_config(_admission(tmp_path, by_path, "apiserver.k8s.io/v1alpha1"))
    assert resolver.user_for("x:1") == "*"
    # Without the plugin's configuration webhooks are called without credentials.
    bare = load_admission_config(_admission(tmp_path, {"name": "ValidatingAdmissionWebhook"}))
    assert bare.user_for("x:1") is None


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        (
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "WebhookAdmissionConfiguration",
                "kubeConfigFile": "relative.kubeconfig",
            },
            'kubeConfigFile: Invalid value: "relative.kubeconfig": must be an absolute file path',
        ),
        (
            {"apiVersion": "v1", "kind": "Config", "kubeConfigFile": "/x"},
            "plugin ValidatingAdmissionWebhook: unexpected configuration kind Config v1",
        ),
        (
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "WebhookAdmissionConfiguration",
                "kubeConfigFile": "/nonexistent/admission.kubeconfig",
            },
            "kubeConfigFile: open /nonexistent/admission.kubeconfig: No such file or directory",
        ),
    ],
)
def test_unusable_admission_configurations(
    tmp_path: Path, configuration: dict[str, Any], message: str
) -> None:
    plugin = {"name": "ValidatingAdmissionWebhook", "configuration": configuration}
    with pytest.raises(AdmissionConfigError) as caught:
        load_admission_config(_admission(tmp_path, plugin))
    assert str(caught.value) == message


def test_not_an_admission_configuration(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(AdmissionConfigError, match="expected kind AdmissionConfiguration"):
        load_admission_config(path)


@pytest.mark.parametrize(
    ("webhook", "user", "target"),
    [
        ({"url": "https://hook.example:8843"}, "hook.example:8843", "hook.example:8843"),
        ({"url": "https://hook.example"}, "hook.example", "hook.example:443"),
        (
            {"service": {"namespace": "podseidon", "name": "podseidon-webhook", "port": 443}},
            "podseidon-webhook.podseidon.svc",
            "podseidon-webhook.podseidon.svc:443",
        ),
        (
            {"service": {"namespace": "podseidon", "name": "podseidon-webhook", "port": 8443}},
            "podseidon-webhook.podseidon.svc:8443",
            "podseidon-webhook.podseidon.svc:8443",
        ),
    ],
)
def test_webhookconfig_names_the_user_the_apiserver_picks(
    tmp_path: Path, webhook: dict[str, Any], user: str, target: str
) -> None:
    config = parse_config({"webhook": webhook})
    assert apiserver_user_name(config) == user
    rendered = render_admission_kubeconfig(
        config, client_cert="/pki/c.crt", client_key="/pki/c.key"
    )
    path = tmp_path / "k"
    path.write_text(yaml.safe_dump(rendered))
    assert CredentialResolver.from_kubeconfig(path).user_for(target) == user
