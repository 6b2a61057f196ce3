"""The web UI at /ui: a single page (plain ES modules under app/static/ui, no libraries, no build step) that uploads
datasets, starts and follows trainings and draws samples, all through the public API.

The page itself holds no data, so it is public like the probes; every call it makes sends the key the user typed
(kept in the tab's sessionStorage) as `Authorization: Bearer`. A Content-Security-Policy holds the page to this
service: scripts and styles from its own assets only (no inline code), calls to its own origin, pictures from
there or from the blob URLs the page makes of the PNGs it fetched.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.staticfiles import PathLike
from starlette.types import Scope

from app.auth import PUBLIC

UI_DIR = Path(__file__).parent / "static" / "ui"
UI_PATHS = ("/ui", "/ui/")  # the same page at both: the views are hash routes (#/models), so either URL works
UI_ASSETS_PATH = "/ui/assets"
CONTENT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag) on each load: an upgrade never mixes old and new modules
}


class UiAssets(StaticFiles):
    """The page's scripts and styles, with the page's headers (a module opened on its own is held the same way)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response


def add_ui(app: FastAPI) -> None:
    """GET /ui (and /ui/): the page; GET /ui/assets/{file}: its modules and stylesheet."""
    page = (UI_DIR / "index.html").read_text(encoding="utf-8")

    async def ui_page() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)

    for path in UI_PATHS:
        app.add_api_route(path, ui_page, methods=["GET"], include_in_schema=False, dependencies=[PUBLIC])
    app.mount(UI_ASSETS_PATH, UiAssets(directory=UI_DIR), name="ui-assets")
