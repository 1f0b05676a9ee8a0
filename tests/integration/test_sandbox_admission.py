"""The sandbox calls ValidatingWebhookConfigurations as kube-apiserver v1.24 does.

A sandbox process of its own (cluster `adm`, no controllers) and a capture webhook
(tests/integration/capture_webhook.py) on loopback: which requests reach a webhook (rules,
selectors, exemptions), what a denial and each kind of failed call look like to the client
under both failure policies, dry runs, `clientConfig.service` through `--service-endpoint`,
several webhooks at once, configuration changes taking effect at once, and `kubectl`'s view
of a denial. The recorded transcripts themselves are replayed in test_sandbox_replay.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from sandbox.cluster import AdmissionRequest
from sandbox.resources import ResourceType
from sandbox.webhooks import Attributes, admission_review, parse_configuration, should_call

from .capture_webhook import ALLOW, Answer, CaptureWebhook, Received, deny, make_ca, pem_bundle
from .conftest import kubectl_path, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration

CLUSTER = "adm"
WEBHOOK = "podseidon.kubewharf.io"
SERVICE = ("webhooks", "capture")  # mapped to the capture webhook by --service-endpoint
DENIED = f'admission webhook "{WEBHOOK}" denied the request'
CONFIGS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
# The rules recording 07 registered.
POD_RULES = [
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


@dataclass
class Env:
    api: client.ApiClient
    hook: CaptureWebhook
    kubeconfig: Path
    configs: list[str] = field(default_factory=list)
    down_port: int = 0  # a loopback port nothing listens on

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        """A raw API call: (status, decoded body), errors included."""
        head = {"Accept": "application/json", "Content-Type": "application/json", **headers}
        self.api.update_params_for_auth(head, [], ["BearerToken"])
        try:
            resp = self.api.rest_client.request(
                method, self.api.configuration.host + path, headers=head, body=body
            )
            status, raw = resp.status, resp.data
        except client.ApiException as exc:
            status, raw = exc.status, exc.body
        text = raw.decode() if isinstance(raw, bytes) else raw
        return status, json.loads(text) if text else None

    def register(self, client_config: dict[str, Any], namespace: str, **fields: Any) -> str:
        """A ValidatingWebhookConfiguration with one webhook, limited to `namespace` unless
        `fields` says otherwise; removed after the test."""
        name = f"adm-{uuid.uuid4().hex[:8]}"
        webhook = {
            "name": WEBHOOK,
            "admissionReviewVersions": ["v1"],
            "clientConfig": client_config,
            "rules": POD_RULES,
            "sideEffects": "NoneOnDryRun",
            "timeoutSeconds": 2,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            **fields,
        }
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [webhook],
        }
        status, answer = self.request("POST", CONFIGS, body)
        assert status == 201, answer
        self.configs.append(name)
        return name

    def url_config(self, path: str = "/adm") -> dict[str, Any]:
        return {"url": self.hook.url(path), "caBundle": self.hook.ca_bundle}

    def create_pod(
        self, ns: str, name: str, labels: dict[str, str] | None = None, **spec: Any
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec},
        }
        status, answer = self.request("POST", f"/api/v1/namespaces/{ns}/pods", body)
        assert status == 201, answer
        return answer

    def delete_pod(self, ns: str, name: str, query: str = "") -> tuple[int, Any]:
        return self.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}{query}")

    def evict(self, ns: str, name: str, api_version: str = "policy/v1") -> tuple[int, Any]:
        body = {"apiVersion": api_version, "kind": "Eviction", "metadata": {"name": name}}
        return self.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", body)

    def pod_exists(self, ns: str, name: str) -> bool:
        status, _ = self.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        return status == 200


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("admission")
    namespace, name = SERVICE
    hook = CaptureWebhook(base / "webhook", dns_names=(f"{name}.{namespace}.svc",)).start()
    state = base / "state"
    state.mkdir()
    endpoints = (
        "--service-endpoint",
        f"{namespace}/{name}=https://127.0.0.1:{hook.port}",
        # A Service whose name the webhook's certificate does not carry.
        "--service-endpoint",
        f"{namespace}/misnamed:8443=127.0.0.1:{hook.port}",
    )
    proc = start_sandbox(state, (CLUSTER,), endpoints)
    kubeconfig = state / f"{CLUSTER}.kubeconfig"
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield Env(api, hook, kubeconfig)
    finally:
        api.close()
        hook.stop()
        assert stop_sandbox(proc) == 0


@pytest.fixture
def ns(env: Env) -> Iterator[str]:
    """A fresh namespace; the webhook allows everything and has seen nothing yet."""
    name = f"adm-{uuid.uuid4().hex[:8]}"
    status, answer = env.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, answer
    env.hook.answer_with(ALLOW)
    env.hook.clear()
    yield name
    while env.configs:
        env.request("DELETE", f"{CONFIGS}/{env.configs.pop()}")
    env.request("DELETE", f"/api/v1/namespaces/{name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def calls(hook: CaptureWebhook) -> list[tuple[str, str, str]]:
    """(operation, resource[/subresource], object name) of every review received."""
    out = []
    for r in hook.reviews():
        req = r.request
        resource = req["resource"]["resource"]
        if req.get("subResource"):
            resource += "/" + req["subResource"]
        obj = req["object"] if req["object"] is not None else req["oldObject"]
        out.append((req["operation"], resource, obj["metadata"]["name"]))
    return out


# --- denials ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "message", "reason"),
    [
        # Recorded 30: the webhook's code and message, no reason when it gave none.
        (deny("too few available", code=429), 429, f"{DENIED}: too few available", None),
        (
            deny("busy", code=429, reason="TooManyRequests"),
            429,
            f"{DENIED}: busy",
            "TooManyRequests",
        ),
        # Without a code (or one below 400) the apiserver answers 400.
        (deny("no code"), 400, f"{DENIED}: no code", None),
        (deny("too low", code=200), 400, f"{DENIED}: too low", None),
        # The reason stands in for a missing message.
        (deny(code=403, reason="Forbidden"), 403, f"{DENIED}: Forbidden", "Forbidden"),
        (deny(), 400, f"{DENIED} without explanation", None),
    ],
)
def test_denial_reaches_the_client_as_the_webhooks_status(
    env: Env, ns: str, answer: Answer, code: int, message: str, reason: str | None
) -> None:
    env.register(env.url_config(), ns)
    env.create_pod(ns, "victim")
    env.hook.answer_with(answer)
    status, body = env.delete_pod(ns, "victim")
    expected: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        expected["reason"] = reason
    expected["code"] = code
    assert (status, body) == (code, expected)
    assert list(body) == list(expected)  # the apiserver's field order
    assert env.pod_exists(ns, "victim")
    # The eviction of the same pod is denied the same way.
    assert env.evict(ns, "victim") == (code, expected)
    assert [c[:2] for c in calls(env.hook)] == [("DELETE", "pods"), ("CREATE", "pods/eviction")]


# --- failed calls -----------------------------------------------------------------------------


def _other_ca_bundle() -> str:
    return pem_bundle(make_ca("some-other-ca")[0])


FAILURES = {
    # name: (how to register it, how the webhook answers, the end of the error message)
    "timeout": (
        lambda env: {"clientConfig": env.url_config(), "timeoutSeconds": 1},
        Answer(delay=1.5),
        ": context deadline exceeded",
    ),
    "down": (
        lambda env: {"clientConfig": {"url": f"https://127.0.0.1:{env.down_port}/adm"}},
        ALLOW,
        ": dial tcp 127.0.0.1:{down_port}: connect: connection refused",
    ),
    "unknown-ca": (
        lambda env: {"clientConfig": {**env.url_config(), "caBundle": _other_ca_bundle()}},
        ALLOW,
        ": x509: certificate signed by unknown authority",
    ),
    "http-500": (
        lambda env: {"clientConfig": env.url_config()},
        Answer(http_status=500, raw=b"boom", content_type="text/plain"),
        ': an error on the server ("boom") has prevented the request from succeeding',
    ),
    "wrong-uid": (
        lambda env: {"clientConfig": env.url_config()},
        Answer(uid="not-the-request-uid"),
        ', got "not-the-request-uid"',
    ),
    "garbage": (
        lambda env: {"clientConfig": env.url_config()},
        Answer(raw=b"<html>", content_type="text/html"),
        "json parse error: unexpected character: line 1 column 1 (char 0)",
    ),
    "wrong-name": (
        lambda env: {
            "clientConfig": {
                "service": {"namespace": SERVICE[0], "name": "misnamed", "port": 8443},
                "caBundle": env.hook.ca_bundle,
            }
        },
        ALLOW,
        f": x509: certificate is not valid for misnamed.{SERVICE[0]}.svc",
    ),
    "no-review-version": (
        lambda env: {"clientConfig": env.url_config(), "admissionReviewVersions": ["v2"]},
        ALLOW,
        ": could not create admission objects: "
        "webhook does not accept v1 or v1beta1 AdmissionReview",
    ),
    "unmapped-service": (
        lambda env: {"clientConfig": {"service": {"namespace": "elsewhere", "name": "nowhere"}}},
        ALLOW,
        ': Post "https://nowhere.elsewhere.svc:443/?timeout=2s": service "nowhere" not found',
    ),
}


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_failed_calls_follow_the_failure_policy(
    env: Env, ns: str, failure: str, policy: str
) -> None:
    fields, answer, ending = FAILURES[failure]
    env.down_port = free_port()
    env.register(env.url_config(), ns, failurePolicy=policy, **fields(env))
    env.hook.answer_with(answer)
    # Scheduled, so that its DELETE is one admission call (the graceful marking).
    env.create_pod(ns, "victim", nodeName="node-1")
    started = time.monotonic()
    status, body = env.delete_pod(ns, "victim")
    elapsed = time.monotonic() - started
    if failure == "timeout":
        assert 1.0 <= elapsed < 1.5, elapsed  # timeoutSeconds, not the webhook's delay
    if policy == "Ignore":
        assert status == 200, body
        assert body["metadata"]["deletionTimestamp"]
        return
    # Recorded 45/46: an InternalError naming the webhook, the URL and the Go error.
    cause = body["details"]["causes"][0]["message"]
    assert (status, body) == (
        500,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {cause}",
            "reason": "InternalError",
            "details": {"causes": [{"message": cause}]},
            "code": 500,
        },
    )
    assert cause.startswith(f'failed calling webhook "{WEBHOOK}": '), cause
    assert cause.endswith(ending.format(down_port=env.down_port)), cause
    if failure in ("timeout", "unknown-ca"):
        url = env.hook.url("/adm") + "?timeout=" + ("1s" if failure == "timeout" else "2s")
        assert f'failed to call webhook: Post "{url}": ' in cause
    if failure == "http-500":  # an error answer is no transport error: no URL named
        assert "failed to call webhook: an error on the server" in cause
    if failure == "wrong-uid":
        assert "received invalid webhook response: expected response.uid=" in cause
    assert env.pod_exists(ns, "victim")


# --- what reaches a webhook -------------------------------------------------------------------


def _pod_actions(env: Env, ns: str) -> None:
    """One of each request a webhook might see, in `ns`."""
    status, answer = env.request(
        "POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "cm"}}
    )
    assert status == 201, answer
    env.create_pod(ns, "guarded", {"role": "guarded", "podseidon-ignore": "1"})
    env.create_pod(ns, "plain")
    merge = {"Content-Type": "application/merge-patch+json"}
    status, answer = env.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/guarded",
        {"metadata": {"labels": {"x": "1"}}},
        **merge,
    )
    assert status == 200, answer
    status, answer = env.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/guarded/status",
        {"status": {"phase": "Running"}},
        **merge,
    )
    assert status == 200, answer
    status, answer = env.evict(ns, "plain")
    assert status == 201, answer
    status, answer = env.delete_pod(ns, "guarded")
    assert status == 200, answer


def _rule(resources: list[str], **fields: Any) -> list[dict[str, Any]]:
    rule = {"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": resources}
    return [{**rule, **fields}]


CREATED = [("CREATE", "pods", "guarded"), ("CREATE", "pods", "plain")]
UPDATED = [("UPDATE", "pods", "guarded")]
STATUS = [("UPDATE", "pods/status", "guarded")]
EVICTED = [("CREATE", "pods/eviction", "plain")]
# An unscheduled pod's DELETE: the marking update, then the final removal seen with the
# watch cache's stale copy and with the marked object.
DELETED = [("DELETE", "pods", "guarded")] * 3
CONFIGMAP = [("CREATE", "configmaps", "cm")]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, EVICTED + DELETED),  # recording 07's rules
        ({"rules": _rule(["pods"])}, CREATED + UPDATED + DELETED),
        # As on the apiserver, `x/*` matches x itself too (the subresource "*" matches "").
        ({"rules": _rule(["pods/*"])}, CREATED + UPDATED + STATUS + EVICTED + DELETED),
        ({"rules": _rule(["pods/status"], operations=["UPDATE"])}, STATUS),
        ({"rules": _rule(["*"])}, CONFIGMAP + CREATED + UPDATED + DELETED),
        ({"rules": _rule(["*/*"])}, CONFIGMAP + CREATED + UPDATED + STATUS + EVICTED + DELETED),
        ({"rules": _rule(["*/*"], scope="Cluster")}, []),
        ({"rules": _rule(["*/*"], scope="Namespaced", apiGroups=["apps"])}, []),
        ({"rules": _rule(["pods"], apiVersions=["v2"])}, []),
        ({"rules": _rule(["pods"], operations=["CONNECT"])}, []),
        # objectSelector: for DELETE the stored pod's labels count; the eviction's object is
        # the Eviction, whose labels are empty: required labels exclude it, absent ones not.
        ({"objectSelector": {"matchLabels": {"role": "guarded"}}}, DELETED),
        (
            {
                "objectSelector": {
                    "matchExpressions": [{"key": "podseidon-ignore", "operator": "DoesNotExist"}]
                }
            },
            EVICTED,
        ),
        ({"namespaceSelector": {"matchLabels": {"team": "nobody"}}}, []),
    ],
    ids=[
        "recorded-07",
        "pods",
        "pods-subresources",
        "pods-status-update",
        "all-resources",
        "all-and-subresources",
        "cluster-scope",
        "other-group",
        "other-version",
        "other-operation",
        "object-selector-required-label",
        "object-selector-absent-label",
        "namespace-selector",
    ],
)
def test_rules_and_selectors_decide_what_reaches_the_webhook(
    env: Env, ns: str, fields: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    env.register(env.url_config(), ns, **fields)
    _pod_actions(env, ns)
    assert calls(env.hook) == expected


def test_requests_on_a_namespace_carry_its_name_as_namespace(env: Env, ns: str) -> None:
    env.register(
        env.url_config(),
        ns,
        rules=_rule(["namespaces"], apiGroups=[""], operations=["UPDATE"], scope="Cluster"),
    )
    status, answer = env.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        {"metadata": {"labels": {"x": "1"}}},
        **{"Content-Type": "application/merge-patch+json"},
    )
    assert status == 200, answer
    (review,) = env.hook.reviews()
    assert (review.request["name"], review.request["namespace"]) == (ns, ns)
    assert review.request["kind"] == {"group": "", "version": "v1", "kind": "Namespace"}


def test_webhook_configurations_are_never_sent_to_webhooks(env: Env, ns: str) -> None:
    # Everything, everywhere: only the configuration requests themselves are left out.
    env.register(env.url_config(), ns, rules=_rule(["*/*"]), namespaceSelector={})
    other = env.register(env.url_config("/other"), ns, failurePolicy="Ignore")
    status, answer = env.request(
        "PATCH",
        f"{CONFIGS}/{other}",
        [{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 3}],
        **{"Content-Type": "application/json-patch+json"},
    )
    assert status == 200, answer
    assert calls(env.hook) == []


# --- the reviews ------------------------------------------------------------------------------


def test_review_fields_for_delete_eviction_and_dry_run(env: Env, ns: str) -> None:
    env.register(env.url_config("/cell-a"), ns)
    env.create_pod(ns, "sched", nodeName="node-1")
    # A v1beta1 Eviction reaches the webhook as the policy/v1 Eviction of the endpoint.
    status, answer = env.evict(ns, "sched", "policy/v1beta1")
    assert status == 201, answer
    env.create_pod(ns, "dry")
    status, answer = env.delete_pod(ns, "dry", "?dryRun=All")
    assert status == 200, answer
    assert env.pod_exists(ns, "dry")
    eviction, dry = env.hook.reviews()
    assert eviction.path == "/cell-a?timeout=2s"
    assert eviction.review == {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": eviction.request["uid"],
            "kind": {"group": "policy", "version": "v1", "kind": "Eviction"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": "eviction",
            "requestKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "requestSubResource": "eviction",
            "name": "sched",
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {
                "username": "admin",
                "uid": "admin",
                "groups": ["system:masters", "system:authenticated"],
            },
            "object": {
                "kind": "Eviction",
                "apiVersion": "policy/v1",
                "metadata": {"name": "sched", "namespace": ns, "creationTimestamp": None},
            },
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    assert list(eviction.request) == list(eviction.review["request"])
    assert dry.request["dryRun"] is True
    assert dry.request["operation"] == "DELETE" and dry.request["name"] == "dry"
    assert dry.request["options"] == {
        "kind": "DeleteOptions",
        "apiVersion": "meta.k8s.io/v1",
        "gracePeriodSeconds": 0,
        "dryRun": ["All"],
    }
    assert dry.request["oldObject"]["metadata"]["name"] == "dry"
    assert "deletionTimestamp" not in dry.request["oldObject"]["metadata"]
    assert eviction.request["uid"] != dry.request["uid"]


def test_v1beta1_reviews_for_webhooks_that_only_speak_v1beta1(env: Env, ns: str) -> None:
    env.register(env.url_config(), ns, admissionReviewVersions=["v1beta1", "v2"])
    # A v1beta1 answer's uid was never checked.
    env.hook.answer_with(Answer(allowed=False, code=429, message="old", uid="whatever"))
    env.create_pod(ns, "victim")
    status, body = env.delete_pod(ns, "victim")
    assert (status, body["message"]) == (429, f"{DENIED}: old")
    (review,) = env.hook.reviews()
    assert review.review["apiVersion"] == "admission.k8s.io/v1beta1"
    assert review.request["operation"] == "DELETE"


def test_dry_run_needs_a_webhook_without_side_effects(env: Env, ns: str) -> None:
    env.register(env.url_config(), ns, sideEffects="Some")
    env.create_pod(ns, "victim")
    status, body = env.delete_pod(ns, "victim", "?dryRun=All")
    assert (status, body) == (
        400,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'admission webhook "{WEBHOOK}" does not support dry run',
            "reason": "BadRequest",
            "code": 400,
        },
    )
    assert calls(env.hook) == []
    env.hook.answer_with(deny("no", code=429))
    status, body = env.delete_pod(ns, "victim")
    assert status == 429, body


def test_service_reference_goes_to_the_mapped_endpoint(env: Env, ns: str) -> None:
    namespace, name = SERVICE
    service = {"namespace": namespace, "name": name, "path": "/svc", "port": 443}
    env.register({"service": service, "caBundle": env.hook.ca_bundle}, ns)
    env.hook.answer_with(deny("via the service", code=429))
    env.create_pod(ns, "victim")
    status, body = env.delete_pod(ns, "victim")
    assert (status, body["message"]) == (429, f"{DENIED}: via the service")
    (review,) = env.hook.reviews()
    # The certificate was checked against the Service's DNS name, as the apiserver does.
    assert review.path == "/svc?timeout=2s"
    assert review.host == f"{name}.{namespace}.svc:443"


def test_all_matching_webhooks_are_called_and_a_denial_wins(env: Env, ns: str) -> None:
    env.register(env.url_config("/allow"), ns)
    env.register(env.url_config("/deny"), ns)
    env.register(env.url_config("/ignored"), ns, failurePolicy="Ignore", timeoutSeconds=1)
    env.hook.answer_with(
        lambda received: (
            deny("from /deny", code=429)
            if received.path.startswith("/deny")
            else Answer(delay=1.5)
            if received.path.startswith("/ignored")
            else ALLOW
        )
    )
    env.create_pod(ns, "victim")
    started = time.monotonic()
    status, body = env.delete_pod(ns, "victim")
    assert (status, body["message"]) == (429, f"{DENIED}: from /deny")
    # Called in parallel: the slow ignored one costs its timeout once, not on top of others.
    assert time.monotonic() - started < 1.5
    assert sorted(r.path.split("?")[0] for r in env.hook.reviews()) == [
        "/allow",
        "/deny",
        "/ignored",
    ]


def test_configuration_changes_take_effect_at_once(env: Env, ns: str) -> None:
    name = env.register(env.url_config(), ns)
    env.hook.answer_with(deny("protected", code=429))
    for i in range(3):
        env.create_pod(ns, f"p{i}")
    assert env.delete_pod(ns, "p0")[0] == 429
    # Recorded 49/50: disabling by a JSON patch of the objectSelector.
    status, answer = env.request(
        "PATCH",
        f"{CONFIGS}/{name}",
        [
            {
                "op": "replace",
                "path": "/webhooks/0/objectSelector",
                "value": {"matchLabels": {"this-selector-does": "not-match-anything"}},
            }
        ],
        **{"Content-Type": "application/json-patch+json"},
    )
    assert status == 200, answer
    assert env.delete_pod(ns, "p0")[0] == 200
    # Enabled again, then deleted.
    status, answer = env.request(
        "PATCH",
        f"{CONFIGS}/{name}",
        [{"op": "remove", "path": "/webhooks/0/objectSelector/matchLabels"}],
        **{"Content-Type": "application/json-patch+json"},
    )
    assert status == 200, answer
    assert env.delete_pod(ns, "p1")[0] == 429
    assert env.request("DELETE", f"{CONFIGS}/{name}")[0] == 200
    env.configs.remove(name)
    assert env.delete_pod(ns, "p1")[0] == 200
    assert [c[2] for c in calls(env.hook)] == ["p0", "p1"]


def test_deletecollection_stops_at_the_first_denied_pod(env: Env, ns: str) -> None:
    env.register(env.url_config(), ns)
    for i in range(3):
        env.create_pod(ns, f"batch-{i}", {"app": "batch"})

    def answer(received: Received) -> Answer:
        name = received.request["oldObject"]["metadata"]["name"]
        return deny("protected", code=429) if name == "batch-1" else ALLOW

    env.hook.answer_with(answer)
    status, body = env.request("DELETE", f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dbatch")
    assert (status, body["message"]) == (429, f"{DENIED}: protected")
    assert [c[2] for c in calls(env.hook)] == ["batch-0"] * 3 + ["batch-1"]
    assert all("name" not in r.request for r in env.hook.reviews())
    # The collection's reviews carry its own options, not the grace period settled per pod.
    assert all(
        r.request["options"] == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        for r in env.hook.reviews()
    )
    assert [env.pod_exists(ns, f"batch-{i}") for i in range(3)] == [False, True, True]
    # Kept-alive connections carried the calls (the pool may hold several from before).
    assert len({r.peer for r in env.hook.reviews()}) < 4


@pytest.mark.parametrize(
    ("policy", "called_as"),
    [("Equivalent", ("example.com", "v1beta1", "widgets")), ("Exact", None)],
)
def test_match_policy_equivalent_tries_the_other_served_versions(
    policy: str, called_as: tuple[str, str, str] | None
) -> None:
    widgets = ResourceType(
        "example.com", "v1", "widgets", "Widget", True, served_versions=("v1", "v1beta1")
    )
    webhook = parse_configuration(
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": WEBHOOK,
                    "matchPolicy": policy,
                    "rules": _rule(["widgets"], apiVersions=["v1beta1"]),
                    "clientConfig": {"url": "https://127.0.0.1:1/"},
                }
            ],
        }
    )[0]
    widget = {"kind": "Widget", "apiVersion": "example.com/v1", "metadata": {"name": "w"}}
    request = AdmissionRequest("CREATE", widgets, "", "default", "w", widget, None, {})
    attrs = Attributes.of(request)
    invocation = should_call(webhook, attrs, lambda ns: {})
    assert (invocation and invocation.resource) == called_as
    if invocation is not None:
        review = admission_review(attrs, invocation, "uid")["request"]
        # Called in the rule's version; the request's own version stays in request*.
        assert review["kind"] == {"group": "example.com", "version": "v1beta1", "kind": "Widget"}
        assert review["object"]["apiVersion"] == "example.com/v1beta1"
        assert review["requestResource"]["version"] == "v1"


@pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not installed")
def test_kubectl_shows_the_denial(env: Env, ns: str) -> None:
    env.register(env.url_config(), ns)
    env.hook.answer_with(deny("PodProtector demo/protector reports too few", code=429))
    env.create_pod(ns, "victim")
    kubectl = [str(kubectl_path()), "--kubeconfig", str(env.kubeconfig), "-n", ns]
    done = subprocess.run(
        [*kubectl, "delete", "pod", "victim", "--wait=false"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done
    # The Status has no reason (recorded 30), so kubectl names none.
    assert done.stderr.strip() == (
        f"Error from server: {DENIED}: PodProtector demo/protector reports too few"
    ), done.stderr
    assert env.pod_exists(ns, "victim")
