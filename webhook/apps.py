from django.apps import AppConfig


class WebhookConfig(AppConfig):
    name = "webhook"
    verbose_name = "Admission webhook"

    def ready(self) -> None:
        from django.conf import settings

        if settings.PODSEIDON_ROLE == "webhook":
            # The webhook role never opens a database connection (it must answer with the
            # database down), so Django's per-request connection housekeeping is pure cost.
            from django.core.signals import request_finished, request_started
            from django.db import close_old_connections, reset_queries

            request_started.disconnect(reset_queries)
            request_started.disconnect(close_old_connections)
            request_finished.disconnect(close_old_connections)
