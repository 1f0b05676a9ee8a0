"""Only kube-apiserver may spend quota (issue 15): ``webhook.tls.client_ca_file``.

Without it the webhook judges any well-formed AdmissionReview that reaches its port, so a forged
review for a protected pod records a bucket and can fill a PodProtector's admission buffer
(the contrast case below shows it on the real gunicorn webhook). With it, only a caller
presenting a certificate the client CA signed gets a review judged: the forged review is refused
(403, or in the TLS handshake itself) and records nothing, and a kube-apiserver configured as in
docs/operations.md (AdmissionConfiguration -> kubeconfig user named after the webhook's
``host:port``), here the sandbox's, keeps protecting pods as before.

The forged reviews are posted straight to the webhook, so those tests need only the core
cluster and run against real clusters too; the ones where an apiserver calls the webhook need
the sandbox (a real kube-apiserver cannot call this machine's loopback, nor be restarted with
an admission configuration by a test).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from demo.layout import free_port
from tests.integration.conftest import Clusters, start_sandbox, stop_sandbox
from tests.integration.webhook_env import (
    DENIED_429,
    GUNICORN,
    REPO,
    RETRY_409,
    Webhook,
    WebhookEnv,
    create_protector,
    delete_review,
    install_crd,
    read_protector,
    ready_pod,
    register,
    start_webhook,
    unregister,
    write_aggregation,
)

pytestmark = pytest.mark.integration

CELLS = ("cell-a", "cell-b")
APISERVER_CN = "kube-apiserver-webhook-client"
CERT_REQUIRED = "client certificate required"
SANDBOX_ONLY = (
    "sandbox-only: needs a kube-apiserver started with --admission-control-config-file that "
    "can reach this machine's loopback"
)


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientPki:
    client_ca: Path  # what the webhook trusts (webhook.tls.client_ca_file)
    apiserver: tuple[Path, Path]  # the apiservers' certificate and key, signed by client_ca
    intruder: tuple[Path, Path]  # signed by client_ca, but another name
    rogue: tuple[Path, Path]  # the apiserver's name, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClientPki:
    from cryptography.hazmat.primitives import serialization

    from sandbox.pki import issue_client_cert, make_ca, save

    folder = tmp_path_factory.mktemp("client-pki")
    ca_cert, ca_key = make_ca("podseidon-webhook-client-ca")
    client_ca = folder / "client-ca.crt"
    client_ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other_cert, other_key = make_ca("someone-elses-ca")

    def issue(name: str, cn: str, cert, key) -> tuple[Path, Path]:
        pair = (folder / f"{name}.crt", folder / f"{name}.key")
        save(*issue_client_cert(cert, key, cn), *pair)
        return pair

    return ClientPki(
        client_ca=client_ca,
        apiserver=issue("apiserver", APISERVER_CN, ca_cert, ca_key),
        intruder=issue("intruder", "intruder", ca_cert, ca_key),
        rogue=issue("rogue", APISERVER_CN, other_cert, other_key),
    )


# -- reviews posted straight to the webhook --------------------------------------------------


def forged_pod(ns: str, name: str, labels: dict[str, str]) -> dict:
    """A ready, long-available pod as it would appear in a review's oldObject; it need not
    exist anywhere, which is the point of a forgery."""
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": str(uuid.uuid4()),
            "labels": labels,
            "creationTimestamp": since,
        },
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": since},
                {"type": "Ready", "status": "True", "lastTransitionTime": since},
            ],
        },
    }


def forged_review(ns: str, pod: dict) -> bytes:
    return delete_review(ns, pod, username="system:serviceaccount:kube-system:generic")


def bucket_uids(clusters: Clusters, ns: str, cell: str = "cell-a") -> list[str]:
    status = read_protector(clusters.api("core"), ns, "protector").status
    cell_status = status.cell(cell) if status else None
    return [b.pod_uid for b in cell_status.admission_history.buckets] if cell_status else []


def judged(hook: Webhook, clusters: Clusters, ns: str, pod: dict, context: ssl.SSLContext) -> dict:
    """The webhook's verdict on a review for ``pod``, repeated until it is recorded or refused:
    until the webhook's cache knows the protector the pod is nobody's and passes unrecorded
    (repeats for one pod spend its quota once). At most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        status, body = hook.post("/cell-a", forged_review(ns, pod), context=context)
        assert status == 200, body
        response = json.loads(body)["response"]
        recorded = pod["metadata"]["uid"] in bucket_uids(clusters, ns)
        if not response["allowed"] or recorded or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def http_403s(hook: Webhook) -> float:
    """How many requests for cell-a this webhook has answered 403 so far."""
    sample = 'webhook_http_error_total{cause="client-cert",cell="cell-a",code="403"}'
    for line in hook.metrics().splitlines():
        if line.startswith(sample):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def refused(hook: Webhook, body: bytes, context: ssl.SSLContext) -> str:
    """How the webhook refused a request: ``"403: message"`` or ``"tls: error"``."""
    try:
        status, raw = hook.post("/cell-a", body, context=context)
    except (ssl.SSLError, ConnectionError, urllib.error.URLError) as error:
        return f"tls: {getattr(error, 'reason', error)}"
    if status == 403:
        return f"403: {json.loads(raw)['message']}"
    raise AssertionError(f"not refused: {status} {raw[:300]!r}")


