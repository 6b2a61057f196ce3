"""LeanRoute: the same answers as FastAPI's own handler for the same endpoint, good input or bad, and a loud refusal of
parameters it does not fill."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from app import problems
from app.deps import ServicesDep
from app.main import include_flat
from app.serving.lean_route import LeanRoute, is_json
from models.errors import Forbidden


class Body(BaseModel):
    n: int = Field(1, ge=1, le=10)
    name: str = "x"
    z: list[float] | None = None


class Check:
    """A side-effect dependency with a `check`, like the API-key guard."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, request: Request) -> None:
        await self.check(request)

    async def check(self, request: Request) -> None:
        self.seen += 1
        if request.headers.get("x-deny"):
            raise Forbidden("denied", field=("header", "x-deny"))


def make_app(route_class: type[APIRoute], check: Check) -> FastAPI:
    app = FastAPI(dependencies=[Depends(check)])
    problems.install(app)
    app.state.services = "the services"
    router = APIRouter(route_class=route_class)

    @router.post("/things/{thing_id}")
    async def thing(thing_id: str, body: Body, services: ServicesDep, request: Request) -> Response:
        text = f"{thing_id} {body.n} {body.name} {body.z} {services} {request.method}"
        return Response(text.encode(), media_type="text/plain")

    include_flat(app, router)
    return app


BODIES: list[tuple[str, bytes, dict[str, str]]] = [
    ("valid", b'{"n": 3, "name": "a", "z": [1.5, 2]}', {"content-type": "application/json"}),
    ("defaults", b"{}", {"content-type": "application/json"}),
    ("vendor json", b'{"n": 2}', {"content-type": "application/vnd.x+json; charset=utf-8"}),
    ("out of range", b'{"n": 11}', {"content-type": "application/json"}),
    ("wrong type", b'{"n": "many"}', {"content-type": "application/json"}),
    ("infinity", b'{"z": [Infinity]}', {"content-type": "application/json"}),
    ("malformed", b'{"n": 1', {"content-type": "application/json"}),
    ("not an object", b"[1, 2]", {"content-type": "application/json"}),
    ("empty", b"", {"content-type": "application/json"}),
    ("no content type", b'{"n": 1}', {}),
    ("text content type", b'{"n": 1}', {"content-type": "text/plain"}),
    ("nested too deep", b"[" * 5000 + b"]" * 5000, {"content-type": "application/json"}),
    ("not utf-8", b'{"name": "\xff"}', {"content-type": "application/json"}),
    ("denied", b'{"n": 1}', {"content-type": "application/json", "x-deny": "1"}),
]


@pytest.mark.parametrize(("case", "content", "headers"), BODIES, ids=[b[0] for b in BODIES])
def test_answers_as_fastapi_does(case: str, content: bytes, headers: dict[str, str]) -> None:
    answers = []
    for route_class in (APIRoute, LeanRoute):
        check = Check()
        with TestClient(make_app(route_class, check)) as client:
            r = client.post("/things/t1", content=content, headers=headers)
        answers.append((r.status_code, r.headers.get("content-type"), r.content))
        if route_class is LeanRoute:  # FastAPI checks only bodies that parse; LeanRoute checks every caller first
            assert check.seen == 1
    assert answers[0] == answers[1]


def test_the_caller_is_checked_before_the_body_is_read() -> None:
    with TestClient(make_app(LeanRoute, Check())) as client:
        r = client.post("/things/t1", content=b'{"n": 1', headers={"content-type": "application/json", "x-deny": "1"})
    assert r.status_code == 403


def test_the_lean_route_is_the_one_serving() -> None:
    app = make_app(LeanRoute, Check())
    assert any(isinstance(r, LeanRoute) for r in app.routes)
    with TestClient(app) as client:
        r = client.post("/things/t9", json={"n": 2})
    assert r.status_code == 200 and r.text == "t9 2 x None the services POST"


def test_the_openapi_schema_is_fastapis() -> None:
    schemas = []
    for route_class in (APIRoute, LeanRoute):
        schemas.append(make_app(route_class, Check()).openapi())
    assert schemas[0] == schemas[1]


def unsupported_endpoints() -> list[Any]:
    async def query(q: int = Query(1)) -> Response:
        return Response()

    async def int_path(thing_id: int) -> Response:
        return Response()

    async def other_dependency(x: Annotated[int, Depends(lambda: 1)]) -> Response:
        return Response()

    def sync(thing_id: str) -> Response:
        return Response()

    return [query, int_path, other_dependency, sync]


@pytest.mark.parametrize("endpoint", unsupported_endpoints(), ids=lambda f: f.__name__)
def test_refuses_what_it_cannot_fill(endpoint: Any) -> None:
    router = APIRouter(route_class=LeanRoute)
    with pytest.raises(TypeError, match="LeanRoute"):
        router.add_api_route("/things/{thing_id}", endpoint, methods=["POST"])


def test_is_json() -> None:
    assert is_json("application/json") and is_json("Application/JSON; charset=utf-8")
    assert is_json("application/problem+json")
    assert not is_json(None) and not is_json("") and not is_json("text/json") and not is_json("application/jsonx")
