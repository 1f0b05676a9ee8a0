"""The webhook process itself: gunicorn over TLS, probes, metrics, hostile input, registration."""

from __future__ import annotations

import http.client
import json
import re
import select
import time
import uuid
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client as k8s

from tests.integration.webhook_env import (
    Webhook,
    install_crd,
    start_webhook,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def webhook(clusters, tmp_path_factory) -> Iterator[Webhook]:
    install_crd(clusters.api("core"))
    work = tmp_path_factory.mktemp("webhook-serving")
    hook = start_webhook(work, clusters.kubeconfigs, tls_dir=work / "tls")
    try:
        yield hook
    finally:
        assert hook.stop() == 0, hook.log.read_text()[-2000:]


def _review(**request) -> bytes:
    base = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "DELETE",
        "namespace": "nowhere",
        "name": "p",
        "userInfo": {"username": "admin"},
        "oldObject": {"metadata": {"name": "p", "namespace": "nowhere", "uid": "u"}},
    }
    base.update(request)
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}
    ).encode()


def test_probes(webhook: Webhook) -> None:
    assert webhook.get("/healthz") == (200, b"ok\n")
    assert webhook.get("/readyz") == (200, b"ok\n")


def test_answers_a_review_without_database_or_redis(webhook: Webhook) -> None:
    status, body = webhook.post("/cell-a", _review())
    assert status == 200
    answer = json.loads(body)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["allowed"] is True


def _kept_alive(hook: Webhook) -> http.client.HTTPSConnection:
    """One connection to the webhook, kept alive between reviews as kube-apiserver's are."""
    host, port = hook.url.removeprefix("https://").rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), context=hook.ssl_context(), timeout=10)


