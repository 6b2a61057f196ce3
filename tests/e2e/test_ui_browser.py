"""The web UI (/ui) in a real browser (Debian's Chromium, every request off this machine blocked) against a live
service with API keys on: the key typed into the page's form, a CSV uploaded with a progress bar, a training started
from the page and followed to 100% over its event stream, the model's sample grid byte for byte what the API answers,
the request as curl without the key, a problem body rendered as the service said it, and no sideways scrolling at
phone width.

On failure, screenshots of each page go to a temporary folder (its path is printed). With
GENSERVE_UPDATE_SCREENSHOTS=1, a passing run writes the README's pictures: docs/screenshots/ui-*.png (1280x800).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route

from tests.conftest import ROOT, LiveService, run_live
from tests.helpers import blobs_csv, decode_png

pytestmark = pytest.mark.slow

TOKEN = "ui-browser-token-0123456789"
TIMEOUT_MS = 30_000
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = ROOT / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("GENSERVE_UPDATE_SCREENSHOTS") == "1"
# A training that takes a second or two on a CPU: small nets, small batches, three previews.
TRAINING_FORM = {"steps": "300", "batch-size": "64", "width": "32", "latent-dim": "4", "seed": "5"}
SAMPLE = {"n": 256, "seed": 1234, "format": "grid"}
# An event stream cut off after its first event (no final status): the page must reconnect, resuming after it.
FIRST_PROGRESS = {"step": 0, "total_steps": 300, "fraction": 0.0, "eta_seconds": None, "losses": {}, "phase": "train"}
DROPPED_STREAM = f"id: 0-1\nevent: progress\ndata: {json.dumps(FIRST_PROGRESS)}\n\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveService]:
    yield from run_live(tmp_path_factory.mktemp("ui"), redis_url, {"api_keys": f"{TOKEN}:sample+train"})


class Tab:
    """A page that may reach only the service; it remembers what tried to leave and what went wrong in the page."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.base_url = base_url
        self.host = urlsplit(base_url).netloc
        self.left_the_machine: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport=LAPTOP)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        # A 401 or 422 answer is logged as a failed load: the page shows those itself. Anything else is a fault.
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None
            ),
        )
        self.visited: dict[str, str] = {}  # name -> URL, for the screenshots of a failure

    def _route(self, route: Route) -> None:
        if urlsplit(route.request.url).netloc == self.host or route.request.url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            self.left_the_machine.append(route.request.url)
            route.abort()

    def open(self, name: str, hash_route: str) -> Page:
        url = f"{self.base_url}/ui#/{hash_route}"
        self.visited[name] = url
        if self.page.url.split("#")[0] == url.split("#")[0]:
            self.page.evaluate("h => { location.hash = h }", f"#/{hash_route}")
        else:
            self.page.goto(url)
        return self.page

    def save_screenshots(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=folder / "at-failure.png", full_page=True)
        for name, url in self.visited.items():
            try:
                self.page.goto(url)
                self.page.wait_for_timeout(1500)
                self.page.screenshot(path=folder / f"{name}.png", full_page=True)
            except Exception as e:  # a screenshot must not hide the failure itself
                print(f"no screenshot of {name}: {e}")


@pytest.fixture
def tab(browser: Browser, service: LiveService, tmp_path: Path) -> Iterator[Tab]:
    """A fresh tab (its own sessionStorage); when the test fails, screenshots of every page it visited."""
    tab = Tab(browser, service.base_url)
    try:
        yield tab
    finally:
        tab.context.close()


@contextlib.contextmanager
def photographed(tab: Tab, folder: Path) -> Iterator[None]:
    """Screenshots of the tab's pages when the block fails (the folder is printed with the failure)."""
    try:
        yield
    except BaseException:
        tab.save_screenshots(folder)
        print(f"screenshots of the UI at the failure: {folder}")
        raise


def api(service: LiveService) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def enter_key(page: Page, key: str) -> None:
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", key)
    page.click("#key-save")


