"""End to end over real HTTP: a uvicorn API process, a real RQ worker process, a real Redis; the whole module twice,
with the artifact store in a local directory and in S3 (moto's server).

Upload datasets, train tiny VAEs and GANs on points and images, follow progress, sample in every format,
reconstruct, interpolate, cancel, delete.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import socket
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import LiveService
from tests.helpers import (
    assert_problem,
    bars_zip,
    blobs_csv,
    decode_b64_png,
    decode_png,
    sse_entries,
    wait_for_training,
)

pytestmark = pytest.mark.slow

TINY = {"steps": 60, "batch_size": 32, "width": 32, "latent_dim": 4}


STORE_BACKENDS = ["local", "s3"]  # the whole module on each (tests/conftest.py's `live`)


@pytest.fixture(scope="module")
def datasets(http: httpx.Client) -> dict[str, str]:
    r = http.post("/v1/datasets", files={"file": ("blobs.csv", blobs_csv(), "text/csv")}, data={"name": "blobs"})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/datasets/{r.json()['id']}"
    points = r.json()
    assert points["kind"] == "points" and points["shape"] == [2] and points["classes"] == ["left", "right"]
    r = http.post("/v1/datasets", files={"file": ("bars.zip", bars_zip(), "application/zip")}, data={"name": "bars"})
    assert r.status_code == 201, r.text
    images = r.json()
    assert images["kind"] == "images" and images["shape"] == [8, 8] and images["size"] == 80
    return {"points": points["id"], "images": images["id"]}


@pytest.fixture(scope="module")
def trainings(http: httpx.Client, datasets: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Four tiny trainings queued at once; the worker runs them one after another."""
    plans = {
        "points_vae": {"dataset": datasets["points"], "family": "vae", **TINY, "steps": 150},
        "points_gan": {"dataset": datasets["points"], "family": "gan", **TINY, "steps": 150},
        "images_vae": {"dataset": datasets["images"], "family": "vae", "conditional": True, **TINY},
        "images_gan": {"dataset": datasets["images"], "family": "gan", **TINY},
    }
    started = {}
    for name, plan in plans.items():
        r = http.post("/v1/trainings", json=plan)
        assert r.status_code == 202, r.text
        body = r.json()
        assert r.headers["location"] == f"/v1/trainings/{body['id']}"
        assert body["status"] in ("queued", "running") and body["request"]["dataset"] == plan["dataset"]
        started[name] = body
    return {name: wait_for_training(http, t["id"]) for name, t in started.items()}


def test_progress_streams_live_over_sse(http: httpx.Client, datasets: dict[str, str]) -> None:
    r = http.post("/v1/trainings", json={"dataset": datasets["points"], "family": "gan", **TINY, "steps": 300})
    training_id = r.json()["id"]
    entries = sse_entries(http, f"/v1/trainings/{training_id}/events")
    events = [(e, d) for _, e, d in entries]
    names = [e for e, _ in events]
    steps = [d["step"] for e, d in events if e == "progress"]
    assert names[-1] == "status" and events[-1][1]["status"] == "succeeded", events[-3:]
    assert "running" in [d.get("status") for e, d in events if e == "status"]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] == 300
    progress = [d for e, d in events if e == "progress"][-1]
    assert progress["total_steps"] == 300 and progress["fraction"] == pytest.approx(1.0)
    assert "eta_seconds" in progress and progress["losses"]

    # A client cut off while the training ended resumes with no event lost: after the third event, everything that
    # followed, the terminal status with its id; after the last, only how it ended.
    ids = [i for i, _, _ in entries]
    assert all(ids) and len(set(ids)) == len(ids), ids
    resumed = sse_entries(http, f"/v1/trainings/{training_id}/events", headers={"Last-Event-ID": ids[2]})
    assert resumed == entries[3:]
    after_end = sse_entries(http, f"/v1/trainings/{training_id}/events", headers={"Last-Event-ID": ids[-1]})
    assert after_end == [(None, "status", entries[-1][2])]
    assert [e for _, e, _ in sse_entries(http, f"/v1/trainings/{training_id}/events")] == ["status"]  # a fresh reader


def test_all_trainings_succeed_with_models_and_metrics(
    http: httpx.Client, trainings: dict[str, dict[str, Any]]
) -> None:
    for name, t in trainings.items():
        assert t["status"] == "succeeded", (name, t)
        assert t["progress"]["step"] == t["progress"]["total_steps"] == t["config"]["steps"]
        assert t["started_at"] and t["finished_at"] and t["model_id"]
        model = http.get(f"/v1/models/{t['model_id']}").json()
        assert model["training_id"] == t["id"] and model["metrics"], model
        assert all(np.isfinite(v) for v in model["metrics"].values())
    listed = [t["id"] for t in http.get("/v1/trainings").json()["items"]]
    assert set(t["id"] for t in trainings.values()) <= set(listed)


