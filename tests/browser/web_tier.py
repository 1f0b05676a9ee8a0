"""Serve the console as production does: the web role under gunicorn with the production settings.

The database is a fresh SQLite file migrated by ``manage.py migrate``; users are made by
``manage.py shell`` in the groups of audit/migrations/0002_roles.py. Everything runs with the same
environment, so the console process, the migration and the user creation see one database and one
configuration file.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from demo.processes import run_manage
from tests.integration.webhook_env import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")

# Reads the users to create from the environment rather than from code built by string
# formatting, so a password can hold any character.
CREATE_USERS = """
import json, os
from django.contrib.auth.models import Group, User
for spec in json.loads(os.environ["PODSEIDON_TEST_USERS"]):
    user = User.objects.create_user(spec["username"], password=spec["password"])
    user.groups.add(Group.objects.get(name=spec["group"]))
"""


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py`` as the console's own process would (same configuration, same database)."""
    return run_manage(env, *args)


@dataclass
class WebTier:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        return manage({**self.env, **(extra_env or {})}, *args)

    def create_users(self, users: dict[str, tuple[str, str]]) -> None:
        """``users``: username → (password, group)."""
        specs = [{"username": u, "password": p, "group": g} for u, (p, g) in users.items()]
        self.manage(
            "shell", "-c", CREATE_USERS, extra_env={"PODSEIDON_TEST_USERS": json.dumps(specs)}
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> int:
        return stop_process(self.process)

    def restart(self) -> None:
        """Stop the console's process and serve again from the same database and Redis: what
        the new process shows comes from them, not from the old one's memory."""
        code = self.stop()
        assert code == 0, f"console exited with {code}; see {self.log}"
        self.process = _serve(self.env, self.log)
        _wait_healthy(self)


def web_environment(
    work_dir: Path, config: dict[str, Any], port: int, redis_prefix: str | None = None
) -> dict[str, str]:
    config_path = work_dir / "podseidon.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return {
        **os.environ,
        "PODSEIDON_CONFIG": str(config_path),
        "PODSEIDON_ROLE": "web",
        "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on loopback: TLS would end at an ingress in production.
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": f"sqlite:///{work_dir / 'console.sqlite3'}",
        # Leader states live under this run's own prefix, whatever else uses the same Redis.
        "PODSEIDON_REDIS_PREFIX": redis_prefix or f"browser-test-{secrets.token_hex(4)}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        # One process, so one PodProtector cache: what one page changed, the next page shows.
        "GUNICORN_WORKERS": "1",
        "PODSEIDON_METRICS_PORT": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(work_dir / "metrics"),
        # No generator runs here: a cell removal ends partial (naming what is still pending)
        # within the form's wait instead of a minute later.
        "PODSEIDON_REMOVAL_CONFIRM_SECONDS": "1",
    }


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [GUNICORN, "-c", "python:podseidon_site.gunicorn_conf"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_web_tier(
    work_dir: Path, config: dict[str, Any], *, redis_prefix: str | None = None
) -> WebTier:
    """Migrate a fresh database, then serve the console; returns once /healthz answers."""
    port = free_port()
    env = web_environment(work_dir, config, port, redis_prefix)
    log = work_dir / "gunicorn-web.log"
    manage(env, "migrate", "--no-input")
    web = WebTier(f"http://127.0.0.1:{port}", env, _serve(env, log), log)
    _wait_healthy(web)
    return web


def _wait_healthy(web: WebTier) -> None:
    process, log = web.process, web.log
    deadline = time.monotonic() + 40
    while not web.healthy():
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            web.stop()
            raise RuntimeError(f"the console never answered /healthz: {log.read_text()[-3000:]}")
        time.sleep(0.1)
