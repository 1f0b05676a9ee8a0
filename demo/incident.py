"""`make demo-incident`: an incident played against a running `make demo`, in three acts.

    .venv/bin/python -m demo.incident [--root var/demo] [--pause 3]

1. Someone deletes the `web` and `batch` Deployments in cell-a by mistake. The garbage
   collector deletes their pods: `batch`'s go, `web`'s stop at its minimum because the webhook
   denies the rest. Re-creating the Deployment brings new pods, and only once they are
   available does the webhook let the old ones go.
2. cell-b's control plane fails. The operator pauses cell-b's aggregator and removes cell-b from
   every PodProtector (what the console's Cells page does); when cell-b is back, resuming the
   aggregator counts its pods again.
3. The webhook is disabled in cell-a (a deletion it would deny now passes) and re-enabled with
   exactly its previous selector.

Every step checks what it expects and stops with a clear message if the product does something
else, so the same script is the demo's end-to-end test. Actions go through the REST API with the
demo admin's token and land in the audit log, as if clicked in the console.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from demo.layout import DEFAULT_ROOT, NAMESPACE, Layout
from demo.workloads import api_client, for_cell, load_workloads

GROUP, VERSION, PLURAL = "podseidon.kubewharf.io", "v1alpha1", "podprotectors"


class IncidentFailed(RuntimeError):
    """The product did not do what the story expects."""


class Story:
    def __init__(self, layout: Layout, pause: float) -> None:
        self.layout = layout
        self.pause = pause
        self.token = layout.api_token()
        self.core = api_client(layout.kubeconfig("core"))
        self.cell_a = api_client(layout.kubeconfig("cell-a"))

    # --- narration and waiting ----------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, flush=True)

    def act(self, title: str) -> None:
        time.sleep(self.pause)
        self.say(f"\n=== {title} ===")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise IncidentFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)

    # --- the clusters and the API -------------------------------------------------------------

    def pods(self, app: str) -> list[k8s.V1Pod]:
        return (
            k8s.CoreV1Api(self.cell_a)
            .list_namespaced_pod(NAMESPACE, label_selector=f"app={app}")
            .items
        )

    def protector(self, name: str) -> dict[str, Any]:
        return k8s.CustomObjectsApi(self.core).get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name
        )

    def protectors(self) -> list[dict[str, Any]]:
        return k8s.CustomObjectsApi(self.core).list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL
        )["items"]

    def table(self) -> None:
        self.say(f"  {'PodProtector':<20} {'min':>4} {'aggregated':>10} {'estimated':>9}  cells")
        for p in sorted(self.protectors(), key=lambda p: p["metadata"]["name"]):
            summary = p.get("status", {}).get("summary", {})
            cells = ",".join(c["cellID"] for c in p.get("status", {}).get("cells", []))
            self.say(
                f"  {p['metadata']['name']:<20} {p['spec']['minAvailable']:>4} "
                f"{summary.get('aggregatedAvailableReplicas', 0):>10} "
                f"{summary.get('estimatedAvailableReplicas', 0):>9}  {cells}"
            )

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.layout.console_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise IncidentFailed(
                f"{method} {path} answered {error.code}: {error.read().decode(errors='replace')}"
            ) from None

    def delete_pod(self, name: str) -> tuple[bool, str]:
        try:
            k8s.CoreV1Api(self.cell_a).delete_namespaced_pod(name, NAMESPACE)
            return True, "deleted"
        except k8s.ApiException as error:
            return False, json.loads(error.body).get("message", error.reason)

    # --- act 1 --------------------------------------------------------------------------------

    def mistaken_delete(self) -> None:
        self.act("Act 1: a mistaken `kubectl delete deployment` in cell-a")
        self.table()
        apps = k8s.AppsV1Api(self.cell_a)
        web_before = {p.metadata.name for p in self.pods("web")}
        web = self.protector("deployment-web")
        summary = web["status"]["summary"]
        allowed = summary["aggregatedAvailableReplicas"] - web["spec"]["minAvailable"]
        self.say(
            f"web runs {summary['aggregatedAvailableReplicas']} available pods across both cells "
            f"and must keep {web['spec']['minAvailable']}: at most {allowed} may go.\n"
            f"$ kubectl -n {NAMESPACE} delete deployment web batch      # in cell-a"
        )
        for name in ("web", "batch"):
            apps.delete_namespaced_deployment(name, NAMESPACE)
        self.wait_for("batch's pods to go", lambda: not self.pods("batch"), 60)
        self.say("batch (unprotected): every pod deleted by the garbage collector.")
        expected = len(web_before) - allowed
        self.wait_for(
            f"the garbage collector to take web down to {expected} pods in cell-a",
            lambda: len(self.pods("web")) <= expected,
            60,
        )
        # The collector keeps retrying with backoff; the webhook keeps denying.
        for _ in range(8):
            time.sleep(1)
            left = len(self.pods("web"))
            if left < expected:
                raise IncidentFailed(f"web went below its minimum: {left} pods left in cell-a")
        survivors = [p.metadata.name for p in self.pods("web")]
        self.say(
            f"web (protected): {len(survivors)} of {len(web_before)} pods survive the garbage "
            f"collector's retries in cell-a: {', '.join(survivors)}"
        )
        ok, message = self.delete_pod(survivors[0])
        if ok:
            raise IncidentFailed(f"deleting {survivors[0]} by hand was allowed")
        self.say(f"$ kubectl -n {NAMESPACE} delete pod {survivors[0]}\n  denied: {message}")

        self.say("\nThe fix: re-create the Deployments in cell-a.")
        originals = {w["metadata"]["name"]: w for w in load_workloads()}
        for name in ("web", "batch"):
            apps.create_namespaced_deployment(NAMESPACE, for_cell(originals[name], "cell-a"))

        def replaced() -> bool:
            names = {p.metadata.name for p in self.pods("web")}
            return not (names & web_before) and len(names) == len(web_before)

        self.wait_for("the old web pods to be replaced by available new ones", replaced, 90)
        self.say(
            "New web pods became available first; only then did the webhook admit the garbage "
            "collector's retries, so web never dropped below its minimum."
        )
        self.table()

    # --- act 2 --------------------------------------------------------------------------------

    def signal_demo(self, signum: int) -> None:
        try:
            os.kill(self.layout.supervisor_pid, signum)
        except ProcessLookupError:
            raise IncidentFailed("the demo is not running any more") from None

    def cell_reachable(self, cell: str) -> bool:
        cells = self.api("GET", "/api/v1/overview/")["cells"]
        return next(c for c in cells if c["id"] == cell)["reachability"]["reachable"]

    def cell_failure(self) -> None:
        self.act("Act 2: cell-b's control plane fails")
        self.signal_demo(signal.SIGUSR1)
        self.wait_for(
            "the console to report cell-b unreachable", lambda: not self.cell_reachable("cell-b")
        )
        self.say(
            "The console's overview shows cell-b unreachable. Its pods' last counts still sit in "
            "every PodProtector, and nobody can confirm them."
        )
        reason = "demo: cell-b control plane lost"
        started = self.api(
            "POST",
            "/api/v1/cells/cell-b/remove-from-protectors/",
            {"reason": reason, "pause_aggregator": True},
        )
        self.say(
            "Cells > cell-b > Remove this cell from all PodProtectors  (typed: cell-b; ticked: "
            "pause the aggregator first, so it cannot write stale counts back)"
        )
        operation = self.finish(started)
        result = operation["result"]
        self.say(
            f"  operation {operation['id']}: {operation['state']}, {result['annotated']} "
            f"PodProtectors annotated, cell-b removed from {result['removed']}, "
            f"{result['pending']} still pending"
        )
        # The operation ends succeeded only once no status holds cell-b: check the cluster too.
        self.wait_for(
            "the generator to drop cell-b from every PodProtector",
            lambda: all(
                "cell-b" not in {c["cellID"] for c in p.get("status", {}).get("cells", [])}
                for p in self.protectors()
            ),
        )
        self.say("cell-b's pods no longer count anywhere; protection now rests on cell-a alone:")
        self.table()

        self.say("\ncell-b's control plane is back.")
        self.signal_demo(signal.SIGUSR2)
        self.wait_for("cell-b to answer again", lambda: self.cell_reachable("cell-b"))
        self.api("POST", "/api/v1/cells/cell-b/aggregator/resume/", {"reason": "cell-b recovered"})
        self.say("Cells > cell-b > Resume aggregator")
        self.wait_for(
            "cell-b's pods to be counted again",
            lambda: all(
                "cell-b" in {c["cellID"] for c in p.get("status", {}).get("cells", [])}
                for p in self.protectors()
            ),
            90,
        )
        self.table()

    def finish(self, started: dict[str, Any]) -> dict[str, Any]:
        path = "/api/v1/operations/{}/".format(started["operation_id"])
        self.wait_for(
            "the removal to finish", lambda: self.api("GET", path)["state"] != "running", 120
        )
        operation = self.api("GET", path)
        if operation["state"] != "succeeded":
            raise IncidentFailed(f"removing cell-b ended {operation['state']}: {operation}")
        return operation

    # --- act 3 --------------------------------------------------------------------------------

    def webhook_toggle(self) -> None:
        self.act("Act 3: disable the webhook in cell-a, then re-enable it")
        admission = k8s.AdmissionregistrationV1Api(self.cell_a)
        selector = (
            admission.read_validating_webhook_configuration("podseidon.kubewharf.io")
            .webhooks[0]
            .object_selector
        )
        pod = self.pods("cache")[0].metadata.name
        ok, message = self.delete_pod(pod)
        if ok:
            raise IncidentFailed(f"deleting {pod} was allowed while cache is at its minimum")
        self.say(f"$ kubectl -n {NAMESPACE} delete pod {pod}\n  denied: {message}")

        self.api("POST", "/api/v1/webhook/cell-a/disable/", {"reason": "demo: webhook suspect"})
        self.say("Webhook > cell-a > Disable webhook")
        ok, message = self.delete_pod(pod)
        if not ok:
            raise IncidentFailed(f"deleting {pod} was denied with the webhook disabled: {message}")
        self.say(f"$ kubectl -n {NAMESPACE} delete pod {pod}\n  deleted: nothing guards cell-a now")

        self.api("POST", "/api/v1/webhook/cell-a/enable/", {"reason": "demo: webhook fine"})
        self.say("Webhook > cell-a > Re-enable")
        restored = (
            admission.read_validating_webhook_configuration("podseidon.kubewharf.io")
            .webhooks[0]
            .object_selector
        )
        if restored != selector:
            raise IncidentFailed(f"objectSelector not restored: {restored} != {selector}")

        def denied_again() -> bool:
            # The replacement pod must be counted before cache is back at its minimum.
            pods = [p for p in self.pods("cache") if not p.metadata.deletion_timestamp]
            return bool(pods) and not self.delete_pod(pods[0].metadata.name)[0]

        self.wait_for("protection to be back in cell-a", denied_again, 60)
        self.say("Protection is back, with exactly the objectSelector it had before.")

        # The runbook's kubectl form, by someone who then goes home: nothing saved to re-enable.
        admission.patch_validating_webhook_configuration(
            "podseidon.kubewharf.io",
            [
                {
                    "op": "add",
                    "path": "/webhooks/0/objectSelector",
                    "value": {"matchLabels": {"this-selector-does": "not-match-anything"}},
                }
            ],
        )
        self.say(
            "\n$ kubectl --context cell-a patch validatingwebhookconfiguration "
            "podseidon.kubewharf.io --type=json -p '[...not-match-anything...]'"
        )
        states = {c["cell"]: c["state"] for c in self.api("GET", "/api/v1/webhook/")["cells"]}
        self.say(f"  the console shows cell-a {states['cell-a']}")
        self.api("POST", "/api/v1/webhook/cell-a/restore/", {"reason": "demo: back to configured"})
        self.say("Webhook > cell-a > Restore from configuration")
        self.wait_for("protection to be back in cell-a", denied_again, 60)
        self.say("Protection is back, re-registered as the configuration renders it.")

    def play(self) -> None:
        self.say(f"Follow along in the console: {self.layout.console_url}/")
        self.mistaken_delete()
        self.cell_failure()
        self.webhook_toggle()
        self.say(f"\nThe end. Every action is in the audit log: {self.layout.console_url}/audit/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the demo's directory")
    parser.add_argument("--pause", type=float, default=3, help="seconds between acts")
    args = parser.parse_args(argv)
    story = Story(Layout.load(args.root.resolve()), args.pause)
    try:
        story.play()
    except IncidentFailed as error:
        print(f"\nincident: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
