"""Start the real webhook (gunicorn over TLS) against the test clusters and register it.

Used by the webhook integration tests: the sandbox (or real clusters) for core, cell-a and
cell-b; our webhook served by gunicorn with 3 workers; `manage.py webhookconfig --apply`
registering it in both cells, exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

# The demo's helpers serve the tests too (install_crd is re-exported for them).
from demo.layout import free_port
from demo.workloads import install_crd  # noqa: F401
from protectors.model import Aggregation, CellStatus, PodProtector, Status
from protectors.summarize import summarize

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "deploy" / "crds" / "podprotectors.yaml"
GROUP, VERSION, PLURAL = "podseidon.kubewharf.io", "v1alpha1", "podprotectors"
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


# What the webhook says when it refuses (docs/design.md §4 "Webhook decision").
DENIED_429 = "reports too few available replicas to admit pod deletion"
RETRY_409 = "has full admission buffer and is temporarily unable to admit pod deletion"


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@dataclass
class Webhook:
    url: str
    ca_file: Path
    metrics_port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    # Presented on every request of this helper, for a webhook that demands one.
    client_cert: tuple[Path, Path] | None = None

    def ssl_context(self, client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        """Trusts the webhook's CA; presents ``client_cert`` (certificate, key), by default
        the helper's own."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        cert = client_cert or self.client_cert
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return context

    def get(self, path: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                self.url + path, context=context or self.ssl_context(), timeout=10
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/json",
        context: ssl.SSLContext | None = None,
    ):
        request = urllib.request.Request(
            self.url + path, data=body, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(
                request, context=context or self.ssl_context(), timeout=15
            ) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/", timeout=10) as r:
            return r.read().decode()

    def stop(self) -> int:
        return stop_process(self.process)


def start_webhook(
    work_dir: Path,
    kubeconfigs: dict[str, Path],
    *,
    tls_dir: Path,
    webhook_options: dict[str, Any] | None = None,
    workers: int | None = 3,
    port: int | None = None,
    tls_options: dict[str, Any] | None = None,
    client_cert: tuple[Path, Path] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Webhook:
    """``workers``: None for the product's default; ``extra_env`` overrides the environment
    (e.g. a reachable REDIS_URL); ``port`` when the caller must know it beforehand;
    ``tls_options`` beside the server certificate in ``webhook.tls``; ``client_cert`` for the
    helper's own requests (readiness included) to a webhook that demands one."""
    from sandbox.pki import ensure_pki

    pki = ensure_pki(tls_dir)
    port, metrics_port = port or free_port(), free_port()
    config = {
        "core": {"kubeconfig": str(kubeconfigs["core"])},
        "cells": [
            {"id": name, "kubeconfig": str(kubeconfigs[name])} for name in ("cell-a", "cell-b")
        ],
        "webhook": {
            "port": port,
            "tls": {
                "cert_file": str(pki.server_cert),
                "key_file": str(pki.server_key),
                **(tls_options or {}),
            },
            "timeout_seconds": 5,
            **(webhook_options or {}),
        },
        "metrics": {"port": metrics_port},
    }
    config_path = work_dir / "podseidon.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PODSEIDON_CONFIG": str(config_path),
        "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Unreachable on purpose: the webhook must answer without its database.
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(work_dir / "metrics"),
        **(extra_env or {}),
    }
    if workers is None:
        del env["GUNICORN_WORKERS"]  # the product's default (podseidon_site/gunicorn_webhook.py)
    log = work_dir / "gunicorn.log"
    process = subprocess.Popen(
        [GUNICORN, "-c", "python:podseidon_site.gunicorn_webhook"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    webhook = Webhook(
        f"https://127.0.0.1:{port}", pki.ca_cert, metrics_port, env, process, log, client_cert
    )
    deadline = time.monotonic() + 40
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-3000:]}")
        try:
            if webhook.get("/readyz")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            webhook.stop()
            raise RuntimeError(f"webhook never became ready: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    return webhook


def register(webhook: Webhook, cell: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "webhookconfig",
            "--cell",
            cell,
            "--apply",
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
    )
    if result.returncode != 0:
        raise RuntimeError(f"webhookconfig failed: {result.stderr}")
    return result.stdout


def unregister(api: k8s.ApiClient) -> None:
    try:
        k8s.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(
            "podseidon.kubewharf.io"
        )
    except k8s.ApiException as error:
        if error.status != 404:
            raise


# -- objects ------------------------------------------------------------------------------


def ready_pod(
    core: k8s.CoreV1Api,
    namespace: str,
    name: str,
    labels: dict[str, str],
    *,
    ready: bool = True,
    ready_for: float = 3600,
    annotations: dict[str, str] | None = None,
) -> dict:
    pod = core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
    )
    since = (datetime.now(UTC) - timedelta(seconds=ready_for)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = "True" if ready else "False"
    core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": since},
                    {"type": "Ready", "status": status, "lastTransitionTime": since},
                ],
            }
        },
    )
    return pod.to_dict()


def pod_on_node(
    core: k8s.CoreV1Api,
    namespace: str,
    name: str,
    labels: dict[str, str],
    node: str,
    *,
    ready: bool = True,
) -> None:
    """A pod bound to ``node`` (ready for an hour, or not ready) with no grace period, so an
    admitted eviction removes it at once: the clusters of these tests run no kubelet to finish
    a graceful deletion."""
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "nginx"}],
            },
        },
    )
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": since},
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": since,
                    },
                ],
            }
        },
    )


def create_protector(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    min_available: int,
    labels: dict[str, str],
    *,
    min_ready_seconds: int = 0,
    history: dict[str, int] | None = None,
) -> dict:
    spec: dict[str, Any] = {
        "minAvailable": min_available,
        "minReadySeconds": min_ready_seconds,
        "selector": {"matchLabels": labels},
    }
    if history:
        spec["admissionHistoryConfig"] = history
    return k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PodProtector",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


def write_aggregation(
    api: k8s.ApiClient, namespace: str, name: str, available: dict[str, int]
) -> dict:
    """Write each cell's aggregation and the summary, as the aggregator would."""
    objects = k8s.CustomObjectsApi(api)
    current = PodProtector.from_dict(
        objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    )
    now = datetime.now(UTC)
    status = current.status or Status()
    for cell_id, count in available.items():
        previous = status.cell(cell_id) or CellStatus(cell_id=cell_id)
        status = status.with_cell(
            CellStatus(
                cell_id=cell_id,
                aggregation=Aggregation(
                    total_replicas=count,
                    available_replicas=count,
                    ready_replicas=count,
                    scheduled_replicas=count,
                    running_replicas=count,
                    last_event_time=now,
                ),
                admission_history=previous.admission_history,
            )
        )
    body = current.with_status(summarize(status)).to_dict()
    return objects.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, body
    )


def read_protector(api: k8s.ApiClient, namespace: str, name: str) -> PodProtector:
    return PodProtector.from_dict(
        k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    )


@dataclass
class WebhookEnv:
    """Test clusters and the webhook registered in their cells."""

    clusters: Any
    webhook: Webhook

    def core(self, cluster: str) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.clusters.api(cluster))


def delete_review(ns: str, pod: dict, username: str = "tester") -> bytes:
    """The AdmissionReview kube-apiserver sends for deleting ``pod``, to post to the webhook
    directly."""
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "DELETE",
                "namespace": ns,
                "name": pod["metadata"]["name"],
                "userInfo": {"username": username},
                "object": None,
                "oldObject": pod,
            },
        }
    ).encode()
