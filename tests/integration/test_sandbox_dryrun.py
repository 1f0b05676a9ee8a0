"""`dryRun=All` and the kinds an installation applies (Service, Secret, PodDisruptionBudget,
NetworkPolicy, RBAC), through the official client: kube-apiserver semantics, valid on the sandbox
and on a real cluster alike. A dry run validates and answers as if written, but stores nothing
and emits no watch event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch

from .conftest import Clusters

pytestmark = pytest.mark.integration

DRY = "All"


def body_of(exc: client.ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def failure(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(client.ApiException) as raised:
        call()
    return raised.value.status, body_of(raised.value)


@pytest.fixture
def core(clusters: Clusters) -> client.CoreV1Api:
    return client.CoreV1Api(clusters.api("core"))


@pytest.fixture
def rbac(clusters: Clusters) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(clusters.api("core"))


@pytest.fixture
def policy(clusters: Clusters) -> client.PolicyV1Api:
    return client.PolicyV1Api(clusters.api("core"))


def service(name: str, **spec: Any) -> dict[str, Any]:
    spec = {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def events_after(list_call: Callable[..., Any], namespace: str, since: str) -> list[tuple]:
    """(type, name) of every event after resourceVersion `since`, up to the marker object the
    caller created last (named "marker")."""
    seen = []
    stream = watch.Watch()
    for event in stream.stream(list_call, namespace, resource_version=since, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "marker":
            stream.stop()
    return seen


def test_dry_run_create_answers_but_stores_nothing(core: client.CoreV1Api, namespace: str) -> None:
    since = core.list_namespaced_service(namespace).metadata.resource_version
    answer = core.create_namespaced_service(namespace, service("web"), dry_run=DRY)
    # Answered as created: identity and the apiserver's defaults are filled in.
    assert answer.metadata.uid and answer.metadata.creation_timestamp
    assert answer.spec.type == "ClusterIP" and answer.spec.cluster_ip
    assert answer.spec.ports[0].protocol == "TCP" and answer.spec.ports[0].target_port == 80
    status, body = failure(lambda: core.read_namespaced_service("web", namespace))
    assert status == 404 and body["reason"] == "NotFound"

    core.create_namespaced_service(namespace, service("marker"))
    assert events_after(core.list_namespaced_service, namespace, since) == [("ADDED", "marker")]


def test_dry_run_update_patch_and_delete_change_nothing(
    core: client.CoreV1Api, namespace: str
) -> None:
    stored = core.create_namespaced_service(namespace, service("web"))
    version = stored.metadata.resource_version

    patched = core.patch_namespaced_service(
        "web", namespace, {"metadata": {"labels": {"tier": "front"}}}, dry_run=DRY
    )
    assert patched.metadata.labels == {"tier": "front"}
    replaced_body = core.read_namespaced_service("web", namespace)
    replaced_body.metadata.annotations = {"note": "dry"}
    replaced = core.replace_namespaced_service("web", namespace, replaced_body, dry_run=DRY)
    assert replaced.metadata.annotations == {"note": "dry"}
    core.delete_namespaced_service("web", namespace, dry_run=DRY)

    current = core.read_namespaced_service("web", namespace)
    assert current.metadata.resource_version == version
    assert not current.metadata.labels and not current.metadata.annotations
    assert current.spec.cluster_ip == stored.spec.cluster_ip

    core.create_namespaced_service(namespace, service("marker"))
    assert events_after(core.list_namespaced_service, namespace, version) == [("ADDED", "marker")]


def test_unsupported_dry_run_value_is_refused_not_ignored(
    core: client.CoreV1Api, namespace: str
) -> None:
    status, body = failure(
        lambda: core.create_namespaced_service(namespace, service("web"), dry_run="Yes")
    )
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "dryRun"
    assert 'supported values: "All"' in body["message"]
    assert failure(lambda: core.read_namespaced_service("web", namespace))[0] == 404


def test_strict_field_validation_of_built_in_kinds(core: client.CoreV1Api, namespace: str) -> None:
    typo = service("web")
    typo["spec"]["ports"][0]["targetport"] = 8080
    status, body = failure(
        lambda: core.create_namespaced_service(
            namespace, typo, dry_run=DRY, field_validation="Strict"
        )
    )
    assert status == 400 and body["reason"] == "BadRequest"
    assert 'unknown field "spec.ports[0].targetport"' in body["message"]
    # Without Strict (the default of clients other than kubectl) the request is accepted.
    assert core.create_namespaced_service(namespace, typo, dry_run=DRY).spec.ports[0].port == 80


def test_service_validation_and_allocated_address(core: client.CoreV1Api, namespace: str) -> None:
    status, body = failure(
        lambda: core.create_namespaced_service(namespace, service("bare", ports=[]), dry_run=DRY)
    )
    assert status == 422
    assert body["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.ports",
    }
    two = [{"port": 80}, {"port": 81}]
    status, body = failure(
        lambda: core.create_namespaced_service(namespace, service("x", ports=two))
    )
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.ports[0].name"

    first = core.create_namespaced_service(namespace, service("a"))
    second = core.create_namespaced_service(namespace, service("b"))
    assert first.spec.cluster_ip != second.spec.cluster_ip
    status, body = failure(
        lambda: core.patch_namespaced_service(
            "a", namespace, {"spec": {"clusterIP": second.spec.cluster_ip}}
        )
    )
    assert status == 422 and "may not change once set" in body["message"]


def test_secret_data_string_data_and_types(core: client.CoreV1Api, namespace: str) -> None:
    made = core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "s"}, "stringData": {"url": "redis://r:6379/0"}},
        dry_run=DRY,
    )
    assert made.type == "Opaque"
    assert made.data == {"url": "cmVkaXM6Ly9yOjYzNzkvMA=="}
    assert made.string_data is None

    status, body = failure(
        lambda: core.create_namespaced_secret(
            namespace, {"metadata": {"name": "s"}, "data": {"k": "not base64!"}}, dry_run=DRY
        )
    )
    assert status == 400 and "illegal base64 data" in body["message"]

    status, body = failure(
        lambda: core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}},
            dry_run=DRY,
        )
    )
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["data[tls.key]"]

    status, body = failure(
        lambda: core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "tok"}, "type": "kubernetes.io/service-account-token"},
            dry_run=DRY,
        )
    )
    assert status == 422
    assert body["details"]["causes"][0]["field"] == (
        "metadata.annotations[kubernetes.io/service-account.name]"
    )


def test_pod_disruption_budget(policy: client.PolicyV1Api, namespace: str) -> None:
    selector = {"matchLabels": {"app": "web"}}
    made = policy.create_namespaced_pod_disruption_budget(
        namespace,
        {"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": selector}},
        dry_run=DRY,
    )
    assert made.metadata.generation == 1 and made.status.disruptions_allowed == 0
    status, body = failure(
        lambda: policy.create_namespaced_pod_disruption_budget(
            namespace,
            {
                "metadata": {"name": "web"},
                "spec": {"minAvailable": 2, "maxUnavailable": 1, "selector": selector},
            },
            dry_run=DRY,
        )
    )
    assert status == 422
    assert "minAvailable and maxUnavailable cannot be both set" in body["message"]
    status, body = failure(
        lambda: policy.create_namespaced_pod_disruption_budget(
            namespace, {"metadata": {"name": "web"}, "spec": {"minAvailable": "150%"}}
        )
    )
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.minAvailable"


def test_rbac_kinds(rbac: client.RbacAuthorizationV1Api, namespace: str) -> None:
    role = {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    assert rbac.create_namespaced_role(namespace, role).rules[0].verbs == ["get"]
    status, body = failure(
        lambda: rbac.create_namespaced_role(
            namespace,
            {"metadata": {"name": "bad"}, "rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]},
            dry_run=DRY,
        )
    )
    assert status == 422
    assert "namespaced rules cannot apply to non-resource URLs" in body["message"]
    status, body = failure(
        lambda: rbac.create_cluster_role(
            {"metadata": {"name": "podseidon-test-empty"}, "rules": [{"apiGroups": [""]}]},
            dry_run=DRY,
        )
    )
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == [
        "rules[0].verbs",
        "rules[0].resources",
    ]

    subject = {"kind": "ServiceAccount", "name": "app", "namespace": namespace}
    binding = {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [subject],
    }
    rbac.create_namespaced_role_binding(namespace, binding)
    moved = {**binding, "roleRef": {**binding["roleRef"], "name": "writer"}}
    status, body = failure(
        lambda: rbac.replace_namespaced_role_binding("reader", namespace, moved, dry_run=DRY)
    )
    assert status == 422 and "cannot change roleRef" in body["message"]

    status, body = failure(
        lambda: rbac.create_cluster_role_binding(
            {
                "metadata": {"name": "podseidon-test-binding"},
                "roleRef": {**binding["roleRef"], "kind": "Role"},
                "subjects": [{"kind": "ServiceAccount", "name": "app"}],
            },
            dry_run=DRY,
        )
    )
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == [
        "roleRef.kind",
        "subjects[0].namespace",
    ]


def test_discovery_lists_the_installation_kinds(clusters: Clusters) -> None:
    api = clusters.api("core")
    served = {
        (group.name, resource.name)
        for group in client.ApisApi(api).get_api_versions().groups
        for version in group.versions
        if version.version == "v1"
        for resource in _resources(api, version.group_version)
    }
    served |= {("", r.name) for r in client.CoreV1Api(api).get_api_resources().resources}
    for wanted in [
        ("", "services"),
        ("", "secrets"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "networkpolicies"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ]:
        assert wanted in served, wanted


def _resources(api: client.ApiClient, group_version: str) -> list[Any]:
    group, version = group_version.split("/")
    answer = api.call_api(
        f"/apis/{group}/{version}",
        "GET",
        response_type="V1APIResourceList",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return answer.resources
