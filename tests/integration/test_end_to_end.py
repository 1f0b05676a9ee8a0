"""The product's story end to end, in one cluster that is both core and cell:

a Deployment labelled for protection gets a PodProtector from the generator, the aggregator
counts its pods, our webhook (gunicorn, TLS) judges deletions — and when the Deployment is
deleted, the garbage collector's pod deletions are refused while an unprotected Deployment's
pods go. Scaling the terminating Deployment to zero releases the protection and the pods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from podseidon_site.config import parse_config
from protectors.kube.client import KubeClient
from tests.integration.conftest import start_sandbox, stop_sandbox
from tests.integration.webhook_env import (
    Webhook,
    install_crd,
    read_protector,
    register,
    start_webhook,
)
from workers.aggregator.controller import AggregatorController
from workers.controller import AlwaysValidFence, ControllerContext
from workers.generator.controller import GeneratorController

pytestmark = pytest.mark.integration

SANDBOX_ARGS = (
    "--controllers",
    "all",
    "--nodes",
    "2",
    "--kubelet-ready-delay",
    "0.1",
    "--kubelet-grace-cap",
    "0.2",
    "--gc-backoff-initial",
    "0.05",
    "--gc-backoff-max",
    "0.5",
)


@dataclass
class Story:
    api: k8s.ApiClient
    webhook: Webhook

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api)


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def story(clusters, tmp_path_factory) -> Iterator[Story]:
    clusters.require_sandbox(
        "a one-cluster sandbox of its own running the built-in ReplicaSet, GC and kubelet"
    )
    work: Path = tmp_path_factory.mktemp("end-to-end")
    state = work / "sandbox"
    state.mkdir()
    sandbox = start_sandbox(state, ("one",), SANDBOX_ARGS)
    kubeconfig = state / "one.kubeconfig"
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    install_crd(api)
    kubeconfigs = {"core": kubeconfig, "cell-a": kubeconfig, "cell-b": kubeconfig}
    hook = start_webhook(work, kubeconfigs, tls_dir=work / "tls", workers=2)
    register(hook, "cell-a")
    config = parse_config(
        {
            "core": {"kubeconfig": str(kubeconfig)},
            "cells": [{"id": "cell-a", "kubeconfig": str(kubeconfig)}],
            "generator": {"protect_non_zero": True},
            "admission_history": {"aggregation_rate_millis": 200},
        }
    )
    client = KubeClient.from_access(config.core)
    context = ControllerContext(
        config=config, core=client, cells={"cell-a": client}, fence=AlwaysValidFence()
    )
    generator = GeneratorController(config)
    aggregator = AggregatorController(config, "cell-a")
    generator.start(context)
    aggregator.start(context)
    try:
        yield Story(api, hook)
    finally:
        generator.stop()
        aggregator.stop()
        hook.stop()
        api.close()
        assert stop_sandbox(sandbox) == 0


def _deployment(name: str, replicas: int, protected: bool) -> dict:
    labels = {"podseidon.kubewharf.io/protect": "true"} if protected else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def _running_pods(story: Story, ns: str, app: str) -> list[str]:
    pods = story.core.list_namespaced_pod(ns, label_selector=f"app={app}").items
    return sorted(p.metadata.name for p in pods)


def _denials(story: Story) -> float:
    total = 0.0
    for line in story.webhook.metrics().splitlines():
        if line.startswith("webhook_handle_pod_in_ppr_total{") and 'rejected="true"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_protected(story: Story, ns: str, name: str, available: int) -> None:
    def counted() -> bool:
        try:
            protector = read_protector(story.api, ns, f"deployment-{name}")
        except k8s.ApiException:
            return False
        summary = protector.status.summary if protector.status else None
        return bool(summary) and summary.aggregated_available_replicas == available

    wait_for(f"the protector of {name} to count {available} available pods", counted)


def _gone(read: Callable[[], object]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            read()
            return False
        except k8s.ApiException as error:
            return error.status == 404

    return check


def test_lost_deployment_pods_survive_the_garbage_collector(story: Story) -> None:
    """etcd loses a protected Deployment: the protector stays (dangling), the garbage
    collector removes the orphaned ReplicaSet and keeps trying to delete the pods, and the
    webhook refuses every attempt — while an unprotected Deployment lost the same way loses
    its pods."""
    ns = "lost"
    story.core.create_namespace({"metadata": {"name": ns}})
    story.apps.create_namespaced_deployment(ns, _deployment("guarded", 3, protected=True))
    story.apps.create_namespaced_deployment(ns, _deployment("plain", 2, protected=False))
    _wait_protected(story, ns, "guarded", 3)
    assert read_protector(story.api, ns, "deployment-guarded").spec.min_available == 3
    wait_for("plain pods", lambda: len(_running_pods(story, ns, "plain")) == 2)
    guarded_before = _running_pods(story, ns, "guarded")
    denials_before = _denials(story)

    kube = KubeClient(story.api)
    for name in ("guarded", "plain"):
        # Sandbox-only: the object vanishes as if etcd had lost it (no deletionTimestamp).
        kube.request(
            "DELETE",
            f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            query={"sandboxForce": "true"},
        )
    wait_for("the unprotected pods to go", lambda: _running_pods(story, ns, "plain") == [])
    wait_for(
        "the orphaned ReplicaSet to go",
        lambda: not story.apps.list_namespaced_replica_set(ns, label_selector="app=guarded").items,
    )
    wait_for(
        "the webhook to refuse the collector several times",
        lambda: _denials(story) >= denials_before + 6,
    )
    assert _running_pods(story, ns, "guarded") == guarded_before
    # The protector stays in place for as long as its workload is missing.
    read_protector(story.api, ns, "deployment-guarded")


def test_explicitly_deleted_deployment_keeps_protection_while_it_has_replicas(
    story: Story,
) -> None:
    """With protect-non-zero, a Deployment being deleted keeps its protector (and so its
    pods) until it is scaled to zero; then protection, pods and Deployment all go."""
    ns = "deleted"
    story.core.create_namespace({"metadata": {"name": ns}})
    story.apps.create_namespaced_deployment(ns, _deployment("guarded", 3, protected=True))
    story.apps.create_namespaced_deployment(ns, _deployment("plain", 2, protected=False))
    _wait_protected(story, ns, "guarded", 3)
    wait_for("plain pods", lambda: len(_running_pods(story, ns, "plain")) == 2)
    guarded_before = _running_pods(story, ns, "guarded")

    story.apps.delete_namespaced_deployment("guarded", ns)
    story.apps.delete_namespaced_deployment("plain", ns)
    wait_for("the unprotected pods to go", lambda: _running_pods(story, ns, "plain") == [])
    time.sleep(1.0)
    assert _running_pods(story, ns, "guarded") == guarded_before
    deployment = story.apps.read_namespaced_deployment("guarded", ns)
    assert deployment.metadata.deletion_timestamp is not None  # held by our finalizer
    read_protector(story.api, ns, "deployment-guarded")

    story.apps.patch_namespaced_deployment("guarded", ns, {"spec": {"replicas": 0}})
    wait_for("the guarded pods to go", lambda: _running_pods(story, ns, "guarded") == [])
    wait_for(
        "the protector to go",
        _gone(lambda: read_protector(story.api, ns, "deployment-guarded")),
    )
    wait_for(
        "the Deployment to finish deleting",
        _gone(lambda: story.apps.read_namespaced_deployment("guarded", ns)),
    )