def plain_context(hook: Webhook) -> ssl.SSLContext:
    """A caller that trusts the webhook's certificate but has none of its own."""
    return ssl.create_default_context(cafile=str(hook.ca_file))


@pytest.fixture
def ns(clusters: Clusters) -> Iterator[str]:
    install_crd(clusters.api("core"))
    name = f"mtls-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(clusters.api("core"))
    core.create_namespace({"metadata": {"name": name}})
    labels = {"app": "web"}
    # Five available pods, one may go; the buffer holds one unconfirmed deletion.
    create_protector(clusters.api("core"), name, "protector", 1, labels)
    k8s.CustomObjectsApi(clusters.api("core")).patch_namespaced_custom_object(
        "podseidon.kubewharf.io",
        "v1alpha1",
        name,
        "podprotectors",
        "protector",
        {"spec": {"admissionHistoryConfig": {"maxConcurrentLag": 1}}},
    )
    write_aggregation(clusters.api("core"), name, "protector", {"cell-a": 5})
    yield name
    with contextlib.suppress(k8s.ApiException):
        core.delete_namespace(name)


@contextlib.contextmanager
def running_hook(clusters: Clusters, work: Path, **kwargs) -> Iterator[Webhook]:
    install_crd(clusters.api("core"))  # the webhook is ready once it has listed PodProtectors
    hook = start_webhook(work, clusters.kubeconfigs, tls_dir=work / "tls", workers=1, **kwargs)
    try:
        yield hook
    finally:
        assert hook.stop() == 0, hook.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def open_hook(clusters: Clusters, tmp_path_factory) -> Iterator[Webhook]:
    """Today's default: no client CA."""
    with running_hook(clusters, tmp_path_factory.mktemp("open-hook")) as hook:
        yield hook


@pytest.fixture(scope="module")
def guarded_hook(clusters: Clusters, pki: ClientPki, tmp_path_factory) -> Iterator[Webhook]:
    with running_hook(
        clusters,
        tmp_path_factory.mktemp("guarded-hook"),
        tls_options={"client_ca_file": str(pki.client_ca)},
    ) as hook:
        yield hook


# -- the vulnerability, and its fix ----------------------------------------------------------


def test_without_a_client_ca_a_forged_review_fills_the_admission_buffer(
    open_hook: Webhook, clusters: Clusters, ns: str
) -> None:
    forged = forged_pod(ns, "does-not-exist", {"app": "web"})
    answer = judged(open_hook, clusters, ns, forged, plain_context(open_hook))
    assert answer["allowed"] is True
    assert bucket_uids(clusters, ns) == [forged["metadata"]["uid"]]
    # The next deletion, a legitimate one, finds the buffer full.
    legitimate = forged_pod(ns, "web-0", {"app": "web"})
    status, body = open_hook.post("/cell-a", forged_review(ns, legitimate))
    response = json.loads(body)["response"]
    assert status == 200 and response["allowed"] is False
    assert response["status"]["code"] == 409 and RETRY_409 in response["status"]["message"]


