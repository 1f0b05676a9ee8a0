"""docs/operations.md and deploy/monitoring/ must keep describing what the code does.

The metrics come from the code itself: every product module that imports prometheus_client is
imported and its metric objects read, so a metric added, renamed or relabelled without the docs
(or an alert built on a name the code never exports) fails here. Paths the runbook tells people
to call are resolved with Django's own URL resolver, and every alert's runbook link must land on
a heading of operations.md. PromQL is checked here for balance and for the metric names it
reads, which is where alert rules drift; test_promtool.py has promtool parse the rules and run
their unit tests.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml
from django.urls import Resolver404, resolve
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
MONITORING = ROOT / "deploy" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
RUNBOOKS_FILE = MONITORING / "runbooks.yaml"
PRODUCT_PACKAGES = ("audit", "podseidon_site", "protectors", "webhook", "workers")
WEBHOOK_URLCONF = "podseidon_site.urls_webhook"

# design.md §6: the names dashboards and alerts look for. Discovery finding fewer is a broken test.
DESIGN_METRICS = {
    "heartbeat",
    "leader_heartbeat",
    "generator_reconcile",
    "aggregator_reconcile",
    "aggregator_next_event_pool_current_size",
    "aggregator_next_event_pool_current_latency",
    "webhook_request",
    "webhook_handle_pod_in_ppr",
    "webhook_http_error",
    "retrybatch_submit_retry_count",
    "retrybatch_execute_batch_size",
}

_IMPORTS_PROMETHEUS = re.compile(r"^\s*(?:from|import)\s+prometheus_client\b", re.MULTILINE)

# Sample names prometheus-client exposes per metric type (text format 0.0.4).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "enum": ("",),
    "stateset": ("",),
}


@dataclass(frozen=True)
class CodeMetric:
    name: str
    type: str
    labels: frozenset[str]
    module: str

    @property
    def documented_name(self) -> str:
        """What operations.md lists: the name a query uses (counters with their _total)."""
        return f"{self.name}_total" if self.type == "counter" else self.name

    @property
    def series(self) -> set[str]:
        return {self.name + suffix for suffix in _SUFFIXES[self.type]}


def _metric_modules() -> list[str]:
    modules = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            if _IMPORTS_PROMETHEUS.search(path.read_text(encoding="utf-8")):
                modules.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return modules


@pytest.fixture(scope="module")
def code_metrics() -> dict[str, CodeMetric]:
    found: dict[str, CodeMetric] = {}
    for module_name in _metric_modules():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            (family,) = value.describe()
            # Re-exports (workers.metrics.HEARTBEAT) are the same object: keep the definer.
            found.setdefault(
                family.name,
                CodeMetric(family.name, family.type, frozenset(value._labelnames), module_name),
            )
    return found


@pytest.fixture(scope="module")
def exported_series(code_metrics: dict[str, CodeMetric]) -> set[str]:
    return {series for metric in code_metrics.values() for series in metric.series}


# -- markdown ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operations() -> str:
    return OPERATIONS.read_text(encoding="utf-8")


def _outside_code_fences(markdown: str) -> list[str]:
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in _outside_code_fences(markdown):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _section(markdown: str, title: str) -> list[str]:
    """The lines under the heading ``title`` up to the next heading of the same or higher level."""
    lines = _outside_code_fences(markdown)
    for index, line in enumerate(lines):
        match = _HEADING.match(line)
        if match and match.group(2) == title:
            level = len(match.group(1))
            body = []
            for following in lines[index + 1 :]:
                other = _HEADING.match(following)
                if other and len(other.group(1)) <= level:
                    break
                body.append(following)
            return body
    raise AssertionError(f"operations.md has no heading {title!r}")


def _table(lines: list[str]) -> list[list[str]]:
    rows = [line for line in lines if line.startswith("|")]
    assert len(rows) > 2, "expected a markdown table with a header and rows"
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[2:]]


def _backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# -- metrics ------------------------------------------------------------------------------------


def test_discovery_finds_every_metric_design_names(code_metrics: dict[str, CodeMetric]) -> None:
    missing = DESIGN_METRICS - set(code_metrics)
    assert not missing, f"metrics named in design.md §6 not found in the code: {sorted(missing)}"


def test_discovery_misses_no_registered_metric(code_metrics: dict[str, CodeMetric]) -> None:
    # Anything in the default registry that is neither prometheus-client's own process/platform/
    # GC collectors nor a module-level metric we found was defined where discovery cannot see it.
    defaults = {
        family.name
        for collector in (
            prometheus_client.PROCESS_COLLECTOR,
            prometheus_client.PLATFORM_COLLECTOR,
            prometheus_client.GC_COLLECTOR,
        )
        for family in collector.collect()
    }
    registered = {family.name for family in prometheus_client.REGISTRY.collect()}
    hidden = registered - defaults - set(code_metrics)
    assert not hidden, f"metrics registered outside module scope, undocumentable: {sorted(hidden)}"


def test_metrics_reference_lists_exactly_the_registered_metrics(
    operations: str, code_metrics: dict[str, CodeMetric]
) -> None:
    rows = _table(_section(operations, "Metrics reference"))
    documented = [_backticked(row[0])[0] for row in rows]
    assert len(documented) == len(set(documented)), "a metric is documented twice"
    expected = {metric.documented_name: metric for metric in code_metrics.values()}
    undocumented = sorted(set(expected) - set(documented))
    stale = sorted(set(documented) - set(expected))
    assert not undocumented, f"registered but not in operations.md: {undocumented}"
    assert not stale, f"in operations.md but not registered by the code: {stale}"


def test_metrics_reference_types_and_labels_match_the_code(
    operations: str, code_metrics: dict[str, CodeMetric]
) -> None:
    by_name = {metric.documented_name: metric for metric in code_metrics.values()}
    for row in _table(_section(operations, "Metrics reference")):
        name = _backticked(row[0])[0]
        metric = by_name[name]
        assert row[1] == metric.type, f"{name}: documented as {row[1]}, is a {metric.type}"
        labels = frozenset(_backticked(row[2]))
        assert labels == metric.labels, (
            f"{name}: documented labels {sorted(labels)}, code has {sorted(metric.labels)}"
        )


# -- the PrometheusRule -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rule() -> dict[str, Any]:
    documents = list(yaml.safe_load_all(RULE_FILE.read_text(encoding="utf-8")))
    assert len(documents) == 1, "prometheusrule.yaml should hold exactly one object"
    return documents[0]


@pytest.fixture(scope="module")
def alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_SEVERITIES = {"critical", "warning", "info"}


def test_rule_has_the_prometheus_rule_shape(rule: dict[str, Any]) -> None:
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"]
    groups = rule["spec"]["groups"]
    assert isinstance(groups, list) and groups
    group_names = [group["name"] for group in groups]
    assert len(group_names) == len(set(group_names)), "group names must be unique"
    alert_names = []
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        assert isinstance(group["rules"], list) and group["rules"], f"{group['name']}: no rules"
        for rule_entry in group["rules"]:
            assert ("alert" in rule_entry) != ("record" in rule_entry), rule_entry
            assert set(rule_entry) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert isinstance(rule_entry["expr"], str) and rule_entry["expr"].strip()
            if "alert" not in rule_entry:
                continue
            name = rule_entry["alert"]
            alert_names.append(name)
            assert re.fullmatch(r"Podseidon[A-Z][A-Za-z0-9]+", name), name
            if "for" in rule_entry:
                assert _DURATION.match(str(rule_entry["for"])), f"{name}: bad for"
            assert rule_entry["labels"]["severity"] in _SEVERITIES, name
            annotations = rule_entry["annotations"]
            for key in ("summary", "description", "runbook_url"):
                assert isinstance(annotations.get(key), str) and annotations[key].strip(), (
                    f"{name}: annotation {key} missing"
                )
    assert len(alert_names) == len(set(alert_names)), "alert names must be unique"


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*")
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names (inside {} or grouping clauses) or durations (inside [])."""
    for opening, closing in ("()", "[]", "{}"):
        depth = 0
        for char in _STRING.sub('""', expr):
            depth += (char == opening) - (char == closing)
            assert depth >= 0, f"unbalanced {opening}{closing} in {expr!r}"
        assert depth == 0, f"unbalanced {opening}{closing} in {expr!r}"
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() in _PROMQL_WORDS or re.match(r"\s*\(", text[match.end() :]):
            continue
        names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('absent(heartbeat{component="webhook"})', {"heartbeat"}),
        ("time() - max by (instance) (heartbeat) > 60", {"heartbeat"}),
        (
            "sum by (le, cell) (rate(webhook_request_bucket[5m])) offset 1h > 5e3",
            {"webhook_request_bucket"},
        ),
        ("a_total / on (x) group_left (y) b unless c == 0", {"a_total", "b", "c"}),
        ('x{code=~"5..|or"} and bool y', {"x", "y"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_promql_metric_names_refuses_unbalanced_expressions() -> None:
    with pytest.raises(AssertionError, match="unbalanced"):
        promql_metric_names("sum(rate(x[5m])")


def test_alerts_only_use_metrics_the_code_exports(
    alerts: list[dict[str, Any]], exported_series: set[str]
) -> None:
    for alert in alerts:
        names = promql_metric_names(alert["expr"])
        assert names, f"{alert['alert']}: its expression reads no metric"
        unknown = names - exported_series
        assert not unknown, f"{alert['alert']}: not exported by the code: {sorted(unknown)}"


def test_alert_labels_used_in_expressions_exist(
    alerts: list[dict[str, Any]], code_metrics: dict[str, CodeMetric]
) -> None:
    # A matcher on a label the metric does not have silently matches nothing (or everything).
    by_series = {s: m for m in code_metrics.values() for s in m.series}
    selector = re.compile(r"([A-Za-z_:][\w:]*)\{([^}]*)\}")
    for alert in alerts:
        for name, matchers in selector.findall(alert["expr"]):
            if name not in by_series:
                continue  # reported by test_alerts_only_use_metrics_the_code_exports
            labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
            allowed = by_series[name].labels | ({"le"} if name.endswith("_bucket") else set())
            assert labels <= allowed, f"{alert['alert']}: {name} has no label {labels - allowed}"


@pytest.fixture(scope="module")
def runbook_base() -> str:
    (config_map,) = yaml.safe_load_all(RUNBOOKS_FILE.read_text(encoding="utf-8"))
    annotations = config_map["metadata"]["annotations"]
    # kustomize must not emit it: it only feeds the runbook_url replacement.
    assert annotations["config.kubernetes.io/local-config"] == "true"
    return config_map["data"]["url"]


def test_every_runbook_url_lands_on_a_section(
    alerts: list[dict[str, Any]], operations: str, runbook_base: str
) -> None:
    anchors = _anchors(operations)
    for alert in alerts:
        base, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert base == runbook_base, f"{alert['alert']}: runbook_url must start with {base!r}"
        assert anchor in anchors, f"{alert['alert']}: operations.md has no section #{anchor}"


def test_operations_lists_exactly_the_alerts(alerts: list[dict[str, Any]], operations: str) -> None:
    rows = _table(_section(operations, "Alerts"))
    documented = {_backticked(row[0])[0]: row for row in rows}
    assert set(documented) == {a["alert"] for a in alerts}
    for alert in alerts:
        row = documented[alert["alert"]]
        assert row[1] == alert["labels"]["severity"], f"{alert['alert']}: severity differs"
        anchor = alert["annotations"]["runbook_url"].partition("#")[2]
        assert f"(#{anchor})" in row[-1], f"{alert['alert']}: the table links elsewhere"


def test_monitoring_kustomization_renders_with_runbook_urls(
    alerts: list[dict[str, Any]], runbook_base: str
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered.stdout) if doc}
    # runbooks.yaml only feeds the replacement; kustomize must not emit it.
    assert sorted(objects) == ["PodMonitor", "PrometheusRule"]
    urls = {
        r["alert"]: r["annotations"]["runbook_url"]
        for group in objects["PrometheusRule"]["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    }
    assert urls == {
        a["alert"]: f"{runbook_base}#{a['annotations']['runbook_url'].partition('#')[2]}"
        for a in alerts
    }


def test_pod_monitor_scrapes_a_port_every_podseidon_process_has() -> None:
    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text(encoding="utf-8"))
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (components,) = monitor["spec"]["selector"]["matchExpressions"]
    deployments = {
        doc["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component"): doc
        for path in sorted((ROOT / "deploy" / "base").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc and doc.get("kind") == "Deployment"
    }
    for component in components["values"]:
        assert component in deployments, f"no Deployment with component {component!r}"
        ports = {
            port.get("name")
            for container in deployments[component]["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        assert endpoint["port"] in ports, f"{component}: no port named {endpoint['port']!r}"


# -- links and paths in operations.md -----------------------------------------------------------


def test_internal_links_land_on_headings(operations: str) -> None:
    anchors = _anchors(operations)
    for anchor in re.findall(r"\]\(#([^)]+)\)", operations):
        assert anchor in anchors, f"link to missing section #{anchor}"


def test_architecture_links_land_on_operations_sections(operations: str) -> None:
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(operations\.md#([^)]+)\)", architecture)
    assert links, "architecture.md should point at operations.md for metrics and the playbook"
    missing = sorted(set(links) - _anchors(operations))
    assert not missing, f"architecture.md links to missing operations.md sections: {missing}"


def test_playbook_has_every_failure_mode(operations: str) -> None:
    anchors = _anchors(operations)
    for anchor in (
        "core-control-plane-down",
        "a-worker-control-plane-down",
        "a-worker-data-plane-fault",
        "generator-down",
        "aggregator-down",
        "webhook-unreachable",
    ):
        assert anchor in anchors, f"the playbook lacks #{anchor}"


_API_PATH = re.compile(r"/api/[^\s\"'`)\\]*")
_FILESYSTEM_ROOTS = ("/etc/", "/var/", "/tmp/", "/usr/", "/proc/", "/dev/")


def _quoted_paths(markdown: str) -> set[str]:
    paths = set(_API_PATH.findall(markdown))
    for inline in re.findall(r"`([^`\n]+)`", markdown):
        if re.fullmatch(r"/[\w.~<>/?=&-]*", inline) and not inline.startswith(_FILESYSTEM_ROOTS):
            paths.add(inline)
    return {path.split("?", 1)[0].split("#", 1)[0] for path in paths}


def _resolves(path: str) -> bool:
    # A placeholder (`<cell>`, `<id>`) stands for any value; "1" fits str and int converters.
    path = re.sub(r"<[^<>/]+>", "1", path)
    from podseidon_site.api import not_found

    try:
        # /api/ answers every unknown path with a JSON 404: that is not a documented endpoint.
        return resolve(path).func is not not_found
    except Resolver404:
        pass
    try:
        match = resolve(path, urlconf=WEBHOOK_URLCONF)
    except Resolver404:
        return False
    # Any single segment resolves as a review for that "cell"; a quoted path must be a probe.
    return match.url_name != "admission-review"


def test_quoted_paths_resolve(operations: str) -> None:
    paths = _quoted_paths(operations)
    assert any(p.startswith("/api/v1/") for p in paths), "no API path found: extraction broke"
    unresolved = sorted(p for p in paths if not _resolves(p))
    assert not unresolved, f"operations.md quotes paths no URLconf serves: {unresolved}"


def test_a_wrong_path_does_not_resolve() -> None:
    assert not _resolves("/api/v1/cells/cell-a/remove/")
    assert not _resolves("/not-a-page/")
    assert _resolves("/readyz")
