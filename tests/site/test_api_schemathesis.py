"""schemathesis against the REST API's own OpenAPI schema (`/api/schema/`).

Every operation of the schema, with generated (valid and invalid) parameters and bodies, sent
in-process to the WSGI application as an operator authenticated by a DRF token. No answer may
be a server error; a documented answer must have the body and headers the schema declares.

Every status an operation answers is documented, and every error (a path no route matches, an
out-of-range page, a body over Django's limits) comes in the API's JSON error shape. Not
enforced: schemathesis's positive/negative data checks, which disagree with the API on purpose
in two places — empty filters and ``page_size=null`` are accepted as "no filter"/"the default",
and a ``reason`` with a NUL character is refused (it could not be stored in the audit log).

The clusters are the site tests' fakes (core, cell-a, cell-b, with PodProtectors in the cache
and the webhook registered in both cells), so actions really patch something. The unreachable
cell of the shared fixture is left out: its documented 502 is a server error by definition and
is covered by tests/site/test_api_actions.py.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck
from rest_framework.authtoken.models import Token
from schemathesis import checks
from site_fakes import install_cache, protector, webhook_configuration

from protectors.kube.client import PODPROTECTORS, VALIDATING_WEBHOOKS

pytestmark = pytest.mark.django_db

# Enough to reach every status an operation declares; small enough that the whole run stays
# well under a minute on a shared 2-CPU machine.
EXAMPLES_PER_OPERATION = 25
ENFORCED_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
SELECTOR = {"matchLabels": {"team": "payments"}}


@pytest.fixture
def operator_token(users) -> str:
    return Token.objects.create(user=users["operator"]).key


@pytest.fixture
def api_schema(podseidon, fakes, settings, operator_token):
    settings.PODSEIDON = podseidon.model_copy(
        update={"cells": [c for c in podseidon.cells if c.id in fakes]}
    )
    objects = [
        protector("ns-1", "web"),
        protector("ns-1", "api", labels={"tier": "front"}),
        protector("ns-2", "only-b", cells={"cell-b": 2}),
    ]
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    install_cache(objects)
    for cell in ("cell-a", "cell-b"):
        fakes[cell].add(VALIDATING_WEBHOOKS, webhook_configuration(SELECTOR))
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        get_wsgi_application(),
        headers={"Authorization": f"Token {operator_token}"},
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    # Nothing is kept between runs: every run starts from fresh random examples.
    database=None,
    # The fixtures hold the fakes and the token for every example of one operation on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case, operator_token) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Token {operator_token}"}, checks=ENFORCED_CHECKS
    )
