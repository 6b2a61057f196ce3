"""The OpenAPI document as clients need it: every status a route can answer under load or faults declared with the
problem schema (so a schema-checking client never meets an undeclared answer), the bounds this deployment's settings
put on request bodies (so that a body the schema allows is one the server takes, but for what depends on the model),
and links from the operations that create or list resources to the ones that use them (so generated clients and
stateful fuzzers can follow them)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.problems import PROBLEM_SCHEMA
from app.settings import Settings

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def _problem(description: str, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    }
    if retry_after:
        answer["headers"] = RETRY_AFTER
    return answer


EVERY_ROUTE = {
    "401": _problem("No API key, or an unknown one (when the service has keys)."),
    "403": _problem("The key lacks the scope this route needs."),
    "429": _problem("The key's rate limit, or one of its quotas (Retry-After when waiting helps).", retry_after=True),
    "500": _problem("An unexpected error (logged; the body says nothing of internals)."),
    "503": _problem("Redis unreachable, a model's queue full, or MNIST being fetched.", retry_after=True),
}
WITH_BODY = {
    "400": _problem("A body that cannot be parsed at all (malformed multipart, JSON nested too deep)."),
    "408": _problem("The request body did not arrive in time."),
    "413": _problem("The body is larger than the route's limit."),
    "422": _problem("Invalid input; `errors` names each field."),
}
GENERATING = {"504": _problem("Not served before the request's deadline (`timeout_ms`).")}
GENERATING_SUFFIXES = ("/samples", "/interpolations", "/scores")
LINKS = {  # (path, method, status) -> links: the resource a response names, to the operations that take it
    ("/v1/trainings", "post", "202"): {
        "GetTraining": ("/v1/trainings/{training_id}", "get", {"training_id": "$response.body#/id"}),
        "TrainingEvents": ("/v1/trainings/{training_id}/events", "get", {"training_id": "$response.body#/id"}),
    },
    ("/v1/datasets", "post", "201"): {
        "GetDataset": ("/v1/datasets/{dataset_id}", "get", {"dataset_id": "$response.body#/id"}),
    },
    ("/v1/models", "get", "200"): {
        "GetFirstModel": ("/v1/models/{model_id}", "get", {"model_id": "$response.body#/items/0/id"}),
        "SampleFirstModel": ("/v1/models/{model_id}/samples", "post", {"model_id": "$response.body#/items/0/id"}),
    },
    ("/v1/trainings/{training_id}", "get", "200"): {
        "GetModel": ("/v1/models/{model_id}", "get", {"model_id": "$response.body#/model_id"}),
        "SampleModel": ("/v1/models/{model_id}/samples", "post", {"model_id": "$response.body#/model_id"}),
    },
}


# (component, property path, keyword) -> the setting that bounds it; a path step "[]" is "each item of the array".
SETTING_BOUNDS: dict[tuple[str, tuple[str, ...], str], str] = {
    ("SampleRequest", ("n",), "maximum"): "max_samples_per_request",
    ("SampleRequest", ("labels",), "maxItems"): "max_samples_per_request",
    ("SampleRequest", ("z",), "maxItems"): "max_samples_per_request",
    ("SampleRequest", ("z", "[]"), "maxItems"): "max_latent_dim",
    ("InterpolationRequest", ("steps",), "maximum"): "max_interpolation_steps",
    ("InterpolationRequest", ("z_a",), "maxItems"): "max_latent_dim",
    ("InterpolationRequest", ("z_b",), "maxItems"): "max_latent_dim",
    ("TrainingRequest", ("steps",), "maximum"): "max_train_steps",
    ("TrainingRequest", ("batch_size",), "maximum"): "max_train_batch_size",
    ("TrainingRequest", ("latent_dim",), "maximum"): "max_latent_dim",
    ("PointsReconstructionRequest", ("points",), "maxItems"): "max_samples_per_request",
    ("PointsReconstructionRequest", ("points", "[]"), "maxItems"): "max_point_dims",
    ("PointsReconstructionRequest", ("labels",), "maxItems"): "max_samples_per_request",
}


def _value_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The schema of a property's value when it is not null (`X | None` is `anyOf: [X, {"type": "null"}]`)."""
    for branch in node.get("anyOf", []):
        if branch.get("type") != "null":
            return _value_schema(branch)
    return node


def _bound(schema: dict[str, Any], path: tuple[str, ...], keyword: str, value: int) -> None:
    node = schema
    for step in path:
        node = _value_schema(node["items"] if step == "[]" else node["properties"][step])
    node[keyword] = value


def _request_schemas(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, schema) of each request body: the components, and the JSON bodies written inline in a route (the VAE
    routes that take points or images)."""
    found = list(schema.get("components", {}).get("schemas", {}).items())
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            inline = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "title" in inline:
                found.append((inline["title"], inline))
    return found


def bound_by_settings(schema: dict[str, Any], settings: Settings) -> None:
    """Write this deployment's limits into the request schemas (the models' own bounds are static)."""
    requests = _request_schemas(schema)
    for (component, path, keyword), setting in SETTING_BOUNDS.items():
        for title, node in requests:
            if title == component:
                _bound(node, path, keyword, int(getattr(settings, setting)))


def complete(app: FastAPI, settings: Settings) -> None:
    """Wrap `app.openapi` so that the document carries the common answers, the settings' bounds and the links
    (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        bound_by_settings(schema, settings)
        paths: dict[str, dict[str, Any]] = schema.get("paths", {})
        for path, operations in paths.items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                common = {**EVERY_ROUTE}
                if method in ("post", "put", "patch"):
                    common |= WITH_BODY
                if path.endswith(GENERATING_SUFFIXES):
                    common |= GENERATING
                for status, answer in common.items():
                    responses.setdefault(status, answer)
                for status in ("429", "503"):  # declared by the route itself, perhaps without the header
                    if status in responses:
                        responses[status] = {**responses[status], "headers": RETRY_AFTER}
        for (path, method, status), links in LINKS.items():
            response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
            if response is None:
                continue
            response["links"] = {
                name: {"operationId": paths[target][verb]["operationId"], "parameters": parameters}
                for name, (target, verb, parameters) in links.items()
                if verb in paths.get(target, {})
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
