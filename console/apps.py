from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console and its REST API side (web role only; the webhook never loads it).

    It sits above the other apps: it may import protectors/, webhook/, workers/ and audit/,
    and none of them imports it.
    """

    name = "console"
    verbose_name = "Operator console"
