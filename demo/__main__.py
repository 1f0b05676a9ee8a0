"""`make demo`: the whole product on this machine, stopped as a whole with Ctrl-C.

    .venv/bin/python -m demo [--root var/demo] [--console-port 8000] [--webhook-port 8843]

Starts sandbox clusters `core`, `cell-a` and `cell-b` (one process each, so one cell can fail
alone), installs the CRD and the sample workloads, creates an admin user, registers the webhook
in both cells, and runs the webhook (gunicorn over TLS), two Celery workers (leader and hot
standby for every controller) and the console/API (gunicorn). Then it waits. SIGINT/SIGTERM
stop everything; SIGUSR1 makes cell-b's API server fail and SIGUSR2 brings it back (the
incident script, `python -m demo.incident`, uses them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from demo import workloads
from demo.layout import CELLS, CLUSTERS, DEFAULT_ROOT, NAMESPACE, REPO, Layout, Ports
from demo.processes import Child, DemoError, Supervisor, run_manage

BIN = Path(sys.executable).parent
SANDBOX_CONTROLLERS = (
    "--nodes",
    "2",
    "--kubelet-ready-delay",
    "0.5",
    "--kubelet-grace-cap",
    "1",
    # Denied deletions are retried within seconds once protection allows them.
    "--gc-backoff-max",
    "5",
)


def http_status(url: str, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ssl.SSLError):
        return 0


class Demo:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.supervisor = Supervisor()
        self.stopping = threading.Event()
        self.cell_b_down = False
        self.admin_password = ""
        self.env = {
            **os.environ,
            "PODSEIDON_CONFIG": str(layout.config_file),
            "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.development",
            "DATABASE_URL": f"sqlite:///{layout.root / 'db.sqlite3'}",
            "PODSEIDON_REDIS_PREFIX": layout.redis_prefix,
            "PYTHONUNBUFFERED": "1",
        }

    # --- set-up -------------------------------------------------------------------------------

    def sandbox(self, name: str) -> Child:
        layout = self.layout
        controllers = ("--controllers", "none") if name == "core" else SANDBOX_CONTROLLERS
        return Child(
            f"sandbox-{name}",
            [
                sys.executable,
                "-m",
                "sandbox",
                "--cluster",
                f"{name}={layout.ports.clusters[name]}",
                "--state-dir",
                str(layout.cluster_dir(name)),
                "--persist",
                "--log-level",
                "WARNING",
                *controllers,
            ],
            self.env,
            layout.logs / f"sandbox-{name}.log",
        )

    def start_cluster(self, name: str) -> None:
        ready = self.layout.cluster_dir(name) / f"{name}.ready"
        ready.unlink(missing_ok=True)
        self.layout.cluster_dir(name).mkdir(parents=True, exist_ok=True)
        child = self.supervisor.start(self.sandbox(name))
        self.supervisor.wait_until(f"cluster {name}", ready.exists, 30, child)

    def write_config(self) -> None:
        layout = self.layout
        from sandbox.pki import ensure_pki

        # The webhook's certificate; its CA goes into each cell's caBundle.
        pki = ensure_pki(layout.tls_dir)
        config = {
            "core": {"kubeconfig": str(layout.kubeconfig("core"))},
            "cells": [{"id": c, "kubeconfig": str(layout.kubeconfig(c))} for c in CELLS],
            "generator": {
                "protection_selectors": {
                    "deployments.apps": "podseidon.kubewharf.io/protect=true",
                    "statefulsets.apps": "podseidon.kubewharf.io/protect=true",
                }
            },
            "webhook": {
                "port": layout.ports.webhook,
                "tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)},
                # What kube-apiserver must trust: registration and Restore from configuration.
                "ca_bundle_file": str(layout.ca_file),
                "url": layout.webhook_url,
                "failure_policy": "Fail",
            },
            "console": {
                "webhook_metrics_urls": [f"http://127.0.0.1:{layout.ports.metrics['webhook']}/"]
            },
            "metrics": {"port": layout.ports.metrics["web"]},
        }
        layout.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def manage(self, *args: str) -> str:
        return run_manage(self.env, *args)

    def prepare_database(self) -> None:
        self.manage("migrate", "--noinput")
        out = self.manage("ensure_admin", "--username", self.layout.admin_user, "--reset-password")
        self.admin_password = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("password")
        )
        token = self.manage("drf_create_token", "--reset", self.layout.admin_user).split()[2]
        self.layout.token_file.touch(mode=0o600)
        self.layout.token_file.write_text(token + "\n")

    def start_webhook(self) -> None:
        layout = self.layout
        child = self.supervisor.start(
            Child(
                "webhook",
                [str(BIN / "gunicorn"), "-c", "python:podseidon_site.gunicorn_webhook"],
                {
                    **self.env,
                    "PODSEIDON_METRICS_PORT": str(layout.ports.metrics["webhook"]),
                    "PROMETHEUS_MULTIPROC_DIR": str(layout.root / "metrics" / "webhook"),
                    "GUNICORN_WORKERS": "2",
                },
                layout.logs / "webhook.log",
            )
        )
        context = ssl.create_default_context(cafile=str(layout.ca_file))
        self.supervisor.wait_until(
            "the webhook's /readyz",
            lambda: http_status(layout.webhook_url + "/readyz", context) == 200,
            60,
            child,
        )
        for cell in CELLS:
            self.manage(
                "webhookconfig",
                "--cell",
                cell,
                "--apply",
                "--url",
                layout.webhook_url,
                "--ca-bundle",
                str(layout.ca_file),
            )

    def start_workers(self) -> None:
        for name in ("worker-a", "worker-b"):
            self.supervisor.start(
                Child(
                    name,
                    [
                        str(BIN / "celery"),
                        "-A",
                        "podseidon_site",
                        "worker",
                        "--loglevel",
                        "INFO",
                        "--hostname",
                        f"podseidon-{name}@%h",
                        "--concurrency",
                        "1",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    {**self.env, "PODSEIDON_METRICS_PORT": str(self.layout.ports.metrics[name])},
                    self.layout.logs / f"{name}.log",
                )
            )

    def start_web(self) -> None:
        layout = self.layout
        child = self.supervisor.start(
            Child(
                "web",
                [
                    str(BIN / "gunicorn"),
                    "-c",
                    "python:podseidon_site.gunicorn_conf",
                    "--bind",
                    f"127.0.0.1:{layout.ports.console}",
                    "--workers",
                    "1",
                ],
                {
                    **self.env,
                    "PROMETHEUS_MULTIPROC_DIR": str(layout.root / "metrics" / "web"),
                },
                layout.logs / "web.log",
            )
        )
        self.supervisor.wait_until(
            "the console",
            lambda: http_status(layout.console_url + "/accounts/login/") == 200,
            60,
            child,
        )

    def wait_for_protection(self) -> None:
        """Until the generator made every PodProtector and both aggregators counted pods."""
        from kubernetes import client as k8s

        core = k8s.CustomObjectsApi(workloads.api_client(self.layout.kubeconfig("core")))
        expected = {
            f"{w['kind'].lower()}-{w['metadata']['name']}"
            for w in workloads.load_workloads()
            if w["metadata"].get("labels", {}).get("podseidon.kubewharf.io/protect") == "true"
        }

        def protected() -> bool:
            items = core.list_namespaced_custom_object(
                "podseidon.kubewharf.io", "v1alpha1", NAMESPACE, "podprotectors"
            )["items"]
            counted = {
                p["metadata"]["name"]
                for p in items
                if {c.get("cellID") for c in p.get("status", {}).get("cells", [])} >= set(CELLS)
                and p["status"].get("summary", {}).get("aggregatedAvailableReplicas", 0) > 0
            }
            return expected <= counted

        self.supervisor.wait_until(
            "PodProtectors for every protected workload, counted in both cells", protected, 120
        )

    def up(self) -> None:
        layout = self.layout
        for name in CLUSTERS:
            self.start_cluster(name)
        self.write_config()
        workloads.deploy(
            workloads.api_client(layout.kubeconfig("core")),
            {c: workloads.api_client(layout.kubeconfig(c)) for c in CELLS},
        )
        self.prepare_database()
        self.start_webhook()
        self.start_workers()
        self.start_web()
        self.wait_for_protection()
        layout.supervisor_pid = os.getpid()
        layout.save()

    # --- running ------------------------------------------------------------------------------

    def fail_cell_b(self) -> None:
        if not self.cell_b_down:
            self.supervisor.stop("sandbox-cell-b")
            self.cell_b_down = True
            print("cell-b: API server stopped (simulated control-plane failure)", flush=True)

    def recover_cell_b(self) -> None:
        if self.cell_b_down:
            self.start_cluster("cell-b")
            self.cell_b_down = False
            print("cell-b: API server back", flush=True)

    def run(self) -> int:
        requests: list[str] = []
        wake = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            requests.append({signal.SIGUSR1: "fail", signal.SIGUSR2: "recover"}.get(signum, "stop"))
            wake.set()

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, on_signal)
        while True:
            wake.wait(timeout=1)
            wake.clear()
            while requests:
                request = requests.pop(0)
                if request == "stop":
                    return 0
                self.fail_cell_b() if request == "fail" else self.recover_cell_b()
            expected_down = ("sandbox-cell-b",) if self.cell_b_down else ()
            dead = self.supervisor.first_dead(ignore=expected_down)
            if dead is not None:
                print(
                    f"{dead.name} exited unexpectedly; its log ({dead.log}) ends with:\n"
                    f"{dead.log_tail()}",
                    file=sys.stderr,
                )
                return 1

    def banner(self) -> str:
        layout = self.layout
        kubeconfigs = "\n".join(
            f"    {name:<7} {layout.kubeconfig(name).relative_to(REPO)}"
            if layout.kubeconfig(name).is_relative_to(REPO)
            else f"    {name:<7} {layout.kubeconfig(name)}"
            for name in CLUSTERS
        )
        metrics = layout.ports.metrics
        return f"""
