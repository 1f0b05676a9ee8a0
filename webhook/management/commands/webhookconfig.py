"""``manage.py webhookconfig --cell ID [--apply]``: render or apply the webhook registration;
``--apiserver-kubeconfig --client-cert FILE --client-key FILE``: render the kubeconfig that makes
the cell's kube-apiserver present a client certificate to the webhook (docs/operations.md)."""

from __future__ import annotations

import sys

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from podseidon_site.config import PodseidonConfig
from protectors.constants import WEBHOOK_CONFIG_NAME
from protectors.kube.client import VALIDATING_WEBHOOKS, KubeClient, KubeError
from webhook.registration import (
    configured_ca_bundle,
    render_admission_kubeconfig,
    render_webhook_configuration,
)


class Command(BaseCommand):
    help = (
        "Render the ValidatingWebhookConfiguration for one cell as YAML; with --apply, create "
        "or replace it in that cell's cluster."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cell", required=True, help="Cell ID from the config.")
        parser.add_argument("--apply", action="store_true", help="Write it to the cell's cluster.")
        parser.add_argument("--url", help="Base URL kube-apiserver calls (overrides the config).")
        parser.add_argument(
            "--ca-bundle",
            help="PEM file of the CA that signed the webhook's certificate (default: "
            "webhook.ca_bundle_file, else webhook.tls.cert_file, fine for a self-signed one).",
        )
        parser.add_argument(
            "--apiserver-kubeconfig",
            action="store_true",
            help="Instead of the registration, print the kubeconfig for kube-apiserver's "
            "AdmissionConfiguration (kubeConfigFile): a user named after this webhook's "
            "host:port presenting --client-cert and --client-key.",
        )
        parser.add_argument(
            "--client-cert",
            help="With --apiserver-kubeconfig: path, on the apiserver's host, of the client "
            "certificate signed by webhook.tls.client_ca_file.",
        )
        parser.add_argument(
            "--client-key", help="With --apiserver-kubeconfig: path of its private key."
        )

    def handle(
        self,
        *args,
        cell: str,
        apply: bool,
        url: str | None,
        ca_bundle: str | None,
        apiserver_kubeconfig: bool = False,
        client_cert: str | None = None,
        client_key: str | None = None,
        **_,
    ):
        config = settings.PODSEIDON
        if config.cell(cell) is None:
            raise CommandError(f"unknown cell {cell!r}; configured cells: {config.cell_ids}")
        if apiserver_kubeconfig:
            self._apiserver_kubeconfig(config, apply, url, client_cert, client_key)
            return
        if config.webhook.tls.client_ca_file:
            self.stderr.write(
                "webhook.tls.client_ca_file is set: the webhook answers only callers presenting "
                f"a certificate that CA signed; give {cell}'s kube-apiserver one "
                "(webhookconfig --apiserver-kubeconfig, docs/operations.md)"
            )
        try:
            pem, _source = configured_ca_bundle(config, ca_bundle)
        except OSError as error:
            raise CommandError(
                f"cannot read CA bundle {error.filename}: {error.strerror}"
            ) from None
        try:
            obj = render_webhook_configuration(config, cell, base_url=url, ca_bundle_pem=pem)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if not apply:
            yaml.safe_dump(obj, sys.stdout, sort_keys=False)
            return
        client = KubeClient.from_access(config.cell(cell))
        try:
            current = client.get(VALIDATING_WEBHOOKS, None, WEBHOOK_CONFIG_NAME)
        except KubeError as error:
            if not error.is_not_found:
                raise CommandError(f"cell {cell}: {error}") from None
            current = None
        try:
            if current is None:
                client.create(VALIDATING_WEBHOOKS, None, obj)
                verb = "created"
            else:
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                client.replace(VALIDATING_WEBHOOKS, None, WEBHOOK_CONFIG_NAME, obj)
                verb = "replaced"
        except KubeError as error:
            raise CommandError(f"cell {cell}: {error}") from None
        self.stdout.write(f"validatingwebhookconfiguration/{WEBHOOK_CONFIG_NAME} {verb} in {cell}")

    def _apiserver_kubeconfig(
        self,
        config: PodseidonConfig,
        apply: bool,
        url: str | None,
        client_cert: str | None,
        client_key: str | None,
    ) -> None:
        if apply:
            raise CommandError(
                "--apiserver-kubeconfig only prints: the file belongs on the apiserver's host"
            )
        if not (client_cert and client_key):
            raise CommandError("--apiserver-kubeconfig needs --client-cert and --client-key")
        try:
            obj = render_admission_kubeconfig(
                config, client_cert=client_cert, client_key=client_key, base_url=url
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        yaml.safe_dump(obj, sys.stdout, sort_keys=False)
