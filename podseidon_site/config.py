"""The operator's configuration: one YAML file (path in ``PODSEIDON_CONFIG``) validated at start-up.

Secrets and endpoints (database, Redis, Django secret key) come from the environment instead, so
the same file can be shipped in a ConfigMap across environments. This module has no Django
imports: the Celery workers, the sandbox tooling and management commands all load it the same way.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV_VAR = "PODSEIDON_CONFIG"

# A cell ID ends up as the last segment of the webhook URL and inside lease keys, so it must be
# a plain URL path segment: no slash, no dot-only names, nothing that needs escaping.
CELL_ID_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")

PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Number = StrictInt | StrictFloat


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the offending key."""


class _Section(BaseModel):
    # Unknown keys are almost always typos of real options; silently ignoring them would leave
    # an operator believing a safety option is set when it is not.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Impersonation(_Section):
    user: StrictStr = Field(description="User name sent as Impersonate-User.")
    # kube-apiserver wants one Impersonate-Group header per group and the client's default
    # headers cannot repeat a name, so more than one group would silently lose all but one.
    groups: list[StrictStr] = Field(
        default_factory=list, max_length=1, description="At most one Impersonate-Group."
    )


class ClusterAccess(_Section):
    """How to reach one Kubernetes API server."""

    kubeconfig: StrictStr | None = Field(
        default=None, description="Path to a kubeconfig file; unset means in-cluster config."
    )
    context: StrictStr | None = Field(default=None, description="Context inside the kubeconfig.")
    impersonate: Impersonation | None = Field(
        default=None, description="Act as this user (and groups) on every request."
    )
    qps: Annotated[Number, Field(gt=0)] = Field(default=50, description="Client request rate.")
    burst: PositiveInt = Field(default=100, description="Client request burst.")
    namespace: StrictStr = Field(
        default="", description="Restrict watches to this namespace; empty watches all."
    )

    @property
    def in_cluster(self) -> bool:
        return self.kubeconfig is None


class CellConfig(ClusterAccess):
    id: StrictStr = Field(description="Cell ID: the webhook path segment and the status key.")
    requires_pod_name: StrictBool = Field(
        default=False,
        description="Record pod names in admission buckets when webhook.requires_pod_name is "
        "'by-cell'.",
    )

    @field_validator("id")
    @classmethod
    def _valid_path_segment(cls, value: str) -> str:
        if not CELL_ID_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid path segment (letters, digits, '.', '_', '-'; "
                "must start and end with a letter or digit; at most 63 characters)"
            )
        return value


class AdmissionHistoryDefaults(_Section):
    max_concurrent_lag: NonNegativeInt = Field(
        default=0, description="Admitted-but-unconfirmed deletions allowed per ppr; 0 = no limit."
    )
    compact_threshold: PositiveInt = Field(
        default=100, description="Single-pod buckets kept per cell before the oldest are folded."
    )
    aggregation_rate_millis: NonNegativeInt = Field(
        default=1000, description="Delay between a pod event and the aggregation it triggers."
    )


class GeneratorConfig(_Section):
    protection_selectors: dict[StrictStr, StrictStr] = Field(
        default_factory=lambda: {"deployments.apps": "podseidon.kubewharf.io/protect=true"},
        description="Label selector per workload kind (resource.group) that marks it protected; "
        "add `statefulsets.apps` to protect StatefulSets too.",
    )
    protect_non_zero: StrictBool = Field(
        default=False, description="Keep protecting a terminating workload while replicas > 0."
    )
    workers: PositiveInt = Field(default=3, description="Concurrent reconcile workers.")
    monitor: StrictBool = Field(default=True, description="Run the monitor's global gauges.")


class UpdateTriggerConfig(_Section):
    enabled: StrictBool = Field(default=False, description="Keep a dummy pod bumping events.")
    interval_seconds: Annotated[Number, Field(gt=0)] = Field(
        default=1, description="How often the dummy pod's annotation is bumped."
    )
    dummy_pod_name: StrictStr = Field(
        default="podseidon-update-trigger", description="Name of the dummy pod."
    )
    dummy_pod_namespace: StrictStr = Field(
        default="default", description="Namespace of the dummy pod."
    )


