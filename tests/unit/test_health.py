"""Pod health levels, minReadySeconds boundaries and health criteria."""

from datetime import UTC, datetime, timedelta

import pytest

from protectors.constants import ANNOTATION_HEALTH_CRITERION
from protectors.health import (
    Contributions,
    HealthCriterion,
    PodHealth,
    criterion_from_annotations,
)

NOW = datetime(2026, 11, 21, 18, 30, tzinfo=UTC)
READY_AT = "2026-11-21T18:29:00Z"  # 60 s before NOW
READY_AT_DT = datetime(2026, 11, 21, 18, 29, tzinfo=UTC)


def pod(
    *,
    phase="Running",
    scheduled="True",
    ready="True",
    ready_since=READY_AT,
    deleting=False,
    annotations=None,
):
    conditions = []
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", "status": scheduled, "lastProbeTime": None})
    if ready is not None:
        condition = {"type": "Ready", "status": ready, "lastProbeTime": None}
        if ready_since is not None:
            condition["lastTransitionTime"] = ready_since
        conditions.append(condition)
    metadata = {"name": "web-0", "namespace": "demo", "labels": {"app": "web"}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-21T18:29:30Z"
    if annotations:
        metadata["annotations"] = annotations
    status = {"conditions": conditions}
    if phase is not None:
        status["phase"] = phase
    return {"metadata": metadata, "spec": {}, "status": status}


# (id, pod, expected PodHealth)
FROM_POD_CASES = [
    (
        "running-ready",
        pod(),
        PodHealth(scheduled=True, running=True, ready=True, ready_since=READY_AT_DT),
    ),
    ("pending-unscheduled", pod(phase="Pending", scheduled="False", ready=None), PodHealth()),
    (
        "scheduled-not-running",
        pod(phase="Pending", ready="False"),
        PodHealth(scheduled=True),
    ),
    (
        "running-not-ready",
        pod(ready="False"),
        PodHealth(scheduled=True, running=True),
    ),
    (
        "terminating",
        pod(deleting=True),
        PodHealth(
            scheduled=True, running=True, ready=True, ready_since=READY_AT_DT, terminating=True
        ),
    ),
    (
        "ready-without-transition-time",
        pod(ready_since=None),
        PodHealth(scheduled=True, running=True, ready=True),
    ),
    ("no-status-at-all", {"metadata": {}}, PodHealth()),
    ("condition-unknown", pod(ready="Unknown"), PodHealth(scheduled=True, running=True)),
]


@pytest.mark.parametrize(
    ("pod_obj", "expected"),
    [c[1:] for c in FROM_POD_CASES],
    ids=[c[0] for c in FROM_POD_CASES],
)
def test_from_pod(pod_obj, expected):
    assert PodHealth.from_pod(pod_obj) == expected


def test_from_recorded_pod_shape():
    # The shape of reference file 16 (GET of a ready pod).
    recorded = {
        "metadata": {"name": "web-0", "namespace": "demo", "labels": {"app": "web", "idx": "0"}},
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-11-21T18:21:31Z",
                },
                {
                    "type": "Ready",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-11-21T18:21:31Z",
                },
            ],
            "qosClass": "BestEffort",
        },
    }
    health = PodHealth.from_pod(recorded)
    assert health.is_available(0, NOW)
    assert health.ready_since == datetime(2026, 11, 21, 18, 21, 31, tzinfo=UTC)


def test_malformed_transition_time_names_the_field():
    with pytest.raises(ValueError, match=r"conditions\[Ready\]\.lastTransitionTime"):
        PodHealth.from_pod(pod(ready_since="not a time"))


# (id, pod, the field the error names) — each crashed with a TypeError or AttributeError before
# (found by tests/site/test_webhook_fuzz.py); a ValueError is what callers handle.
WRONG_TYPES = [
    ("metadata-string", {"metadata": "web-0"}, "pod metadata must be a JSON object"),
    ("status-list", {"status": [{"phase": "Running"}]}, "pod status must be a JSON object"),
    ("conditions-number", {"status": {"conditions": 3}}, "pod status.conditions must be a list"),
]


@pytest.mark.parametrize(
    ("pod_obj", "message"), [c[1:] for c in WRONG_TYPES], ids=[c[0] for c in WRONG_TYPES]
)
def test_wrong_types_are_value_errors(pod_obj, message):
    with pytest.raises(ValueError, match=message):
        PodHealth.from_pod(pod_obj)


def test_a_condition_with_an_unhashable_type_is_ignored():
    odd = pod()
    odd["status"]["conditions"].append({"type": ["Ready"], "status": "False"})
    assert PodHealth.from_pod(odd) == PodHealth.from_pod(pod())


READY_60S = PodHealth(scheduled=True, running=True, ready=True, ready_since=READY_AT_DT)

