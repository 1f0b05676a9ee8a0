"""The generator's executor against a recording fake client: order, preconditions, 404s."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from protectors import constants
from protectors.kube.client import DEPLOYMENTS, KubeError
from protectors.selectors import parse_selector_string
from workers.generator.decide import Decision, Options, decide
from workers.generator.executor import Executor, Outcome
from workers.generator.observer import GeneratorObserver
from workers.generator.plugins import DEPLOYMENT_PLUGIN
from workers.generator.protector import FINALIZER

OPTIONS = Options(parse_selector_string(constants.DEFAULT_PROTECTION_SELECTOR))


class FakeClient:
    """Records calls; answers from ``objects`` keyed by (plural, namespace, name)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.fail: dict[str, KubeError] = {}
        self._rv = 100

    def _next(self, obj: dict) -> dict:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        return obj

    def _check(self, verb: str) -> None:
        error = self.fail.pop(verb, None)
        if error is not None:
            raise error

    def create(self, resource, namespace, obj):
        self.calls.append(("create", resource.plural, namespace, obj["metadata"]["name"]))
        self._check("create")
        stored = self._next(obj)
        self.objects[(resource.plural, namespace, obj["metadata"]["name"])] = stored
        return stored

    def replace(self, resource, namespace, name, obj):
        self.calls.append(("replace", resource.plural, namespace, name, obj))
        self._check("replace")
        return self._next(obj)

    def replace_status(self, resource, namespace, name, obj):
        self.calls.append(("replace_status", resource.plural, namespace, name, obj))
        self._check("replace_status")
        return self._next(obj)

    def get(self, resource, namespace, name):
        self.calls.append(("get", resource.plural, namespace, name))
        return copy.deepcopy(self.objects[(resource.plural, namespace, name)])

    def patch(self, resource, namespace, name, patch):
        self.calls.append(("patch", resource.plural, namespace, name, patch))
        self._check("patch")
        return self._next({"metadata": {"name": name, "namespace": namespace}})

    def delete(self, resource, namespace, name, body=None):
        self.calls.append(("delete", resource.plural, namespace, name, body))
        self._check("delete")
        return {"kind": "Status"}


def workload(**metadata: Any) -> dict[str, Any]:
    base = {
        "name": "web",
        "namespace": "ns",
        "uid": "w-uid",
        "resourceVersion": "5",
        "labels": {constants.LABEL_PROTECT: "true"},
    }
    base.update(metadata)
    return {"metadata": base, "spec": {"replicas": 4, "selector": {"matchLabels": {"a": "b"}}}}


def run(
    decision: Decision, client: FakeClient, current=None, existing=None, outcome=None
) -> Outcome:
    executor = Executor(client, GeneratorObserver())  # type: ignore[arg-type]
    outcome = outcome or Outcome(current, existing)
    return executor.apply(DEPLOYMENT_PLUGIN, "ns", "web", decision, outcome)


def test_finalizer_is_added_before_the_protector_is_created() -> None:
    client = FakeClient()
    current = workload(finalizers=["other"])
    outcome = run(decide(DEPLOYMENT_PLUGIN, "web", current, None, OPTIONS), client, current)
    assert [c[0] for c in client.calls] == ["patch", "create"]
    assert outcome.workload_written and outcome.protector_written
    assert outcome.protector is not None
    assert outcome.protector["metadata"]["resourceVersion"] == "102"
    _, plural, _, name, patch = client.calls[0]
    assert (plural, name) == ("deployments", "web")
    assert patch == {"metadata": {"resourceVersion": "5", "finalizers": ["other", FINALIZER]}}
    assert client.calls[1][1:] == ("podprotectors", "ns", "deployment-web")


def test_release_removes_protector_finalizer_deletes_then_releases_workload() -> None:
    client = FakeClient()
    current = workload(labels={}, finalizers=[FINALIZER])
    existing = {
        "metadata": {
            "name": "deployment-web",
            "namespace": "ns",
            "uid": "p-uid",
            "resourceVersion": "9",
            "finalizers": [FINALIZER, "keep.example.com/x"],
        }
    }
    decision = decide(DEPLOYMENT_PLUGIN, "web", current, existing, OPTIONS)
    run(decision, client, current, existing)
    assert [c[0] for c in client.calls] == ["patch", "delete", "patch"]
    assert client.calls[0][4] == {
        "metadata": {"finalizers": ["keep.example.com/x"], "resourceVersion": "9"}
    }
    assert client.calls[1][4] == {"preconditions": {"uid": "p-uid"}}
    assert client.calls[2][1] == DEPLOYMENTS.plural
    assert client.calls[2][4] == {"metadata": {"resourceVersion": "5", "finalizers": None}}


def test_protector_already_gone_is_fine() -> None:
    client = FakeClient()
    client.fail["delete"] = KubeError(404, "NotFound", "gone")
    current = workload(labels={}, finalizers=[FINALIZER])
    existing = {"metadata": {"name": "deployment-web", "namespace": "ns", "uid": "p"}}
    existing["metadata"]["labels"] = {constants.LABEL_SOURCE_NAME: "web"}
    existing["metadata"]["finalizers"] = []
    decision = decide(DEPLOYMENT_PLUGIN, "web", current, existing, OPTIONS)
    # Not managed by labels alone (the other source labels are missing) → only the finalizer.
    assert decision.action_names == ["RemoveWorkloadFinalizer"]
    existing["metadata"]["finalizers"] = [FINALIZER]
    decision = decide(DEPLOYMENT_PLUGIN, "web", current, existing, OPTIONS)
    run(decision, client, current, existing)
    assert [c[0] for c in client.calls] == ["patch", "delete", "patch"]


def test_conflict_propagates() -> None:
    client = FakeClient()
    client.fail["patch"] = KubeError(409, "Conflict", "stale")
    current = workload()
    with pytest.raises(KubeError) as raised:
        run(decide(DEPLOYMENT_PLUGIN, "web", current, None, OPTIONS), client, current)
    assert raised.value.is_conflict
    assert [c[0] for c in client.calls] == ["patch"]  # nothing created without the finalizer


def test_a_failure_part_way_leaves_the_outcome_of_the_writes_made() -> None:
    client = FakeClient()
    client.fail["create"] = KubeError(409, "AlreadyExists", "exists")
    current = workload(finalizers=[])
    outcome = Outcome(current, None)
    with pytest.raises(KubeError):
        run(decide(DEPLOYMENT_PLUGIN, "web", current, None, OPTIONS), client, outcome=outcome)
    assert outcome.workload_written and not outcome.protector_written
    assert outcome.workload is not None
    assert outcome.workload["metadata"]["resourceVersion"] == "101"


def test_deleted_protector_leaves_none() -> None:
    client = FakeClient()
    current = workload(labels={}, finalizers=[])
    metadata = {"name": "deployment-web", "namespace": "ns", "uid": "p", "finalizers": [FINALIZER]}
    existing = {"metadata": metadata}
    decision = decide(DEPLOYMENT_PLUGIN, "web", current, existing, OPTIONS)
    outcome = run(decision, client, current, existing)
    assert outcome.protector is None and outcome.protector_written
    assert not outcome.workload_written
