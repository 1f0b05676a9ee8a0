"""Where a running demo keeps its state, and how the incident script finds it.

`python -m demo` writes `layout.json` into its directory once everything is up; the incident
script and the tests read it back instead of guessing ports.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / "var" / "demo"
NAMESPACE = "shop"
CELLS = ("cell-a", "cell-b")
CLUSTERS = ("core", *CELLS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Ports:
    console: int = 8000
    webhook: int = 8843
    # Metrics of each process; the demo avoids 9090 so it never meets a real exporter.
    metrics: dict[str, int] = field(default_factory=dict)
    clusters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def pick(cls, console: int, webhook: int) -> Ports:
        """Fixed console/webhook ports (0 = any free one); everything else free ones."""
        return cls(
            console=console or free_port(),
            webhook=webhook or free_port(),
            metrics={name: free_port() for name in ("web", "webhook", "worker-a", "worker-b")},
            clusters={name: free_port() for name in CLUSTERS},
        )


@dataclass
class Layout:
    root: Path
    ports: Ports
    supervisor_pid: int = 0
    admin_user: str = "admin"
    redis_prefix: str = "podseidon-demo"

    @property
    def config_file(self) -> Path:
        return self.root / "podseidon.yaml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def token_file(self) -> Path:
        return self.root / "admin.token"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.crt"

    def cluster_dir(self, name: str) -> Path:
        return self.root / "clusters" / name

    def kubeconfig(self, name: str) -> Path:
        return self.cluster_dir(name) / f"{name}.kubeconfig"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.console}"

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.webhook}"

    def api_token(self) -> str:
        return self.token_file.read_text().strip()

    def save(self) -> None:
        data = asdict(self)
        data["root"] = str(self.root)
        target = self.root / "layout.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2))
        os.replace(temporary, target)

    @classmethod
    def load(cls, root: Path) -> Layout:
        path = root / "layout.json"
        if not path.exists():
            raise SystemExit(f"no running demo under {root} (start one with `make demo`)")
        data = json.loads(path.read_text())
        return cls(
            root=Path(data["root"]),
            ports=Ports(**data["ports"]),
            supervisor_pid=data["supervisor_pid"],
            admin_user=data["admin_user"],
            redis_prefix=data["redis_prefix"],
        )
