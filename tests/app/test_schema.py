"""Schemathesis against the service's own OpenAPI schema: generated requests (valid and not) never get a 5xx,
and every response matches the schema the service publishes.

Driven through hypothesis directly (one property per operation) rather than schemathesis' pytest plugin, which
does not run under this pytest version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import response_schema_conformance

from app.main import create_app
from tests.conftest import make_settings
from tests.helpers import store_untrained_model

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[FastAPI]:
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    yield create_app(make_settings(tmp_path_factory.mktemp("schema"), redis_url))
    Redis.from_url(redis_url).flushdb()


def test_every_operation_honours_the_schema(app: FastAPI) -> None:
    store_dir = app.state.services.settings.store_dir
    # Real ids for the generating operations, so that generated bodies reach the model code, not just a 404.
    models = [
        store_untrained_model(store_dir, kind="images", shape=(8, 8), classes=["a", "b"], family="vae"),
        store_untrained_model(store_dir, family="gan"),
    ]
    real_model_paths = ("/samples", "/interpolations", "/reconstructions")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def honours(case: schemathesis.Case) -> None:
            if case.operation.path.endswith(real_model_paths):
                case.path_parameters = {"model_id": models[hash(repr(case.body)) % len(models)]}
            response = case.call_and_validate(checks=[response_schema_conformance])
            # A 504 is the documented answer to a request whose own `timeout_ms` ran out (a generated 1 or 2 ms
            # on a busy machine); any other 5xx is a server error.
            deadline = response.status_code == 504 and isinstance(case.body, dict) and "timeout_ms" in case.body
            assert response.status_code < 500 or deadline, f"{response.status_code}: {response.text[:500]}"

        try:
            honours()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_document_validates_as_openapi_and_every_ref_resolves(app: FastAPI) -> None:
    """What every generated client needs first (openapi-spec-validator, and each `$ref` looked up)."""
    import json
    import re

    from openapi_spec_validator import validate

    spec = app.openapi()
    validate(spec)  # type: ignore[arg-type]
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(spec)))
    assert refs, "no references at all: the check would be empty"
    for ref in refs:
        node: object = spec
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_the_answers_under_load_and_the_links_are_declared(app: FastAPI) -> None:
    spec = app.openapi()
    operations = {op["operationId"]: op for ops in spec["paths"].values() for op in ops.values()}
    samples = spec["paths"]["/v1/models/{model_id}/samples"]["post"]["responses"]
    assert {"408", "413", "422", "429", "503", "504"} <= samples.keys()
    assert "Retry-After" in samples["503"]["headers"] and "Retry-After" in samples["429"]["headers"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert {"429", "500", "503"} <= op["responses"].keys(), (method, path)
    links = spec["paths"]["/v1/trainings"]["post"]["responses"]["202"]["links"]
    assert links["GetTraining"]["parameters"] == {"training_id": "$response.body#/id"}
    assert all(link["operationId"] in operations for link in links.values())
    model_links = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["links"]
    assert (
        operations[model_links["SampleFirstModel"]["operationId"]]
        is spec["paths"]["/v1/models/{model_id}/samples"]["post"]
    )
