"""Hostile requests, each reproduced over real HTTP against a real uvicorn API and a real RQ worker (issue 18):
a bad request never fails another's, no anonymous client holds memory or a connection, every bad input a bounded 4xx.
The faults that need a private Redis (a hung one, a killed worker's orphan) are in test_faults.py."""

from __future__ import annotations

import concurrent.futures
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from redis import Redis

from tests.conftest import LiveService, make_settings, wait_until
from tests.helpers import assert_problem, png, store_untrained_model, wait_for_training

pytestmark = pytest.mark.slow

SAMPLER = "sampler-key-0123456789abcdef"
TRAINER = "trainer-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
KEYS = f"{SAMPLER}:sample,{TRAINER}:train,{ADMIN}:sample+train"
LIMITS: dict[str, Any] = {
    "api_keys": KEYS,
    "rate_limit_per_s": 0,
    "header_timeout_s": 1.5,
    "body_timeout_s": 2.0,
    "max_active_trainings": 2,
    "max_datasets": 2,
    "max_stored_bytes": 40_000,
    "max_stored_upload_bytes": 30_000,
    "max_streams_per_key": 2,
    "max_score_decodes": 200_000,
}
MAX_PROBLEM_BYTES = 8_000  # every problem body here stays well under this, whatever the input's size


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveService]:
    tmp = tmp_path_factory.mktemp("hardening")
    Redis.from_url(redis_url).flushdb()
    service = LiveService(make_settings(tmp, redis_url, **LIMITS), tmp)
    try:
        service.start_worker()
        service.start_api()
        yield service
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.stop()
        Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def http(hard: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hard.base_url, timeout=60, headers=auth()) as client:
        yield client


@pytest.fixture(scope="module")
def models(hard: LiveService) -> dict[str, str]:
    store = hard.settings.store_dir
    return {
        "points_gan": store_untrained_model(store),
        "other_gan": store_untrained_model(store, latent_dim=3),
        "points_vae": store_untrained_model(store, family="vae"),
        "image_vae": store_untrained_model(store, family="vae", kind="images", shape=(8, 8), classes=["a", "b"]),
    }


