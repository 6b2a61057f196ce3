"""A lean request handler for the hot routes (sampling and the benchmark's floor).

FastAPI's generic handler solves a dependency graph, sniffs the body's content type through `email.message`, keeps two
exit stacks and telemetry hooks for every request: as much CPU as all the rest of the HTTP stack, and a sizeable share
of a single-sample forward pass (bench/route_cpu.py; BENCHMARKS.md). `LeanRoute` keeps the endpoint's
typed signature, so validation rules and the OpenAPI schema are exactly what FastAPI derives from it, and fills the
parameters itself from a plan made once, when the route is built. It takes only what the hot routes use:

- path parameters typed `str`;
- at most one body parameter, a pydantic model, parsed the way FastAPI parses JSON bodies (same errors, same 400 for a
  body that cannot be parsed at all);
- the `Request`;
- dependencies on `get_services` (the app's `Services`), and dependencies used for their side effect that expose a
  `check(request)`, plain or async (the route's declared access, `app.auth.Requires`, is plain: no coroutine per
  request).

Anything else raises `TypeError` when the route is built, so an endpoint cannot silently lose a parameter.
"""

from __future__ import annotations

import inspect
import json
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import request_response

from app.deps import get_services

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Check = Callable[[Request], Awaitable[None] | None]  # plain; an awaitable only when it must wait
AsyncCheck = Callable[[Request], Awaitable[None]]


def is_json(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, with any parameters (FastAPI's rule)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json_body(request: Request, model: type[BaseModel], context: Any = None) -> BaseModel:
    """The request body as `model`, with FastAPI's errors: 422 naming the field (or the position of malformed JSON),
    400 for a body that cannot be parsed at all (e.g. nested too deep). `context` goes to the model's validators
    (the app's `RequestLimits`)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    data: Any = raw
    if is_json(request.headers.get("content-type")):
        # pydantic's own JSON parser is the fast path; a body it rejects is parsed again, the way FastAPI does, so
        # that every error (and the 400 for unparseable bodies) is the one FastAPI would give.
        try:
            return model.model_validate_json(raw, context=context)
        except ValidationError:
            pass
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from None
        except Exception:  # RecursionError, UnicodeDecodeError, ...
            raise HTTPException(400, "There was an error parsing the body") from None
    try:
        return model.model_validate(data, from_attributes=True, context=context)  # as FastAPI validates
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


class LeanRoute(APIRoute):
    """An `APIRoute` whose requests skip FastAPI's generic handler (see the module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # Starlette's request_response: no per-request exit stacks (the plan has no yield-dependencies or uploads).
        self.app = request_response(self.get_route_handler())

    def get_route_handler(self) -> Handler:
        d = self.dependant
        unsupported = [name for name in ("query_params", "header_params", "cookie_params") if getattr(d, name)]
        unsupported += [
            name
            for name in (
                "websocket_param_name",
                "http_connection_param_name",
                "response_param_name",
                "background_tasks_param_name",
                "security_scopes_param_name",
            )
            if getattr(d, name)
        ]
        if unsupported or len(d.body_params) > 1:
            raise TypeError(f"LeanRoute {self.path}: unsupported parameters ({', '.join(unsupported) or 'bodies'})")
        path_names = []
        for f in d.path_params:
            if f.field_info.annotation is not str:
                raise TypeError(f"LeanRoute {self.path}: path parameter {f.name} must be a str")
            path_names.append(f.name)
        body: tuple[str, type[BaseModel]] | None = None
        if d.body_params:
            f = d.body_params[0]
            model = f.field_info.annotation
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"LeanRoute {self.path}: the body must be a pydantic model")
            body = (f.name, model)
        services_names: list[str] = []
        checks: list[Check] = []
        async_checks: list[AsyncCheck] = []
        for sub in d.dependencies:
            if sub.call is get_services and sub.name:
                services_names.append(sub.name)
            elif callable(check := getattr(sub.call, "check", None)):
                (async_checks if inspect.iscoroutinefunction(check) else checks).append(check)
            else:
                raise TypeError(f"LeanRoute {self.path}: unsupported dependency {sub.call!r}")
        request_name = d.request_param_name
        endpoint = self.endpoint
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"LeanRoute {self.path}: the endpoint must be async")

        # The validation context of each app this route serves, read from its state once rather than per request.
        contexts: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

        def context_of(request: Request) -> Any:
            app = request.scope["app"]
            try:
                return contexts[app]
            except KeyError:
                context = contexts[app] = getattr(app.state, "validation_context", None)
                return context

        async def handler(request: Request) -> Response:
            for check in checks:
                pending = check(request)
                if pending is not None:  # the rate limit's rare wait for a lease (app/rate_limits.py)
                    await pending
            for async_check in async_checks:
                await async_check(request)
            kwargs: dict[str, Any] = {name: request.path_params[name] for name in path_names}
            if request_name:
                kwargs[request_name] = request
            for name in services_names:
                kwargs[name] = request.app.state.services
            if body is not None:
                kwargs[body[0]] = await read_json_body(request, body[1], context_of(request))
            return await endpoint(**kwargs)  # type: ignore[no-any-return]

        return handler
