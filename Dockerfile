# One image for every Podseidon component; the Deployments under deploy/ choose the process:
#   web (console, API):  gunicorn -c python:podseidon_site.gunicorn_conf       (the default)
#   webhook:             gunicorn -c python:podseidon_site.gunicorn_webhook
#   controllers:         celery -A podseidon_site worker
#   migrations:          python manage.py migrate --noinput
# Build: docker build -t registry.example.com/podseidon:0.1.0 .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# Requirements before the source, so a code change does not reinstall every dependency. Only the
# runtime section of the pinned list: test and lint tools stay out of the image.
COPY requirements.txt /tmp/requirements.txt
RUN sed '/^# Development and tests/,$d' /tmp/requirements.txt > /tmp/runtime-requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/runtime-requirements.txt

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=podseidon_site.settings.production
RUN groupadd --system --gid 10001 podseidon \
    && useradd --system --uid 10001 --gid podseidon --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin podseidon
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root and not writable by the service user; the pods also mount the root file system
# read-only, with an emptyDir at /tmp for gunicorn and the metrics files.
COPY manage.py ./
COPY podseidon_site ./podseidon_site
COPY protectors ./protectors
COPY webhook ./webhook
COPY workers ./workers
COPY audit ./audit
COPY console ./console
COPY templates ./templates
# Bytecode now: at run time the file system is read-only.
RUN python -m compileall -q /app
USER 10001:10001
EXPOSE 8000 8843 9090
CMD ["gunicorn", "-c", "python:podseidon_site.gunicorn_conf"]
