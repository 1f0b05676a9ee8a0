"""What can be checked of deploy/ and the Dockerfile without a cluster or a Docker engine.

RBAC: the Kubernetes requests each component's code makes are read from the code itself (every
``client.<verb>(RESOURCE, ...)`` call, every ``Informer(client, RESOURCE)``, and every
``EventRecorder(client, ...)``, which creates Events and patches their count), and each
component's roles must grant exactly those, with no wildcard. A new call in the code without a
matching rule, or a rule no code needs, fails here.

Dockerfile: one non-root image whose layout holds every command the manifests run.
"""

from __future__ import annotations

import ast
import copy
import re
import shlex
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.generator.plugins import PLUGINS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PRODUCTION_PACKAGES = ("audit", "console", "podseidon_site", "protectors", "webhook", "workers")
ROLE_FILES = (
    DEPLOY / "base" / "rbac.yaml",
    DEPLOY / "components" / "cell-rbac" / "rbac.yaml",
    DEPLOY / "components" / "update-trigger" / "rbac.yaml",
)

# Which component's identity makes the requests of each module (first matching prefix wins).
# The generic client and informer are scanned through their callers (the Informer(...) calls).
MODULE_OWNERS: tuple[tuple[str, str | None], ...] = (
    ("protectors/kube/", None),
    # Run by an operator at install time with their own credentials, not by a component.
    ("webhook/management/", None),
    ("workers/generator/", "generator"),
    ("workers/aggregator/", "aggregator"),
    ("workers/monitor/", "monitor"),
    ("webhook/services.py", "console"),
    ("webhook/", "webhook"),
    ("protectors/", "console"),
    ("console/", "console"),
)

# The roles each component's identity holds (deploy/base, deploy/components). The monitor runs
# in the controllers' worker and reads only what the aggregator's core role grants.
COMPONENT_ROLES = {
    "generator": {"podseidon-generator"},
    "aggregator": {
        "podseidon-aggregator",
        "podseidon-aggregator-cell",
        "podseidon-update-trigger",
    },
    "monitor": {"podseidon-aggregator"},
    "webhook": {"podseidon-webhook", "podseidon-webhook-cell"},
    "console": {"podseidon-console", "podseidon-console-cell"},
}

CLIENT_VERBS = {
    "get": "get",
    "list": "list",
    "list_all": "list",
    "create": "create",
    "replace": "update",
    "replace_status": "update",
    "patch": "patch",
    "delete": "delete",
    "watch": "watch",
}

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


# -- reading the code -------------------------------------------------------------------------


def production_modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PRODUCTION_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _literal_resource(call: ast.Call) -> tuple[str, str] | None:
    """(group, plural) of ``Resource("group", "version", "plural", ...)`` with literal args."""
    args = call.args[:3]
    if len(args) == 3 and all(
        isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args
    ):
        return args[0].value, args[2].value  # type: ignore[attr-defined]
    return None


def _is_resource_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Resource"
    )


def resource_constants() -> dict[str, tuple[str, str]]:
    """Module-level ``NAME = Resource(...)`` of the production code, by name."""
    found: dict[str, tuple[str, str]] = {}
    for _path, tree in production_modules():
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and _is_resource_call(node.value)
            ):
                resource = _literal_resource(node.value)  # type: ignore[arg-type]
                assert resource, f"{ast.unparse(node)}: not literal, cannot be checked"
                name = node.targets[0].id
                assert found.get(name, resource) == resource, f"{name} defined twice differently"
                found[name] = resource
    return found


def workload_resources() -> set[tuple[str, str]]:
    """What a plugin-dependent resource (``plugin.resource``, or a Resource built from a
    protector's source labels, which the generator copies from its plugins) can be."""
    return {(p.resource.group, p.resource.plural) for p in PLUGINS.values()}


def _resolve(node: ast.AST, constants: dict[str, tuple[str, str]]) -> set[tuple[str, str]] | None:
    if isinstance(node, ast.Name) and node.id in constants:
        return {constants[node.id]}
    if isinstance(node, ast.Attribute) and node.attr == "resource":
        return workload_resources()
    if _is_resource_call(node):
        literal = _literal_resource(node)  # type: ignore[arg-type]
        return {literal} if literal else workload_resources()
    return None


def _subresource(call: ast.Call) -> str:
    for keyword in call.keywords:
        if keyword.arg == "sub" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return ""


def requests_in(tree: ast.Module, constants: dict[str, tuple[str, str]]) -> set[Grant]:
    """Every Kubernetes request a module's code makes, as RBAC sees it."""
    found: set[Grant] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Informer" and len(node.args) >= 2:
            for group, plural in _resolve(node.args[1], constants) or ():
                found |= {(group, plural, "list"), (group, plural, "watch")}
        elif isinstance(func, ast.Name) and func.id == "EventRecorder" and node.args:
            found |= {("", "events", "create"), ("", "events", "patch")}
        elif isinstance(func, ast.Attribute) and func.attr in CLIENT_VERBS and node.args:
            targets = _resolve(node.args[0], constants)
            if targets is None:
                continue  # not a Kubernetes call (dict.get, list.patch, ...)
            sub = "status" if func.attr == "replace_status" else _subresource(node)
            for group, plural in targets:
                resource = f"{plural}/{sub}" if sub else plural
                found.add((group, resource, CLIENT_VERBS[func.attr]))
    return found


