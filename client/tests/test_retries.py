"""The retry rules, against a scripted local HTTP server (the rules are the client's), and once against the service's
own 503 (its Redis away, then back)."""

from __future__ import annotations

import time

import pytest

from conftest import Answer, RequestCounter, ScriptedServer, free_port
from genserve_client import (
    BadRequest,
    Client,
    NetworkError,
    RateLimited,
    ServiceUnavailable,
)

DATASET = {"id": "ds_1", "name": "d", "kind": "points", "shape": [2], "size": 3, "classes": None, "builtin": False}


def problem(status: int, title: str, detail: str = "") -> dict[str, object]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


BUSY = Answer(503, problem(503, "Service unavailable", "the sample queue is full"), {"Retry-After": "1"})


def test_503_with_retry_after_is_retried_after_the_wait(scripted: ScriptedServer) -> None:
    scripted.script = [BUSY, BUSY, Answer(200, DATASET)]
    start = time.monotonic()
    with Client(scripted.url, max_retries=3) as c:
        dataset = c.datasets.get("ds_1")
    assert dataset.id == "ds_1" and len(scripted.hits) == 3
    waits = [b[0] - a[0] for a, b in zip(scripted.hits, scripted.hits[1:], strict=False)]
    assert all(w >= 0.95 for w in waits) and time.monotonic() - start >= 1.9


def test_retries_end_with_the_typed_error(scripted: ScriptedServer) -> None:
    scripted.script = [BUSY]
    with Client(scripted.url, max_retries=1) as c, pytest.raises(ServiceUnavailable) as caught:
        c.models.sample("m", n=1)
    assert len(scripted.hits) == 2 and caught.value.retry_after == 1.0 and "queue is full" in str(caught.value)


def test_the_wait_is_capped(scripted: ScriptedServer) -> None:
    scripted.script = [Answer(429, problem(429, "Too many requests"), {"Retry-After": "3600"}), Answer(200, DATASET)]
    start = time.monotonic()
    with Client(scripted.url, max_retry_wait=0.2) as c:
        c.datasets.get("ds_1")
    assert len(scripted.hits) == 2 and time.monotonic() - start < 2


def test_a_quota_429_without_retry_after_is_raised_at_once(scripted: ScriptedServer) -> None:
    scripted.script = [Answer(429, problem(429, "Too many requests", "2 of 2 trainings active")), Answer(200, {})]
    with Client(scripted.url) as c, pytest.raises(RateLimited) as caught:
        c.trainings.create("ring2d", "gan")
    assert len(scripted.hits) == 1 and caught.value.retry_after is None


def test_a_4xx_is_not_retried(scripted: ScriptedServer) -> None:
    scripted.script = [Answer(400, problem(400, "Bad request", "two Authorization headers")), Answer(200, DATASET)]
    with Client(scripted.url) as c, pytest.raises(BadRequest):
        c.datasets.get("ds_1")
    assert len(scripted.hits) == 1


def test_a_plain_text_error_still_reads_as_a_problem(scripted: ScriptedServer) -> None:
    scripted.script = [Answer(503, b"Service Unavailable", content_type="text/plain; charset=utf-8")]
    with Client(scripted.url) as c, pytest.raises(ServiceUnavailable) as caught:
        c.datasets.get("ds_1")
    assert len(scripted.hits) == 1  # no Retry-After: nothing says when to come back
    assert caught.value.detail == "Service Unavailable" and caught.value.title == "Service Unavailable"


def test_lost_connections_are_retried_only_when_sending_again_is_safe(counter: RequestCounter) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(nowhere, max_retries=2, max_retry_wait=0.01, http_client=counter.http_client()) as c:
        with pytest.raises(NetworkError):
            c.datasets.get("ds_1")  # a GET: tried 1 + 2 times
        assert len(counter.requests) == 3
        with pytest.raises(NetworkError):
            c.trainings.cancel("tr_1")  # a POST without an Idempotency-Key: once
        assert len(counter.requests) == 4
        with pytest.raises(NetworkError):
            c.trainings.create("ring2d", "gan")  # carries an Idempotency-Key (made up when not given)
        assert len(counter.requests) == 7
        keys = {r.headers["idempotency-key"] for r in counter.requests[4:]}
        assert len(keys) == 1  # the same key on every try, so the server does it once


def test_the_services_own_503_is_retried_until_redis_is_back(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The service's real 503: its Redis is not there (the API answers 503 with Retry-After), comes up within the
    wait, and the client's retry of the same request succeeds; the training is created once."""
    genserve = pytest.importorskip("genserve", reason="the genserve server is not installed here")
    import contextlib
    import os
    import subprocess
    import sys
    import threading

    import httpx

    root = tmp_path_factory.mktemp("redis-away")
    redis_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
    env.update(
        GENSERVE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",  # nothing listens there yet
        GENSERVE_STORE_DIR=str(root / "store"),
        GENSERVE_DATA_DIR=str(root / "data"),
        OMP_NUM_THREADS="1",
    )
    url = f"http://127.0.0.1:{api_port}"
    with contextlib.ExitStack() as stack:
        api = subprocess.Popen(
            [sys.executable, "-m", "genserve", "serve", "--port", str(api_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(api.wait, 30)
        stack.callback(api.terminate)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        away = httpx.post(f"{url}/v1/trainings", json={"dataset": "ring2d", "family": "gan"}, timeout=30)
        assert away.status_code == 503 and away.headers.get("retry-after"), away.text

        back = threading.Timer(1.0, lambda: stack.enter_context(genserve.embedded_redis(root / "redis", redis_port)))
        back.start()
        counter = RequestCounter()
        with Client(url, timeout=30, max_retries=3, max_retry_wait=10, http_client=counter.http_client()) as client:
            started = time.monotonic()
            training = client.trainings.create("ring2d", "gan", steps=10)
            waited = time.monotonic() - started
            back.join()
            assert training.status in ("queued", "running") and len(counter.requests) >= 2, counter.requests
            assert waited >= float(away.headers["retry-after"]) * 0.9, waited
            assert [t.id for t in client.trainings.list()] == [training.id]  # created once
