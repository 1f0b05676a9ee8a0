"""The Celery application that runs the controllers (``celery -A podseidon_site worker``)."""

import os

from celery import Celery

from workers.bootstep import ControllerRuntimeStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "podseidon_site.settings.development")

app = Celery("podseidon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every worker runs the controller runtime in its main process (workers/bootstep.py).
app.steps["worker"].add(ControllerRuntimeStep)
