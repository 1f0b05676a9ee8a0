"""How the sandbox apiserver authenticates itself to webhooks, as `kube-apiserver
--admission-control-config-file FILE` does.

FILE is an AdmissionConfiguration (`apiserver.config.k8s.io/v1`, or the older
`apiserver.k8s.io/v1alpha1`). Its `plugins` entry named `ValidatingAdmissionWebhook` carries,
inline under `configuration` or in the file named by `path` (relative to FILE), a
WebhookAdmissionConfiguration (`apiserver.config.k8s.io/v1`; `WebhookAdmission` in v1alpha1)
whose `kubeConfigFile` (an absolute path) is a kubeconfig. The other plugins' entries are
accepted and ignored.

For each call, the apiserver looks up that kubeconfig's `users` by the webhook it calls, with
the target written `host:port` (a `url` without a port counts as port 443; a `service` is
`NAME.NAMESPACE.svc:PORT`), in this order:

1. the exact target, e.g. `podseidon-webhook.example.com:8843`;
2. `*.` followed by the target without its first, then its first two, ... dot-separated labels
   (`*.podseidon.svc:443`, `*.svc:443`);
3. for port 443 only, steps 1 and 2 again without the port (`podseidon-webhook.podseidon.svc`,
   `*.podseidon.svc`);
4. the user named `*`;
5. the user of the kubeconfig's current context;

and calls without credentials when none matches. A user may hold `client-certificate` /
`client-key` (files; relative paths are relative to the kubeconfig) or their `-data` forms
(base64 PEM), `token` / `tokenFile`, `username` / `password`. `exec` and `auth-provider` users
are refused here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VALIDATING_PLUGIN = "ValidatingAdmissionWebhook"
ADMISSION_CONFIGURATION_VERSIONS = ("apiserver.config.k8s.io/v1", "apiserver.k8s.io/v1alpha1")
WEBHOOK_CONFIGURATION_KINDS = {
    "apiserver.config.k8s.io/v1": ("WebhookAdmissionConfiguration", "WebhookAdmission"),
    "apiserver.config.k8s.io/v1alpha1": ("WebhookAdmission",),
}
DEFAULT_HTTPS_PORT = "443"


class AdmissionConfigError(ValueError):
    """The admission configuration cannot be used; the apiserver would not start."""


class CredentialError(Exception):
    """A matched user's credentials cannot be loaded (unreadable file, bad base64, ...)."""


@dataclass(frozen=True)
class Credentials:
    """What the apiserver presents to one webhook: a client certificate and/or a header."""

    user: str  # the kubeconfig user it came from, for messages
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _User:
    name: str
    fields: Mapping[str, Any]
    base: Path  # the kubeconfig's directory: relative file paths start here


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CredentialError(f"open {path}: {error.strerror or error}") from None


