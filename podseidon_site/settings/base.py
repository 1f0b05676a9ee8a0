"""Settings shared by every environment.

Endpoints and secrets come from the environment (12-factor); product options come from the YAML
file named by ``PODSEIDON_CONFIG`` and are exposed as ``PODSEIDON``.
"""

import sys
from pathlib import Path

import environ

from podseidon_site.config import ConfigError, load_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

try:
    PODSEIDON = load_config()
except ConfigError as error:
    # One line naming the key is what an operator needs; a traceback through Django's settings
    # machinery would bury it.
    sys.stderr.write(f"podseidon: invalid configuration: {error}\n")
    raise SystemExit(2) from None

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "audit",
    "protectors",
    "webhook",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# One image, two roles: "web" serves the console and API; "webhook" serves only AdmissionReviews,
# probes and metrics (it never needs the database or Redis to answer).
PODSEIDON_ROLE = env.str("PODSEIDON_ROLE", default="web")
if PODSEIDON_ROLE not in ("web", "webhook"):
    sys.stderr.write(f"podseidon: PODSEIDON_ROLE must be web or webhook, not {PODSEIDON_ROLE!r}\n")
    raise SystemExit(2)
ROOT_URLCONF = (
    "podseidon_site.urls_webhook" if PODSEIDON_ROLE == "webhook" else "podseidon_site.urls"
)
WSGI_APPLICATION = "podseidon_site.wsgi.application"
if PODSEIDON_ROLE == "webhook":
    # The webhook answers kube-apiserver, kubelets and Prometheus: no sessions, users, messages,
    # CSRF or browser headers, since every middleware would run on every AdmissionReview. Only
    # the client-certificate gate stays, so that nothing else runs for a caller that is not
    # kube-apiserver; it removes itself when webhook.tls.client_ca_file is not set.
    MIDDLEWARE = ["webhook.client_auth.ClientCertificateMiddleware"]
else:
    # The admin's and the API docs' assets, served by the web tier itself: no collectstatic
    # step, no extra server, and the image's file system can stay read-only.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
    # The console sits above every other app; the webhook must not load it.
    INSTALLED_APPS.append("console")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'podseidon.sqlite3'}")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Prefix of the controller runtime's keys and channel in Redis (leases, leader state, switch
# events; workers/keys.py), so several installations or test runs can share one Redis.
PODSEIDON_REDIS_PREFIX = env.str("PODSEIDON_REDIS_PREFIX", default="podseidon")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Served straight from the installed apps (a few hundred files, indexed once at start-up); a
# STATIC_ROOT is only needed by whoever prefers `collectstatic` and serving them elsewhere.
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes DRF answer anonymous requests with 401
    # rather than 403. Session authentication (with CSRF) serves the browser.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, with configured file paths redacted (Swagger UI at /api/docs/ is the browsable
    # UI; DRF's own HTML renderer would print the data unredacted).
    "DEFAULT_RENDERER_CLASSES": ["podseidon_site.redaction.RedactingJSONRenderer"],
    # JSON bodies only: one encoding to document and to parse; anything else is a clear 415.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "podseidon_site.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Podseidon API",
    "DESCRIPTION": (
        "PodProtectors, cells, webhook state, controllers and the audit log. Every endpoint "
        "needs authentication (`Authorization: Token <key>` or a console session); actions "
        "need the operator role, a non-empty `reason`, and are audited."
    ),
    "VERSION": "v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # The machine running the console may have no internet: Swagger UI and Redoc come from the
    # drf-spectacular-sidecar package's static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "podseidon_site.api.document_unsupported_media_type",
    ],
}

# Console and API reads of the clusters (console/cache.py, protectors/clusters.py).
# How long a request waits for the PodProtector cache's first list before answering 503.
PODSEIDON_CACHE_SYNC_WAIT_SECONDS = env.float("PODSEIDON_CACHE_SYNC_WAIT_SECONDS", default=3.0)
# Timeout of the reachability probe (GET /version) and how long its answer is reused.
PODSEIDON_PROBE_TIMEOUT_SECONDS = env.float("PODSEIDON_PROBE_TIMEOUT_SECONDS", default=2.0)
PODSEIDON_PROBE_CACHE_SECONDS = env.float("PODSEIDON_PROBE_CACHE_SECONDS", default=5.0)
# Timeout of each request an action makes (patches of PodProtectors and webhook configurations).
PODSEIDON_ACTION_TIMEOUT_SECONDS = env.float("PODSEIDON_ACTION_TIMEOUT_SECONDS", default=10.0)
# How long a cell removal waits for the generator to drop the cell from every targeted
# PodProtector's status before it ends as partial, naming those still pending.
PODSEIDON_REMOVAL_CONFIRM_SECONDS = env.float("PODSEIDON_REMOVAL_CONFIRM_SECONDS", default=60.0)

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Controllers run as threads of the worker's main process (workers/bootstep.py); a thread pool
# keeps that process from forking task children under them. Celery's CLI cannot tell an explicit
# `--pool prefork` from its default, so choose prefork through this variable instead.
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="threads")
# Redis is also the leases' store: when it goes away the runtime stops the controllers safely,
# and the worker must stay up to resume them when it returns, however long that takes.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Celery 6's default, set now: no task outlives a lost broker connection (and no warning).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
