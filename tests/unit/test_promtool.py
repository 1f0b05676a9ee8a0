"""The alerting rules of deploy/monitoring/, checked and unit-tested by Prometheus's own promtool.

prometheusrule.yaml is a Kubernetes object; its `spec.groups` are exactly a Prometheus rules
file, so each test writes them out as one (no second copy of the rules lives in the repository).
`promtool check rules` parses every expression and template; `promtool test rules` runs the
unit tests of tests/promtool/ (input series, then which alerts fire when) against them. For the
unit tests only each alert's `summary` annotation is kept, so the expected alerts need not
restate descriptions and runbook links (test_operations_docs.py checks those).

`make test` installs promtool (scripts/ensure-promtool.sh). Without it these tests skip, except
under CI=true, where a missing promtool is a failure rather than a silently weaker suite.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULE_FILE = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"
UNIT_TESTS = ROOT / "tests" / "promtool"
RULES_NAME = "podseidon-rules.yaml"  # what every file in tests/promtool names in rule_files

# The alerts the graceful-degradation playbook of docs/operations.md sends people to act on:
# each must have a unit test in which it fires after its `for:` and one in which it does not.
PLAYBOOK_ALERTS = {
    # webhook errors and unreachable
    "PodseidonWebhookServerErrors",
    "PodseidonWebhookBadRequests",
    "PodseidonWebhookDown",
    "PodseidonWebhookReplicaNotReady",
    # aggregator stalled
    "PodseidonCellPodStreamStalled",
    "PodseidonAggregatorNotRunning",
    "PodseidonBucketLagHigh",
    # leader lost
    "PodseidonAggregatorNoLeader",
    "PodseidonGeneratorNoLeader",
    "PodseidonLeaderHeartbeatStale",
    # dangling protectors
    "PodseidonDanglingProtectors",
}

Groups = list[dict[str, Any]]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed: run `bash scripts/ensure-promtool.sh` (as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def groups() -> Groups:
    (rule,) = yaml.safe_load_all(RULE_FILE.read_text(encoding="utf-8"))
    return rule["spec"]["groups"]


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _summaries_only(groups: Groups) -> Groups:
    groups = copy.deepcopy(groups)
    for group in groups:
        for rule in group["rules"]:
            if "annotations" in rule:
                rule["annotations"] = {"summary": rule["annotations"]["summary"]}
    return groups


def _unit_tests() -> dict[str, dict[str, Any]]:
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(UNIT_TESTS.glob("*.yaml"))
    }


def _checked_alerts(unit_test: dict[str, Any]) -> set[str]:
    return {
        check["alertname"]
        for case in unit_test["tests"]
        for check in case.get("alert_rule_test", [])
    }


def _unit_test_dir(directory: Path, groups: Groups, alert: str | None = None) -> list[str]:
    """Lay out the unit tests (those checking `alert`, or all) beside a rules file made of
    `groups`; return the tests' file names."""
    rules = yaml.safe_dump({"groups": _summaries_only(groups)}, sort_keys=False)
    (directory / RULES_NAME).write_text(rules, encoding="utf-8")
    names = []
    for name, unit_test in _unit_tests().items():
        if alert is None or alert in _checked_alerts(unit_test):
            shutil.copy(UNIT_TESTS / name, directory / name)
            names.append(name)
    return names


def test_promtool_checks_the_rules(promtool: str, groups: Groups, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    result = _run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {count} rules found" in result.stdout, result.stdout


def test_promtool_check_refuses_a_broken_expression(
    promtool: str, groups: Groups, tmp_path: Path
) -> None:
    broken = copy.deepcopy(groups)
    broken[0]["rules"][0]["expr"] = "sum by (cell) (rate(webhook_http_error_total[5m])"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": broken}, sort_keys=False), encoding="utf-8")
    result = _run(promtool, "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode != 0, result.stdout


def test_promtool_unit_tests_pass(promtool: str, groups: Groups, tmp_path: Path) -> None:
    names = _unit_test_dir(tmp_path, groups)
    assert names, f"no unit tests in {UNIT_TESTS}"
    result = _run(promtool, "test", "rules", *names, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(names), result.stdout


def test_unit_tests_use_the_generated_rules_file() -> None:
    for name, unit_test in _unit_tests().items():
        assert unit_test["rule_files"] == [RULES_NAME], f"{name}: rule_files must be {RULES_NAME}"


def test_every_playbook_alert_has_a_firing_and_a_quiet_case(groups: Groups) -> None:
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    assert set(alerts) >= PLAYBOOK_ALERTS, "an alert of the playbook was renamed or removed"
    fires: set[str] = set()
    quiet: set[str] = set()
    for unit_test in _unit_tests().values():
        for case in unit_test["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    unknown = (fires | quiet) - set(alerts)
    assert not unknown, f"unit tests name alerts the rules do not have: {sorted(unknown)}"
    assert not PLAYBOOK_ALERTS - fires, f"never seen firing: {sorted(PLAYBOOK_ALERTS - fires)}"
    assert not PLAYBOOK_ALERTS - quiet, f"never seen quiet: {sorted(PLAYBOOK_ALERTS - quiet)}"


def _never_fires(rule: dict[str, Any]) -> None:
    rule["expr"] = f"({rule['expr']}) unless on () vector(1)"


def _fires_at_once(rule: dict[str, Any]) -> None:
    rule.pop("for", None)


@pytest.mark.parametrize("mutation", [_never_fires, _fires_at_once], ids=lambda m: m.__name__)
@pytest.mark.parametrize("alert", sorted(PLAYBOOK_ALERTS))
def test_unit_tests_catch_a_broken_alert(
    promtool: str,
    groups: Groups,
    tmp_path: Path,
    alert: str,
    mutation: Callable[[dict[str, Any]], None],
) -> None:
    # The unit tests are only worth having if they fail when an alert stops firing, or fires
    # without waiting for its `for:` duration.
    broken = copy.deepcopy(groups)
    (rule,) = [r for group in broken for r in group["rules"] if r.get("alert") == alert]
    mutation(rule)
    names = _unit_test_dir(tmp_path, broken, alert)
    result = _run(promtool, "test", "rules", *names, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"promtool test passed with {alert} broken:\n{output}"
    assert f"alertname: {alert}," in output, output
