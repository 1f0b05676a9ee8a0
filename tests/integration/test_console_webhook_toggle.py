"""The console's webhook switch against the real webhook: sandbox core + cell-a + cell-b, our
webhook under gunicorn registered in both cells (``manage.py webhookconfig --apply``), one
PodProtector at its minimum.

Disabling the webhook in cell-a through the REST API lets a deletion in cell-a through while the
same kind of deletion in cell-b is still refused; re-enabling brings the protection back in
cell-a with exactly the objectSelector the registration had. The overview's recent rejections
come from the same webhook's metrics port.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from podseidon_site.config import parse_config
from protectors.clusters import recorder_for
from webhook import rejections
from webhook.services import NEVER_MATCHING_SELECTOR, SAVED_ANNOTATION

# The running webhook and its namespaces, and the console wired to the same clusters, are the
# fixtures of the webhook protection tests and of the console action tests.
from .conftest import REPO, kubectl_path
from .test_console_actions import namespace, site  # noqa: F401
from .test_webhook_protection import _delete, _setup, env, ns  # noqa: F401
from .webhook_env import WebhookEnv

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

REFUSED = (409, 429)
CONFIG_NAME = "podseidon.kubewharf.io"


def _registration(world: WebhookEnv, cell: str) -> dict:
    api = world.clusters.api(cell)
    registration = k8s.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(
        CONFIG_NAME
    )
    return api.sanitize_for_serialization(registration)


def _selectors(registration: dict) -> list[Any]:
    return [w.get("objectSelector") for w in registration["webhooks"]]


@pytest.fixture
def console(site, env: WebhookEnv, settings) -> dict[str, Any]:  # noqa: F811
    """The console of the `site` fixture, also scraping the webhook's metrics port."""
    metrics_url = f"http://127.0.0.1:{env.webhook.metrics_port}/metrics"
    settings.PODSEIDON = parse_config(
        {
            **settings.PODSEIDON.model_dump(exclude={"console"}),
            "console": {"webhook_metrics_urls": [metrics_url], "metrics_timeout_seconds": 2},
        }
    )
    yield site
    rejections.stop_scraper()


def test_disable_in_cell_a_only_then_reenable_with_the_original_selector(
    env: WebhookEnv,  # noqa: F811
    ns: str,  # noqa: F811
    console: dict[str, Any],
) -> None:
    api = console["api"]
    _setup(env, ns, {"cell-a": 3, "cell-b": 3}, min_available=6)  # at its minimum
    original = {cell: _registration(env, cell) for cell in ("cell-a", "cell-b")}

    # Protected everywhere to begin with.
    assert _delete(env, "cell-a", ns, "cell-a-0")[0] in REFUSED
    assert _delete(env, "cell-b", ns, "cell-b-0")[0] in REFUSED

    response = api.post("/api/v1/webhook/cell-a/disable/", {"reason": "webhook outage drill"})
    assert response.status_code == 200, response.content
    assert response.json()["result"]["changed"] is True
    disabled = _registration(env, "cell-a")
    assert _selectors(disabled) == [NEVER_MATCHING_SELECTOR] * len(disabled["webhooks"])
    assert SAVED_ANNOTATION in disabled["metadata"]["annotations"]
    states = {s["cell"]: s["state"] for s in api.get("/api/v1/webhook/").json()["cells"]}
    assert states == {"cell-a": "disabled-by-console", "cell-b": "enabled"}

    # cell-a: the API server no longer asks the webhook; cell-b still does and still refuses.
    assert _delete(env, "cell-a", ns, "cell-a-0") == (200, "")
    code, message = _delete(env, "cell-b", ns, "cell-b-0")
    assert code in REFUSED and f"PodProtector {ns}/protector" in message
    k8s.CoreV1Api(env.clusters.api("cell-b")).read_namespaced_pod("cell-b-0", ns)

    response = api.post("/api/v1/webhook/cell-a/enable/", {"reason": "drill over"})
    assert response.status_code == 200, response.content
    restored = _registration(env, "cell-a")
    assert _selectors(restored) == _selectors(original["cell-a"])
    assert restored["webhooks"] == original["cell-a"]["webhooks"]
    assert SAVED_ANNOTATION not in (restored["metadata"].get("annotations") or {})
    assert _registration(env, "cell-b")["webhooks"] == original["cell-b"]["webhooks"]

    # Protection is back in cell-a.
    code, message = _delete(env, "cell-a", ns, "cell-a-1")
    assert code in REFUSED and f"PodProtector {ns}/protector" in message
    k8s.CoreV1Api(env.clusters.api("cell-a")).read_namespaced_pod("cell-a-1", ns)

    audit = api.get("/api/v1/audit/", {"target": "webhook/cell-a"}).json()["results"]
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("webhook-enable", "succeeded"),
        ("webhook-disable", "succeeded"),
    ]

    # The overview counts the refusals from the webhook's own metrics: in cell-a one before
    # disabling and one after re-enabling, in cell-b one before and one while cell-a was off.
    def seen() -> dict | None:
        body = api.get("/api/v1/overview/").json()["rejections"]
        since = body["since_start"]
        return body if since.get("cell-a") == 2 and since.get("cell-b") == 2 else None

    deadline = time.monotonic() + 20
    while (body := seen()) is None:
        assert time.monotonic() < deadline, api.get("/api/v1/overview/").json()["rejections"]
        rejections._scraper.history.scrape()  # the next tick, now
    assert body["complete"] is True and body["sources"][0]["up"] is True


