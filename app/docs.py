"""The API's own documentation pages (/docs: Swagger UI, /redoc: ReDoc) and its OpenAPI document, served entirely
from this service: the pages' scripts and styles are vendored under app/static/docs (swagger-ui-dist 5.35.0,
Apache-2.0; redoc 2.5.4, MIT; their licences beside them), so the pages render on a machine without internet,
where FastAPI's defaults (a public CDN, Google fonts, Swagger's online validator) leave a blank page.

Who may read them: anyone when the service has no keys or GENSERVE_PUBLIC_DOCS is on (the default: the schema is
not a secret, and a browser cannot send a bearer header to open /docs); otherwise a key with the `sample` scope.
Swagger's "Authorize" button takes a key for the calls made from the page either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app.auth import PUBLIC, requires

ASSETS_DIR = Path(__file__).parent / "static" / "docs"
ASSETS_PATH = "/docs/assets"
DOC_PATHS = ("/openapi.json", "/docs", "/redoc")
# The pages load nothing from elsewhere, and the browser holds them to it (ReDoc's footer would fetch a logo from
# its CDN); the inline scripts are FastAPI's page templates, ReDoc's search runs in a blob worker.
CONTENT_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
SWAGGER_PARAMETERS: dict[str, Any] = {
    "validatorUrl": None,  # Swagger's default sends the schema to validator.swagger.io for a badge
    "persistAuthorization": True,  # the key typed into "Authorize" survives a reload of the page
    "tryItOutEnabled": True,
    "displayRequestDuration": True,
}


def confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_POLICY
    return page


def add_docs(app: FastAPI, public: bool) -> None:
    """The three pages as routes declaring their access, plus the static assets they load."""
    access = PUBLIC if public else requires("sample")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[access])
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[access])
    async def swagger_ui() -> HTMLResponse:
        return confined(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="genserve - Swagger UI",
                swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
                swagger_ui_parameters=SWAGGER_PARAMETERS,
            )
        )

    @app.get("/redoc", include_in_schema=False, dependencies=[access])
    async def redoc() -> HTMLResponse:
        return confined(
            get_redoc_html(
                openapi_url="/openapi.json",
                title="genserve - ReDoc",
                redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
                with_google_fonts=False,
            )
        )

    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
