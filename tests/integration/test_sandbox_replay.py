"""Replay of the recorded kube-apiserver v1.24 transcripts against the cluster under test.

The numbered files in tests/fixtures/kube-apiserver-v1.24/ are requests to a real apiserver
and its real answers. They run here in order against `cell-b` in a fresh namespace `demo`;
recorded resourceVersions and uids in request bodies are mapped to the ones the cluster under
test handed out, and answers are compared on what matters: status code, Status bodies, names,
labels, annotations, finalizers, spec, status, generation, and the presence (not the value)
of uid / resourceVersion / creationTimestamp / deletionTimestamp.

The webhook the recordings registered (step 07) is played by a capture webhook on a loopback
port (tests/integration/capture_webhook.py): step 07 registers it under its own URL and CA,
and it answers each step as the recorded capture webhook did — allow, deny with 429 (30, 31,
and the second pod of the DELETECOLLECTION in 42), answer after the 2 s timeout (45), be down
(46 on). Recorded messages name the recorded webhook's port; they are compared with ours
substituted. Every AdmissionReview it receives is compared, in order and field by field, with
admission-reviews-received.json: the same 13 calls (three for an unscheduled pod's DELETE, one
for an eviction, one for a graceful deletion, none for the objectSelector-excluded pod or once
the webhook is disabled). Steps 35/36 (graceful deletion of a scheduled pod) need no kubelet:
the pod just stays terminating.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from .capture_webhook import ALLOW, Answer, CaptureWebhook, Received, deny
from .conftest import REPO, Clusters

pytestmark = pytest.mark.integration

RECORDINGS = REPO / "tests" / "fixtures" / "kube-apiserver-v1.24"
# What the recorded capture webhook answered, by step (others were allowed).
DENIAL = deny(
    "PodProtector demo/protector reports too few available replicas to admit pod deletion",
    code=429,
)
WEBHOOK_TIMEOUT_STEP, WEBHOOK_DOWN_STEP = 45, 46
# Built-in types of a real apiserver the sandbox does not serve (discovery may lack them).
UNSERVED = {"controllerrevisions", "daemonsets", "daemonsets/status"}
CLUSTER = "cell-b"


def recordings() -> list[dict[str, Any]]:
    steps = []
    for path in sorted(RECORDINGS.glob("[0-9][0-9]-*.json")):
        steps.append(json.loads(path.read_text()))
    return steps


class Replayer:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.rv_map: dict[str, str] = {}
        self.uid_map: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: Any, content_type: str | None
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        query: list[Any] = []
        self.api.update_params_for_auth(headers, query, ["BearerToken"])
        url = self.api.configuration.host + path
        try:
            resp = self.api.rest_client.request(
                method,
                url,
                headers=headers,
                body=body if body is not None else None,
                _preload_content=True,
            )
            status, raw = resp.status, resp.data
        except client.ApiException as exc:
            status, raw = exc.status, exc.body
        text = raw.decode() if isinstance(raw, bytes) else raw
        return status, json.loads(text) if text else None

    def learn(self, recorded: Any, actual: Any) -> None:
        """Remember recorded → actual resourceVersions and uids of returned objects."""
        if isinstance(recorded, dict) and isinstance(actual, dict):
            rm, am = recorded.get("metadata"), actual.get("metadata")
            if isinstance(rm, dict) and isinstance(am, dict):
                if rm.get("resourceVersion") and am.get("resourceVersion"):
                    self.rv_map[rm["resourceVersion"]] = am["resourceVersion"]
                if rm.get("uid") and am.get("uid"):
                    self.uid_map[rm["uid"]] = am["uid"]
            for r_item, a_item in zip(
                recorded.get("items") or [], actual.get("items") or [], strict=False
            ):
                self.learn(r_item, a_item)

    def translate(self, body: Any) -> Any:
        if isinstance(body, dict):
            body = json.loads(json.dumps(body))
            meta = body.get("metadata")
            if isinstance(meta, dict):
                if meta.get("resourceVersion") in self.rv_map:
                    meta["resourceVersion"] = self.rv_map[meta["resourceVersion"]]
                if meta.get("uid") in self.uid_map:
                    meta["uid"] = self.uid_map[meta["uid"]]
        return body


def _meta_view(meta: dict[str, Any]) -> dict[str, Any]:
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith("kubectl.kubernetes.io/")
    }
    view = {
        k: meta.get(k)
        for k in (
            "name",
            "namespace",
            "labels",
            "finalizers",
            "generation",
            "deletionGracePeriodSeconds",
        )
    }
    view["annotations"] = annotations or None
    for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
        view[f"has {k}"] = bool(meta.get(k))
    return view


def object_view(obj: Any) -> Any:
    """The parts of an answer that must match a real apiserver's."""
    if not isinstance(obj, dict):
        return obj
    if obj.get("kind") == "Status":
        view = {k: obj.get(k) for k in ("kind", "status", "reason", "code", "message")}
        details = dict(obj.get("details") or {})
        details.pop("uid", None)
        view["details"] = details or None
        return view
    view = {k: v for k, v in obj.items() if k not in ("metadata", "items", "omitted")}
    if isinstance(obj.get("metadata"), dict):
        if "items" in obj:
            view["metadata"] = {"has resourceVersion": bool(obj["metadata"].get("resourceVersion"))}
        else:
            view["metadata"] = _meta_view(obj["metadata"])
    if "items" in obj:
        # Recorded 28 lists in modification order; etcd (and the sandbox) in key order.
        # Clients must not depend on either, so compare as sets.
        view["items"] = sorted(
            (object_view(i) for i in obj["items"]), key=lambda v: json.dumps(v, sort_keys=True)
        )
    return view


