"""Workload plugins: keys, names, specs through one interface, cache trimming, config."""

from __future__ import annotations

from typing import Any

import pytest

from podseidon_site.config import GeneratorConfig
from protectors.kube.client import DEPLOYMENTS, STATEFULSETS
from protectors.specs import WorkloadSpecError
from workers.generator.plugins import (
    DEPLOYMENT_PLUGIN,
    PLUGINS,
    STATEFULSET_PLUGIN,
    enabled_kinds,
)

SELECTOR = {"matchLabels": {"app": "db"}}


def workload(strategy_key: str, replicas: Any = None, max_unavailable: Any = None) -> dict:
    spec: dict[str, Any] = {"selector": SELECTOR, "minReadySeconds": 3}
    if replicas is not None:
        spec["replicas"] = replicas
    if max_unavailable is not None:
        spec[strategy_key] = {"rollingUpdate": {"maxUnavailable": max_unavailable}}
    return {"metadata": {"name": "db", "namespace": "ns"}, "spec": spec}


def test_registry() -> None:
    assert dict(PLUGINS) == {
        "deployments.apps": DEPLOYMENT_PLUGIN,
        "statefulsets.apps": STATEFULSET_PLUGIN,
    }
    assert DEPLOYMENT_PLUGIN.resource == DEPLOYMENTS
    assert STATEFULSET_PLUGIN.resource == STATEFULSETS
    assert (STATEFULSET_PLUGIN.kind, STATEFULSET_PLUGIN.group, STATEFULSET_PLUGIN.plural) == (
        "StatefulSet",
        "apps",
        "statefulsets",
    )
    assert DEPLOYMENT_PLUGIN.protector_name("web") == "deployment-web"
    assert STATEFULSET_PLUGIN.protector_name("db") == "statefulset-db"


@pytest.mark.parametrize(
    ("plugin", "strategy_key", "replicas", "max_unavailable", "min_available"),
    [
        # Deployment: default 25%, rounding up
        (DEPLOYMENT_PLUGIN, "strategy", None, None, 0),  # 1 - ceil(0.25)
        (DEPLOYMENT_PLUGIN, "strategy", 4, None, 3),
        (DEPLOYMENT_PLUGIN, "strategy", 5, None, 3),  # 5 - ceil(1.25)
        (DEPLOYMENT_PLUGIN, "strategy", 5, 1, 4),
        (DEPLOYMENT_PLUGIN, "strategy", 3, 5, 0),
        # StatefulSet: default 1, percentages rounding up
        (STATEFULSET_PLUGIN, "updateStrategy", None, None, 0),
        (STATEFULSET_PLUGIN, "updateStrategy", 3, None, 2),
        (STATEFULSET_PLUGIN, "updateStrategy", 10, 3, 7),
        (STATEFULSET_PLUGIN, "updateStrategy", 10, "25%", 7),  # 10 - ceil(2.5)
        (STATEFULSET_PLUGIN, "updateStrategy", 10, "10%", 9),
        (STATEFULSET_PLUGIN, "updateStrategy", 0, None, 0),
    ],
)
def test_protector_spec(plugin, strategy_key, replicas, max_unavailable, min_available) -> None:
    spec = plugin.protector_spec(workload(strategy_key, replicas, max_unavailable))
    assert spec.min_available == min_available
    assert spec.min_ready_seconds == 3
    assert spec.selector == SELECTOR


def test_each_plugin_reads_its_own_strategy_field() -> None:
    # A Deployment-style strategy on a StatefulSet is not its updateStrategy.
    odd = workload("strategy", 10, 5)
    assert STATEFULSET_PLUGIN.protector_spec(odd).min_available == 9
    assert DEPLOYMENT_PLUGIN.protector_spec(odd).min_available == 5


def test_invalid_spec_raises() -> None:
    with pytest.raises(WorkloadSpecError, match="updateStrategy"):
        STATEFULSET_PLUGIN.protector_spec(workload("updateStrategy", 3, "x%"))


@pytest.mark.parametrize(("replicas", "expected"), [(None, 1), (0, 0), (7, 7), ("3", 1)])
def test_replicas(replicas: Any, expected: int) -> None:
    spec = {} if replicas is None else {"replicas": replicas}
    assert DEPLOYMENT_PLUGIN.replicas({"spec": spec}) == expected


def test_trim_keeps_what_the_generator_reads() -> None:
    full = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "db",
            "labels": {"a": "b"},
            "finalizers": ["x"],
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "keep": "me",
            },
        },
        "spec": {
            "replicas": 3,
            "selector": SELECTOR,
            "serviceName": "db",
            "template": {"spec": {"containers": []}},
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}},
        },
        "status": {"replicas": 3},
    }
    trimmed = STATEFULSET_PLUGIN.trim(full)
    assert trimmed == {
        "metadata": {
            "name": "db",
            "labels": {"a": "b"},
            "finalizers": ["x"],
            "annotations": {"keep": "me"},
        },
        "spec": {
            "replicas": 3,
            "selector": SELECTOR,
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}},
        },
    }
    assert STATEFULSET_PLUGIN.protector_spec(trimmed) == STATEFULSET_PLUGIN.protector_spec(full)
    assert "managedFields" in full["metadata"]  # the original is untouched


def test_enabled_kinds_default_is_deployments_only() -> None:
    (kind,) = enabled_kinds(GeneratorConfig())
    assert kind.plugin is DEPLOYMENT_PLUGIN
    assert kind.selector.matches({"podseidon.kubewharf.io/protect": "true"})
    assert not kind.selector.matches({"podseidon.kubewharf.io/protect": "false"})


def test_enabled_kinds_with_statefulsets() -> None:
    config = GeneratorConfig(
        protection_selectors={"deployments.apps": "a=b", "statefulsets.apps": "tier in (db)"}
    )
    kinds = enabled_kinds(config)
    assert [k.plugin for k in kinds] == [DEPLOYMENT_PLUGIN, STATEFULSET_PLUGIN]
    assert kinds[1].selector.matches({"tier": "db"})


@pytest.mark.parametrize(
    ("selectors", "message"),
    [
        ({"daemonsets.apps": "a=b"}, "unknown workload kind 'daemonsets.apps'"),
        ({"deployments.apps": "a in ("}, "protection_selectors.deployments.apps"),
    ],
)
def test_enabled_kinds_rejects_bad_config(selectors: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        enabled_kinds(GeneratorConfig(protection_selectors=selectors))
