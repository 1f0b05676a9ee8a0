from django.apps import AppConfig


class ProtectorsConfig(AppConfig):
    name = "protectors"
    verbose_name = "PodProtectors"
