"""Console page "Plan a drain": pick a node of a cell, see what the webhook would do.

A GET form (it changes nothing, so its answers can be bookmarked and reloaded): ``target`` is
``<cell>/<node>`` (cell IDs and node names hold no "/"), with an optional label selector,
namespace and health criterion narrowing or qualifying the drain.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.actions import InvalidAction, kube_cause
from console import planning
from console.cache import CacheNotSynced
from podseidon_site.redaction import redact
from protectors.health import HealthCriterion
from protectors.kube.client import KubeError


@login_required
@require_GET
def plan_drain(request: HttpRequest) -> HttpResponse:
    query = request.GET
    form = {
        "target": query.get("target", "").strip(),
        "selector": query.get("selector", "").strip(),
        "namespace": query.get("namespace", "").strip(),
        "criterion": query.get("criterion", "").strip(),
    }
    context = {
        "cells": planning.nodes_of_every_cell(),
        "form": form,
        "criteria": [c.value for c in HealthCriterion],
        "plan": None,
        "error": None,
    }
    if form["target"]:
        cell_id, _, node = form["target"].partition("/")
        try:
            selection = planning.Selection(
                node=node or None,
                selector=form["selector"] or None,
                namespace=form["namespace"] or None,
            )
            plan = planning.plan(
                cell_id, selection, criterion=planning.parse_criterion(form["criterion"])
            )
        except InvalidAction as error:
            context["error"] = redact(error.message)
        except CacheNotSynced as error:
            context["error"] = str(error)
        except KubeError as error:
            context["error"] = f"the cluster failed: {redact(kube_cause(error))}"
        else:
            context["plan"] = planning.plan_as_dict(plan, selection)
    return render(request, "console/plan_drain.html", context)
