"""``manage.py webhookconfig --cell ID [--apply]``: render or apply the webhook registration."""

from __future__ import annotations

import sys

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from protectors.constants import WEBHOOK_CONFIG_NAME
from protectors.kube.client import VALIDATING_WEBHOOKS, KubeClient, KubeError
from webhook.registration import configured_ca_bundle, render_webhook_configuration


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

    def handle(self, *args, cell: str, apply: bool, url: str | None, ca_bundle: str | None, **_):
        config = settings.PODSEIDON
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
