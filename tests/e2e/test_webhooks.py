"""Webhooks end to end: a real API and worker deliver to a real HTTP receiver on 127.0.0.1 (allowed explicitly), which
checks every signature; a failing receiver gets retries, a silent one never holds up the training."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis import Redis

from tests.conftest import LiveService, make_settings, wait_until
from tests.helpers import assert_problem, wait_for_training

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"webhook-secret-of-the-tests-0123").decode()
TINY = {"dataset": "ring2d", "family": "gan", "steps": 300, "batch_size": 32, "width": 16, "latent_dim": 2}


def verified(headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, from the Standard Webhooks spec (the README's snippet)."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


class Receiver:
    """An HTTP server that records every POST; /flaky answers 500 twice then 200, /silent never answers in time."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.flaky_left = 2
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.calls.append(
                    {"path": self.path, "headers": headers, "body": json.loads(body), "ok": verified(headers, body)}
                )
                if self.path == "/silent":
                    time.sleep(3)
                code = 200
                if self.path == "/flaky" and receiver.flaky_left > 0:
                    receiver.flaky_left -= 1
                    code = 500
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveService]:
    tmp = tmp_path_factory.mktemp("webhooks")
    Redis.from_url(redis_url).flushdb()
    settings = make_settings(
        tmp,
        redis_url,
        webhook_secret=SecretStr(SECRET),
        webhook_allow="127.0.0.1",
        webhook_timeout_s=0.5,
        webhook_retry_base_s=0.2,
    )
    service = LiveService(settings, tmp)
    try:
        service.start_worker()
        service.start_api()
        yield service
    finally:
        service.stop()
        Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def http(hooked: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hooked.base_url, timeout=60) as c:
        yield c


def test_signed_events_arrive_in_order(http: httpx.Client, receiver: Receiver) -> None:
    events = ["started", "progress", "preview", "completed"]
    r = http.post("/v1/trainings", json={**TINY, "webhook": f"{receiver.url}/ok", "webhook_events": events})
    assert r.status_code == 202, r.text
    tid = r.json()["id"]
    assert wait_for_training(http, tid)["status"] == "succeeded"
    wait_until(lambda: any(c["body"]["type"] == "training.completed" for c in receiver.at("/ok")), 30)
    calls = receiver.at("/ok")
    assert all(c["ok"] for c in calls), calls  # every signature verifies
    types = [c["body"]["type"] for c in calls]
    assert types[0] == "training.started" and types[-1] == "training.completed", types
    assert types.count("training.preview") == 3 and types.count("training.completed") == 1  # previews at 100..300
    assert calls[-1]["body"]["data"]["id"] == tid and calls[-1]["body"]["data"]["status"] == "succeeded"
    assert calls[-1]["body"]["data"]["model_id"]
    assert len({c["headers"]["webhook-id"] for c in calls}) == len(calls)  # one id per event
    log = http.get(f"/v1/trainings/{tid}/deliveries").json()["items"]
    assert all(e["status_code"] == 200 and e["attempt"] == 1 for e in log) and len(log) == len(calls)


def test_a_failing_receiver_gets_the_event_on_the_third_try(http: httpx.Client, receiver: Receiver) -> None:
    tid = http.post("/v1/trainings", json={**TINY, "webhook": f"{receiver.url}/flaky"}).json()["id"]
    assert wait_for_training(http, tid)["status"] == "succeeded"
    wait_until(lambda: len(receiver.at("/flaky")) >= 3, 30, message="the third try")
    calls = receiver.at("/flaky")
    assert len(calls) == 3 and all(c["ok"] for c in calls)
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1  # the same delivery, retried
    assert len({json.dumps(c["body"]) for c in calls}) == 1  # the same body
    wait_until(lambda: len(http.get(f"/v1/trainings/{tid}/deliveries").json()["items"]) == 3, 10)
    log = http.get(f"/v1/trainings/{tid}/deliveries").json()["items"]
    assert [e["status_code"] for e in log] == [500, 500, 200]
    assert log[0]["next_attempt_at"] and log[-1]["next_attempt_at"] is None


def test_a_silent_receiver_never_holds_up_the_training(http: httpx.Client, receiver: Receiver) -> None:
    started = time.monotonic()
    tid = http.post("/v1/trainings", json={**TINY, "webhook": f"{receiver.url}/silent"}).json()["id"]
    assert wait_for_training(http, tid)["status"] == "succeeded"
    assert time.monotonic() - started < 60
    assert http.get("/healthz", timeout=2).status_code == 200
    wait_until(lambda: len(http.get(f"/v1/trainings/{tid}/deliveries").json()["items"]) >= 2, 30)
    log = http.get(f"/v1/trainings/{tid}/deliveries").json()["items"]
    assert all(e["status_code"] is None and "no answer" in e["error"] for e in log), log


def test_addresses_that_are_not_allowed_are_refused_at_request_time(http: httpx.Client) -> None:
    for url in ("http://10.0.0.1/hook", "http://169.254.169.254/", "http://[::1]:8000/"):
        assert_problem(http.post("/v1/trainings", json={**TINY, "webhook": url}), 422, "webhook")
