"""The domain core in protectors/ must not import Django: the webhook and the controllers use it
without a configured site, and its tests must run without one."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "protectors"

# The Django side of the app package: these are expected to import Django. The console's pages,
# API, services and PodProtector cache live in console/ (issue 14); what stays is the app's own
# wiring and the shared cluster clients (webhook/services.py uses them too).
DJANGO_FACING = {
    "apps.py",
    "models.py",
    "admin.py",
    "clusters.py",
    "migrations",
    "management",
}

# The apps that sit above protectors/: nothing under protectors/ may import them, in any module
# (the Django-facing ones included), so that the domain core and its kube client never drag the
# console, the webhook's request path or the controllers in.
UPPER_APPS = ("webhook", "workers", "console", "audit")
# Of the site package only its configuration model may be used (the kube client reads
# ClusterAccess from it); its views, API helpers, URLs and settings are above protectors/.
SITE_ALLOWED = {"podseidon_site.config"}

# The domain modules that must exist and stay pure, whatever else is added beside them.
DOMAIN_MODULES = [
    "__init__.py",
    "aggregation.py",
    "constants.py",
    "health.py",
    "history_config.py",
    "model.py",
    "quota.py",
    "selectors.py",
    "specs.py",
    "summarize.py",
    "timefmt.py",
]


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def _imports_django(path: Path) -> bool:
    return any(name == "django" or name.startswith("django.") for name in _imported_modules(path))


def _non_django_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in DJANGO_FACING
    )


def _upward_imports(path: Path) -> set[str]:
    found = set()
    for name in _imported_modules(path):
        top = name.split(".")[0]
        if top in UPPER_APPS or (top == "podseidon_site" and name not in SITE_ALLOWED):
            found.add(name)
    return found


def test_nothing_under_protectors_imports_the_apps_above_it():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_upward_imports(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if _upward_imports(path)
    }
    assert offenders == {}, f"protectors/ must not import {UPPER_APPS} or the site: {offenders}"


def test_upward_import_detector(tmp_path):
    sample = tmp_path / "sample.py"
    for source in (
        "import webhook.decision\n",
        "from workers.generator.protector import parse_remove_cell_once\n",
        "def f():\n    from console import cache\n",
        "from audit.models import Action\n",
        "from podseidon_site.api import errors\n",
        "import importlib\nimportlib.import_module('webhook.rejections')\n",
    ):
        sample.write_text(source)
        assert _upward_imports(sample), source
    sample.write_text("from podseidon_site.config import ClusterAccess\nimport webhooks_like\n")
    assert not _upward_imports(sample)


@pytest.mark.parametrize("name", DOMAIN_MODULES)
def test_domain_module_is_pure(name):
    path = PACKAGE / name
    assert path.is_file(), f"missing domain module protectors/{name}"
    assert not _imports_django(path), f"protectors/{name} imports django"


def test_no_other_module_imports_django():
    offenders = [
        str(path.relative_to(PACKAGE)) for path in _non_django_modules() if _imports_django(path)
    ]
    assert offenders == [], f"only {sorted(DJANGO_FACING)} may import django; found {offenders}"


def test_detector_sees_django_imports(tmp_path):
    sample = tmp_path / "sample.py"
    for source in (
        "import django\n",
        "from django.conf import settings\n",
        "import os, django.db\n",
        "def f():\n    from django.apps import apps\n",
        "import importlib\nimportlib.import_module('django.conf')\n",
    ):
        sample.write_text(source)
        assert _imports_django(sample), source
    sample.write_text("import djangorestframework_like\nfrom . import django\n")
    assert not _imports_django(sample)


def test_importing_the_domain_core_loads_no_django():
    # Catches indirect imports too (a domain module importing a module that imports Django).
    modules = [f"protectors.{name[:-3]}" for name in DOMAIN_MODULES if name != "__init__.py"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        + "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    assert result.stdout.strip() == "[]"
