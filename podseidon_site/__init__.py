"""The Django project: settings, URLs, the WSGI entry point, the Celery app, gunicorn config."""

from .celery import app as celery_app

__all__ = ["celery_app"]