def owner_of(path: str) -> str | None:
    for prefix, owner in MODULE_OWNERS:
        if path.startswith(prefix):
            return owner
    raise AssertionError(f"{path} makes Kubernetes requests but no component owns it")


def required_by_component() -> dict[str, set[Grant]]:
    constants = resource_constants()
    required: dict[str, set[Grant]] = defaultdict(set)
    for path, tree in production_modules():
        found = requests_in(tree, constants)
        if found and (owner := owner_of(path)) is not None:
            required[owner] |= found
    return dict(required)


# -- reading the roles ------------------------------------------------------------------------


def load_roles(paths: tuple[Path, ...] = ROLE_FILES) -> dict[str, dict[str, Any]]:
    roles = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc["kind"] in ("Role", "ClusterRole"):
                roles[doc["metadata"]["name"]] = doc
    return roles


def grants(role: dict[str, Any]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in role.get("rules") or []
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }


def rbac_problems(roles: dict[str, dict[str, Any]], required: dict[str, set[Grant]]) -> list[str]:
    """Everything wrong between the roles and what the code needs; empty when they agree."""
    problems = []
    for name, role in roles.items():
        for index, rule in enumerate(role.get("rules") or []):
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if "*" in (rule.get(key) or []):
                    problems.append(f"{name}: rules[{index}].{key} grants '*'")
    needed_by_role: dict[str, set[Grant]] = defaultdict(set)
    for component, needs in required.items():
        names = COMPONENT_ROLES[component]
        missing_roles = names - roles.keys()
        problems += [f"{component}: role {r} does not exist" for r in sorted(missing_roles)]
        granted = set().union(*(grants(roles[r]) for r in names if r in roles))
        for grant in sorted(needs - granted):
            problems.append(f"{component} needs {grant} but {sorted(names)} do not grant it")
        for role_name in names:
            needed_by_role[role_name] |= needs
    for name, role in roles.items():
        for grant in sorted(grants(role) - needed_by_role.get(name, set())):
            problems.append(f"{name} grants {grant}, which no code of its components needs")
    return problems


# -- RBAC tests -------------------------------------------------------------------------------


def test_the_scan_finds_the_requests_each_component_makes() -> None:
    required = required_by_component()
    pprs = "podseidon.kubewharf.io"
    assert (pprs, "podprotectors/status", "update") in required["webhook"]
    assert ("", "pods", "get") in required["webhook"]
    assert {("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "create")} <= required[
        "aggregator"
    ]
    assert ("apps", "statefulsets", "patch") in required["generator"]
    assert (pprs, "podprotectors", "delete") in required["generator"]
    assert ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch") in (
        required["console"]
    )
    assert ("", "events", "list") in required["console"]
    assert required["monitor"] == {
        (pprs, "podprotectors", "list"),
        (pprs, "podprotectors", "watch"),
    }


def test_every_role_grants_exactly_what_the_code_needs() -> None:
    assert rbac_problems(load_roles(), required_by_component()) == []


@pytest.mark.parametrize(
    ("role", "rule", "change", "expected"),
    [
        ("podseidon-webhook-cell", 0, {"verbs": []}, "webhook needs ('', 'pods', 'get')"),
        ("podseidon-aggregator", 1, {"verbs": []}, "aggregator needs ('podseidon"),
        ("podseidon-console", 2, {"verbs": ["*"]}, "rules[2].verbs grants '*'"),
        ("podseidon-generator", 0, {"resources": ["*"]}, "rules[0].resources grants '*'"),
        ("podseidon-webhook", 0, {"verbs": ["list", "watch", "delete"]}, "no code of its"),
    ],
)
def test_the_rbac_check_catches_a_missing_verb_a_wildcard_and_an_extra_grant(
    role: str, rule: int, change: dict[str, Any], expected: str
) -> None:
    roles = copy.deepcopy(load_roles())
    roles[role]["rules"][rule].update(change)
    problems = rbac_problems(roles, required_by_component())
    assert any(expected in p for p in problems), problems


def test_a_new_kubernetes_call_in_the_code_needs_a_rule() -> None:
    tree = ast.parse("def evict(client):\n    client.delete(PODS, 'ns', 'name')\n")
    found = requests_in(tree, resource_constants())
    assert found == {("", "pods", "delete")}
    required = required_by_component()
    required["webhook"] = required["webhook"] | found
    assert any("('', 'pods', 'delete')" in p for p in rbac_problems(load_roles(), required))