def compare_discovery(step: int, recorded: dict[str, Any], actual: dict[str, Any]) -> None:
    if step == 1:
        assert (actual["major"], actual["minor"]) == (recorded["major"], recorded["minor"])
        assert actual["gitVersion"].startswith("v1.24.")
        return
    if step == 2:
        assert actual["kind"] == recorded["kind"] and actual["versions"] == recorded["versions"]
        return
    assert {k: actual[k] for k in ("kind", "apiVersion", "groupVersion")} == {
        k: recorded[k] for k in ("kind", "apiVersion", "groupVersion")
    }
    served = {r["name"]: r for r in actual["resources"]}
    for entry in recorded["resources"]:
        if entry["name"] in UNSERVED:
            continue
        got = dict(served[entry["name"]])
        expected = dict(entry)
        got.pop("storageVersionHash", None)
        expected.pop("storageVersionHash", None)
        assert got == expected, entry["name"]


def crd_body() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "crds" / "podprotectors.yaml").read_text())


def _reset(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    for delete in (
        # The webhook first: a leftover one would be called for every pod the namespace
        # deletion removes.
        lambda: client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(
            "podseidon.kubewharf.io"
        ),
        lambda: core.delete_namespace("demo"),
        lambda: core.delete_node("node-1"),
    ):
        try:
            delete()
        except client.ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            core.read_namespace("demo")
        except client.ApiException as exc:
            if exc.status == 404:
                break
            raise
        for p in core.list_namespaced_pod("demo").items:
            # Nothing runs the kubelet's final delete for pods left terminating.
            if p.metadata.deletion_timestamp:
                core.delete_namespaced_pod(p.metadata.name, "demo", grace_period_seconds=0)
            if p.metadata.finalizers:
                core.patch_namespaced_pod(
                    p.metadata.name, "demo", {"metadata": {"finalizers": None}}
                )
        time.sleep(0.5)
    try:
        ext.read_custom_resource_definition(crd_body()["metadata"]["name"])
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    else:
        pytest.skip("the podprotectors CRD already exists in the cluster; step 04 needs it absent")


def recorded_reviews() -> list[dict[str, Any]]:
    return json.loads((RECORDINGS / "admission-reviews-received.json").read_text())


def webhook_answer(step: int) -> Answer | Callable[[Received], Answer]:
    """What the recorded capture webhook answered during `step`."""
    if step in (30, 31):
        return DENIAL
    if step == 42:
        # The collection's first pod is allowed, the second denied.
        return lambda received: (
            DENIAL if received.request["oldObject"]["metadata"]["name"] == "batch-1" else ALLOW
        )
    if step == WEBHOOK_TIMEOUT_STEP:
        return Answer(delay=2.5)  # the registered timeoutSeconds is 2
    return ALLOW


class WebhookStandIn:
    """Replaces the recorded webhook (URL, port, CA) by the capture webhook, both in what we
    send and in what we expect back."""

    def __init__(self, hook: CaptureWebhook) -> None:
        registered = next(r for r in recordings() if r["step"] == 7)["request"]["body"]
        client_config = registered["webhooks"][0]["clientConfig"]
        recorded_url = client_config["url"]
        self.recorded_address = recorded_url.split("/")[2]
        self.recorded_ca = client_config["caBundle"]
        self.path = "/" + recorded_url.split("/", 3)[3]
        self.hook = hook

    def localize(self, body: Any) -> Any:
        if body is None:
            return None
        text = json.dumps(body)
        text = text.replace(self.recorded_address, f"127.0.0.1:{self.hook.port}")
        text = text.replace(self.recorded_ca, self.hook.ca_bundle)
        return json.loads(text)


def review_view(review: dict[str, Any]) -> dict[str, Any]:
    """An AdmissionReview as compared with the recorded ones: every field, its key order, and
    the objects as `object_view` sees them."""
    request = dict(review["request"])
    request["uid"] = bool(request.get("uid"))
    for key in ("object", "oldObject"):
        request[key] = object_view(request.get(key))
    return {
        "kind": review["kind"],
        "apiVersion": review["apiVersion"],
        "request keys": list(review["request"]),
        "request": request,
    }


def learn_versions(versions: dict[tuple[str, str], str], recorded: Any, actual: Any) -> None:
    if not (isinstance(recorded, dict) and isinstance(actual, dict)):
        return
    if "items" in recorded:
        # Items come in another order (see object_view): pair them by name.
        ours = {i["metadata"]["name"]: i for i in actual.get("items") or []}
        for r_item in recorded["items"]:
            learn_versions(versions, r_item, ours.get(r_item["metadata"]["name"]))
        return
    rm, am = recorded.get("metadata") or {}, actual.get("metadata") or {}
    if rm.get("name") and rm.get("resourceVersion") and am.get("resourceVersion"):
        versions[(rm["name"], rm["resourceVersion"])] = am["resourceVersion"]


def compare_reviews(hook: CaptureWebhook, versions: dict[tuple[str, str], str]) -> None:
    """`versions` maps (name, recorded resourceVersion) to ours, from the objects answered."""
    expected = recorded_reviews()
    received = hook.reviews()
    names = [r.request.get("name") or r.request["oldObject"]["metadata"]["name"] for r in received]
    assert len(received) == len(expected), names
    uids = [r.request["uid"] for r in received]
    assert len(set(uids)) == len(uids), "review uids must be unique"
    for i, (got, want) in enumerate(zip(received, expected, strict=True)):
        assert got.path == want["path"], i
        assert review_view(got.review) == review_view(want["review"]), f"review {i}"
        # The objects are the very versions the recording saw (same resourceVersions, mapped).
        old, recorded_old = got.request["oldObject"], want["review"]["request"]["oldObject"]
        if recorded_old is not None:
            meta = recorded_old["metadata"]
            mapped = versions.get((meta["name"], meta["resourceVersion"]))
            if mapped is not None:
                assert old["metadata"]["resourceVersion"] == mapped, f"review {i}"
    # The immediate deletion's first final-removal review sees the unmarked object the
    # apiserver's watch cache still held; the last one the marked object.
    first, stale, final = (r.request["oldObject"]["metadata"] for r in received[:3])
    assert stale["resourceVersion"] == first["resourceVersion"] != final["resourceVersion"]


def test_replay_recordings(clusters: Clusters, tmp_path: Path) -> None:
    api = clusters.api(CLUSTER)
    _reset(api)
    replayer = Replayer(api)
    replayed = []
    versions: dict[tuple[str, str], str] = {}
    hook = CaptureWebhook(tmp_path / "webhook").start()
    stand_in = WebhookStandIn(hook)
    try:
        for rec in recordings():
            step = rec["step"]
            req, expected = rec["request"], rec["response"]
            body = req["body"]
            if isinstance(body, dict) and "omitted" in body:
                body = crd_body()  # step 04: the recording omits the CRD it created
            body = replayer.translate(stand_in.localize(body))
            hook.answer_with(webhook_answer(step))
            if step == WEBHOOK_DOWN_STEP:
                hook.stop()
            status, actual = replayer.request(req["method"], req["path"], body, req["contentType"])
            where = f"step {step} {rec['name']}"
            assert status == expected["status"], f"{where}: {status} {actual}"
            if step in (1, 2, 3, 5):
                compare_discovery(step, expected["body"], actual)
            elif step == 4:
                assert actual["metadata"]["name"] == expected["body"]["metadata"]["name"]
                assert actual["metadata"]["generation"] == 1
                assert actual["status"]["storedVersions"] == ["v1alpha1"]
                # Wait like a client would before using the new type.
                _wait_established(api)
            else:
                want = stand_in.localize(expected["body"])
                assert object_view(actual) == object_view(want), where
            replayer.learn(expected["body"], actual)
            learn_versions(versions, expected["body"], actual)
            replayed.append(step)
        compare_reviews(hook, versions)
    finally:
        hook.stop()
        with contextlib.suppress(client.ApiException):
            client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(
                "podseidon.kubewharf.io"
            )
        with contextlib.suppress(client.ApiException):
            client.ApiextensionsV1Api(api).delete_custom_resource_definition(
                crd_body()["metadata"]["name"]
            )
    assert len(replayed) == 50


def _wait_established(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(crd_body()["metadata"]["name"])
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return
        time.sleep(0.2)
    raise AssertionError("CRD not Established")
