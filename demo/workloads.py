"""Put the CRD and the sample workloads into the demo's clusters.

The core cluster holds each workload whole (the generator reads it there); each cell gets a copy
with its share of the replicas, as a multi-cluster control plane would place them, and runs the
pods (its built-in controllers are on; the core cluster's are off).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import utils as k8s_utils

from demo.layout import CELLS, NAMESPACE, REPO

WORKLOADS = Path(__file__).with_name("workloads.yaml")
CRD = REPO / "deploy" / "crds" / "podprotectors.yaml"


def api_client(kubeconfig: Path) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


def load_workloads() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(WORKLOADS.read_text()) if doc]


def cell_share(replicas: int, cell: str) -> int:
    """cell-a takes the larger half of an odd count."""
    first = (replicas + 1) // 2
    return first if cell == CELLS[0] else replicas - first


def for_cell(workload: dict[str, Any], cell: str) -> dict[str, Any]:
    placed = copy.deepcopy(workload)
    placed["spec"]["replicas"] = cell_share(workload["spec"].get("replicas", 1), cell)
    # Only the core copy asks for protection; a cell's copy is just where the pods run.
    placed["metadata"].pop("labels", None)
    return placed


def install_crd(api: k8s.ApiClient, timeout: float = 30) -> None:
    try:
        k8s.ApiextensionsV1Api(api).create_custom_resource_definition(
            yaml.safe_load(CRD.read_text())
        )
    except k8s.ApiException as error:
        if error.status != 409:
            raise
    deadline = time.monotonic() + timeout
    objects = k8s.CustomObjectsApi(api)
    while True:
        try:
            objects.list_cluster_custom_object(
                "podseidon.kubewharf.io", "v1alpha1", "podprotectors", limit=1
            )
            return
        except k8s.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ensure_namespace(api: k8s.ApiClient, name: str = NAMESPACE) -> None:
    try:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except k8s.ApiException as error:
        if error.status != 409:
            raise


def apply(api: k8s.ApiClient, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        try:
            k8s_utils.create_from_dict(api, obj, namespace=NAMESPACE)
        except k8s_utils.FailToCreateError as error:
            if any(getattr(e, "status", None) != 409 for e in error.api_exceptions):
                raise


def deploy(core: k8s.ApiClient, cells: dict[str, k8s.ApiClient]) -> None:
    workloads = load_workloads()
    install_crd(core)
    ensure_namespace(core)
    apply(core, workloads)
    for cell, api in cells.items():
        ensure_namespace(api)
        apply(api, [for_cell(w, cell) for w in workloads])