def test_console_may_touch_only_the_podseidon_webhook_configuration() -> None:
    rules = load_roles()["podseidon-console-cell"]["rules"]
    webhook_rules = [r for r in rules if "validatingwebhookconfigurations" in r["resources"]]
    assert [r.get("resourceNames") for r in webhook_rules] == [["podseidon.kubewharf.io"]]
    # Besides it, only the Events telling what its actions did, and reads for the drain planner.
    others = [r for r in rules if r not in webhook_rules]
    assert [(r["resources"], r["verbs"]) for r in others] == [
        (["events"], ["create", "patch"]),
        (["pods", "nodes"], ["get", "list"]),
        (["namespaces"], ["get"]),
    ]


# -- Dockerfile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str


def dockerfile() -> list[Instruction]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    out, stage = [], -1
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, arguments.strip()))
    return out


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = instructions[-1].stage
    return [i for i in instructions if i.stage == last]


def copied_sources() -> set[str]:
    """Paths the final stage copies from the build context."""
    sources = set()
    for instruction in final_stage():
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments:
            words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
            sources |= {w.rstrip("/") for w in words[:-1]}
    return sources


def runtime_requirements() -> list[str]:
    """The lines the Dockerfile's sed keeps: everything before the development section."""
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith("# Development and tests"))
    return [line for line in lines[:marker] if line.strip() and not line.startswith("#")]


def test_image_runs_as_a_non_root_user() -> None:
    users = [i.arguments for i in final_stage() if i.keyword == "USER"]
    assert users, "the final stage never switches away from root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert user.isdigit(), "a numeric UID lets runAsNonRoot verify it without /etc/passwd"
    # The manifests' securityContext asks for the same UID.
    for path in (DEPLOY / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc["kind"] == "Deployment":
                context = doc["spec"]["template"]["spec"]["securityContext"]
                assert context["runAsNonRoot"] is True
                assert str(context["runAsUser"]) == user, path


def test_requirements_are_installed_before_the_source_is_copied() -> None:
    instructions = dockerfile()
    positions = {
        "requirements": next(
            n
            for n, i in enumerate(instructions)
            if i.keyword == "COPY" and "requirements.txt" in i.arguments
        ),
        "install": next(
            n
            for n, i in enumerate(instructions)
            if i.keyword == "RUN" and "pip install -r" in i.arguments
        ),
        "source": next(
            n
            for n, i in enumerate(instructions)
            if i.keyword == "COPY" and any(p in i.arguments for p in PRODUCTION_PACKAGES)
        ),
    }
    assert positions["requirements"] < positions["install"] < positions["source"], positions
    assert "# Development and tests" in next(
        i.arguments for i in instructions if i.keyword == "RUN" and "sed" in i.arguments
    )


def test_runtime_requirements_are_pinned_and_hold_the_entry_points() -> None:
    runtime = runtime_requirements()
    names = {re.split(r"[\[=<>]", line, maxsplit=1)[0].lower() for line in runtime}
    assert all("==" in line for line in runtime), runtime
    assert {"gunicorn", "celery", "django", "psycopg", "redis"} <= names
    assert not names & {"pytest", "pytest-django", "ruff"}, "test tools in the image"


def test_image_holds_every_package_the_production_code_imports() -> None:
    copied = copied_sources()
    first_party = {*PRODUCTION_PACKAGES, "sandbox", "benchmarks", "tests"}
    imported = set()
    for _path, tree in production_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    needed = imported & first_party
    assert "sandbox" not in needed, "production code must not import the test sandbox"
    assert needed <= copied, needed - copied
    assert {*PRODUCTION_PACKAGES, "templates", "manage.py"} <= copied


def image_commands() -> Iterator[tuple[str, list[str]]]:
    """The command of every container running the Podseidon image, and the image's CMD."""
    cmd = next(i.arguments for i in reversed(final_stage()) if i.keyword == "CMD")
    yield "Dockerfile CMD", yaml.safe_load(cmd)
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                if container.get("image") == "podseidon":
                    where = f"{path.relative_to(REPO)}: {container['name']}"
                    assert container.get("command"), f"{where} relies on the image's CMD"
                    yield where, container["command"] + container.get("args", [])


def test_every_command_the_manifests_run_exists_in_the_image() -> None:
    copied = copied_sources()
    installed = {re.split(r"[\[=]", line, maxsplit=1)[0].lower() for line in runtime_requirements()}
    seen = set()
    for where, command in image_commands():
        program = command[0]
        seen.add(program)
        if program == "gunicorn":
            assert "gunicorn" in installed
            config = command[command.index("-c") + 1]
            assert config.startswith("python:"), where
            module = config.removeprefix("python:").replace(".", "/") + ".py"
            assert module.split("/")[0] in copied and (REPO / module).is_file(), where
        elif program == "celery":
            assert "celery" in installed
            app = command[command.index("-A") + 1]
            assert app in copied and (REPO / app / "celery.py").is_file(), where
        elif program == "python":
            assert command[1] in copied and (REPO / command[1]).is_file(), where
        else:
            raise AssertionError(f"{where}: {program} is not in the image")
    assert seen == {"gunicorn", "celery", "python"}


def test_dockerignore_keeps_the_context_small_but_not_the_sources() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "var", "tests"} <= set(ignored)
    for source in [*copied_sources(), "requirements.txt"]:
        assert source not in ignored, source