def runbook_disable_command(kubeconfig: str) -> list[str]:
    """The runbook's kubectl disable (docs/operations.md, "Webhook unreachable") verbatim, with
    the context of cell-a replaced by the test cluster's kubeconfig."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    match = re.search(
        r"^ *(kubectl --context cell-a patch validatingwebhookconfiguration "
        r"podseidon\.kubewharf\.io --type=json \\\n *-p '[^'\n]*not-match-anything[^'\n]*')$",
        text,
        re.MULTILINE,
    )
    assert match, "the runbook's kubectl disable command is gone from docs/operations.md"
    words = shlex.split(match.group(1).replace("\\\n", " "))
    at = words.index("--context")
    words[at : at + 2] = ["--kubeconfig", kubeconfig]
    return [kubectl_path() or "kubectl", *words[1:]]


@pytest.mark.skipif(kubectl_path() is None, reason="kubectl is not on PATH")
def test_restore_from_configuration_after_the_runbooks_kubectl_disable(
    env: WebhookEnv,  # noqa: F811
    ns: str,  # noqa: F811
    site,  # noqa: F811
    settings,
) -> None:
    # The console's configuration renders what `webhookconfig` registered for the running
    # webhook: its URL and the CA it serves with (webhook.ca_bundle_file).
    served = yaml.safe_load(Path(env.webhook.env["PODSEIDON_CONFIG"]).read_text())
    settings.PODSEIDON = parse_config(
        {
            **settings.PODSEIDON.model_dump(exclude={"webhook"}),
            "webhook": {
                **served["webhook"],
                "url": env.webhook.url,
                "ca_bundle_file": str(env.webhook.ca_file),
            },
        }
    )
    api = site["api"]
    _setup(env, ns, {"cell-a": 3, "cell-b": 3}, min_available=6)  # at its minimum
    original = _registration(env, "cell-a")
    assert _delete(env, "cell-a", ns, "cell-a-0")[0] in REFUSED

    subprocess.run(
        runbook_disable_command(str(env.clusters.kubeconfigs["cell-a"])),
        check=True,
        capture_output=True,
        timeout=60,
    )
    states = {s["cell"]: s["state"] for s in api.get("/api/v1/webhook/").json()["cells"]}
    assert states["cell-a"] == "disabled-by-someone-else"
    assert _delete(env, "cell-a", ns, "cell-a-0") == (200, "")  # unguarded now
    # A plain re-enable has nothing saved to restore exactly.
    refused = api.post("/api/v1/webhook/cell-a/enable/", {"reason": "try"})
    assert refused.status_code == 409
    assert "Restore from configuration" in refused.json()["error"]["message"]

    response = api.post("/api/v1/webhook/cell-a/restore/", {"reason": "incident over"})
    assert response.status_code == 200, response.content
    restored = _registration(env, "cell-a")
    assert _selectors(restored) == _selectors(original)
    assert restored["webhooks"] == original["webhooks"]  # caBundle, URL, policy included
    states = {s["cell"]: s["state"] for s in api.get("/api/v1/webhook/").json()["cells"]}
    assert states["cell-a"] == "enabled"

    # Protection is back: the deletion is denied again.
    code, message = _delete(env, "cell-a", ns, "cell-a-1")
    assert code in REFUSED and f"PodProtector {ns}/protector" in message
    k8s.CoreV1Api(env.clusters.api("cell-a")).read_namespaced_pod("cell-a-1", ns)

    audit = api.get("/api/v1/audit/", {"target": "webhook/cell-a"}).json()["results"]
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("webhook-restore", "succeeded"),
        ("webhook-enable", "failed"),
    ]
    previous = audit[0]["result"]["previous"]["object_selectors"]
    assert previous == {CONFIG_NAME: NEVER_MATCHING_SELECTOR}

    # kubectl describe in the cell tells the same story.
    assert recorder_for("cell-a").flush(5)
    described = subprocess.run(
        [
            kubectl_path() or "kubectl",
            "--kubeconfig",
            str(env.clusters.kubeconfigs["cell-a"]),
            "describe",
            "validatingwebhookconfiguration",
            CONFIG_NAME,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "WebhookRestored" in described and "Restored from the configuration" in described
