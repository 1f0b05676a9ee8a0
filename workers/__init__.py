"""Celery-run controllers: generator, per-cell aggregators and the monitor."""