def npz_bytes(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def npy_with_shape(shape: str) -> bytes:
    """A .npy whose header claims `shape` (data: whatever follows)."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 64


def zip_of(**members: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


# --- 1. one bad request never fails its neighbours -------------------------------------------------------------------
def test_an_empty_z_is_refused_and_never_fails_the_requests_it_would_have_shared_a_pass_with(
    hard: LiveService, models: dict[str, str]
) -> None:
    url = f"{hard.base_url}/v1/models/{models['points_gan']}/samples"
    stop = threading.Event()
    statuses: list[int] = []

    def innocent(seed: int) -> None:
        with httpx.Client(headers=auth(SAMPLER), timeout=30) as client:  # keep-alive: one connection each
            while not stop.is_set():
                statuses.append(client.post(url, json={"n": 3, "seed": seed, "format": "grid"}).status_code)

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        workers = [pool.submit(innocent, s) for s in range(8)]
        with httpx.Client(headers=auth(SAMPLER), timeout=30) as attacker:
            for _ in range(30):
                r = attacker.post(url, json={"z": [], "format": "grid"})
                assert_problem(r, 422, "body.z")
        stop.set()
        for w in workers:
            w.result()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


# --- 2. validation errors stay small ----------------------------------------------------------------------------------
def test_huge_invalid_bodies_get_small_problems_fast_and_block_nobody(
    hard: LiveService, http: httpx.Client, models: dict[str, str]
) -> None:
    sample_url = f"/v1/models/{models['points_gan']}/samples"
    bodies = [
        (sample_url, json.dumps({"n": 1, "labels": [-1] * 1_000_000}), "labels"),
        (sample_url, json.dumps({f"k{i}": 1 for i in range(200_000)}), "body"),
        (
            f"/v1/models/{models['points_vae']}/reconstructions",
            '{"points": [' + ",".join(["[NaN, NaN]"] * 300_000) + "]}",
            "points",
        ),
    ]
    for url, body, field in bodies:
        assert len(body) < hard.settings.max_request_bytes
        started = time.monotonic()
        r = http.post(url, content=body, headers={"content-type": "application/json"})
        elapsed = time.monotonic() - started
        problem = assert_problem(r, 422, field)
        assert len(r.content) < MAX_PROBLEM_BYTES and len(problem.get("errors", [])) <= 20, (url, len(r.content))
        assert elapsed < 3.0, (url, elapsed)
        assert http.get("/healthz").status_code == 200


# --- 3. anonymous clients hold nothing ----------------------------------------------------------------------------
def raw_request(hard: LiveService, head: bytes, body: bytes = b"", read_timeout_s: float = 10.0) -> bytes:
    """Send `head` and then `body` on a fresh connection; return what the server answered (empty when it closed)."""
    with socket.create_connection(("127.0.0.1", hard.port), timeout=read_timeout_s) as conn:
        conn.sendall(head + body)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_an_anonymous_upload_is_refused_before_its_body_is_read(hard: LiveService) -> None:
    head = (
        b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 60000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_request(hard, head, b"--b\r\n" + b"x" * 1000)  # 1 KB of the 60 MB it announced
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.monotonic() - started < 5


def test_a_json_route_takes_the_json_limit_whatever_the_content_type_claims(hard: LiveService) -> None:
    body = b"x" * (hard.settings.max_request_bytes + 10)
    r = httpx.post(
        f"{hard.base_url}/v1/trainings", content=body, headers={**auth(), "content-type": "multipart/form-data; b=x"}
    )
    problem = assert_problem(r, 413)
    assert problem["limit"] == hard.settings.max_request_bytes


def test_a_slow_body_is_answered_408_and_slow_headers_are_cut(hard: LiveService, models: dict[str, str]) -> None:
    head = (
        f"POST /v1/models/{models['points_gan']}/samples HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SAMPLER}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw_request(hard, head, b'{"n": 1,')  # and then nothing
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < hard.settings.body_timeout_s + 3
    with socket.create_connection(("127.0.0.1", hard.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        assert conn.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < hard.settings.header_timeout_s + 3


# --- 4. malformed inputs are 422s, not 500s -----------------------------------------------------------------------
def test_malformed_inputs_are_422_naming_the_field(http: httpx.Client, models: dict[str, str]) -> None:
    for route in ("reconstructions", "scores"):
        r = http.post(f"/v1/models/{models['points_vae']}/{route}", json={"points": [[1.0, 2.0], [3.0]]})
        assert_problem(r, 422, "body.points.1")
        image = png(np.zeros((8, 8), dtype=np.uint8))
        r = http.post(
            f"/v1/models/{models['image_vae']}/{route}",
            files={"file": ("a.png", image, "image/png")},
            data={"labels": "-1"},
        )
        assert_problem(r, 422, "body.labels")
    for shape in ("(-2, -2)", "(-1, 2)"):
        content = zip_of(**{"x.npy": npy_with_shape(shape)})
        r = http.post("/v1/datasets", files={"file": ("neg.npz", content, "application/zip")}, data={"name": "neg"})
        body = assert_problem(r, 422, "body.file.x")
        assert "negative" in body["detail"]


# --- 5. scores are bounded ---------------------------------------------------------------------------------------
def test_scores_are_bounded_by_budget_and_deadline(http: httpx.Client, models: dict[str, str]) -> None:
    url = f"/v1/models/{models['points_vae']}/scores"
    points = [[0.1 * i, -0.1 * i] for i in range(100)]
    r = http.post(url, params={"k": 5000}, json={"points": points})
    body = assert_problem(r, 422, "query.k")
    assert body["limit"] == 200_000
    r = http.post(url, params={"k": 1000, "timeout_ms": 1}, json={"points": points[:200]})
    assert_problem(r, 504, "query.timeout_ms")
    assert http.post(url, params={"k": 10}, json={"points": points}).status_code == 200


def test_a_busy_model_does_not_hold_up_another(hard: LiveService, http: httpx.Client, models: dict[str, str]) -> None:
    """Each model has its own inference thread: another model's small requests go on beside one's big passes."""
    big = f"/v1/models/{models['points_gan']}/samples"
    small = f"/v1/models/{models['other_gan']}/samples"

    def p50_small() -> float:
        times = []
        for seed in range(20):
            started = time.perf_counter()
            assert http.post(small, json={"n": 1, "seed": seed}).status_code == 200
            times.append(time.perf_counter() - started)
        return sorted(times)[10]

    alone = p50_small()
    stop = threading.Event()

    def hog() -> None:
        with httpx.Client(headers=auth(), timeout=60) as client:
            while not stop.is_set():
                client.post(f"{hard.base_url}{big}", json={"n": 1024, "seed": 1, "format": "npy"})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        hogs = [pool.submit(hog) for _ in range(4)]
        time.sleep(0.5)
        busy = p50_small()
        stop.set()
        for h in hogs:
            h.result()
    assert busy < max(0.25, 20 * alone), (alone, busy)


# --- 6. a cancel during the metrics phase is honoured --------------------------------------------------------------
def test_a_cancel_during_the_metrics_is_honoured(hard: LiveService, http: httpx.Client) -> None:
    body = {"dataset": "digits", "family": "vae", "steps": 20, "batch_size": 32, "width": 8, "eval_iw_k": 5000}
    r = http.post("/v1/trainings", json=body)
    assert r.status_code == 202, r.text
    tid = r.json()["id"]
    wait_until(
        lambda: http.get(f"/v1/trainings/{tid}").json()["progress"]["phase"] == "metrics",
        120,
        message="the metrics phase",
    )
    assert http.post(f"/v1/trainings/{tid}/cancel").status_code == 202
    done = wait_for_training(http, tid, timeout_s=60)
    assert done["status"] == "canceled" and done["model_id"] is None, done


# --- 7. quotas ----------------------------------------------------------------------------------------------------
def test_quotas_on_trainings_datasets_and_bytes(hard: LiveService, http: httpx.Client) -> None:
    trainer = httpx.Client(base_url=hard.base_url, headers=auth(TRAINER), timeout=60)
    long = {"dataset": "ring2d", "family": "gan", "steps": 200_000, "batch_size": 32, "width": 8}
    started = [trainer.post("/v1/trainings", json={**long, "seed": s}) for s in range(2)]
    assert [r.status_code for r in started] == [202, 202]
    body = assert_problem(trainer.post("/v1/trainings", json=long), 429)
    assert body["limit"] == 2 and "GENSERVE_MAX_ACTIVE_TRAININGS" in body["detail"]
    for r in started:
        assert trainer.post(f"/v1/trainings/{r.json()['id']}/cancel").status_code == 202

    def upload(n: int, seed: int) -> httpx.Response:
        x = np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)
        return trainer.post(
            "/v1/datasets", files={"file": ("p.npz", npz_bytes(x=x), "application/zip")}, data={"name": f"p{seed}"}
        )

    assert_problem(upload(5000, 0), 413, "body.file")  # 40,000 bytes stored: more than one upload may take
    first, second = upload(1000, 1), upload(3500, 2)  # 8,000 and 28,000 bytes
    assert (first.status_code, second.status_code) == (201, 201)
    assert upload(1000, 1).status_code == 200  # the same content again: no new dataset, no quota spent
    assert_problem(upload(10, 3), 429)  # a third dataset
    assert trainer.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
    body = assert_problem(upload(1600, 4), 507)  # 28,000 + 12,800 bytes: over the 40,000
    assert body["limit"] == 40_000
    trainer.close()


def test_the_active_trainings_quota_is_exact_across_api_processes(hard: LiveService, tmp_path: Any) -> None:
    """Eight requests at once, through two API processes sharing Redis and the store: exactly the quota's number
    of trainings start, the others get 429 with Retry-After."""

    def ended() -> bool:  # the previous test's trainings have stopped
        items = httpx.get(f"{hard.base_url}/v1/trainings", headers=auth()).json()["items"]
        return all(t["status"] in ("succeeded", "failed", "canceled") for t in items)

    wait_until(ended, 30, message="earlier trainings to end")
    second = LiveService(hard.settings, tmp_path)
    second.start_api()
    long = {"dataset": "ring2d", "family": "gan", "steps": 200_000, "batch_size": 32, "width": 8}
    clients = [
        httpx.Client(base_url=url, headers=auth(TRAINER), timeout=60) for url in (hard.base_url, second.base_url)
    ]
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: clients[i % 2].post("/v1/trainings", json={**long, "seed": i}), range(8)))
        codes = sorted(r.status_code for r in answers)
        assert codes == [202, 202] + [429] * 6, [r.text for r in answers]
        for r in answers:
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["limit"] == 2
            else:
                assert clients[0].post(f"/v1/trainings/{r.json()['id']}/cancel").status_code == 202
    finally:
        for c in clients:
            c.close()
        second.stop()


# --- 8. a download in progress is answered at once --------------------------------------------------------------------
# (tests/app/test_bad_input.py holds the offline case; this one: a URL that never answers)


# --- 10. numbers beyond float32, and interpolation ends without a direction -----------------------------------------
def test_z_beyond_float32_is_422_and_a_zero_end_interpolates(http: httpx.Client, models: dict[str, str]) -> None:
    model = models["points_gan"]
    assert_problem(http.post(f"/v1/models/{model}/samples", json={"z": [[1e308, 0, 0, 0]]}), 422, "body.z.0")
    r = http.post(
        f"/v1/models/{model}/interpolations",
        json={"z_a": [0, 0, 0, 0], "z_b": [1, 1, 1, 1], "steps": 4, "format": "json"},
    )
    assert r.status_code == 200, r.text
    assert np.isfinite(np.array(r.json()["samples"])).all()


# --- 11. no internals in answers ----------------------------------------------------------------------------------
def test_answers_show_no_internals(http: httpx.Client) -> None:
    r = http.post(
        "/v1/datasets",
        files={"file": ("bad.zip", zip_of(**{"a/x.png": b"\x89PNG\r\n\x1a\nnot really"}), "application/zip")},
        data={"name": "bad"},
    )
    body = assert_problem(r, 422)
    assert "0x" not in r.text and "object at" not in r.text, body
    ready = httpx.get(f"{http.base_url}/readyz").json()
    assert set(ready["checks"].values()) <= {"ok", "down", "not writable"}


# --- 12. event streams are bounded -----------------------------------------------------------------------------------
def test_event_streams_are_capped_per_key_and_a_garbage_last_event_id_is_422(hard: LiveService) -> None:
    client = httpx.Client(base_url=hard.base_url, headers=auth(), timeout=30)
    tid = client.post(
        "/v1/trainings", json={"dataset": "ring2d", "family": "gan", "steps": 200_000, "batch_size": 32, "width": 8}
    ).json()["id"]
    url = f"/v1/trainings/{tid}/events"
    assert_problem(client.get(url, headers={"Last-Event-ID": "not-an-id"}), 422, "header.last-event-id")
    with client.stream("GET", url) as one, client.stream("GET", url) as two:
        assert (one.status_code, two.status_code) == (200, 200)
        assert_problem(client.get(url), 429)
    assert client.post(f"/v1/trainings/{tid}/cancel").status_code == 202
    client.close()


# --- 13-16. headers, redirects, probes, failed keys, strict types ----------------------------------------------------
def test_duplicate_authorization_headers_are_400_and_there_is_no_slash_redirect(hard: LiveService) -> None:
    r = httpx.get(
        f"{hard.base_url}/v1/models",
        headers=[("Authorization", f"Bearer {ADMIN}"), ("Authorization", "Bearer something-else-entirely")],
    )
    assert_problem(r, 400, "header.authorization")
    r = httpx.get(f"{hard.base_url}/v1/models/", headers={**auth(), "Host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers


def test_head_probes_answer_200(hard: LiveService) -> None:
    assert httpx.head(f"{hard.base_url}/healthz").status_code == 200
    assert httpx.head(f"{hard.base_url}/readyz").status_code == 200


def test_strict_types(http: httpx.Client, models: dict[str, str]) -> None:
    assert_problem(http.post(f"/v1/models/{models['points_gan']}/samples", json={"n": "5"}), 422, "body.n")
    r = http.post("/v1/trainings", json={"dataset": "ring2d", "family": "gan", "conditional": "yes"})
    assert_problem(r, 422, "body.conditional")


# --- 17. a dataset deleted while a training starts on it --------------------------------------------------------------
def test_a_delete_and_a_training_on_the_same_dataset_never_both_succeed(hard: LiveService) -> None:
    client = httpx.Client(base_url=hard.base_url, headers=auth(), timeout=30)
    for round_ in range(12):
        x = np.random.default_rng(100 + round_).normal(size=(100, 2)).astype(np.float32)
        up = client.post(
            "/v1/datasets", files={"file": ("r.npz", npz_bytes(x=x), "application/zip")}, data={"name": "race"}
        )
        assert up.status_code == 201, up.text
        ds = up.json()["id"]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            train = pool.submit(client.post, "/v1/trainings", json={"dataset": ds, "family": "vae", "steps": 50})
            delete = pool.submit(client.delete, f"/v1/datasets/{ds}")
            t, d = train.result(), delete.result()
        assert not (t.status_code == 202 and d.status_code == 204), (round_, t.text, d.text)
        if t.status_code == 202:
            assert d.status_code == 409
            client.post(f"/v1/trainings/{t.json()['id']}/cancel")
            wait_for_training(client, t.json()["id"], timeout_s=60)
            assert client.delete(f"/v1/datasets/{ds}").status_code == 204
        else:
            assert d.status_code == 204 and t.status_code == 422, t.text
    client.close()


# --- 15. failed key attempts (last: it uses up this address's budget) -------------------------------------------
def test_failed_key_attempts_are_rate_limited(hard: LiveService) -> None:
    with httpx.Client(base_url=hard.base_url, timeout=10) as client:
        codes = [client.get("/v1/models", headers=auth("wrong-key-0123456789")).status_code for _ in range(30)]
        # a burst of 20 failures is answered 401 (an anonymous request earlier in this module may have used one)
        assert codes.count(401) >= 19 and 429 in codes[19:], codes
        limited = client.get("/v1/models", headers=auth("wrong-key-0123456789"))
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # While the address is over its budget, a right key is refused too (or guesses could still be told apart);
        # the budget refills at GENSERVE_AUTH_FAILURES_PER_S.
        assert client.get("/v1/models", headers=auth(ADMIN)).status_code == 429
        time.sleep(2.5)
        assert client.get("/v1/models", headers=auth(ADMIN)).status_code == 200