def _data(value: Any, key: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError(f"{key}: illegal base64 data") from None


def _credentials(user: _User) -> Credentials:
    """The user's credentials, files read now (client-go's restConfigFromKubeconfig)."""
    f = user.fields

    def pem(data_key: str, file_key: str) -> bytes | None:
        if f.get(data_key):
            return _data(f[data_key], data_key)
        if f.get(file_key):
            return _read(user.base / str(f[file_key]))
        return None

    cert, key = pem("client-certificate-data", "client-certificate"), None
    if cert is not None:
        key = pem("client-key-data", "client-key")
        if key is None:
            raise CredentialError("tls: client certificate given without a client key")
    authorization = None
    if f.get("token"):
        authorization = f"Bearer {f['token']}"
    elif f.get("tokenFile"):
        token = _read(user.base / str(f["tokenFile"])).decode().strip()
        authorization = f"Bearer {token}"
    if f.get("username") or f.get("password"):
        pair = f"{f.get('username') or ''}:{f.get('password') or ''}".encode()
        authorization = f"Basic {base64.b64encode(pair).decode()}"
    return Credentials(user.name, cert, key, authorization)


class CredentialResolver:
    """The users of one admission kubeconfig, looked up per webhook (module docstring)."""

    def __init__(self, users: Mapping[str, _User], current_user: str | None) -> None:
        self._users = dict(users)
        self._current_user = current_user
        self._cache: dict[str, Credentials | None] = {}

    @classmethod
    def empty(cls) -> CredentialResolver:
        return cls({}, None)

    @classmethod
    def from_kubeconfig(cls, path: Path) -> CredentialResolver:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise AdmissionConfigError(
                f"kubeConfigFile: open {path}: {error.strerror or error}"
            ) from None
        except yaml.YAMLError as error:
            raise AdmissionConfigError(f"kubeConfigFile {path}: invalid YAML: {error}") from None
        if not isinstance(data, dict):
            raise AdmissionConfigError(f"kubeConfigFile {path}: not a kubeconfig")
        users: dict[str, _User] = {}
        for entry in data.get("users") or []:
            if not isinstance(entry, dict) or not entry.get("name"):
                continue
            fields = entry.get("user") or {}
            if not isinstance(fields, dict):
                raise AdmissionConfigError(f"kubeConfigFile {path}: user {entry['name']!r}")
            for unsupported in ("exec", "auth-provider"):
                if fields.get(unsupported):
                    raise AdmissionConfigError(
                        f"kubeConfigFile {path}: user {entry['name']!r}: {unsupported} "
                        "credentials are not supported by the sandbox"
                    )
            users[str(entry["name"])] = _User(str(entry["name"]), fields, path.parent)
        current_user = None
        current = data.get("current-context")
        for context in data.get("contexts") or []:
            if isinstance(context, dict) and current and context.get("name") == current:
                current_user = str((context.get("context") or {}).get("user") or "") or None
        return cls(users, current_user)

    # -- lookups ---------------------------------------------------------------------------

    def for_url(self, host_port: str) -> Credentials | None:
        """For a `clientConfig.url` webhook; `host_port` is the URL's host and port, the port
        443 when the URL names none."""
        return self._cached(host_port)

    def for_service(self, name: str, namespace: str, port: int) -> Credentials | None:
        return self._cached(f"{name}.{namespace}.svc:{port}")

    def _cached(self, target: str) -> Credentials | None:
        if target not in self._cache:
            user = self.match(target)
            # Files are read once per target, as the apiserver builds one client per webhook.
            self._cache[target] = _credentials(user) if user is not None else None
        return self._cache[target]

    def user_for(self, target: str) -> str | None:
        """The name of the users entry `target` (`host:port`) resolves to, if any."""
        user = self.match(target)
        return user.name if user is not None else None

    def match(self, target: str) -> _User | None:
        found = self._exact_or_star(target)
        if found is not None:
            return found
        host, sep, port = target.rpartition(":")
        if sep and port == DEFAULT_HTTPS_PORT and host:
            found = self._exact_or_star(host)
            if found is not None:
                return found
        if "*" in self._users:
            return self._users["*"]
        if self._current_user and self._current_user in self._users:
            return self._users[self._current_user]
        return None

    def _exact_or_star(self, name: str) -> _User | None:
        if name in self._users:
            return self._users[name]
        labels = name.split(".")
        for i in range(1, len(labels)):
            wildcard = "*." + ".".join(labels[i:])
            if wildcard in self._users:
                return self._users[wildcard]
        return None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise AdmissionConfigError(f"{where}: expected a mapping")
    return value


def _webhook_configuration(plugin: Mapping[str, Any], config_dir: Path) -> Mapping[str, Any]:
    if plugin.get("configuration") is not None:
        return _mapping(plugin["configuration"], f"plugin {VALIDATING_PLUGIN}: configuration")
    if plugin.get("path"):
        path = Path(str(plugin["path"]))
        path = path if path.is_absolute() else config_dir / path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise AdmissionConfigError(
                f"plugin {VALIDATING_PLUGIN}: path {path}: {getattr(error, 'strerror', error)}"
            ) from None
        return _mapping(data, f"plugin {VALIDATING_PLUGIN}: {path}")
    return {}


def load_admission_config(path: Path) -> CredentialResolver:
    """The credentials the ValidatingAdmissionWebhook plugin of this AdmissionConfiguration
    presents to webhooks. Raises AdmissionConfigError (one line) when the file is unusable."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AdmissionConfigError(f"open {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise AdmissionConfigError(f"{path}: invalid YAML: {error}") from None
    data = _mapping(data, str(path))
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if kind != "AdmissionConfiguration" or api_version not in ADMISSION_CONFIGURATION_VERSIONS:
        raise AdmissionConfigError(
            f"{path}: expected kind AdmissionConfiguration of "
            f"{' or '.join(ADMISSION_CONFIGURATION_VERSIONS)}, got {kind} {api_version}"
        )
    plugins = [p for p in data.get("plugins") or [] if isinstance(p, dict)]
    plugin = next((p for p in plugins if p.get("name") == VALIDATING_PLUGIN), None)
    if plugin is None:
        return CredentialResolver.empty()
    config = _webhook_configuration(plugin, path.parent)
    if not config:
        return CredentialResolver.empty()
    api_version, kind = config.get("apiVersion"), config.get("kind")
    if kind not in WEBHOOK_CONFIGURATION_KINDS.get(str(api_version), ()):
        raise AdmissionConfigError(
            f"plugin {VALIDATING_PLUGIN}: unexpected configuration kind {kind} {api_version}"
        )
    kubeconfig = str(config.get("kubeConfigFile") or "")
    if not kubeconfig:
        return CredentialResolver.empty()
    if not Path(kubeconfig).is_absolute():
        raise AdmissionConfigError(
            f'kubeConfigFile: Invalid value: "{kubeconfig}": must be an absolute file path'
        )
    return CredentialResolver.from_kubeconfig(Path(kubeconfig))


__all__ = [
    "AdmissionConfigError",
    "CredentialError",
    "CredentialResolver",
    "Credentials",
    "load_admission_config",
]
