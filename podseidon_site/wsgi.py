"""WSGI entry point for gunicorn (see ``podseidon_site/gunicorn_conf.py``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "podseidon_site.settings.production")

application = get_wsgi_application()