Podseidon demo is up.
  console    {layout.console_url}/
             user: {layout.admin_user}  password: {self.admin_password}
  REST API   {layout.console_url}/api/v1/   (docs: {layout.console_url}/api/docs/)
  webhook    {layout.webhook_url}/cell-a and /cell-b  (TLS, CA {layout.ca_file})
  metrics    webhook :{metrics["webhook"]}, console :{metrics["web"]},
             workers :{metrics["worker-a"]} and :{metrics["worker-b"]}
  kubeconfigs:
{kubeconfigs}
  logs       {layout.logs}

Things to try (another terminal):
  kubectl --kubeconfig {layout.kubeconfig("core")} -n {NAMESPACE} get podprotectors
  kubectl --kubeconfig {layout.kubeconfig("cell-a")} -n {NAMESPACE} delete pod -l app=cache
      -> denied: cache allows no pod to go
  kubectl --kubeconfig {layout.kubeconfig("cell-a")} -n {NAMESPACE} delete deployment web
      -> the garbage collector may take web down to its minimum, never below
  make demo-incident      plays the whole incident story against this demo

Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="state directory")
    parser.add_argument("--console-port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--webhook-port", type=int, default=8843, help="0: any free port")
    args = parser.parse_args(argv)

    root: Path = args.root.resolve()
    if (root / "layout.json").exists():
        old = Layout.load(root)
        if old.supervisor_pid and _alive(old.supervisor_pid):
            print(f"a demo is already running (pid {old.supervisor_pid})", file=sys.stderr)
            return 1
    # Every run starts from nothing: the demo's clusters, database and tokens are its own.
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    layout = Layout(
        root=root,
        ports=Ports.pick(args.console_port, args.webhook_port),
        redis_prefix="podseidon-demo-" + hashlib.sha256(str(root).encode()).hexdigest()[:8],
    )
    demo = Demo(layout)
    # Until `run` installs its own handlers, Ctrl-C during start-up must still clean up.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print("starting the demo (about a minute)...", flush=True)
        demo.up()
        print(demo.banner(), flush=True)
        return demo.run()
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        print("stopping...", flush=True)
        demo.supervisor.stop_all()
        (layout.root / "layout.json").unlink(missing_ok=True)
        print("stopped.", flush=True)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    raise SystemExit(main())
