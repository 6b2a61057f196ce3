"""The web UI's files (app/ui.py): /ui is public with its Content-Security-Policy even when API keys are on, its
modules are served from app/static/ui and nothing outside that folder can be reached through the assets path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from app.ui import UI_ASSETS_PATH, UI_DIR
from tests.conftest import make_settings

TOKEN = "ui-test-token-0123456789"


@pytest.fixture
def keyed(tmp_path: Path, redis_url: str, redis: Redis) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, redis_url, api_keys=f"{TOKEN}:sample+train", public_docs=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def policy(header: str) -> dict[str, str]:
    return {d.split()[0]: d.split(maxsplit=1)[1] for d in (p.strip() for p in header.split(";")) if d}


@pytest.mark.parametrize("path", ["/ui", "/ui/"])
def test_the_page_is_public_and_confined(keyed: TestClient, path: str) -> None:
    assert keyed.get("/v1/models").status_code == 401  # the keys are on
    page = keyed.get(path, follow_redirects=False)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    csp = policy(page.headers["content-security-policy"])
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"  # no 'unsafe-inline': the page runs its modules only
    assert csp["connect-src"] == "'self'"
    assert csp["img-src"] == "'self' data: blob:"
    assert page.headers["x-content-type-options"] == "nosniff"
    # Nothing inline that the policy would block: no script bodies, event-handler attributes or style attributes.
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None
    assert re.search(r"\s(on\w+|style)=", page.text) is None
    assert '<script type="module" src="/ui/assets/main.js">' in page.text


def test_every_module_is_served_and_nothing_else_is_inline(keyed: TestClient) -> None:
    files = sorted(p.name for p in UI_DIR.iterdir())
    assert {"index.html", "api.js", "main.js", "style.css"} <= set(files)
    for name in files:
        answer = keyed.get(f"{UI_ASSETS_PATH}/{name}")
        assert answer.status_code == 200, name
        assert answer.content == (UI_DIR / name).read_bytes()
        assert "content-security-policy" in answer.headers
    assert keyed.get(f"{UI_ASSETS_PATH}/main.js").headers["content-type"].startswith("text/javascript")
    imported = set()
    for module in UI_DIR.glob("*.js"):
        imported |= set(re.findall(r'from "\./([\w.]+)"', module.read_text()))
    assert imported <= set(files), imported - set(files)  # every import resolves to a served file


@pytest.mark.parametrize(
    "path",
    [
        "/ui/assets/%2e%2e/%2e%2e/ui.py",
        "/ui/assets/..%2f..%2fui.py",
        "/ui/assets/%2e%2e%2f%2e%2e%2fsettings.py",
        "/ui/assets/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        "/ui/assets/....//....//ui.py",
        "/ui/assets//etc/passwd",
        "/ui/assets/%2fetc%2fpasswd",
        "/ui/assets/%00main.js",
    ],
)
def test_an_asset_path_cannot_leave_the_folder(keyed: TestClient, path: str) -> None:
    """Encoded dots reach the server as they are (a client normalizes literal `..` away before sending); the
    decoded path points outside app/static/ui, and the answer is a 404 without the file."""
    answer = keyed.get(path)
    assert answer.status_code == 404, (path, answer.status_code, answer.content[:200])
    assert b"import" not in answer.content and b"root:" not in answer.content
