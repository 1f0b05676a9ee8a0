"""deploy/ rendered with the real `kubectl kustomize`, checked for what an installation needs, and
validated by the real kubectl: client-side, and server-side against a cluster (the sandbox, or
real clusters through PODSEIDON_TEST_KUBECONFIGS).

kubectl must be on PATH: without it these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from podseidon_site.config import PodseidonConfig, load_config, parse_config
from webhook.registration import SELF_LABEL_KEY, SELF_LABEL_VALUE

from .conftest import REPO, Clusters, kubectl_path
from .test_sandbox_kubectl import Kubectl

pytestmark = pytest.mark.integration

DEPLOY = REPO / "deploy"
OVERLAYS = ("single-cluster", "core-only", "worker-only")
NAMESPACE = "podseidon"
IMAGE = "registry.example.com/podseidon:0.1.0"
# The cluster each overlay is installed in, among the test clusters.
TARGET_CLUSTER = {"single-cluster": "core", "core-only": "core", "worker-only": "cell-a"}
# The ClusterRoles the ServiceAccount of each process ends up bound to, per overlay.
BOUND_ROLES = {
    "single-cluster": {
        "podseidon-console": {"podseidon-console", "podseidon-console-cell"},
        "podseidon-webhook": {"podseidon-webhook", "podseidon-webhook-cell"},
        "podseidon-controllers": {
            "podseidon-generator",
            "podseidon-aggregator",
            "podseidon-aggregator-cell",
        },
    },
    "core-only": {
        "podseidon-console": {"podseidon-console"},
        "podseidon-webhook": {"podseidon-webhook"},
        "podseidon-controllers": {"podseidon-generator", "podseidon-aggregator"},
    },
    "worker-only": {
        "podseidon-console": {"podseidon-console-cell"},
        "podseidon-webhook": {"podseidon-webhook-cell"},
        "podseidon-aggregator": {"podseidon-aggregator-cell"},
    },
}

Objects = list[dict[str, Any]]


def kubectl() -> str:
    path = kubectl_path()
    if path is None:
        pytest.fail(
            "kubectl is not on PATH: the deploy/ tests render and validate with the real "
            "kubectl (1.27 or newer); install it, they do not skip without it"
        )
    return path


def render(directory: Path) -> Objects:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    return {overlay: render(DEPLOY / "overlays" / overlay) for overlay in OVERLAYS}


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"].startswith(name))
    ]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in find(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(objects: Objects) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for deployment in find(objects, "Deployment"):
        yield deployment, deployment["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_of(objects: Objects, tmp_path: Path) -> PodseidonConfig:
    """The overlay's podseidon.yaml, loaded from a file by the project's own loader."""
    (configmap,) = find(objects, "ConfigMap", "podseidon-config-")
    path = tmp_path / "podseidon.yaml"
    path.write_text(configmap["data"]["podseidon.yaml"])
    return load_config(path)


def env_of(objects: Objects, container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as the kubelet builds it (env wins over envFrom); values
    from Secrets show as ``secret:<name>/<key>``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        (configmap,) = [
            o
            for o in find(objects, "ConfigMap")
            if o["metadata"]["name"] == source["configMapRef"]["name"]
        ]
        env.update(configmap["data"])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = f"secret:{ref['name']}/{ref['key']}" if ref else var["value"]
    return env


# -- rendering --------------------------------------------------------------------------------


def test_the_overlays_are_the_installation_options() -> None:
    present = {p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir()}
    assert present == set(OVERLAYS), "a new overlay needs its place in these tests"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_podseidons_and_in_its_namespace(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for obj in rendered[overlay]:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"][SELF_LABEL_KEY] == SELF_LABEL_VALUE, where
        namespace = obj["metadata"].get("namespace")
        # Only the update trigger's Role lives elsewhere (the dummy pod's namespace).
        if obj["kind"] in ("Namespace", "CustomResourceDefinition") or obj["kind"].startswith(
            ("Cluster", "Validating")
        ):
            assert namespace is None, where
        else:
            assert namespace == NAMESPACE, where
    for deployment, _spec in pod_specs(rendered[overlay]):
        # The webhook leaves Podseidon's own pods out, so it can always be replaced.
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[SELF_LABEL_KEY] == SELF_LABEL_VALUE, deployment["metadata"]["name"]


def test_the_crd_is_the_one_in_deploy_crds(rendered: dict[str, Objects]) -> None:
    source = yaml.safe_load((DEPLOY / "crds" / "podprotectors.yaml").read_text())
    for overlay in ("single-cluster", "core-only"):
        (crd,) = find(rendered[overlay], "CustomResourceDefinition")
        assert crd["spec"] == source["spec"]
    assert not find(rendered["worker-only"], "CustomResourceDefinition")


@pytest.mark.parametrize("overlay", ["single-cluster", "core-only"])
def test_the_processes_of_a_core_installation(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    web = one(objects, "Deployment", "podseidon-web")
    webhook = one(objects, "Deployment", "podseidon-webhook")
    controllers = one(objects, "Deployment", "podseidon-controllers")
    assert webhook["spec"]["replicas"] == 3
    assert controllers["spec"]["replicas"] == 2, "one leader and one hot standby"
    commands = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
        for d in (web, webhook, controllers)
    }
    assert commands["podseidon-web"] == ["gunicorn", "-c", "python:podseidon_site.gunicorn_conf"]
    assert commands["podseidon-webhook"] == [
        "gunicorn",
        "-c",
        "python:podseidon_site.gunicorn_webhook",
    ]
    assert commands["podseidon-controllers"][:4] == ["celery", "-A", "podseidon_site", "worker"]
    webhook_env = env_of(objects, webhook["spec"]["template"]["spec"]["containers"][0])
    assert webhook_env["PODSEIDON_ROLE"] == "webhook"
    assert "DATABASE_URL" not in webhook_env, "the webhook must not depend on the database"
    # Redis for the admission history the console draws (written off the review path), and a
    # NetworkPolicy that lets the webhook's pods reach it.
    assert webhook_env["REDIS_URL"] == "redis://podseidon-redis.podseidon.svc:6379/0"
    policy = one(objects, "NetworkPolicy", "podseidon-redis")
    peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]
    component = webhook["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert component in peer["matchExpressions"][0]["values"]
    for deployment in (web, controllers):
        env = env_of(objects, deployment["spec"]["template"]["spec"]["containers"][0])
        assert env["DATABASE_URL"] == "secret:podseidon-database/DATABASE_URL"
        assert env["REDIS_URL"] == "redis://podseidon-redis.podseidon.svc:6379/0"
    for _deployment, spec in pod_specs(objects):
        for container in containers(spec):
            if container["image"] == IMAGE:
                env = env_of(objects, container)
                assert env["DJANGO_SETTINGS_MODULE"] == "podseidon_site.settings.production"
                assert env["SECRET_KEY"] == "secret:podseidon-django/SECRET_KEY"

    pdb = one(objects, "PodDisruptionBudget", "podseidon-webhook")
    pod_labels = webhook["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for name in ("podseidon-web", "podseidon-webhook", "podseidon-redis"):
        service = one(objects, "Service", name)
        deployment = one(objects, "Deployment", name)
        assert service["spec"]["selector"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        ports = {
            p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_probed_and_sized(rendered: dict[str, Objects], overlay: str) -> None:
    probes = {
        "web": {"readinessProbe": "/healthz", "livenessProbe": "/healthz"},
        "webhook": {"readinessProbe": "/readyz", "livenessProbe": "/healthz"},
        "controllers": {"livenessProbe": "/metrics"},
    }
    for deployment, spec in pod_specs(rendered[overlay]):
        name = deployment["metadata"]["name"]
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True and pod_context["runAsUser"] > 0, name
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), where
            assert "memory" in container["resources"]["limits"], where
        main = spec["containers"][0]
        for probe, path in probes.get(main["name"], {}).items():
            assert main[probe]["httpGet"]["path"] == path, f"{name}: {probe}"
            # Django refuses a Host it does not know: probes name one ALLOWED_HOSTS lists.
            if main["name"] != "controllers":
                (host,) = main[probe]["httpGet"]["httpHeaders"]
                allowed = env_of(rendered[overlay], main)["ALLOWED_HOSTS"].split(",")
                assert host == {"name": "Host", "value": "localhost"} and "localhost" in allowed
        if main["name"] == "webhook":
            assert main["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        if main["name"] != "redis":
            assert main["image"] == IMAGE, "the overlay's image reaches every container"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_git(rendered: dict[str, Objects], overlay: str) -> None:
    for secret in find(rendered[overlay], "Secret"):
        # Only ServiceAccount token Secrets, which the cluster's token controller fills.
        assert secret["type"] == "kubernetes.io/service-account-token", secret["metadata"]
        assert "data" not in secret and "stringData" not in secret
    for _deployment, spec in pod_specs(rendered[overlay]):
        for container in containers(spec):
            for var in container.get("env", []):
                assert "value" in var or "secretKeyRef" in var["valueFrom"], var
                if "value" in var:
                    assert not any(s in var["name"] for s in ("KEY", "PASSWORD", "TOKEN")), var


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["single-cluster", "core-only"])
def test_config_validates_and_every_file_it_names_is_mounted(
    rendered: dict[str, Objects], overlay: str, tmp_path: Path
) -> None:
    objects = rendered[overlay]
    config = config_of(objects, tmp_path)
    (configmap,) = find(objects, "ConfigMap", "podseidon-config-")
    for deployment, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            if container["image"] != IMAGE:
                continue
            where = f"{deployment['metadata']['name']}/{container['name']}"
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            config_path = Path(env_of(objects, container)["PODSEIDON_CONFIG"])
            assert (
                mounts[str(config_path.parent)]["configMap"]["name"]
                == (configmap["metadata"]["name"])
            ), where
            if container not in spec["containers"]:
                continue  # migrations read the config, never a cluster
            files = [c.kubeconfig for c in (config.core, *config.cells) if c.kubeconfig]
            if container["name"] == "webhook":
                files += [config.webhook.tls.cert_file, config.webhook.tls.key_file]
            for file in files:
                assert str(Path(file).parent) in mounts, f"{where}: nothing mounted for {file}"
                assert "secret" in mounts[str(Path(file).parent)], f"{where}: {file}"


def test_each_component_reaches_the_cells_as_its_own_identity(
    rendered: dict[str, Objects],
) -> None:
    """core-only: same kubeconfig path in every process, a different Secret behind it."""
    secrets = {}
    for deployment, spec in pod_specs(rendered["core-only"]):
        for volume in spec.get("volumes", []):
            if volume["name"] == "kubeconfigs":
                secrets[deployment["metadata"]["name"]] = volume["secret"]["secretName"]
    assert secrets == {
        "podseidon-web": "podseidon-kubeconfigs-console",
        "podseidon-webhook": "podseidon-kubeconfigs-webhook",
        "podseidon-controllers": "podseidon-kubeconfigs-aggregator",
    }


# -- RBAC wiring ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_account_is_bound_to_its_components_roles(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    accounts = {o["metadata"]["name"] for o in find(objects, "ServiceAccount")}
    roles = {o["metadata"]["name"] for o in find(objects, "ClusterRole")}
    bound: dict[str, set[str]] = {a: set() for a in accounts}
    for binding in find(objects, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] in roles, binding["metadata"]["name"]
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE and subject["name"] in accounts, subject
            bound[subject["name"]].add(binding["roleRef"]["name"])
    assert bound == BOUND_ROLES[overlay]
    for deployment, spec in pod_specs(objects):
        account = spec.get("serviceAccountName")
        if deployment["metadata"]["name"] == "podseidon-redis":
            assert account is None and spec["automountServiceAccountToken"] is False
        else:
            assert account in accounts, deployment["metadata"]["name"]
    for secret in find(objects, "Secret"):
        annotation = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
        assert annotation in accounts


def variant(
    tmp_path: Path, overlay: str, add: tuple[str, ...] = (), drop: tuple[str, ...] = ()
) -> Path:
    """A copy of an overlay with components added or dropped, as deploy/README.md tells an
    operator to make one."""
    source = DEPLOY / "overlays" / overlay
    target = tmp_path / overlay
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_text(path.read_text())
    kustomization = yaml.safe_load((source / "kustomization.yaml").read_text())

    def moved(entry: str | Path) -> str:
        # kustomize wants relative paths: the same directory, seen from the copy.
        if isinstance(entry, str) and not entry.startswith(".."):
            return entry
        return os.path.relpath((source / entry).resolve(), target)

    kustomization["resources"] = [moved(r) for r in kustomization.get("resources", [])]
    components = [c for c in kustomization.get("components", []) if Path(c).name not in drop]
    components += [DEPLOY / "components" / c for c in add]
    kustomization["components"] = [moved(c) for c in components]
    (target / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return target


@pytest.mark.parametrize(
    ("overlay", "identity"),
    [("single-cluster", "podseidon-controllers"), ("worker-only", "podseidon-aggregator")],
)
def test_update_trigger_component_follows_the_aggregators_identity(
    tmp_path: Path, overlay: str, identity: str
) -> None:
    objects = render(variant(tmp_path, overlay, add=("update-trigger",)))
    binding = one(objects, "RoleBinding", "podseidon-update-trigger")
    assert binding["metadata"]["namespace"] == "default"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": identity, "namespace": NAMESPACE}
    ]
    role = one(objects, "Role", "podseidon-update-trigger")
    assert role["metadata"]["namespace"] == "default"
    assert {v for r in role["rules"] for v in r["verbs"]} == {"create", "patch"}


# -- webhook registration ---------------------------------------------------------------------


def webhookconfig_command(config_file: Path, cell: str, tmp_path: Path) -> dict[str, Any]:
    """What `manage.py webhookconfig --cell CELL` prints for this config."""
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "webhookconfig", "--cell", cell, "--ca-bundle", str(ca)],
        cwd=REPO,
        env={
            **os.environ,
            "PODSEIDON_CONFIG": str(config_file),
            "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.development",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize(
    ("overlay", "config_overlay", "cell"),
    [("single-cluster", "single-cluster", "default"), ("worker-only", "core-only", "cell-a")],
)
def test_registration_agrees_with_the_webhookconfig_command(
    rendered: dict[str, Objects], overlay: str, config_overlay: str, cell: str, tmp_path: Path
) -> None:
    config = config_of(rendered[config_overlay], tmp_path)
    expected = webhookconfig_command(tmp_path / "podseidon.yaml", cell, tmp_path)
    (actual,) = find(rendered[overlay], "ValidatingWebhookConfiguration")
    assert actual["metadata"]["name"] == expected["metadata"]["name"]
    (want,) = expected["webhooks"]
    (got,) = actual["webhooks"]
    for field in (
        "name",
        "rules",
        "matchPolicy",
        "sideEffects",
        "admissionReviewVersions",
        "objectSelector",
        "namespaceSelector",
        "failurePolicy",
        "timeoutSeconds",
    ):
        assert got[field] == want[field], field
    # The CA is the operator's to fill in (deploy/README.md).
    want["clientConfig"].pop("caBundle")
    assert got["clientConfig"] == want["clientConfig"]

    # kube-apiserver calls the webhook by a name the webhook's ALLOWED_HOSTS accepts.
    client_config = got["clientConfig"]
    if "service" in client_config:
        service = client_config["service"]
        host = f"{service['name']}.{service['namespace']}.svc"
        target = one(rendered[config_overlay], "Service", service["name"])
        assert service["port"] in {p["port"] for p in target["spec"]["ports"]}
    else:
        host = urlsplit(client_config["url"]).hostname
        assert config.webhook.url and urlsplit(config.webhook.url).hostname == host
    webhook = one(rendered[config_overlay], "Deployment", "podseidon-webhook")
    env = env_of(rendered[config_overlay], webhook["spec"]["template"]["spec"]["containers"][0])
    assert host in env["ALLOWED_HOSTS"].split(",")


def test_core_only_configures_every_cell_a_worker_overlay_can_name(
    rendered: dict[str, Objects], tmp_path: Path
) -> None:
    config = config_of(rendered["core-only"], tmp_path)
    (registration,) = find(rendered["worker-only"], "ValidatingWebhookConfiguration")
    cell = registration["webhooks"][0]["clientConfig"]["url"].rsplit("/", 1)[1]
    assert config.cell(cell) is not None


# -- Redis outside the installation -----------------------------------------------------------


def test_external_redis_replaces_the_bundled_one(tmp_path: Path) -> None:
    objects = render(variant(tmp_path, "core-only", add=("external-redis",), drop=("redis",)))
    assert not find(objects, "Deployment", "podseidon-redis")
    assert not find(objects, "Service", "podseidon-redis")
    assert not find(objects, "NetworkPolicy")
    # The webhook too: it writes the admission history (off its request path).
    for name in ("podseidon-web", "podseidon-controllers", "podseidon-webhook"):
        container = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert env_of(objects, container)["REDIS_URL"] == "secret:podseidon-redis/REDIS_URL"


# -- only kube-apiserver calls the webhook ----------------------------------------------------

CLIENT_CA_FILE = "/etc/podseidon/client-ca/ca.crt"


@pytest.mark.parametrize("overlay", ["single-cluster", "core-only"])
def test_webhook_client_ca_component_mounts_the_ca_and_keeps_the_probes(
    rendered: dict[str, Objects], overlay: str, tmp_path: Path
) -> None:
    """What deploy/components/webhook-client-ca tells the operator to do: add the component, set
    webhook.tls.client_ca_file to the mounted file. The config must then validate, the webhook
    alone must mount that Secret's ca.crt (and nothing else of it), and the HTTPS probes stay
    valid because /healthz and /readyz answer without a client certificate by default."""
    objects = render(variant(tmp_path, overlay, add=("webhook-client-ca",)))
    (configmap,) = find(objects, "ConfigMap", "podseidon-config-")
    data = yaml.safe_load(configmap["data"]["podseidon.yaml"])
    data["webhook"]["tls"]["client_ca_file"] = CLIENT_CA_FILE
    config = parse_config(data)
    assert config.webhook.tls.probes_without_client_cert
    for deployment, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            mount = mounts.get(str(Path(CLIENT_CA_FILE).parent))
            if deployment["metadata"]["name"] != "podseidon-webhook":
                assert mount is None, deployment["metadata"]["name"]
                continue
            assert mount is not None and mount["readOnly"]
            assert volumes[mount["name"]]["secret"] == {
                "secretName": "podseidon-webhook-client-ca",
                "items": [{"key": "ca.crt", "path": Path(CLIENT_CA_FILE).name}],
            }
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["path"] in ("/readyz", "/healthz")
    # Everything else is the overlay as it was.
    assert len(objects) == len(rendered[overlay])


@pytest.mark.parametrize(("overlay", "cell"), [("single-cluster", "default"), ("core-only", "")])
def test_apiserver_kubeconfig_names_the_registrations_host(
    rendered: dict[str, Objects], overlay: str, cell: str, tmp_path: Path
) -> None:
    """`webhookconfig --apiserver-kubeconfig` names the user kube-apiserver picks for the
    clientConfig the registration of this overlay's configuration holds."""
    from sandbox.admission_config import CredentialResolver

    config = config_of(rendered[overlay], tmp_path)
    cell = cell or config.cell_ids[0]
    registration = webhookconfig_command(tmp_path / "podseidon.yaml", cell, tmp_path)
    client_config = registration["webhooks"][0]["clientConfig"]
    if "service" in client_config:
        service = client_config["service"]
        target = f"{service['name']}.{service['namespace']}.svc:{service['port']}"
    else:
        parts = urlsplit(client_config["url"])
        target = f"{parts.hostname}:{parts.port or 443}"
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "webhookconfig",
            "--cell",
            cell,
            "--apiserver-kubeconfig",
            "--client-cert",
            "/etc/kubernetes/pki/podseidon-webhook-client.crt",
            "--client-key",
            "/etc/kubernetes/pki/podseidon-webhook-client.key",
        ],
        cwd=REPO,
        env={
            **os.environ,
            "PODSEIDON_CONFIG": str(tmp_path / "podseidon.yaml"),
            "DJANGO_SETTINGS_MODULE": "podseidon_site.settings.development",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    kubeconfig = tmp_path / "admission.kubeconfig"
    kubeconfig.write_text(result.stdout)
    (user,) = yaml.safe_load(result.stdout)["users"]
    assert user["user"] == {
        "client-certificate": "/etc/kubernetes/pki/podseidon-webhook-client.crt",
        "client-key": "/etc/kubernetes/pki/podseidon-webhook-client.key",
    }
    assert CredentialResolver.from_kubeconfig(kubeconfig).user_for(target) == user["name"]


# -- validation by kubectl --------------------------------------------------------------------


def manifest(objects: Objects) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.fixture(scope="module")
def install_namespaces(clusters: Clusters) -> Iterator[None]:
    """Namespace podseidon in the target clusters: a server-side dry run of a namespaced object
    needs its namespace to exist, on the sandbox as on kube-apiserver."""
    made = []
    for cluster in sorted(set(TARGET_CLUSTER.values())):
        tool = Kubectl(clusters, cluster)
        if tool.run("get", "namespace", NAMESPACE, check=False).returncode != 0:
            tool.run("create", "namespace", NAMESPACE)
            made.append(tool)
    yield
    for tool in made:
        tool.run("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubectl_client_dry_run(
    rendered: dict[str, Objects], overlay: str, clusters: Clusters
) -> None:
    kubectl()
    tool = Kubectl(clusters, TARGET_CLUSTER[overlay])
    result = tool.run("apply", "--dry-run=client", "-f", "-", stdin=manifest(rendered[overlay]))
    assert result.stdout.count("(dry run)") == len(rendered[overlay]), result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubectl_server_dry_run_stores_nothing(
    rendered: dict[str, Objects], overlay: str, clusters: Clusters, install_namespaces: None
) -> None:
    kubectl()
    tool = Kubectl(clusters, TARGET_CLUSTER[overlay])
    objects = [o for o in rendered[overlay] if o["kind"] != "Namespace"]
    before = tool.run(
        "get", "deployments,services,serviceaccounts,secrets", "-n", NAMESPACE, "-o", "name"
    )
    result = tool.run("apply", "--dry-run=server", "-f", "-", stdin=manifest(objects))
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout
    after = tool.run(
        "get", "deployments,services,serviceaccounts,secrets", "-n", NAMESPACE, "-o", "name"
    )
    assert after.stdout == before.stdout
    registrations = tool.run("get", "validatingwebhookconfigurations", "-o", "name").stdout
    assert "podseidon.kubewharf.io" not in registrations


def test_server_dry_run_of_an_upgrade_patches(
    rendered: dict[str, Objects], clusters: Clusters, install_namespaces: None
) -> None:
    """Apply the namespaced part for real, then dry-run the whole overlay again: kubectl now
    computes patches against what is stored, as on an upgrade."""
    # It creates the product's Deployments, which a real cluster would go on to run.
    clusters.require_sandbox("a cluster without a kubelet (the sandbox fixture runs none)")
    tool = Kubectl(clusters, "core")
    objects = rendered["single-cluster"]
    namespaced = [o for o in objects if o["metadata"].get("namespace") == NAMESPACE]
    tool.run("apply", "-f", "-", stdin=manifest(namespaced))
    try:
        changed = manifest(objects).replace("replicas: 2", "replicas: 4")
        result = tool.run("apply", "--dry-run=server", "-f", "-", stdin=changed)
        assert "deployment.apps/podseidon-web configured (server dry run)" in result.stdout
        assert "service/podseidon-webhook unchanged (server dry run)" in result.stdout
        stored = tool.run("get", "deployment", "podseidon-web", "-n", NAMESPACE, "-o", "yaml")
        assert yaml.safe_load(stored.stdout)["spec"]["replicas"] == 2
    finally:
        tool.run("delete", "-f", "-", "--wait=false", stdin=manifest(namespaced), check=False)


def test_server_dry_run_reports_an_invalid_manifest(
    rendered: dict[str, Objects], clusters: Clusters, install_namespaces: None
) -> None:
    tool = Kubectl(clusters, "core")
    webhook = one(rendered["single-cluster"], "Deployment", "podseidon-webhook")
    container = webhook["spec"]["template"]["spec"]["containers"][0]
    broken = {
        **webhook,
        "spec": {
            **webhook["spec"],
            "template": {
                **webhook["spec"]["template"],
                "spec": {
                    **webhook["spec"]["template"]["spec"],
                    "containers": [{**container, "readinesProbe": container["readinessProbe"]}],
                },
            },
        },
    }
    result = tool.run("apply", "--dry-run=server", "-f", "-", stdin=manifest([broken]), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].readinesProbe"' in result.stderr