def _review_on(connection: http.client.HTTPSConnection) -> dict:
    """A review on ``connection``; the answer's ``response`` (asserted 200)."""
    connection.request("POST", "/cell-a", _review(), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, body
    return json.loads(body)["response"]


def test_an_idle_kept_alive_connection_stays_open(webhook: Webhook) -> None:
    """kube-apiserver keeps an idle connection to a webhook for 90 s; gunicorn's own default
    would close it after 2 s, and every quiet spell would cost a new TLS handshake."""
    connection = _kept_alive(webhook)
    try:
        _review_on(connection)
        sock = connection.sock
        time.sleep(4)  # twice gunicorn's default, which checks once a second
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable, "the webhook closed the idle connection"
        _review_on(connection)
        assert connection.sock is sock, "the second review needed a new connection"
    finally:
        connection.close()


def test_more_kept_alive_connections_than_threads_are_all_served(
    clusters, tmp_path_factory
) -> None:
    """The webhook's worker (podseidon_site/gunicorn_webhook_worker.py) serves a connection's
    next request on the thread that answered the last one when it comes at once, and holds no
    thread waiting while half of them are in use: with 2 threads and 3 connections taking
    turns, every review is answered on its own connection."""
    install_crd(clusters.api("core"))
    work = tmp_path_factory.mktemp("webhook-two-threads")
    hook = start_webhook(
        work,
        clusters.kubeconfigs,
        tls_dir=work / "tls",
        workers=1,
        extra_env={"GUNICORN_THREADS": "2"},
    )
    connections = [_kept_alive(hook) for _ in range(3)]
    try:
        started = time.monotonic()
        first: list[object] = []
        for round_ in range(20):
            for connection in connections:
                assert _review_on(connection)["allowed"] is True
            if round_ == 0:
                first = [connection.sock for connection in connections]
        # 60 reviews; a connection kept waiting for a thread would cost the 10 s timeout.
        assert time.monotonic() - started < 30
        now = [connection.sock for connection in connections]
        assert all(a is b for a, b in zip(first, now, strict=True)), "a connection was replaced"
        assert "Using worker: podseidon_site.gunicorn_webhook_worker.WebhookWorker" in (
            hook.log.read_text()
        )
    finally:
        for connection in connections:
            connection.close()
        assert hook.stop() == 0, hook.log.read_text()[-2000:]


HOSTILE = [
    ("not-json", "/cell-a", b"{nope", "not valid JSON"),
    ("empty", "/cell-a", b"", "empty request body"),
    ("array", "/cell-a", b"[1,2,3]", "must be a JSON object"),
    (
        "wrong-kind",
        "/cell-a",
        b'{"apiVersion": "v1", "kind": "Pod", "request": {}}',
        "expected kind AdmissionReview",
    ),
    (
        "no-request",
        "/cell-a",
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        "request is missing",
    ),
    ("no-old-object", "/cell-a", _review(oldObject=None), "oldObject is missing"),
    ("no-uid", "/cell-a", _review(uid=None), "request.uid is required"),
    ("unknown-cell", "/cell-z", _review(), "unknown cell 'cell-z'"),
    ("bad-request-type", "/cell-a", _review(userInfo="root"), "userInfo must be a JSON object"),
]


@pytest.mark.parametrize(
    ("path", "body", "message"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_malformed_bodies_get_a_clear_400(webhook: Webhook, path, body, message) -> None:
    status, answer = webhook.post(path, body)
    assert status == 400
    assert message in json.loads(answer)["error"]
    # ...and the process keeps serving.
    assert webhook.post("/cell-a", _review())[0] == 200


def test_huge_body_is_refused(webhook: Webhook) -> None:
    import urllib.error

    try:
        status, _ = webhook.post("/cell-a", b" " * (4 * 1024 * 1024))
    except urllib.error.URLError:
        # Refused from the Content-Length alone: the server answers 413 and closes before the
        # client has finished sending, which the client may see as a broken connection.
        status = 413
    assert status == 413
    assert webhook.get("/readyz")[0] == 200
    assert webhook.post("/cell-a", _review())[0] == 200


def test_unexpected_subject_is_a_500_verdict(webhook: Webhook) -> None:
    status, body = webhook.post("/cell-a", _review(operation="CREATE", object={}))
    assert status == 200
    response = json.loads(body)["response"]
    assert response["allowed"] is False
    assert response["status"] == {"code": 500, "message": "Unexpected review subject"}


def _sample(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_metrics_add_up_across_workers(webhook: Webhook) -> None:
    before = webhook.metrics()
    base_requests = _sample(before, "webhook_request_count", cell="cell-b")
    base_errors = _sample(before, "webhook_http_error_total", cell="cell-b", code="400")
    for _ in range(30):  # with 3 workers, these land on several processes
        assert webhook.post("/cell-b", _review())[0] == 200
        assert webhook.post("/cell-b", b"junk")[0] == 400
    # A review's metrics are recorded just after its answer is sent: allow them a moment.
    deadline = time.monotonic() + 5
    while True:
        after = webhook.metrics()
        counted = _sample(after, "webhook_request_count", cell="cell-b")
        if counted >= base_requests + 30 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert counted == base_requests + 30
    assert _sample(after, "webhook_http_error_total", cell="cell-b", code="400") == (
        base_errors + 30
    )
    status, body = webhook.get("/metrics")
    assert status == 200 and b"webhook_request_bucket" in body


def test_unknown_cells_share_one_metric_label(webhook: Webhook) -> None:
    # The path segment is chosen by whoever calls; it must not become a label value.
    base = _sample(webhook.metrics(), "webhook_http_error_total", cell="unknown", code="400")
    for i in range(5):
        assert webhook.post(f"/no-such-cell-{i}", _review())[0] == 400
    after = webhook.metrics()
    assert _sample(after, "webhook_http_error_total", cell="unknown", code="400") == base + 5
    assert "no-such-cell" not in after


def test_webhookconfig_renders_the_registration(webhook: Webhook) -> None:
    import subprocess
    import sys

    from tests.integration.webhook_env import REPO

    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "webhookconfig",
            "--cell",
            "cell-b",
            "--url",
            webhook.url,
            "--ca-bundle",
            str(webhook.ca_file),
        ],
        cwd=REPO,
        env=webhook.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    obj = yaml.safe_load(result.stdout)
    (hook,) = obj["webhooks"]
    assert obj["metadata"]["name"] == "podseidon.kubewharf.io"
    assert hook["clientConfig"]["url"] == f"{webhook.url}/cell-b"
    assert hook["rules"] == [
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
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 5
    assert hook["objectSelector"] == {
        "matchExpressions": [
            {"key": "app.kubernetes.io/part-of", "operator": "NotIn", "values": ["podseidon"]}
        ]
    }
    assert "caBundle" in hook["clientConfig"]
    # The private key never leaves the webhook's own files.
    assert "PRIVATE KEY" not in result.stdout


def test_unknown_cell_for_webhookconfig_is_a_clear_error(webhook: Webhook) -> None:
    import subprocess
    import sys

    from tests.integration.webhook_env import REPO

    result = subprocess.run(
        [sys.executable, "manage.py", "webhookconfig", "--cell", "cell-z", "--url", webhook.url],
        cwd=REPO,
        env=webhook.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "unknown cell 'cell-z'" in result.stderr


def test_apply_creates_then_replaces(clusters, webhook: Webhook) -> None:
    from tests.integration.webhook_env import register, unregister

    try:
        assert "created in cell-b" in register(webhook, "cell-b")
        assert "replaced in cell-b" in register(webhook, "cell-b")
        stored = k8s.AdmissionregistrationV1Api(
            clusters.api("cell-b")
        ).read_validating_webhook_configuration("podseidon.kubewharf.io")
        assert stored.webhooks[0].client_config.url == f"{webhook.url}/cell-b"
    finally:
        unregister(clusters.api("cell-b"))
