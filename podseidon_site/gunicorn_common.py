"""What both gunicorn configs (web and webhook roles) share: the validated config, the
multi-process metrics directory, and the server hooks that keep metrics right across workers."""

import os
import sys
import tempfile

from podseidon_site.config import (
    CONFIG_ENV_VAR,
    ConfigError,
    PodseidonConfig,
    check_client_ca_file,
    load_config,
)


def load_or_exit() -> PodseidonConfig:
    try:
        return load_config()
    except ConfigError as error:
        sys.stderr.write(f"podseidon: invalid configuration: {error}\n")
        raise SystemExit(2) from None


def check_client_ca_or_exit(config: PodseidonConfig) -> None:
    try:
        check_client_ca_file(config, os.environ.get(CONFIG_ENV_VAR) or "config")
    except ConfigError as error:
        sys.stderr.write(f"podseidon: invalid configuration: {error}\n")
        raise SystemExit(2) from None


def use_multiprocess_metrics(role: str) -> None:
    # Must happen before prometheus_client is imported anywhere, master or worker.
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        os.path.join(tempfile.gettempdir(), f"podseidon-{role}-metrics-{os.getpid()}"),
    )


def metrics_port(config: PodseidonConfig) -> int:
    return int(os.environ.get("PODSEIDON_METRICS_PORT", str(config.metrics.port)))


def on_starting(server) -> None:
    from podseidon_site.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def start_metrics_server(port: int) -> None:
    if port:
        from podseidon_site.metrics import start_metrics_server as start

        start(port)


def child_exit(server, worker) -> None:
    from podseidon_site.metrics import worker_exited

    worker_exited(worker.pid)
