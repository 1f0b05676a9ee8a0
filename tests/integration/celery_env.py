"""Real Celery workers for the runtime's integration tests: a private redis-server, workers
started with production settings and a test configuration, their metrics and leader state, and
the sandbox's write log (``--write-log``: one JSON line per fenced write).

Used by test_controller_runtime.py (leases, failover, Redis loss, switches) and
test_lease_balancing.py (spreading the aggregators over workers).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import REPO
from workers.keys import RedisKeys
from workers.leadership import LeaderState, read_states

CELERY = str(Path(sys.executable).parent / "celery")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(step)


class RedisServer:
    """A redis-server of our own (no persistence: a restart loses everything, like a crash)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed (make test installs it: make redis)")
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        wait_for(lambda: _pings(client), 10, "redis-server answers")
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def metrics_up(self) -> bool:
        try:
            return "heartbeat" in self.metrics()
        except OSError:
            return False

    def leads_in_metrics(self, key: str) -> bool:
        return f'leader_heartbeat{{controller="{key}"}}' in self.metrics()


@dataclass
class Env:
    base: Path
    env: dict[str, str]
    redis: RedisServer
    keys: RedisKeys
    write_log: Path
    workers: list[Worker] = field(default_factory=list)
    _count: int = 0

    def start_worker(self, env_changes: dict[str, str | None] | None = None) -> Worker:
        self._count += 1
        name = f"w{self._count}"
        port = free_port()
        log = self.base / f"{name}.log"
        env = {**self.env, "PODSEIDON_METRICS_PORT": str(port)}
        for variable, value in (env_changes or {}).items():
            if value is None:
                env.pop(variable, None)
            else:
                env[variable] = value
        process = subprocess.Popen(
            [CELERY, "-A", "podseidon_site", "worker", "--loglevel", "INFO",
             "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--concurrency", "1"],
            cwd=REPO, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        worker = Worker(name, process, port, log)
        self.workers.append(worker)
        wait_for(
            lambda: worker.metrics_up() or process.poll() is not None, 30, f"{name} serves metrics"
        )
        assert process.poll() is None, f"{name} exited; see {log}"
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    def states(self) -> dict[str, LeaderState]:
        client = redis.Redis.from_url(self.redis.url, socket_timeout=2)
        try:
            return {s.controller: s for s in read_states(client=client, keys=self.keys)}
        finally:
            client.close()

    def leaders(self) -> dict[str, LeaderState]:
        """Active leader per key (empty while Redis is down)."""
        try:
            states = self.states()
        except redis.RedisError:
            return {}
        return {k: s for k, s in states.items() if s.is_active()}

    def writes(self) -> list[dict]:
        """Fenced writes from the sandbox's write log, in the order the sandbox made them."""
        records = []
        for line in self.write_log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # the last line, caught half-written
                continue
            if record.get("fence"):
                key, _, token = record["fence"].rpartition("/")
                records.append({**record, "key": key, "token": int(token)})
        return records


def worker_environment(
    base: Path, redis_url: str, keys: RedisKeys, config_file: Path
) -> dict[str, str]:
    """The environment of a worker: production settings, a SQLite database in ``base``, the
    test controllers (``runtime_test_controllers``) writing ConfigMaps in ``default``."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "localhost",
        "DATABASE_URL": f"sqlite:///{base / 'podseidon.sqlite3'}",
        "REDIS_URL": redis_url,
        "PODSEIDON_REDIS_PREFIX": keys.prefix,
        "PODSEIDON_CONFIG": str(config_file),
        "PODSEIDON_TEST_CONTROLLERS": "tests.integration.runtime_test_controllers:factory",
        "PODSEIDON_TEST_NAMESPACE": "default",
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environment.pop("PODSEIDON_CONTROLLERS", None)
    return environment


def stop_workers(env: Env) -> None:
    """SIGTERM every live worker, then wait (kill after 20 s)."""
    for worker in env.alive():
        worker.process.send_signal(signal.SIGTERM)
    for worker in env.workers:
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def assert_tokens_never_go_back(env: Env) -> None:
    """Per controller, in the order the sandbox applied them, tokens never decrease: no write
    carries an older token after a newer token's first write, so no two leaders overlapped."""
    newest: dict[str, int] = {}
    for write in env.writes():
        key, token = write["key"], write["token"]
        assert token >= newest.get(key, 0), f"{key}: token {token} wrote after {newest[key]}"
        newest[key] = token