# (id, health, minReadySeconds, expected availability at NOW)
AVAILABILITY_CASES = [
    ("min-ready-zero", READY_60S, 0, True),
    ("ready-longer-than-min", READY_60S, 30, True),
    ("exactly-at-min", READY_60S, 60, True),
    ("one-second-before", READY_60S, 61, False),
    ("one-second-after", READY_60S, 59, True),
    ("negative-min-treated-as-zero", READY_60S, -5, True),
    ("not-ready", PodHealth(scheduled=True, running=True), 0, False),
    ("terminating", PodHealth(ready=True, ready_since=READY_AT_DT, terminating=True), 0, False),
    ("unknown-since-min-zero", PodHealth(ready=True), 0, True),
    ("unknown-since-min-positive", PodHealth(ready=True), 1, False),
]


@pytest.mark.parametrize(
    ("health", "min_ready", "expected"),
    [c[1:] for c in AVAILABILITY_CASES],
    ids=[c[0] for c in AVAILABILITY_CASES],
)
def test_is_available(health, min_ready, expected):
    assert health.is_available(min_ready, NOW) is expected


# (id, health, minReadySeconds, expected available_at)
AVAILABLE_AT_CASES = [
    ("future", READY_60S, 90, READY_AT_DT + timedelta(seconds=90)),
    ("past", READY_60S, 10, READY_AT_DT + timedelta(seconds=10)),
    ("not-ready", PodHealth(running=True), 10, None),
    ("terminating", PodHealth(ready=True, ready_since=READY_AT_DT, terminating=True), 10, None),
    ("unknown-since", PodHealth(ready=True), 10, None),
    # Found by the webhook fuzz: ready since the last second datetime can hold.
    (
        "beyond-year-9999",
        PodHealth(ready=True, ready_since=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        5,
        None,
    ),
]


@pytest.mark.parametrize(
    ("health", "min_ready", "expected"),
    [c[1:] for c in AVAILABLE_AT_CASES],
    ids=[c[0] for c in AVAILABLE_AT_CASES],
)
def test_available_at(health, min_ready, expected):
    assert health.available_at(min_ready) == expected


# (id, annotation value, criterion)
CRITERION_CASES = [
    ("available", "Available", HealthCriterion.AVAILABLE),
    ("ready", "Ready", HealthCriterion.READY),
    ("running", "Running", HealthCriterion.RUNNING),
    ("scheduled", "Scheduled", HealthCriterion.SCHEDULED),
    ("missing", None, HealthCriterion.AVAILABLE),
    ("empty", "", HealthCriterion.AVAILABLE),
    ("wrong-case", "ready", HealthCriterion.AVAILABLE),
    ("garbage", "Healthy", HealthCriterion.AVAILABLE),
]


@pytest.mark.parametrize(
    ("value", "expected"), [c[1:] for c in CRITERION_CASES], ids=[c[0] for c in CRITERION_CASES]
)
def test_criterion_parse(value, expected):
    assert HealthCriterion.parse(value) is expected
    annotations = {} if value is None else {ANNOTATION_HEALTH_CRITERION: value}
    assert criterion_from_annotations(annotations) is expected


SCHEDULED_ONLY = PodHealth(scheduled=True)
RUNNING_UNREADY = PodHealth(scheduled=True, running=True)
READY_NEW = PodHealth(scheduled=True, running=True, ready=True, ready_since=NOW)
TERMINATING = PodHealth(scheduled=True, running=True, ready=True, terminating=True)

# (id, health, criterion, minReadySeconds, contributes at NOW)
CONTRIBUTES_CASES = [
    ("available-yes", READY_60S, HealthCriterion.AVAILABLE, 30, True),
    ("available-not-yet", READY_NEW, HealthCriterion.AVAILABLE, 30, False),
    ("ready-although-not-available", READY_NEW, HealthCriterion.READY, 30, True),
    ("ready-no", RUNNING_UNREADY, HealthCriterion.READY, 0, False),
    ("running-yes", RUNNING_UNREADY, HealthCriterion.RUNNING, 0, True),
    ("running-no", SCHEDULED_ONLY, HealthCriterion.RUNNING, 0, False),
    ("scheduled-yes", SCHEDULED_ONLY, HealthCriterion.SCHEDULED, 0, True),
    ("scheduled-no", PodHealth(), HealthCriterion.SCHEDULED, 0, False),
    ("terminating-counts-nowhere", TERMINATING, HealthCriterion.SCHEDULED, 0, False),
]


@pytest.mark.parametrize(
    ("health", "criterion", "min_ready", "expected"),
    [c[1:] for c in CONTRIBUTES_CASES],
    ids=[c[0] for c in CONTRIBUTES_CASES],
)
def test_contributes(health, criterion, min_ready, expected):
    assert health.contributes(criterion, min_ready, NOW) is expected


def test_contributions():
    assert READY_NEW.contributions(30, NOW) == Contributions(
        scheduled=True, running=True, ready=True, available=False
    )
    assert TERMINATING.contributions(0, NOW) == Contributions()