def test_with_a_client_ca_a_forged_review_is_refused_and_records_nothing(
    guarded_hook: Webhook, pki: ClientPki, clusters: Clusters, ns: str
) -> None:
    refusals = http_403s(guarded_hook)
    forged = forged_pod(ns, "does-not-exist", {"app": "web"})
    how = refused(guarded_hook, forged_review(ns, forged), plain_context(guarded_hook))
    assert how.startswith(f"403: {CERT_REQUIRED}"), how
    assert bucket_uids(clusters, ns) == []
    # kubelet's probes present no certificate and still work.
    assert guarded_hook.get("/readyz", context=plain_context(guarded_hook)) == (200, b"ok\n")
    assert guarded_hook.get("/healthz", context=plain_context(guarded_hook)) == (200, b"ok\n")
    assert guarded_hook.get("/metrics", context=plain_context(guarded_hook))[0] == 403
    # The apiserver's certificate gets the same kind of review judged, and the buffer it finds
    # is empty: the forgery spent nothing.
    legitimate = forged_pod(ns, "web-0", {"app": "web"})
    answer = judged(guarded_hook, clusters, ns, legitimate, guarded_hook.ssl_context(pki.apiserver))
    assert answer["allowed"] is True
    assert bucket_uids(clusters, ns) == [legitimate["metadata"]["uid"]]
    # Once the webhook knows the protector for sure, a forgery is still refused.
    again = forged_pod(ns, "does-not-exist-either", {"app": "web"})
    how = refused(guarded_hook, forged_review(ns, again), plain_context(guarded_hook))
    assert how.startswith(f"403: {CERT_REQUIRED}"), how
    assert bucket_uids(clusters, ns) == [legitimate["metadata"]["uid"]]
    assert http_403s(guarded_hook) == refusals + 2


def test_a_certificate_from_another_ca_fails_the_handshake(
    guarded_hook: Webhook, pki: ClientPki, clusters: Clusters, ns: str
) -> None:
    forged = forged_pod(ns, "does-not-exist", {"app": "web"})
    how = refused(guarded_hook, forged_review(ns, forged), guarded_hook.ssl_context(pki.rogue))
    assert how.startswith("tls: "), how
    # Then the apiserver's own certificate, so the webhook demonstrably knew the protector.
    legitimate = forged_pod(ns, "web-0", {"app": "web"})
    context = guarded_hook.ssl_context(pki.apiserver)
    assert judged(guarded_hook, clusters, ns, legitimate, context)["allowed"]
    how = refused(guarded_hook, forged_review(ns, forged), guarded_hook.ssl_context(pki.rogue))
    assert how.startswith("tls: "), how
    assert bucket_uids(clusters, ns) == [legitimate["metadata"]["uid"]]


@pytest.fixture(scope="module")
def strict_hook(clusters: Clusters, pki: ClientPki, tmp_path_factory) -> Iterator[Webhook]:
    """Certificates demanded in the handshake, probes included; only the apiserver's name."""
    with running_hook(
        clusters,
        tmp_path_factory.mktemp("strict-hook"),
        tls_options={
            "client_ca_file": str(pki.client_ca),
            "probes_without_client_cert": False,
            "client_names": [APISERVER_CN],
        },
        client_cert=pki.apiserver,
    ) as hook:
        yield hook


def test_strict_mode_refuses_in_the_handshake_and_checks_the_name(
    strict_hook: Webhook, pki: ClientPki, clusters: Clusters, ns: str
) -> None:
    forged = forged_pod(ns, "does-not-exist", {"app": "web"})
    how = refused(strict_hook, forged_review(ns, forged), plain_context(strict_hook))
    assert how.startswith("tls: "), how
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        strict_hook.get("/readyz", context=plain_context(strict_hook))
    # Signed by the right CA, but not the apiserver's name.
    how = refused(strict_hook, forged_review(ns, forged), strict_hook.ssl_context(pki.intruder))
    assert how == "403: client certificate (intruder) is not in webhook.tls.client_names", how
    assert bucket_uids(clusters, ns) == []
    legitimate = forged_pod(ns, "web-0", {"app": "web"})
    context = strict_hook.ssl_context(pki.apiserver)
    assert judged(strict_hook, clusters, ns, legitimate, context)["allowed"]
    assert bucket_uids(clusters, ns) == [legitimate["metadata"]["uid"]]


