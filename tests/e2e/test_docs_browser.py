"""The docs pages in a real browser (headless Chromium) with every request off this machine blocked: Swagger UI and
ReDoc render from the service's own assets, and with API keys on, a key made by `genserve keys new` goes into
Swagger's "Authorize" dialog and a call made from the page succeeds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route
from redis import Redis

from tests.conftest import ROOT, LiveService, make_settings, settings_env

pytestmark = pytest.mark.slow

PAGE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[LiveService, str]]:
    """An API with API keys from a keys file that `genserve keys new` wrote, and that key's token."""
    tmp = tmp_path_factory.mktemp("keyed")
    Redis.from_url(redis_url).flushdb()
    keys_file = tmp / "api-keys"
    settings = make_settings(tmp, redis_url, api_keys_file=keys_file)
    made = subprocess.run(
        [sys.executable, "-m", "genserve", "keys", "new", "--scopes", "sample+train"],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip()
    assert keys_file.read_text() == f"{token}:sample+train\n"
    assert keys_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    service = LiveService(settings, tmp)
    try:
        service.start_api()
        yield service, token
    finally:
        service.stop()
        Redis.from_url(redis_url).flushdb()


def test_a_key_from_genserve_keys_new_opens_the_api(keyed: tuple[LiveService, str]) -> None:
    service, token = keyed
    assert httpx.get(f"{service.base_url}/v1/models").status_code == 401
    answer = httpx.get(f"{service.base_url}/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    for page in ("/docs", "/redoc", "/openapi.json"):  # public by default: a browser cannot send the key
        assert httpx.get(service.base_url + page).status_code == 200, page


def test_the_cli_refuses_unknown_scopes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genserve", "keys", "new", "--scopes", "admin", "--file", str(tmp_path / "keys")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "scopes are sample or train" in done.stderr
    assert not (tmp_path / "keys").exists()


class OfflinePage:
    """A browser page that may reach only the service: every other request is aborted and remembered."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.host = urlsplit(base_url).netloc
        self.left_the_machine: list[str] = []
        self.console_errors: list[str] = []
        self.context = browser.new_context()
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == self.host:
            route.continue_()
        else:
            self.left_the_machine.append(url)
            route.abort()

    def unexpected_errors(self) -> list[str]:
        """Console errors other than the page's own policy keeping a request home (ReDoc's footer logo)."""
        return [e for e in self.console_errors if "Content Security Policy" not in e]


def test_swagger_renders_offline_and_authorize_takes_a_key(keyed: tuple[LiveService, str], browser: Browser) -> None:
    service, token = keyed
    tab = OfflinePage(browser, service.base_url)
    page = tab.page
    page.goto(f"{service.base_url}/docs")
    page.wait_for_selector(".opblock", timeout=PAGE_TIMEOUT_MS)
    assert page.locator(".opblock").count() >= 15  # every operation of the API is listed
    assert "genserve" in page.inner_text(".info .title")

    page.click("button.authorize")
    page.fill(".modal-ux input", token)
    page.click(".modal-ux button.authorize")
    page.click(".modal-ux button.btn-done")
    models = page.locator(".opblock-get", has=page.locator('[data-path="/v1/models"]')).first
    models.locator(".opblock-summary").click()
    models.locator("button.execute").click()
    status = models.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=PAGE_TIMEOUT_MS)
    assert status.inner_text().strip() == "200"  # the call from the page carried the key
    assert tab.left_the_machine == []
    assert tab.unexpected_errors() == []
    tab.context.close()


def test_redoc_renders_offline(keyed: tuple[LiveService, str], browser: Browser) -> None:
    service, _ = keyed
    tab = OfflinePage(browser, service.base_url)
    tab.page.goto(f"{service.base_url}/redoc")
    tab.page.wait_for_selector("h1", timeout=PAGE_TIMEOUT_MS)
    assert tab.page.inner_text("h1").startswith("genserve")
    assert tab.page.locator("[data-section-id]").count() >= 15
    assert tab.left_the_machine == []
    assert tab.unexpected_errors() == []
    tab.context.close()
