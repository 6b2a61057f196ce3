"""The layout's rules, held: imports point only down (models <- worker <- app), nothing imports the benchmarks, and
every route of the app declares who may call it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from redis import Redis
from starlette.routing import Mount

from app.auth import declared_access
from app.docs import ASSETS_PATH, DOC_PATHS
from app.main import create_app
from app.ui import UI_ASSETS_PATH, UI_PATHS
from genserve import child_pythonpath
from tests.conftest import ROOT, make_settings

WORKER_RUNTIME = ("worker.jobs", "worker.main", "worker.preempt")
TRAINING_CODE = ("models.training", "models.evaluation", "models.losses", "models.classifier")
# What each part of the product may not import (a module, or anything below it).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": ("app", "worker", "bench", "genserve"),
    "worker": ("app", "bench", "genserve"),
    "worker/state": ("app", "bench", "genserve", *WORKER_RUNTIME, *TRAINING_CODE),
    "app": ("bench", "genserve", *WORKER_RUNTIME, *TRAINING_CODE),
    "genserve.py": ("bench",),
    "tests": ("bench",),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, function-level imports included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("part", list(FORBIDDEN))
def test_imports_point_only_down(part: str) -> None:
    target = ROOT / part
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files, part
    violations = [
        f"{f.relative_to(ROOT)}:{line} imports {module}"
        for f in files
        for line, module in imports_of(f)
        for banned in FORBIDDEN[part]
        if is_within(module, banned)
    ]
    assert violations == []


def test_the_api_loads_neither_the_worker_runtime_nor_training_code() -> None:
    """Transitively, too: importing the app (routes, settings, the state it shares with workers) loads none of it."""
    probe = (
        "import sys, app.main, app.routes.generation, app.trainings; "
        f"bad = [m for m in sys.modules if m.startswith({WORKER_RUNTIME + TRAINING_CODE!r})]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {"PYTHONPATH": child_pythonpath(), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("keys", ["", "a-key-of-16-chars-or-more:sample+train"])
@pytest.mark.parametrize("public_docs", [False, True])
def test_every_route_declares_its_access(
    tmp_path: Path, redis_url: str, redis: Redis, keys: str, public_docs: bool
) -> None:
    app = create_app(make_settings(tmp_path, redis_url, api_keys=keys, public_docs=public_docs))
    public = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            declared = declared_access(route)
            assert len(declared) == 1, (route.path, route.methods, declared)
            if declared[0].scope is None:
                public.append(route.path)
        else:  # the docs pages' and the UI's static scripts and styles, nothing else
            assert isinstance(route, Mount) and route.path in (ASSETS_PATH, UI_ASSETS_PATH), route
    docs = list(DOC_PATHS) if public_docs or not keys else []
    # the probes (GET and HEAD), the docs, the UI's page (it holds no data: its calls send the key)
    assert sorted(set(public)) == sorted(["/healthz", "/readyz", *docs, *UI_PATHS])


def test_a_route_without_a_declaration_is_caught(tmp_path: Path, redis_url: str, redis: Redis) -> None:
    """The check above can fail: a route added without `requires(...)` has no declaration."""
    app = create_app(make_settings(tmp_path, redis_url))

    @app.get("/v1/undeclared")
    async def undeclared() -> dict[str, str]:
        return {}

    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/v1/undeclared")
    assert declared_access(route) == []


def test_the_client_and_the_server_agree_on_the_servers_commands() -> None:
    """One `genserve` command: the client's console script hands these to the server's, the server's the rest back."""
    from genserve_client import cli

    import genserve

    assert cli.SERVER_COMMANDS == genserve.SERVER_COMMANDS