def test_an_unreadable_client_ca_stops_the_webhook_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "podseidon.yaml"
    missing = tmp_path / "nowhere" / "ca.crt"
    config.write_text(
        yaml.safe_dump(
            {
                "webhook": {
                    "port": free_port(),
                    "tls": {
                        "cert_file": str(tmp_path / "tls.crt"),
                        "key_file": str(tmp_path / "tls.key"),
                        "client_ca_file": str(missing),
                    },
                }
            }
        )
    )
    result = subprocess.run(
        [GUNICORN, "-c", "python:podseidon_site.gunicorn_webhook"],
        cwd=REPO,
        env={"PODSEIDON_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"podseidon: invalid configuration: {config}: webhook.tls.client_ca_file: cannot read "
        f"{missing}: No such file or directory"
    ]


# -- through an apiserver ---------------------------------------------------------------------


def test_an_apiserver_without_a_client_certificate_fails_calling_the_webhook(
    guarded_hook: Webhook, clusters: Clusters, ns: str
) -> None:
    """What turning client_ca_file on before configuring the apiservers does: under
    failurePolicy Fail every guarded deletion is refused with the webhook's reason."""
    if not clusters.is_sandbox:
        pytest.skip(SANDBOX_ONLY)
    cell = k8s.CoreV1Api(clusters.api("cell-a"))
    cell.create_namespace({"metadata": {"name": ns}})
    try:
        ready_pod(cell, ns, "web-0", {"app": "web"})
        register(guarded_hook, "cell-a")
        with pytest.raises(k8s.ApiException) as error:
            cell.delete_namespaced_pod("web-0", ns)
        assert error.value.status == 500
        message = json.loads(error.value.body)["message"]
        assert message == (
            'Internal error occurred: failed calling webhook "podseidon.kubewharf.io": failed '
            "to call webhook: client certificate required: only kube-apiserver, presenting a "
            "certificate signed by webhook.tls.client_ca_file, may call this webhook"
        )
        assert bucket_uids(clusters, ns) == []
    finally:
        unregister(clusters.api("cell-a"))
        with contextlib.suppress(k8s.ApiException):
            cell.delete_namespace(ns)


def admission_kubeconfig(work: Path, webhook_url: str, pki: ClientPki) -> Path:
    """The kubeconfig for the apiserver's AdmissionConfiguration, as the operator makes it:
    ``manage.py webhookconfig --apiserver-kubeconfig``."""
    config = work / "podseidon-for-webhookconfig.yaml"
    config.write_text(
        yaml.safe_dump({"cells": [{"id": c, "kubeconfig": "unused"} for c in CELLS], "webhook": {}})
    )
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "webhookconfig",
            "--cell",
            "cell-a",
            "--apiserver-kubeconfig",
            "--url",
            webhook_url,
            "--client-cert",
            str(pki.apiserver[0]),
            "--client-key",
            str(pki.apiserver[1]),
        ],
        cwd=REPO,
        env={
            "PODSEIDON_CONFIG": str(config),
            "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.development",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    kubeconfig = yaml.safe_load(result.stdout)
    host_port = webhook_url.removeprefix("https://")
    assert [u["name"] for u in kubeconfig["users"]] == [host_port]
    path = work / "admission.kubeconfig"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def mtls_env(clusters: Clusters, pki: ClientPki, tmp_path_factory) -> Iterator[WebhookEnv]:
    """Sandbox clusters whose apiservers present the apiserver certificate to the webhook,
    configured the way kube-apiserver is, and the guarded webhook registered in both cells."""
    if not clusters.is_sandbox:
        pytest.skip(SANDBOX_ONLY)
    work = tmp_path_factory.mktemp("mtls-sandbox")
    port = free_port()
    admission = work / "admission.yaml"
    admission.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {
                        "name": "ValidatingAdmissionWebhook",
                        "configuration": {
                            "apiVersion": "apiserver.config.k8s.io/v1",
                            "kind": "WebhookAdmissionConfiguration",
                            "kubeConfigFile": str(
                                admission_kubeconfig(work, f"https://127.0.0.1:{port}", pki)
                            ),
                        },
                    }
                ],
            }
        )
    )
    state = work / "state"
    state.mkdir()
    names = ("core", *CELLS)
    process = start_sandbox(state, names, ("--admission-control-config-file", str(admission)))
    own = Clusters({n: state / f"{n}.kubeconfig" for n in names}, True, state, process)
    try:
        with running_hook(
            own,
            work / "webhook",
            tls_options={"client_ca_file": str(pki.client_ca)},
            port=port,
            client_cert=pki.apiserver,
        ) as hook:
            try:
                for cell in CELLS:
                    register(hook, cell)
                yield WebhookEnv(own, hook)
            finally:
                for cell in CELLS:
                    unregister(own.api(cell))
    finally:
        for api in own._clients.values():
            api.close()
        assert stop_sandbox(process) == 0