@contextlib.contextmanager
def paused(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: a worker that takes no job meanwhile."""
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def screenshot(page: Page, top: str) -> bytes:
    """The window (1280x800) scrolled to `top`, as a README picture, once the page's calls are done."""
    page.wait_for_load_state("networkidle")
    page.eval_on_selector(top, "e => e.scrollIntoView()")
    return page.screenshot()


def no_sideways_scroll(page: Page) -> None:
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url}: the page is {width}px wide in a {inner}px window"


def test_upload_train_and_sample_from_the_page(tab: Tab, service: LiveService, tmp_path: Path) -> None:
    with photographed(tab, tmp_path / "ui-artifacts"):
        flow(tab, service, tmp_path)


def flow(tab: Tab, service: LiveService, tmp_path: Path) -> None:
    page = tab.page
    shots: dict[str, bytes] = {}

    # The key, asked for when the first call answers 401, then kept by the tab.
    tab.open("datasets", "datasets")
    enter_key(page, TOKEN)
    page.wait_for_selector('.card[data-id="ring2d"]')
    assert page.evaluate("sessionStorage.getItem('genserve.api-key')") == TOKEN

    # Upload: a CSV of 2-D points with labels, drawn in the page before it is sent.
    csv = tmp_path / "blobs.csv"
    csv.write_bytes(blobs_csv(400, seed=3))
    page.set_input_files("#upload-file", str(csv))
    page.wait_for_selector("#upload-preview canvas")
    page.fill("#upload-name", "ui-blobs")
    page.click("#upload-submit")
    page.wait_for_selector("#upload-status:has-text('Stored as ds_')")
    assert page.eval_on_selector("#upload-progress", "p => p.value") == 1
    dataset_id = re.search(r"ds_\w+", page.inner_text("#upload-status")).group(0)  # type: ignore[union-attr]
    page.wait_for_selector(f'.card[data-id="{dataset_id}"] canvas')  # its thumbnail: the scatter drawn before
    assert page.eval_on_selector("#train-dataset", "s => s.value") == dataset_id
    assert page.is_enabled("#train-conditional")  # the CSV has a label column: two classes
    if UPDATE_SCREENSHOTS:
        shots["datasets"] = screenshot(page, "body")

    # A training started from the form while the worker is paused (so that the page surely follows it from the
    # start): its first event stream drops after one event, and the page resumes after that event with
    # Last-Event-ID. Then the worker goes on, and the page follows the training live to 100%.
    resumed_after: list[str | None] = []

    def drop_the_first_stream(route: Route) -> None:
        if not resumed_after:
            resumed_after.append("dropped")
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=DROPPED_STREAM)
        else:
            resumed_after.append(route.request.headers.get("last-event-id"))
            route.continue_()

    page.route("**/v1/trainings/*/events", drop_the_first_stream)
    page.select_option("#train-family", "gan")
    page.click("#train-form details summary")
    for field, value in TRAINING_FORM.items():
        page.fill(f"#train-{field}", value)
    with paused(service.workers[0]):
        page.click("#train-submit")
        page.wait_for_url(re.compile(r"#/trainings/tr_\w+$"))
        training_id = page.url.rsplit("/", 1)[1]
        tab.visited["training"] = page.url
        page.wait_for_selector("#stream-state:has-text('resuming')")
        page.wait_for_selector("#stream-state:has-text('Following live')")
    page.wait_for_selector("#model-link", timeout=60_000)
    assert page.inner_text("#train-percent") == "100%"
    assert page.eval_on_selector("#train-progress", "p => p.value") == 1
    assert "step 300 / 300" in page.inner_text("#progress-text")
    assert resumed_after[:2] == ["dropped", "0-1"]
    with api(service) as http:
        training = http.get(f"/v1/trainings/{training_id}").json()
    assert training["status"] == "succeeded" and training["request"]["dataset"] == dataset_id
    assert training["request"]["steps"] == 300 and training["request"]["family"] == "gan"
    page.wait_for_selector("#previews figure img")
    page.wait_for_function("document.querySelectorAll('#previews figure').length === 3")  # steps 100, 200, 300
    page.wait_for_function("[...document.querySelectorAll('#previews img')].every(i => i.complete && i.naturalWidth)")
    page.wait_for_selector("#loss-chart canvas")
    assert "loss_d" in page.inner_text("#loss-chart .legend")
    metrics = page.inner_text("#training-metrics")
    assert training["metrics"] and all(name in metrics for name in training["metrics"])
    if UPDATE_SCREENSHOTS:
        shots["training"] = screenshot(page, "body")

    # The model: a sample grid drawn with a chosen seed is byte for byte the API's answer to the same request.
    page.click("#model-link")
    model_id = training["model_id"]
    page.wait_for_url(re.compile(rf"#/models/{model_id}$"))
    tab.visited["model"] = page.url
    page.fill("#sample-n", str(SAMPLE["n"]))
    page.fill("#sample-seed", str(SAMPLE["seed"]))
    with page.expect_request(lambda r: r.url.endswith("/samples") and r.method == "POST") as sent:
        page.click("#sample-submit")
    assert json.loads(sent.value.post_data or "") == SAMPLE  # the request the page sent
    page.wait_for_selector("#sample-image")
    page.wait_for_function("document.querySelector('#sample-image').complete")
    with page.expect_download() as saved:  # the picture's own blob, as the page holds it
        page.click("#sample-download")
    shown = Path(saved.value.path()).read_bytes()
    with api(service) as http:
        direct = http.post(f"/v1/models/{model_id}/samples", json=SAMPLE)
    assert direct.status_code == 200 and direct.headers["content-type"] == "image/png"
    assert shown == direct.content  # byte for byte what the API answers to the same request
    src, width = page.eval_on_selector("#sample-image", "img => [img.src, img.naturalWidth]")
    assert src.startswith("blob:") and src == page.get_attribute("#sample-download", "href")
    assert width == decode_png(direct.content).width  # and the <img> shows it
    assert page.inner_text("#sample-info").startswith(f"seed {SAMPLE['seed']}")

    # The same request as curl and as Python: the route, the seed, the key as $GENSERVE_API_KEY and never itself.
    curl = page.text_content("#sample-curl") or ""
    python = page.text_content("#sample-python") or ""
    assert f"{service.base_url}/v1/models/{model_id}/samples" in curl and '"seed":1234' in curl
    assert '"Authorization: Bearer $GENSERVE_API_KEY"' in curl and TOKEN not in curl + python
    assert f'"{service.base_url}/v1/models/{model_id}/samples"' in python and '"seed": 1234' in python
    assert "os.environ['GENSERVE_API_KEY']" in python and "httpx.post(" in python
    page.fill("#interp-seed-b", "7")
    page.click("#interp-submit")
    page.wait_for_selector("#interp-image")
    assert '"seed_b":7' in (page.text_content("#interp-curl") or "")
    if UPDATE_SCREENSHOTS:
        page.click("#sample-panel details summary")
        shots["model"] = screenshot(page, "#sample-panel")

    # An error is the problem body as the service said it: title, detail, and the field with its message.
    too_many = {**SAMPLE, "n": 20_000}  # over GENSERVE_MAX_SAMPLES_PER_REQUEST (10,000)
    page.fill("#sample-n", "20000")
    page.click("#sample-submit")
    page.wait_for_selector("#sample-errors .problem")
    with api(service) as http:
        problem = http.post(f"/v1/models/{model_id}/samples", json=too_many).json()
    shown_problem = page.inner_text("#sample-errors .problem")
    assert f"422 {problem['title']}" in shown_problem and problem["detail"] in shown_problem
    assert "body › n" in shown_problem and problem["errors"][0]["msg"] in shown_problem
    assert "GENSERVE_MAX_SAMPLES_PER_REQUEST" in shown_problem
    assert page.locator("#sample-image").count() == 1  # the last picture stays

    # The queue, as the API reports it, while the worker is paused; a queued training canceled from its page.
    with paused(service.workers[0]), api(service) as http:
        plan = {"dataset": dataset_id, "family": "gan", "steps": 300, "batch_size": 64, "width": 32}
        started = [http.post("/v1/trainings", json=plan).json()["id"] for _ in range(2)]
        queued = http.get("/v1/trainings", params={"status": "queued"}).json()["items"]
        assert started[-1] in [t["id"] for t in queued if t["queue_position"]]  # a paused worker holds one at most
        tab.open("trainings", "trainings")
        page.wait_for_selector(f"#queue a[href='#/trainings/{started[-1]}']")
        rows = page.eval_on_selector_all("#queue tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))")
        shown_as = [(str(t["queue_position"]) if t["queue_position"] else "—", t["id"]) for t in queued]
        assert [(r[0], r[1]) for r in rows] == shown_as  # a job a worker took but has not started has no position
        page.click(f"#queue a[href='#/trainings/{started[-1]}']")
        position = next(t["queue_position"] for t in queued if t["id"] == started[-1])
        page.wait_for_selector(f"#training-summary:has-text('queue position {position}')")
        page.click("#cancel")
        page.wait_for_selector("h1 .status-canceled")
        assert http.get(f"/v1/trainings/{started[-1]}").json()["status"] == "canceled"
        for other in started[:-1]:
            http.post(f"/v1/trainings/{other}/cancel")

    # At phone width nothing scrolls sideways, on any page.
    page.set_viewport_size(PHONE)
    for hash_route, ready in [
        ("datasets", f'.card[data-id="{dataset_id}"] img.thumb'),  # now a preview of the training on it
        ("trainings", "#trainings-table"),
        (f"trainings/{training_id}", "#model-link"),
        ("models", "#models-table"),
        (f"models/{model_id}", "#sample-form"),
    ]:
        tab.open(hash_route.split("/")[0], hash_route)
        page.wait_for_selector(ready)
        no_sideways_scroll(page)

    assert tab.left_the_machine == []
    assert tab.errors == []
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, png in shots.items():
            (SCREENSHOTS / f"ui-{name}.png").write_bytes(png)


