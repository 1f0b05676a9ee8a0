"""kubeconfig files pointing clients at a sandbox cluster."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def kubeconfig(name: str, server: str, ca_pem: bytes, token: str) -> dict:
    user = f"{name}-admin"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, name: str, server: str, ca_pem: bytes, token: str) -> None:
    """Write atomically so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(kubeconfig(name, server, ca_pem, token), sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