def _dry_run_delete(core: k8s.CoreV1Api, ns: str, name: str) -> int:
    try:
        core.delete_namespaced_pod(name, ns, dry_run="All")
        return 200
    except k8s.ApiException as error:
        return error.status


def _until_dry_run_answers(core: k8s.CoreV1Api, ns: str, name: str, code: int) -> None:
    """Wait until the webhook's cache holds the protector status just written, as seen through
    a dry-run deletion (judged by the webhook like a real one, never recorded)."""
    deadline = time.monotonic() + 10
    while (got := _dry_run_delete(core, ns, name)) != code:
        assert time.monotonic() < deadline, f"dry-run deletion of {name}: {got}, not {code}"
        time.sleep(0.1)


def test_through_the_apiserver_protection_works_as_before(mtls_env: WebhookEnv) -> None:
    env = mtls_env
    ns = f"mtls-{uuid.uuid4().hex[:8]}"
    for cluster in ("core", *CELLS):
        env.core(cluster).create_namespace({"metadata": {"name": ns}})
    labels = {"app": "web"}
    cell = env.core("cell-a")
    for i in range(3):
        ready_pod(cell, ns, f"web-{i}", labels)
    api = env.clusters.api("core")
    create_protector(api, ns, "protector", 2, labels)
    # First no room at all: the webhook knows the protector once a dry run is refused.
    write_aggregation(api, ns, "protector", {"cell-a": 2})
    _until_dry_run_answers(cell, ns, "web-0", 429)
    write_aggregation(api, ns, "protector", {"cell-a": 3})
    _until_dry_run_answers(cell, ns, "web-0", 200)
    assert bucket_uids(env.clusters, ns) == []  # dry runs spend nothing

    # One pod may go, and its deletion is recorded.
    uid = cell.read_namespaced_pod("web-0", ns).metadata.uid
    cell.delete_namespaced_pod("web-0", ns)
    assert bucket_uids(env.clusters, ns) == [uid]

    # The aggregator catches up (web-0 gone; its bucket stays until the aggregator clears it):
    # the next deletion is denied with the usual 429.
    write_aggregation(api, ns, "protector", {"cell-a": 2})
    _until_dry_run_answers(cell, ns, "web-1", 429)
    with pytest.raises(k8s.ApiException) as error:
        cell.delete_namespaced_pod("web-1", ns)
    assert error.value.status == 429
    message = json.loads(error.value.body)["message"]
    assert message.startswith('admission webhook "podseidon.kubewharf.io" denied the request: ')
    assert f"PodProtector {ns}/protector" in message and DENIED_429 in message
    cell.read_namespaced_pod("web-1", ns)  # still there
    assert bucket_uids(env.clusters, ns) == [uid]
