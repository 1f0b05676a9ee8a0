"""The YAML config: defaults, validation, and one-line errors that name the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from podseidon_site.config import (
    ConfigError,
    PodseidonConfig,
    check_client_ca_file,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]


def test_defaults_match_design() -> None:
    config = PodseidonConfig()
    assert config.cell_ids == ["default"]
    assert config.core.in_cluster
    assert config.generator.protection_selectors["deployments.apps"] == (
        "podseidon.kubewharf.io/protect=true"
    )
    assert config.generator.protect_non_zero is False
    assert config.generator.workers == 3
    assert config.generator.monitor is True
    assert config.aggregator.sync_time_algorithm == "clock"
    assert config.aggregator.update_trigger.enabled is False
    assert config.aggregator.update_trigger.interval_seconds == 1
    assert config.aggregator.update_trigger.dummy_pod_name == "podseidon-update-trigger"
    assert config.aggregator.update_trigger.dummy_pod_namespace == "default"
    assert config.aggregator.rate_jitter == (0.5, 1.0)
    assert config.webhook.path_prefix == ""
    assert config.webhook.dry_run is False
    assert config.webhook.cold_start_delay_seconds == 0
    assert config.webhook.retry_backoff_base_millis == 100
    assert config.webhook.retry_jitter_millis == 100
    assert config.webhook.requires_pod_name == "never"
    assert config.webhook.handle_eviction is True
    assert config.webhook.failure_policy == "Fail"
    assert config.webhook.timeout_seconds == 10
    assert config.webhook.keep_alive_seconds == 120  # beyond kube-apiserver's 90 s
    assert config.webhook.self_protection is False
    assert config.admission_history.max_concurrent_lag == 0
    assert config.admission_history.compact_threshold == 100
    assert config.admission_history.aggregation_rate_millis == 1000
    assert config.leader_election.lease_duration_seconds == 15
    assert config.leader_election.renew_deadline_seconds == 10
    assert config.leader_election.retry_period_seconds == 2
    assert config.metrics.port == 9090


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "deploy" / "examples" / "podseidon.yaml")
    assert config.cell_ids == ["cell-a", "cell-b"]
    assert not config.core.in_cluster


def test_missing_env_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODSEIDON_CONFIG", raising=False)
    assert load_config() == PodseidonConfig()


BAD_CONFIGS = [
    ("unknown-top-level", {"webhok": {}}, "config: webhok: unknown key"),
    ("unknown-nested", {"webhook": {"dryrun": True}}, "config: webhook.dryrun: unknown key"),
    (
        "wrong-type",
        {"webhook": {"timeout_seconds": "ten"}},
        "config: webhook.timeout_seconds: Input should be a valid integer",
    ),
    (
        "keep-alive-zero",
        {"webhook": {"keep_alive_seconds": 0}},
        "config: webhook.keep_alive_seconds: Input should be greater than or equal to 1",
    ),
    (
        "bool-not-string",
        {"webhook": {"dry_run": "yes"}},
        "config: webhook.dry_run: Input should be a valid boolean",
    ),
    (
        "cell-id-slash",
        {"cells": [{"id": "a/b"}]},
        "config: cells[0].id: 'a/b' is not a valid path segment",
    ),
    ("cell-id-dots", {"cells": [{"id": ".."}]}, "config: cells[0].id: '..' is not a valid path"),
    ("cell-id-empty", {"cells": [{"id": ""}]}, "config: cells[0].id: '' is not a valid path"),
    ("cell-id-missing", {"cells": [{"kubeconfig": "x"}]}, "config: cells[0].id: Field required"),
    (
        "cell-duplicate",
        {"cells": [{"id": "a"}, {"id": "a"}]},
        "config: cells: cell ID 'a' appears more than once",
    ),
    ("no-cells", {"cells": []}, "config: cells: at least one cell is required"),
    (
        "bad-failure-policy",
        {"webhook": {"failure_policy": "Deny"}},
        "config: webhook.failure_policy: Input should be 'Fail' or 'Ignore'",
    ),
    (
        "negative-lag",
        {"admission_history": {"max_concurrent_lag": -1}},
        "config: admission_history.max_concurrent_lag: Input should be greater than or equal to 0",
    ),
    (
        "sync-algorithm",
        {"aggregator": {"sync_time_algorithm": "wallclock"}},
        "config: aggregator.sync_time_algorithm: Input should be 'clock' or 'status'",
    ),
    (
        "jitter-order",
        {"aggregator": {"rate_jitter": [1.0, 0.5]}},
        "config: aggregator.rate_jitter: must be [low, high] with 0 < low <= high",
    ),
    (
        "tls-half",
        {"webhook": {"tls": {"cert_file": "a.pem"}}},
        "config: webhook.tls: cert_file and key_file must be set together",
    ),
    (
        "client-ca-without-server-cert",
        {"webhook": {"tls": {"client_ca_file": "ca.pem"}}},
        "config: webhook.tls: client_ca_file needs cert_file and key_file",
    ),
    (
        "client-ca-empty",
        {"webhook": {"tls": {"cert_file": "a", "key_file": "b", "client_ca_file": " "}}},
        "config: webhook.tls: client_ca_file must name a file or be left out",
    ),
    (
        "client-names-without-ca",
        {"webhook": {"tls": {"cert_file": "a", "key_file": "b", "client_names": ["x"]}}},
        "config: webhook.tls: client_names needs client_ca_file",
    ),
    (
        "strict-probes-without-ca",
        {"webhook": {"tls": {"probes_without_client_cert": False}}},
        "config: webhook.tls: probes_without_client_cert: false needs client_ca_file",
    ),
    (
        "lease-order",
        {"leader_election": {"renew_deadline_seconds": 20}},
        "config: leader_election: need retry_period_seconds < renew_deadline_seconds",
    ),
    ("not-a-mapping", ["a"], "config: (top level): expected a mapping, got list"),
    (
        "path-prefix",
        {"webhook": {"path_prefix": "hooks/"}},
        "config: webhook.path_prefix: must be empty or start with '/'",
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_names_the_key(data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_several_problems_are_counted() -> None:
    with pytest.raises(ConfigError, match=r"\(and 1 more problem\)$"):
        parse_config({"webhok": 1, "generatr": 2})


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("webhook:\n  dry_run: [true\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: YAML syntax error at line 3"):
        load_config(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read: No such file"):
        load_config(tmp_path / "missing.yaml")


def test_broken_config_at_startup_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "podseidon.yaml"
    path.write_text("cells:\n  - id: cell/a\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={"PODSEIDON_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"podseidon: invalid configuration: {path}: cells[0].id: 'cell/a' is not a valid path "
        "segment (letters, digits, '.', '_', '-'; must start and end with a letter or digit; "
        "at most 63 characters)"
    ]


def test_configuration_doc_is_generated_from_the_schema() -> None:
    from podseidon_site.configdoc import render

    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == render(), "run: python -m podseidon_site.configdoc > docs/configuration.md"


def test_at_most_one_impersonated_group() -> None:
    with pytest.raises(ConfigError, match=r"core.impersonate.groups: List should have at most 1"):
        parse_config({"core": {"impersonate": {"user": "u", "groups": ["a", "b"]}}})


def _with_client_ca(path: Path) -> PodseidonConfig:
    return parse_config(
        {"webhook": {"tls": {"cert_file": "a", "key_file": "b", "client_ca_file": str(path)}}}
    )


def test_client_ca_file_is_checked_where_the_webhook_starts(tmp_path: Path) -> None:
    """parse_config leaves the file alone (the console and workers load the same config without
    the CA mounted); the webhook's start-up check reads it."""
    from sandbox.pki import make_ca

    missing = tmp_path / "missing.crt"
    config = _with_client_ca(missing)
    with pytest.raises(ConfigError) as caught:
        check_client_ca_file(config, "podseidon.yaml")
    assert str(caught.value) == (
        f"podseidon.yaml: webhook.tls.client_ca_file: cannot read {missing}: "
        "No such file or directory"
    )
    not_a_cert = tmp_path / "key.pem"
    not_a_cert.write_text("-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as caught:
        check_client_ca_file(_with_client_ca(not_a_cert))
    assert str(caught.value) == (
        f"config: webhook.tls.client_ca_file: {not_a_cert} holds no PEM CA certificate OpenSSL "
        "can load"
    )
    from cryptography.hazmat.primitives import serialization

    good = tmp_path / "ca.crt"
    good.write_bytes(make_ca("clients")[0].public_bytes(serialization.Encoding.PEM))
    check_client_ca_file(_with_client_ca(good))
    check_client_ca_file(PodseidonConfig())  # unset: nothing to check
