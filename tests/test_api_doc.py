"""docs/api.md, the API contract, stays in step with the code: every route the app serves is documented, every route
the document names is served, every GENSERVE_* setting it names exists (with the default it gives), and every field
of the request and response bodies is mentioned."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import Mount

from app.routes.generation import ScoreResponse
from app.schemas import (
    Dataset,
    InterpolationRequest,
    Model,
    PointsReconstructionRequest,
    SampleRequest,
    Training,
    TrainingRequest,
)
from app.settings import Settings
from models.progress import Progress
from tests.conftest import ROOT

DOC_PATH = ROOT / "docs" / "api.md"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# "METHOD /path", in backticks or not, possibly one of several in a table cell; a path ends at whitespace, a backtick,
# a table bar, a comma, a semicolon, a closing parenthesis or a query string.
ROUTE = re.compile(rf"\b({'|'.join(METHODS)}) (/[^\s`|,;)?]*)")
SETTING = re.compile(r"\bGENSERVE_[A-Z0-9_]+\b")
# A row of the limits table: | `GENSERVE_X` | default | ...
LIMIT_ROW = re.compile(r"^\|\s*`(GENSERVE_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|", re.MULTILINE)
# The routes of the original contract (shared/docs/API.md): they may never be dropped.
ORIGINAL_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/datasets/{}"),
    ("DELETE", "/v1/datasets/{}"),
    ("POST", "/v1/trainings"),
    ("GET", "/v1/trainings"),
    ("GET", "/v1/trainings/{}"),
    ("GET", "/v1/trainings/{}/events"),
    ("POST", "/v1/trainings/{}/cancel"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{}"),
    ("DELETE", "/v1/models/{}"),
    ("POST", "/v1/models/{}/samples"),
    ("POST", "/v1/models/{}/reconstructions"),
    ("POST", "/v1/models/{}/interpolations"),
}
DOCUMENTED_BODIES: list[type[BaseModel]] = [
    SampleRequest,
    InterpolationRequest,
    TrainingRequest,
    PointsReconstructionRequest,
    Dataset,
    Training,
    Model,
    Progress,
    ScoreResponse,
]

Route = tuple[str, str]


def normalized(path: str) -> str:
    """A path with every parameter written `{}`, so that `{model_id}` in the code and `{id}` in the doc match."""
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip(".:"))


def doc_text() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def doc_routes(text: str) -> set[Route]:
    return {(method, normalized(path)) for method, path in ROUTE.findall(text)}


def schema_routes(schema: dict) -> set[Route]:
    return {
        (method.upper(), normalized(path))
        for path, operations in schema["paths"].items()
        for method in operations
        if method.upper() in METHODS
    }


def served_routes(app: FastAPI) -> tuple[set[Route], list[str]]:
    """Every (method, path) the app's API routes answer, those left out of the schema included, and the prefixes of
    its mounts (static files answer GET and HEAD below them)."""
    routes = {
        (method, normalized(route.path))
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    mounts = [route.path for route in app.routes if isinstance(route, Mount)]
    return routes, mounts


def is_mounted(route: Route, mounts: list[str]) -> bool:
    method, path = route
    return method in ("GET", "HEAD") and any(path.startswith(prefix + "/") for prefix in mounts)


@pytest.fixture
def app_routes(client: TestClient) -> Iterator[tuple[set[Route], set[Route], list[str]]]:
    """(routes in the OpenAPI schema, every route served, mount prefixes) of the app the tests' settings build."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    served, mounts = served_routes(client.app)  # type: ignore[arg-type]
    yield schema_routes(response.json()), served, mounts


def test_the_parser_finds_routes() -> None:
    """The parse itself: combined cells, query strings, parameters and trailing punctuation."""
    text = (
        "| `GET /docs`, `GET /redoc` | x |\n`POST /v1/models/{id}/scores?k=&timeout_ms=`; poll GET /v1/trainings/{id}."
    )
    assert doc_routes(text) == {
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("POST", "/v1/models/{}/scores"),
        ("GET", "/v1/trainings/{}"),
    }
    assert len(doc_routes(doc_text())) >= len(ORIGINAL_ROUTES)


def test_every_route_in_the_schema_is_documented(app_routes: tuple[set[Route], set[Route], list[str]]) -> None:
    schema, _, _ = app_routes
    missing = sorted(schema - doc_routes(doc_text()))
    assert not missing, f"routes of the OpenAPI schema missing from docs/api.md: {missing}"


def test_every_route_served_is_documented(app_routes: tuple[set[Route], set[Route], list[str]]) -> None:
    """Routes left out of the schema (the docs pages, HEAD probes) are part of the contract too."""
    _, served, mounts = app_routes
    missing = sorted(served - doc_routes(doc_text()))
    assert not missing, f"routes the app serves missing from docs/api.md: {missing}"
    documented_mounts = [m for m in mounts if any(is_mounted(r, [m]) for r in doc_routes(doc_text()))]
    assert documented_mounts == mounts, (
        f"mounted paths missing from docs/api.md: {set(mounts) - set(documented_mounts)}"
    )


def test_every_documented_route_exists(app_routes: tuple[set[Route], set[Route], list[str]]) -> None:
    schema, served, mounts = app_routes
    unknown = sorted(r for r in doc_routes(doc_text()) if r not in schema | served and not is_mounted(r, mounts))
    assert not unknown, f"docs/api.md names routes the app does not serve: {unknown}"


def test_the_original_contract_keeps_its_routes(app_routes: tuple[set[Route], set[Route], list[str]]) -> None:
    _, served, _ = app_routes
    assert served >= ORIGINAL_ROUTES, f"routes of the contract no longer served: {ORIGINAL_ROUTES - served}"
    documented = doc_routes(doc_text())
    assert documented >= ORIGINAL_ROUTES, f"routes of the contract dropped from the doc: {ORIGINAL_ROUTES - documented}"


def test_every_documented_setting_exists() -> None:
    known = {Settings.env_name(field) for field in Settings.model_fields}
    named = set(SETTING.findall(doc_text()))
    assert named, "docs/api.md names no GENSERVE_* setting"
    unknown = sorted(named - known)
    assert not unknown, f"docs/api.md names settings that do not exist: {unknown}"


def test_the_limits_table_gives_the_defaults() -> None:
    rows = LIMIT_ROW.findall(doc_text())
    assert len(rows) >= 10, "the limits table of docs/api.md was not found"
    fields = {Settings.env_name(field): field for field in Settings.model_fields}
    wrong = []
    for setting, cell in rows:
        default = Settings.model_fields[fields[setting]].default
        first = cell.split()[0].replace(",", "") if cell.split() else ""
        if isinstance(default, bool):
            ok = first == str(default).lower()
        elif isinstance(default, int | float):
            ok = re.fullmatch(r"-?[0-9.]+", first) is not None and float(first) == float(default)
        else:
            ok = first == str(default)
        if not ok:
            wrong.append(f"{setting}: the doc says {cell!r}, the default is {default!r}")
    assert not wrong, "docs/api.md's limits table is out of date: " + "; ".join(wrong)


@pytest.mark.parametrize("body", DOCUMENTED_BODIES, ids=lambda body: body.__name__)
def test_every_field_is_documented(body: type[BaseModel]) -> None:
    """Each field appears quoted (`"n"`, as in the body sketches) or in backticks (`n`, as in the field tables)."""
    text = doc_text()
    names = [*body.model_fields, *body.model_computed_fields]
    missing = [name for name in names if f'"{name}"' not in text and f"`{name}`" not in text]
    assert not missing, f"fields of {body.__name__} missing from docs/api.md: {missing}"
