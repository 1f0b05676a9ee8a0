"""Fuzzing the AdmissionReview endpoint: whatever the body, only documented answers.

The webhook view (webhook/views.py) is driven through Django's test client with the webhook
role's URLconf; its runtime is the real Decider and observer over fakes in the manner of
tests/unit/test_decision.py: a real ProtectorIndex holding two PodProtectors, a batcher that
answers a drawn outcome instead of writing PodProtector status, and a cell apiserver that knows
the recorded pods. The cache is synced and the cold start over, so none of the documented
reasons for a 500 applies: every answer must be

- 200 with an AdmissionReview response for the request's uid (a verdict, whatever it is),
- 400 with a JSON error message for a body that is not an AdmissionReview we can judge,
- 413 for a body over the limit,

and the view must never raise. Bodies start from the reviews kube-apiserver v1.24 really sent
(tests/fixtures/kube-apiserver-v1.24/admission-reviews-received.json) and are mutated: keys
dropped, values of the wrong type at any depth, huge strings and numbers, deep nesting, odd
timestamps, then sometimes truncated or spliced with bytes that are not UTF-8. Random JSON
documents and random bytes come on top. Each crash found once stays below as a regression case.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from podseidon_site.config import parse_config
from protectors.constants import ANNOTATION_FORCE_DELETE, ANNOTATION_HEALTH_CRITERION
from protectors.kube.client import KubeError
from protectors.quota import AdmissionResult
from webhook import views
from webhook.batching import BatchTimeout
from webhook.decision import Decider
from webhook.observer import WebhookObserver
from webhook.protector_index import ProtectorIndex

RECORDED = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "kube-apiserver-v1.24"
    / "admission-reviews-received.json"
)
ENTRIES: list[dict[str, Any]] = json.loads(RECORDED.read_text(encoding="utf-8"))
# After every recorded pod became ready, so the recorded deletions reach the protectors.
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
MAX_BODY = views.MAX_BODY_BYTES

# Bounded so the whole file runs in well under 30 s on a shared 2-CPU machine; the deadline
# catches a pathologically slow example (a regex or a loop that blows up on some input).
FUZZ = settings(
    max_examples=1000,
    deadline=timedelta(seconds=2),
    # Nothing is kept between runs: every run starts from fresh random examples, and a failure
    # prints the @reproduce_failure line that replays it.
    database=None,
    print_blob=True,
    # The fixtures hold the fake runtime for every example on purpose; bodies are large.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

OUTCOMES = [
    AdmissionResult.OK,
    AdmissionResult.ALREADY_ADMITTED,
    AdmissionResult.DENIED,
    AdmissionResult.RETRY,
    BatchTimeout("late"),
    KubeError(500, "InternalError", "etcd is sad"),
]


# -- the fake runtime -----------------------------------------------------------------------


def _protector(name: str, selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": {"name": name, "namespace": "demo", "resourceVersion": "7", "uid": name},
        "spec": {"minAvailable": 2, "minReadySeconds": 5, "selector": selector},
    }


class FakeBatcher:
    outcome: AdmissionResult | Exception = AdmissionResult.OK

    def submit(self, key: str, item: Any, deadline: float) -> AdmissionResult:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def _recorded_pods() -> dict[str, dict[str, Any]]:
    pods = {}
    for entry in ENTRIES:
        pod = entry["review"]["request"].get("oldObject")
        if pod:
            pods[pod["metadata"]["name"]] = pod
    # The recorded evictions name web-3, whose pod object no recorded review carries.
    evicted = copy.deepcopy(pods["web-1"])
    evicted["metadata"]["name"] = "web-3"
    pods["web-3"] = evicted
    return pods


class FakeRuntime:
    def __init__(self) -> None:
        config = parse_config({"cells": [{"id": "cell-a", "requires_pod_name": True}]})
        # What the view reads of the runtime besides the decider.
        self.config = config
        self.review_timeout = float(config.webhook.timeout_seconds)
        self.index = ProtectorIndex()
        self.index.on_add(_protector("web", {"matchLabels": {"app": "web"}}))
        self.index.on_add(
            _protector("any-idx", {"matchExpressions": [{"key": "idx", "operator": "Exists"}]})
        )
        self.batcher = FakeBatcher()
        self.pods = _recorded_pods()
        self.observer = WebhookObserver(config.metrics)
        self.decider = Decider(
            config=config,
            protectors=self.index,
            synced=lambda: True,
            batcher=self.batcher,
            fetch_pod=self.fetch_pod,
            observer=self.observer,
            started_at=0.0,
            now=lambda: NOW,
            monotonic=lambda: 1000.0,
        )

    def fetch_pod(self, cell_id: str, namespace: str, name: str, deadline: float) -> dict[str, Any]:
        if name not in self.pods:
            raise KubeError(404, "NotFound", f'pods "{name}" not found')
        return self.pods[name]


@pytest.fixture
def runtime(settings, monkeypatch) -> Iterator[FakeRuntime]:
    fake = FakeRuntime()
    settings.PODSEIDON = fake.decider.config
    settings.ROOT_URLCONF = "podseidon_site.urls_webhook"
    monkeypatch.setattr(views, "get_runtime", lambda: fake)
    yield fake


def _post(client, body: bytes, path: str = "/cell-a?timeout=2s", **extra: Any):
    return client.generic("POST", path, body, content_type="application/json", **extra)


def _assert_documented(response, body: bytes) -> None:
    """The answer is one the webhook documents, and well-formed."""
    assert response.status_code in (200, 400, 413), (response.status_code, response.content)
    payload = orjson.loads(response.content)
    if response.status_code != 200:
        assert payload["code"] == response.status_code
        assert isinstance(payload["error"], str) and payload["error"].strip()
        # A clear message, not an echo of whatever was posted.
        assert len(payload["error"]) <= 1000, payload["error"][:200]
        return
    sent = orjson.loads(body)
    assert payload["apiVersion"] == "admission.k8s.io/v1"
    assert payload["kind"] == "AdmissionReview"
    answer = payload["response"]
    assert answer["uid"] == sent["request"]["uid"]
    assert isinstance(answer["allowed"], bool)
    if not answer["allowed"]:
        assert isinstance(answer["status"]["code"], int)
        assert answer["status"]["message"]


# -- strategies -----------------------------------------------------------------------------

# Raw JSON text spliced in where a marker string stands, for what json.dumps cannot produce.
_RAW = "\x00raw:"
_RAW_TEXT = [
    "[" * 5000 + "]" * 5000,  # nesting deeper than any parser's limit
    '{"a":' * 600 + "1" + "}" * 600,
    "1e400",  # overflows a double
    "-0",
    "123456789012345678901234567890",  # beyond 64 bits
    '"\\ud800"',  # a lone surrogate
    '"\\u0000"',
    "NaN",
    "[1,]",
]

_timestamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-21T18:21:31+99:99",
            "2026-11-21T18:21:31.1234567890123Z",
            "2026-11-21",
            "",
        ]
    ),
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    _timestamps,
    st.sampled_from(["DELETE", "CREATE", "eviction", "pods", "", "True", "Ready", "Running"]),
)

_json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)

# What replaces a value: anything of another type (or the same), big, or odd.
_replacements = st.one_of(
    _json_values,
    st.integers(min_value=1, max_value=1_000_000).map(lambda n: "x" * n),
    st.sampled_from(_RAW_TEXT).map(lambda raw: _RAW + raw),
    # Fresh containers: later mutations may fill them in.
    st.builds(list),
    st.builds(dict),
)

_TIME_FIELDS = {"lastTransitionTime", "deletionTimestamp"}
# Subtrees the code never reads: mutate them as a whole, do not walk into them.
_OPAQUE = {"managedFields", "spec", "fieldsV1"}


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if prefix and prefix[-1] in _OPAQUE:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _pod_paths(pod: tuple) -> list[tuple]:
    meta = (*pod, "metadata")
    conditions = (*pod, "status", "conditions")
    return [
        pod,
        meta,
        *[(*meta, key) for key in ("name", "namespace", "uid", "deletionTimestamp")],
        (*meta, "labels"),
        (*meta, "labels", "app"),
        (*meta, "labels", "idx"),
        (*meta, "annotations"),
        (*meta, "annotations", ANNOTATION_FORCE_DELETE),
        (*meta, "annotations", ANNOTATION_HEALTH_CRITERION),
        (*pod, "status"),
        (*pod, "status", "phase"),
        conditions,
        *[(*conditions, i) for i in (0, 1)],
        *[(*conditions, i, key) for i in (0, 1) for key in ("type", "status")],
        (*conditions, 1, "lastTransitionTime"),
    ]


# Every field the parser and the decision read, whether the recorded review has it or not.
_READ_PATHS = [
    ("kind",),
    ("apiVersion",),
    ("request",),
    *[
        ("request", key)
        for key in ("uid", "operation", "subResource", "namespace", "name", "dryRun")
    ],
    ("request", "resource"),
    ("request", "resource", "group"),
    ("request", "resource", "resource"),
    ("request", "userInfo"),
    ("request", "userInfo", "username"),
    ("request", "userInfo", "groups"),
    ("request", "userInfo", "groups", 0),
    *_pod_paths(("request", "oldObject")),
    ("request", "object"),
    ("request", "object", "metadata"),
    ("request", "object", "metadata", "annotations"),
    ("request", "object", "metadata", "annotations", ANNOTATION_HEALTH_CRITERION),
]


def _parent(document: Any, path: tuple) -> Any:
    """The container `path` ends in, made where it is missing; None where a step is not one."""
    for step, next_step in itertools.pairwise(path):
        if isinstance(document, dict):
            if not isinstance(document.get(step), dict | list):
                document[step] = [] if isinstance(next_step, int) else {}
            document = document[step]
        elif isinstance(document, list) and isinstance(step, int) and step < len(document):
            document = document[step]
        else:
            return None
    if isinstance(document, dict) and not isinstance(path[-1], int):
        return document
    if isinstance(document, list) and isinstance(path[-1], int) and path[-1] < len(document):
        return document
    return None


@st.composite
def mutated_review(draw: st.DrawFn) -> bytes:
    entry = draw(st.sampled_from(ENTRIES))
    document = copy.deepcopy(entry["review"])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        # Half the time a field the code reads, else anywhere in the recorded review.
        if draw(st.booleans()):
            path = draw(st.sampled_from(_READ_PATHS))
        else:
            path = draw(st.sampled_from(list(_paths(document))))
        if not path or not isinstance(document, dict):
            document = draw(_replacements)
            continue
        parent = _parent(document, path)
        if parent is None:
            continue
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "drop" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "drop":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(_replacements)
        elif path[-1] in _TIME_FIELDS:
            parent[path[-1]] = draw(_timestamps | _replacements)
        else:
            parent[path[-1]] = draw(_replacements)
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    # Splice the raw JSON in for its marker (json.dumps escaped the NUL of the marker).
    for raw in _RAW_TEXT:
        text = text.replace(json.dumps(_RAW + raw), raw)
    body = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "truncate", "bytes"]))
    if damage == "truncate" and body:
        body = body[: draw(st.integers(min_value=0, max_value=len(body) - 1))]
    elif damage == "bytes" and body:
        at = draw(st.integers(min_value=0, max_value=len(body)))
        junk = draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\x00"])
            | st.binary(min_size=1, max_size=8)
        )
        body = body[:at] + junk + body[at:]
    return body


# -- the recorded reviews themselves --------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["review"]["request"]["uid"][:8])
def test_recorded_reviews_get_a_verdict(client, runtime, entry) -> None:
    body = orjson.dumps(entry["review"])
    response = _post(client, body, entry["path"])
    assert response.status_code == 200, response.content
    _assert_documented(response, body)


def test_harness_reaches_the_decision(client, runtime) -> None:
    # A fuzz run that never got past parsing would prove little: the recorded deletion of a
    # ready, protected pod must reach the batcher and come back as its verdict.
    (entry,) = [e for e in ENTRIES if e["review"]["request"].get("name") == "web-2"]
    runtime.batcher.outcome = AdmissionResult.DENIED
    response = _post(client, orjson.dumps(entry["review"]), entry["path"])
    answer = orjson.loads(response.content)["response"]
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 429
    assert answer["auditAnnotations"] == {"reject-by-podprotector": "demo/any-idx"}


# -- what the fuzzer found -----------------------------------------------------------------


def _review(name: str | None = "web-2", operation: str = "DELETE") -> dict[str, Any]:
    """A deep copy of the first recorded review of pod `name` (or of an eviction)."""
    for entry in ENTRIES:
        request = entry["review"]["request"]
        if request["operation"] == operation and request.get("name") == name:
            return copy.deepcopy(entry["review"])
    raise LookupError(name)


def _set(path: str, value: Any, review: dict[str, Any] | None = None) -> dict[str, Any]:
    review = review or _review()
    *parents, last = [int(step) if step.isdigit() else step for step in path.split(".")]
    container = review
    for step in parents:
        container = container[step]
    container[last] = value
    return review


_POD = "request.oldObject"
_READY_SINCE = f"{_POD}.status.conditions.1.lastTransitionTime"

# (id, review, status, what the answer says). Every one of them made the view raise or answer
# "500 internal error" (or echo a megabyte back) until the fix that came with it.
REGRESSIONS = [
    ("groups-number", _set("request.userInfo.groups", 1.5), 400, "groups must be a list"),
    (
        "pod-metadata-string",
        _set(f"{_POD}.metadata", "web-2"),
        400,
        "pod in review: pod metadata must be a JSON object",
    ),
    (
        "pod-status-list",
        _set(f"{_POD}.status", ["Running"]),
        400,
        "pod in review: pod status must be a JSON object",
    ),
    (
        "pod-conditions-number",
        _set(f"{_POD}.status.conditions", 7),
        400,
        "pod in review: pod status.conditions must be a list",
    ),
    # Without a Ready condition the pod is not ready, so its deletion costs nothing.
    ("condition-type-unhashable", _set(f"{_POD}.status.conditions.1.type", {}), 200, True),
    (
        "pod-labels-string",
        _set(f"{_POD}.metadata.labels", "app=web"),
        400,
        "pod in review: metadata.labels must be a JSON object of strings",
    ),
    (
        "pod-label-value-list",
        _set(f"{_POD}.metadata.labels.app", ["web"]),
        400,
        "pod in review: metadata.labels must be a JSON object of strings",
    ),
    (
        "pod-namespace-list",
        _set(f"{_POD}.metadata.namespace", ["demo"]),
        400,
        "pod in review: metadata.namespace must be a string",
    ),
    (
        "pod-annotations-list",
        _set(f"{_POD}.metadata.annotations", ["a"]),
        400,
        "pod in review: metadata.annotations must be a JSON object of strings",
    ),
    (
        "eviction-metadata-string",
        _set("request.object.metadata", "x", _review("web-3", "CREATE")),
        400,
        "request.object.metadata must be a JSON object",
    ),
    (
        "eviction-annotations-list",
        _set("request.object.metadata.annotations", ["a"], _review("web-3", "CREATE")),
        400,
        "request.object.metadata.annotations must be a JSON object of strings",
    ),
    (
        "ready-since-before-year-1-in-utc",
        _set(_READY_SINCE, "0001-01-01T00:00:00+01:00"),
        400,
        "out of range in UTC",
    ),
    # Ready since the last second of year 9999: not available for minReadySeconds yet.
    ("ready-since-end-of-time", _set(_READY_SINCE, "9999-12-31T23:59:59Z"), 200, True),
    ("kind-huge", _set("kind", "x" * 1_000_000), 400, "got kind 'xxxx"),
    ("ready-since-huge", _set(_READY_SINCE, "x" * 1_000_000), 400, "invalid RFC 3339"),
]


@pytest.mark.parametrize(
    ("review", "status", "expected"), [r[1:] for r in REGRESSIONS], ids=[r[0] for r in REGRESSIONS]
)
def test_fuzzer_findings_get_documented_answers(client, runtime, review, status, expected) -> None:
    body = orjson.dumps(review)
    response = _post(client, body)
    assert response.status_code == status, response.content[:300]
    _assert_documented(response, body)
    payload = orjson.loads(response.content)
    if status == 200:
        assert payload["response"]["allowed"] is expected
    else:
        assert expected in payload["error"]


@pytest.mark.parametrize("length", ["abc", "1e3", " ", "-1"])
def test_malformed_content_length_is_400(client, runtime, length) -> None:
    # gunicorn refuses these itself; the view must not raise when another server passes them.
    response = _post(client, orjson.dumps(_review()), CONTENT_LENGTH=length)
    assert response.status_code == 400
    assert orjson.loads(response.content)["error"] == "invalid Content-Length header"


# -- fuzzing --------------------------------------------------------------------------------


@FUZZ
@given(body=mutated_review(), outcome=st.sampled_from(OUTCOMES))
def test_mutated_reviews_get_documented_answers(client, runtime, body, outcome) -> None:
    runtime.batcher.outcome = outcome
    _assert_documented(_post(client, body), body)


@settings(FUZZ, max_examples=300)
@given(document=_json_values)
@example(document=[])
@example(document="AdmissionReview")
@example(document={"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"})
def test_any_json_document_gets_a_documented_answer(client, runtime, document) -> None:
    body = json.dumps(document).encode()
    _assert_documented(_post(client, body), body)


@settings(FUZZ, max_examples=300)
@given(body=st.binary(max_size=512))
@example(body=b"")
@example(body=b"\xef\xbb\xbf{}")  # a UTF-8 byte order mark
def test_any_bytes_get_a_documented_answer(client, runtime, body) -> None:
    response = _post(client, body)
    assert response.status_code == 400, response.content
    _assert_documented(response, body)


@settings(FUZZ, max_examples=10)
@given(extra=st.integers(min_value=1, max_value=MAX_BODY))
def test_oversized_bodies_are_413(client, runtime, extra) -> None:
    body = b" " * (MAX_BODY + extra)
    response = _post(client, body)
    assert response.status_code == 413, response.content
    _assert_documented(response, body)