class AggregatorConfig(_Section):
    pod_label_selector: StrictStr = Field(
        default="", description="Only watch pods matching this label selector (string form)."
    )
    sync_time_algorithm: Literal["clock", "status"] = Field(
        default="clock", description="How a cell's sync time is derived from its pod events."
    )
    update_trigger: UpdateTriggerConfig = Field(
        default_factory=UpdateTriggerConfig,
        description="A dummy pod whose annotation is bumped so quiet cells still see events.",
    )
    rate_jitter: tuple[Number, Number] = Field(
        default=(0.5, 1.0), description="Aggregation delay is multiplied by U[low, high]."
    )
    workers: PositiveInt = Field(
        default=4,
        description="Concurrent reconcile workers per cell, each with one status write in "
        "flight. A cell's aggregator needs about 0.6 ms of CPU per write; more workers help when "
        "the API server's write latency, not the CPU, limits the write rate.",
    )

    @field_validator("rate_jitter")
    @classmethod
    def _ordered_jitter(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value


class TLSConfig(_Section):
    cert_file: StrictStr | None = Field(default=None, description="PEM certificate chain.")
    key_file: StrictStr | None = Field(default=None, description="PEM private key.")
    client_ca_file: StrictStr | None = Field(
        default=None,
        description="PEM CA bundle: only callers presenting a client certificate it signed (the "
        "kube-apiservers, through their admission kubeconfig) may post reviews; a certificate "
        "it did not sign fails the TLS handshake. Unset: any caller that reaches the port may "
        "post reviews and spend quota. Checked when the webhook starts.",
    )
    client_names: list[StrictStr] = Field(
        default_factory=list,
        description="With client_ca_file: the client certificate's subject CN or one of its DNS "
        "names must be in this list (403 otherwise); empty: any certificate the CA signed.",
    )
    probes_without_client_cert: StrictBool = Field(
        default=True,
        description="With client_ca_file: /healthz and /readyz answer callers without a client "
        "certificate (kubelet's HTTPS probes present none) while every other path answers 403; "
        "false: the TLS handshake itself demands a certificate (ssl.CERT_REQUIRED), so probes "
        "must be exec or tcpSocket.",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        if self.client_ca_file is not None:
            if not self.client_ca_file.strip():
                raise ValueError("client_ca_file must name a file or be left out")
            if self.cert_file is None:
                raise ValueError("client_ca_file needs cert_file and key_file")
        else:
            # Options that only mean something with a client CA would silently do nothing.
            if self.client_names:
                raise ValueError("client_names needs client_ca_file")
            if not self.probes_without_client_cert:
                raise ValueError("probes_without_client_cert: false needs client_ca_file")
        return self


class WebhookConfig(_Section):
    path_prefix: StrictStr = Field(default="", description="URL prefix before /{cellID}.")
    port: Annotated[StrictInt, Field(gt=0, lt=65536)] = Field(
        default=8843, description="HTTPS port the webhook listens on."
    )
    dry_run: StrictBool = Field(
        default=False, description="Decide and record, but always allow (canary mode)."
    )
    cold_start_delay_seconds: Annotated[Number, Field(ge=0)] = Field(
        default=0, description="Answer errors for this long after start-up."
    )
    retry_backoff_base_millis: NonNegativeInt = Field(
        default=100, description="Wait after a 409 Conflict before retrying a batch."
    )
    retry_jitter_millis: NonNegativeInt = Field(
        default=100, description="Random extra wait U[0, jitter) on top of the base."
    )
    batch_window_millis: NonNegativeInt = Field(
        default=100,
        description="While deletions of one PodProtector come in a burst (some arrived during "
        "its last status write, within the last second), wait this long before each write so "
        "that more of the burst shares it: fewer writes and conflicts, that much more latency "
        "for the burst. A deletion with none in flight beside it is written at once.",
    )
    bucket_refresh_after_millis: NonNegativeInt = Field(
        default=100,
        description="A repeated review of an admitted pod moves its bucket's startTime to now "
        "only when the bucket is older than this (0: always). kube-apiserver reviews one DELETE "
        "more than once within milliseconds; this spares those repeats a status write each.",
    )
    requires_pod_name: Literal["never", "always", "by-cell"] = Field(
        default="never", description="Record pod names in admission buckets."
    )
    handle_eviction: StrictBool = Field(default=True, description="Judge pods/eviction too.")
    force_delete_annotation: StrictStr = Field(
        default="podseidon.kubewharf.io/force-delete",
        description="Pod annotation that turns a deletion into a dry run (always allowed).",
    )
    health_criterion_annotation: StrictStr = Field(
        default="podseidon.kubewharf.io/health-criterion",
        description="Pod or Eviction annotation choosing Available/Ready/Running/Scheduled.",
    )
    tls: TLSConfig = Field(
        default_factory=TLSConfig, description="Certificate and key the webhook serves."
    )
    failure_policy: Literal["Fail", "Ignore"] = Field(
        default="Fail", description="What kube-apiserver does when the webhook cannot answer."
    )
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=30)] = Field(
        default=10, description="kube-apiserver's deadline for one AdmissionReview."
    )
    core_write_timeout_millis: Annotated[StrictInt, Field(ge=100, le=30000)] = Field(
        default=3000,
        description="Longest wait for the core cluster to answer one status write (connect, TLS "
        "and response; never past the review's own deadline). A write that gets no answer "
        "refuses its deletions with a 500 naming the core cluster, and the next protected "
        "reviews are refused at once until a probe write (one a second) is answered.",
    )
    keep_alive_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = Field(
        default=120,
        description="How long a kept-alive connection may sit idle before the webhook closes "
        "it. Longer than kube-apiserver's own idle timeout (90 s), so that the apiserver closes "
        "idle connections, not the webhook: a review sent just as the webhook closed its "
        "connection fails (kube-apiserver does not resend a POST), and every new connection "
        "costs a TLS handshake.",
    )
    object_selector: dict[StrictStr, Any] = Field(
        default_factory=dict, description="LabelSelector restricting which pods are sent."
    )
    namespace_selector: dict[StrictStr, Any] = Field(
        default_factory=dict, description="LabelSelector restricting which namespaces are sent."
    )
    self_protection: StrictBool = Field(
        default=False, description="Also guard Podseidon's own pods."
    )
    service: dict[StrictStr, Any] | None = Field(
        default=None,
        description="In-cluster Service reference (namespace, name, port) instead of a URL.",
    )
    url: StrictStr | None = Field(default=None, description="Base URL kube-apiserver calls.")
    ca_bundle_file: StrictStr | None = Field(
        default=None,
        description="PEM of the CA kube-apiserver trusts for the webhook: the caBundle that "
        "`webhookconfig` and the console's Restore from configuration register (default: "
        "tls.cert_file, where readable; else Restore keeps the registered caBundle).",
    )

    @field_validator("path_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError("must be empty or start with '/' and not end with '/'")
        return value


class LeaderElectionConfig(_Section):
    lease_duration_seconds: Annotated[Number, Field(gt=0)] = Field(
        default=15, description="A leader that stops renewing loses the lease after this."
    )
    renew_deadline_seconds: Annotated[Number, Field(gt=0)] = Field(
        default=10, description="A leader that cannot renew within this stops acting."
    )
    retry_period_seconds: Annotated[Number, Field(gt=0)] = Field(
        default=2, description="How often leaders renew and standbys try to acquire."
    )

    @model_validator(mode="after")
    def _deadline_inside_lease(self) -> LeaderElectionConfig:
        if (
            not self.retry_period_seconds
            < self.renew_deadline_seconds
            < (self.lease_duration_seconds)
        ):
            raise ValueError(
                "need retry_period_seconds < renew_deadline_seconds < lease_duration_seconds"
            )
        return self


class MetricsConfig(_Section):
    port: Annotated[StrictInt, Field(gt=0, lt=65536)] = Field(
        default=9090, description="Prometheus metrics port of every process."
    )
    namespace_labels: StrictBool = Field(
        default=False, description="Add a namespace label to per-request metrics."
    )
    user_labels: StrictBool = Field(
        default=False, description="Add a requesting-user label to per-request metrics."
    )


class ControllersConfig(_Section):
    """Which controllers this worker process may lead (docs/architecture.md, "Placement")."""

    cells: list[StrictStr] | None = Field(
        default=None,
        description="Cells whose aggregator this worker may lead; unset: every configured cell, "
        "`[]`: none. Set per process with `PODSEIDON_CONTROLLERS` (e.g. one worker per cell).",
    )
    generator: StrictBool = Field(
        default=True, description="This worker may lead the generator (when one is configured)."
    )
    monitor: StrictBool = Field(
        default=True, description="This worker may lead the monitor (when it is enabled)."
    )
    balance: StrictBool = Field(
        default=True,
        description="Spread the aggregators' leases over the live workers: each leads its fair "
        "share and hands surplus leases to a worker that joins. Off: whoever comes first leads.",
    )


class ConsoleConfig(_Section):
    """What the web console reads besides the clusters."""

    webhook_metrics_urls: list[StrictStr] = Field(
        default_factory=list,
        description="Prometheus endpoints of every webhook process (its :9090 or /metrics, e.g. "
        "`http://podseidon-webhook-0.podseidon:9090/metrics`), scraped and summed for the "
        "overview's recent rejections per cell; empty: the overview says they are not "
        "configured.",
    )
    metrics_ca_file: StrictStr | None = Field(
        default=None, description="CA bundle for https metrics URLs; unset: the system's CAs."
    )
    metrics_timeout_seconds: Annotated[Number, Field(gt=0, le=10)] = Field(
        default=2, description="Per-URL deadline of one scrape; a late source counts as down."
    )
    metrics_interval_seconds: Annotated[Number, Field(ge=1, le=300)] = Field(
        default=15, description="How often each web process scrapes (its history: one hour)."
    )
    prometheus_url: StrictStr | None = Field(
        default=None,
        description="Base URL of a Prometheus server scraping the webhook (e.g. "
        "`http://prometheus:9090`); set: the console's charts of admitted and refused deletions "
        "per cell come from its range queries over `webhook_request_count`; unset: from the "
        "history the webhook keeps in Redis.",
    )

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_http_url(cls, url: str | None) -> str | None:
        if url is not None:
            scheme, _, rest = url.partition("://")
            if scheme not in ("http", "https") or not rest or rest.startswith("/"):
                raise ValueError(f"{url!r} is not an http(s) URL with a host")
        return url

    @field_validator("webhook_metrics_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            scheme, _, rest = url.partition("://")
            if scheme not in ("http", "https") or not rest or rest.startswith("/"):
                raise ValueError(f"{url!r} is not an http(s) URL with a host")
        if len(set(urls)) != len(urls):
            raise ValueError("a URL appears more than once (its counts would be added twice)")
        return urls


def _default_cells() -> list[CellConfig]:
    return [CellConfig(id="default")]


class PodseidonConfig(_Section):
    core: ClusterAccess = Field(
        default_factory=ClusterAccess,
        description="The cluster holding PodProtectors and the workloads they come from.",
    )
    cells: list[CellConfig] = Field(
        default_factory=_default_cells, description="Worker clusters whose pods are guarded."
    )
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig,
        description="Turns workloads into PodProtectors in the core cluster.",
    )
    aggregator: AggregatorConfig = Field(
        default_factory=AggregatorConfig,
        description="One per cell: counts the cell's pods into each PodProtector's status.",
    )
    webhook: WebhookConfig = Field(
        default_factory=WebhookConfig,
        description="The admission webhook that judges pod deletions and evictions.",
    )
    admission_history: AdmissionHistoryDefaults = Field(
        default_factory=AdmissionHistoryDefaults,
        description="Defaults for a PodProtector's spec.admissionHistoryConfig.",
    )
    leader_election: LeaderElectionConfig = Field(
        default_factory=LeaderElectionConfig,
        description="Redis leases electing one active instance per controller.",
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Prometheus metrics of every process."
    )
    console: ConsoleConfig = Field(
        default_factory=ConsoleConfig,
        description="Where the web console reads what the clusters do not hold.",
    )
    controllers: ControllersConfig = Field(
        default_factory=ControllersConfig,
        description="Placement of the controllers on Celery workers.",
    )

    @field_validator("cells")
    @classmethod
    def _unique_cells(cls, cells: list[CellConfig]) -> list[CellConfig]:
        if not cells:
            raise ValueError("at least one cell is required")
        seen: set[str] = set()
        for cell in cells:
            if cell.id in seen:
                raise ValueError(f"cell ID {cell.id!r} appears more than once")
            seen.add(cell.id)
        return cells

    @model_validator(mode="after")
    def _known_controller_cells(self) -> PodseidonConfig:
        known = set(self.cell_ids)
        for cell_id in self.controllers.cells or ():
            if cell_id not in known:
                raise ValueError(f"controllers.cells: {cell_id!r} is not a configured cell")
        return self

    def cell(self, cell_id: str) -> CellConfig | None:
        return next((c for c in self.cells if c.id == cell_id), None)

    @property
    def cell_ids(self) -> list[str]:
        return [c.id for c in self.cells]


_NAMED_KEY = re.compile(r"^[a-z_]+(\.[a-z_]+)*: ")


def _key_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = _key_path(tuple(p for p in first["loc"] if p not in ("function-after",)))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if key == "(top level)" and _NAMED_KEY.match(message):
        return f"{source}: {message}{suffix}"  # a check across sections names its key itself
    return f"{source}: {key}: {message}{suffix}"


def parse_config(data: Any, source: str = "config") -> PodseidonConfig:
    """Validate already-parsed YAML; raise ConfigError with a one-line message naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping, got {type(data).__name__}")
    try:
        return PodseidonConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_one_line(error, source)) from None


def check_client_ca_file(config: PodseidonConfig, source: str = "config") -> None:
    """The webhook's start-up check of ``webhook.tls.client_ca_file``: readable, and holding at
    least one certificate. Not part of parse_config because every role loads the same file and
    only the webhook's pods mount the CA."""
    path = config.webhook.tls.client_ca_file
    if path is None:
        return
    key = "webhook.tls.client_ca_file"
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as error:
        reason = error.strerror or error
        raise ConfigError(f"{source}: {key}: cannot read {path}: {reason}") from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError):
        raise ConfigError(
            f"{source}: {key}: {path} holds no PEM CA certificate OpenSSL can load"
        ) from None


def load_config(path: str | os.PathLike[str] | None = None) -> PodseidonConfig:
    """Load the config file named by ``path`` or ``$PODSEIDON_CONFIG``; defaults when neither."""
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR) or None
    if path is None:
        return PodseidonConfig()
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{source}: cannot read: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    return parse_config(data, source)