def model_id(trainings: dict[str, dict[str, Any]], name: str) -> str:
    return str(trainings[name]["model_id"])


@pytest.mark.parametrize("name", ["points_vae", "points_gan"])
def test_point_models_sample_in_every_format(http: httpx.Client, trainings: dict[str, Any], name: str) -> None:
    url = f"/v1/models/{model_id(trainings, name)}/samples"
    as_json = http.post(url, json={"n": 5, "seed": 3})
    assert as_json.status_code == 200 and as_json.json()["seed"] == 3
    samples = np.array(as_json.json()["samples"])
    assert samples.shape == (5, 2) and np.isfinite(samples).all()
    npy = http.post(url, json={"n": 5, "seed": 3, "format": "npy"})
    assert npy.headers["content-type"] == "application/octet-stream"
    arr = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (5, 2)
    np.testing.assert_allclose(arr, samples, rtol=1e-6)
    grid = http.post(url, json={"n": 200, "seed": 3, "format": "grid"})
    assert grid.headers["content-type"] == "image/png" and decode_png(grid.content).size == (512, 512)
    assert_problem(http.post(url, json={"n": 2, "format": "png"}), 422, "format")


@pytest.mark.parametrize("name", ["images_vae", "images_gan"])
def test_image_models_sample_in_every_format(http: httpx.Client, trainings: dict[str, Any], name: str) -> None:
    url = f"/v1/models/{model_id(trainings, name)}/samples"
    r = http.post(url, json={"n": 3, "seed": 11})
    assert r.status_code == 200, r.text
    images = [decode_b64_png(s) for s in r.json()["images"]]
    assert [(im.size, im.mode) for im in images] == [((8, 8), "L")] * 3
    grid = decode_png(http.post(url, json={"n": 16, "seed": 1, "format": "grid"}).content)
    assert grid.size == (4 * 10 + 2, 4 * 10 + 2)  # 4x4 tiles of 8 px with 2 px gaps
    arr = np.load(io.BytesIO(http.post(url, json={"n": 3, "seed": 11, "format": "npy"}).content))
    assert arr.shape == (3, 8, 8) and arr.dtype == np.float32 and arr.min() >= 0 and arr.max() <= 1
    as_json = http.post(url, json={"n": 3, "seed": 11, "format": "json"}).json()
    np.testing.assert_allclose(np.array(as_json["samples"]), arr, rtol=1e-6)
    first = np.asarray(images[0], dtype=np.float32) / 255
    np.testing.assert_allclose(first, arr[0], atol=1 / 255 + 1e-6)  # the PNG is the npy rounded


def test_big_requests_stream_over_http(http: httpx.Client, trainings: dict[str, Any]) -> None:
    """Over real HTTP: n = 10,000 (many passes) as a streamed npy with its length announced, the same samples as a
    streamed zip of PNGs; JSON lines the same samples as json."""
    images = f"/v1/models/{model_id(trainings, 'images_gan')}/samples"
    with http.stream("POST", images, json={"n": 10_000, "seed": 4, "format": "npy"}) as r:
        assert r.status_code == 200 and r.headers["x-genserve-seed"] == "4"
        body = b"".join(r.iter_bytes())
    assert int(r.headers["content-length"]) == len(body)
    arr = np.load(io.BytesIO(body))
    assert arr.shape == (10_000, 8, 8)
    with http.stream("POST", images, json={"n": 10_000, "seed": 4, "format": "zip"}) as r:
        assert r.headers["content-type"] == "application/zip" and "content-length" not in r.headers
        archive = zipfile.ZipFile(io.BytesIO(b"".join(r.iter_bytes())))
    names = archive.namelist()
    assert len(names) == 10_000 and names[-1] == "09999.png"
    for i in (0, 9_999):  # the PNGs are the npy rounded
        png = np.asarray(decode_png(archive.read(names[i])), dtype=np.float32) / 255
        np.testing.assert_allclose(png, arr[i], atol=1 / 255 + 1e-6)
    points = f"/v1/models/{model_id(trainings, 'points_gan')}/samples"
    lines = http.post(points, json={"n": 3000, "seed": 2, "format": "jsonl"}).text.splitlines()
    assert [json.loads(line) for line in lines] == http.post(points, json={"n": 3000, "seed": 2}).json()["samples"]


