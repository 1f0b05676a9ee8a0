"""Production settings pass Django's deployment checklist and refuse to start without secrets."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.production",
    "SECRET_KEY": "x7!k2#q9vL0pZr4mN8wT1yB6cF3hJ5dS0aQeR2tY7uI9oP4lK1jH6gF3dS8aZ0xC5v",
    "ALLOWED_HOSTS": "podseidon.example.org",
    "DATABASE_URL": "sqlite:////tmp/podseidon-check.sqlite3",
}


def _manage(*args: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOWED_HOSTS")}
    env.pop("PODSEIDON_CONFIG", None)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", extra_env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_a_missing_secret_key() -> None:
    env = dict(PRODUCTION_ENV, SECRET_KEY="")
    result = _manage("check", extra_env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
