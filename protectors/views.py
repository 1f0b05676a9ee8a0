"""Console pages. Thin views: they gather what the templates show and nothing else."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def _cluster_row(name: str, access) -> dict:
    # Only how the cluster is reached, never the kubeconfig contents or its path: both can leak
    # credentials or internal layout to anyone who can read the page.
    return {
        "name": name,
        "access": "in-cluster service account" if access.in_cluster else "kubeconfig file",
        "impersonating": bool(access.impersonate),
        "namespace": access.namespace or "all namespaces",
    }


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    config = settings.PODSEIDON
    context = {
        "core": _cluster_row("core", config.core),
        "cells": [_cluster_row(cell.id, cell) for cell in config.cells],
        "webhook": config.webhook,
        "generator": config.generator,
        "aggregator": config.aggregator,
        "history": config.admission_history,
    }
    return render(request, "console/overview.html", context)