def test_a_seed_gives_identical_bytes_alone_twice_and_under_concurrent_load(
    http: httpx.Client, trainings: dict[str, Any]
) -> None:
    url = f"/v1/models/{model_id(trainings, 'images_gan')}/samples"
    requests = [{"n": 1 + i % 3, "seed": 1000 + i, "format": "png"} for i in range(24)]
    alone = [http.post(url, json=req).content for req in requests]
    assert alone == [http.post(url, json=req).content for req in requests]  # twice, same bytes
    with concurrent.futures.ThreadPoolExecutor(24) as pool:  # batched together with each other
        together = list(pool.map(lambda req: http.post(url, json=req).content, requests))
    assert together == alone
    seeds = {http.post(url, json={"n": 1}).json()["seed"] for _ in range(3)}
    assert len(seeds) == 3  # without a seed the server draws one and returns it


def test_conditional_model_takes_labels(http: httpx.Client, trainings: dict[str, Any]) -> None:
    url = f"/v1/models/{model_id(trainings, 'images_vae')}/samples"
    model = http.get(f"/v1/models/{model_id(trainings, 'images_vae')}").json()
    assert model["conditional"] and model["classes"] == ["horizontal", "vertical"]
    a = http.post(url, json={"n": 2, "seed": 5, "labels": [0, 0], "format": "npy"}).content
    b = http.post(url, json={"n": 2, "seed": 5, "labels": [1, 1], "format": "npy"}).content
    assert a != b
    assert_problem(http.post(url, json={"n": 2, "labels": [0, 2]}), 422, "labels")
    assert_problem(http.post(url, json={"n": 2, "labels": [0]}), 422, "labels")


def test_vae_reconstructions_and_interpolations(http: httpx.Client, trainings: dict[str, Any]) -> None:
    points_url = f"/v1/models/{model_id(trainings, 'points_vae')}"
    r = http.post(f"{points_url}/reconstructions", json={"points": [[-2.0, 0.0], [2.0, 0.1]]})
    assert r.status_code == 200, r.text
    assert np.array(r.json()["samples"]).shape == (2, 2)
    images_url = f"/v1/models/{model_id(trainings, 'images_vae')}"
    r = http.post(
        f"{images_url}/reconstructions",
        files={"file": ("bars.zip", bars_zip(3), "application/zip")},
        data={"labels": "0,0,0,1,1,1", "format": "npy"},
    )
    assert r.status_code == 200, r.text
    assert np.load(io.BytesIO(r.content)).shape == (6, 8, 8)
    r = http.post(f"{images_url}/interpolations", json={"seed_a": 1, "seed_b": 2, "steps": 5, "label": 1})
    assert r.status_code == 200 and len(r.json()["images"]) == 5
    again = http.post(f"{images_url}/interpolations", json={"seed_a": 1, "seed_b": 2, "steps": 5, "label": 1})
    assert again.content == r.content
    every = http.post(f"{images_url}/interpolations", json={"seed_a": 1, "seed_b": 2, "steps": 5})
    assert every.status_code == 200 and every.json()["images"][5:10] == r.json()["images"]  # a path per class (2)
    gan_url = f"/v1/models/{model_id(trainings, 'points_gan')}"
    assert_problem(http.post(f"{gan_url}/reconstructions", json={"points": [[0.0, 0.0]]}), 422, "model_id")
    r = http.post(f"{gan_url}/interpolations", json={"z_a": [0, 0, 0, 0], "z_b": [1, 1, 1, 1], "steps": 3})
    assert r.status_code == 200 and len(r.json()["samples"]) == 3