def test_a_wrong_key_and_a_lost_connection_are_shown(tab: Tab, tmp_path: Path) -> None:
    with photographed(tab, tmp_path / "ui-artifacts"):
        wrong_key_then_no_answer(tab)


def wrong_key_then_no_answer(tab: Tab) -> None:
    page = tab.open("models", "models")
    enter_key(page, "not-the-key-0123456789")
    page.wait_for_selector("#key-dialog[open]")  # asked again, saying why
    assert page.inner_text("#key-reason") == "the API key is not valid"
    page.click("#key-dialog button[value=cancel]")
    problem = page.inner_text("#view .problem")
    assert "401" in problem and "the API key is not valid" in problem and "header › authorization" in problem

    page.route("**/v1/models?*", lambda route: route.abort("connectionrefused"))
    page.click("#key-button")  # the right key, from the header's button: the page reloads its view with it
    enter_key(page, TOKEN)
    page.wait_for_selector("#view .problem:has-text('Network error')")
    assert "did not answer" in page.inner_text("#view .problem")
    assert tab.left_the_machine == []
    assert [e for e in tab.errors if "ERR_CONNECTION_REFUSED" not in e] == []


def test_the_page_at_ui_slash_is_the_same_page(service: LiveService) -> None:
    first, second = httpx.get(f"{service.base_url}/ui"), httpx.get(f"{service.base_url}/ui/")
    assert first.status_code == second.status_code == 200 and first.text == second.text
    assert "default-src 'self'" in first.headers["content-security-policy"]
    assert first.text.startswith("<!doctype html>")
