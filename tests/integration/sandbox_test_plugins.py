"""Sandbox plugins loaded by test sandboxes (`python -m sandbox --plugin MODULE:FACTORY`).

`deny_pod_deletes` is an admission switch standing in for a denying webhook: while the
ConfigMap `sandbox-deny-pod-deletes` exists in a namespace with `data.deny` "true", every pod
DELETE in that namespace is rejected the way a webhook rejection reaches a client
(`admission webhook "deny.sandbox.test" denied the request: ...`, code from `data.code`,
default 429), and each rejected attempt is recorded as an Event (reason `DeleteDenied`, the
wall-clock time in the annotation `sandbox.test/at`) so tests can count the retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sandbox.cluster import AdmissionRequest, Cluster
from sandbox.errors import ApiError, status_body

SWITCH_NAME = "sandbox-deny-pod-deletes"
WEBHOOK_NAME = "deny.sandbox.test"
DENIED_REASON = "DeleteDenied"
AT_ANNOTATION = "sandbox.test/at"


class DenyPodDeletes:
    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self._remove: Callable[[], None] | None = None

    async def start(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._remove = cluster.add_admission_hook(self.review)

    async def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    async def review(self, request: AdmissionRequest) -> None:
        if request.operation != "DELETE" or request.resource.key != ("", "pods"):
            return
        assert self.cluster is not None
        switch = self.cluster.find(
            self.cluster.resource("", "configmaps"), request.namespace, SWITCH_NAME
        )
        data: dict[str, Any] = (switch or {}).get("data") or {}
        if data.get("deny") != "true":
            return
        old = request.old_object or {}
        name = old.get("metadata", {}).get("name", request.name)
        message = data.get("message") or "deletions are switched off in this namespace"
        await self.cluster.create(
            self.cluster.resource("", "events"),
            request.namespace,
            {
                "metadata": {
                    "generateName": f"{name}.denied-",
                    "annotations": {AT_ANNOTATION: repr(time.time())},
                },
                "involvedObject": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "namespace": request.namespace,
                    "name": name,
                    "uid": old.get("metadata", {}).get("uid", ""),
                },
                "reason": DENIED_REASON,
                "message": f"{request.user.get('username')}: {message}",
                "type": "Warning",
                "source": {"component": WEBHOOK_NAME},
            },
        )
        code = int(data.get("code") or 429)
        raise ApiError(
            status_body(code, f'admission webhook "{WEBHOOK_NAME}" denied the request: {message}')
        )


def deny_pod_deletes(cluster: Cluster) -> list[DenyPodDeletes]:
    return [DenyPodDeletes()]