def test_cancel_a_long_training(http: httpx.Client, datasets: dict[str, str], live: LiveService) -> None:
    r = http.post("/v1/trainings", json={"dataset": datasets["points"], "family": "gan", "steps": 200_000})
    training_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while http.get(f"/v1/trainings/{training_id}").json()["progress"]["step"] == 0:  # running, some steps done
        assert time.monotonic() < deadline, live.logs()
        time.sleep(0.1)
    asked = time.monotonic()
    r = http.post(f"/v1/trainings/{training_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] in ("canceling", "canceled"), r.text  # no longer "running"
    assert http.get(f"/v1/trainings/{training_id}").json()["status"] in ("canceling", "canceled")
    body = wait_for_training(http, training_id, timeout_s=30)
    assert body["status"] == "canceled" and body["model_id"] is None
    assert time.monotonic() - asked < 10
    assert 0 < body["progress"]["step"] < 200_000
    assert_problem(http.post(f"/v1/trainings/{training_id}/cancel"), 409)


def test_cancel_a_queued_training(http: httpx.Client, datasets: dict[str, str]) -> None:
    long = http.post("/v1/trainings", json={"dataset": datasets["points"], "family": "vae", "steps": 200_000}).json()
    queued = http.post("/v1/trainings", json={"dataset": datasets["points"], "family": "vae", **TINY}).json()
    r = http.post(f"/v1/trainings/{queued['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "canceled"
    http.post(f"/v1/trainings/{long['id']}/cancel")
    assert wait_for_training(http, long["id"], timeout_s=60)["status"] == "canceled"
    assert http.get(f"/v1/trainings/{queued['id']}").json()["status"] == "canceled"


def test_delete_a_model_then_404(http: httpx.Client, datasets: dict[str, str]) -> None:
    t = http.post("/v1/trainings", json={"dataset": datasets["points"], "family": "gan", **TINY}).json()
    done = wait_for_training(http, t["id"])
    url = f"/v1/models/{done['model_id']}"
    assert http.post(f"{url}/samples", json={"n": 1}).status_code == 200  # loaded into the cache
    assert http.delete(url).status_code == 204
    assert_problem(http.get(url), 404)
    assert_problem(http.post(f"{url}/samples", json={"n": 1}), 404)
    assert_problem(http.delete(url), 404)
    assert done["model_id"] not in [m["id"] for m in http.get("/v1/models").json()["items"]]


def test_datasets_in_use_cannot_be_deleted_and_builtins_never(http: httpx.Client, datasets: dict[str, str]) -> None:
    listed = http.get("/v1/datasets").json()["items"]
    assert [d["id"] for d in listed[:5]] == ["ring2d", "grid2d", "moons2d", "digits", "mnist"]
    assert_problem(http.delete("/v1/datasets/ring2d"), 403)
    t = http.post("/v1/trainings", json={"dataset": datasets["images"], "family": "vae", "steps": 200_000}).json()
    assert_problem(http.delete(f"/v1/datasets/{datasets['images']}"), 409)
    http.post(f"/v1/trainings/{t['id']}/cancel")
    wait_for_training(http, t["id"], timeout_s=60)
    r = http.post(
        "/v1/datasets", files={"file": ("again.csv", blobs_csv(n=50, seed=9), "text/csv")}, data={"name": "throwaway"}
    )
    assert r.status_code == 201
    assert http.delete(f"/v1/datasets/{r.json()['id']}").status_code == 204
    assert_problem(http.get(f"/v1/datasets/{r.json()['id']}"), 404)


def test_health_readiness_metrics_and_docs(http: httpx.Client, trainings: dict[str, Any]) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "store": "ok"}
    text = http.get("/metrics").text
    expected = (
        "genserve_http_requests_total",
        "genserve_http_request_duration_seconds",
        "genserve_samples_total",
        "genserve_batch_size_samples",
        "genserve_model_load_seconds_count",
        "genserve_models_loaded_bytes",
        "genserve_training_queue_depth",
        'genserve_trainings{status="succeeded"}',
    )
    for name in expected:
        assert name in text, name
    assert http.get("/docs").status_code == 200
    schema = http.get("/openapi.json").json()
    assert "/v1/models/{model_id}/samples" in schema["paths"]


def test_body_limit_holds_for_chunked_and_mislabeled_bodies(http: httpx.Client, live: LiveService) -> None:
    """Over real HTTP: a chunked body (no Content-Length) is counted as it streams in; a Content-Length that
    understates the body only frames a shorter request (the rest is never read as this request's body)."""
    limit = live.settings.max_request_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"dataset": "ring2d", "family": "gan", "pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = http.post("/v1/trainings", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["limit"] == limit and r.json()["errors"][0]["loc"] == ["body"]

    body = b'{"dataset": "ring2d", "family": "gan", "pad": "' + b"x" * 65536 + b'"}'
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/trainings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 40\r\n\r\n" + body
        )
        status_line = s.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), status_line  # the 40 bytes are malformed JSON: 400, not a 5xx
    assert http.get("/healthz").status_code == 200


def test_an_idle_connection_outlives_clients_keep_alive(live: LiveService, store_backend: str) -> None:
    """The server keeps an idle connection longer than clients keep theirs (httpx: 5 s), so a client never reuses
    a connection that the server is closing at that moment (uvicorn's default closes after 5 s idle)."""
    if store_backend != "local":
        pytest.skip("the HTTP server's keep-alive does not depend on the store (measured once, on the local one)")
    request = b"GET /healthz HTTP/1.1\r\nHost: genserve\r\n\r\n"

    def exchange(sock: socket.socket) -> bytes:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return head  # closed by the server
            head += chunk
        headers, _, body = head.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += sock.recv(4096)
        return headers

    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        assert exchange(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6.0)  # longer than uvicorn's default keep-alive and httpx's keepalive_expiry
        assert exchange(sock).startswith(b"HTTP/1.1 200")
