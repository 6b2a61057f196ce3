"""Model names end to end: trainings publish consecutive versions through a real worker, and an alias moved under
load through two API processes reaches both within a second with no failed request."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from tests.conftest import LiveService
from tests.helpers import wait_for_training

pytestmark = pytest.mark.slow
STORE_BACKENDS = ["local", "s3"]  # the whole module on each (tests/conftest.py's `live`)

TINY = {"dataset": "ring2d", "family": "gan", "steps": 60, "batch_size": 32, "width": 16, "latent_dim": 2}


def test_trainings_publish_versions_and_an_alias_moves_under_load(
    http: httpx.Client, live: LiveService, tmp_path: object
) -> None:
    started = [
        http.post("/v1/trainings", json={**TINY, "seed": s, "model_name": "ring", "tags": {"run": str(s)}}).json()
        for s in (1, 2)
    ]
    done = [wait_for_training(http, t["id"]) for t in started]
    models = [http.get(f"/v1/models/{d['model_id']}").json() for d in done]
    assert sorted((m["name"], m["version"]) for m in models) == [("ring", 1), ("ring", 2)]
    assert {m["tags"]["run"] for m in models} == {"1", "2"}
    by_version = {m["version"]: m["id"] for m in models}
    expected = {
        v: http.post(f"/v1/models/{mid}/samples", json={"n": 2, "seed": 3}).json()["samples"]
        for v, mid in by_version.items()
    }
    assert expected[1] != expected[2]
    assert http.put("/v1/model-names/ring/aliases/prod", json={"version": 1}).status_code == 200

    second = LiveService(live.settings, tmp_path)  # type: ignore[arg-type]
    second.start_api()
    clients = [httpx.Client(base_url=url, timeout=30) for url in (live.base_url, second.base_url)]
    stop = threading.Event()
    # (sent, answered, replica, version served; None = failed)
    seen: list[tuple[float, float, int, int | None]] = []

    def load(replica: int) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            r = clients[replica].post("/v1/models/ring@prod/samples", json={"n": 2, "seed": 3})
            version = next((v for v, s in expected.items() if r.status_code == 200 and r.json()["samples"] == s), None)
            seen.append((sent, time.monotonic(), replica, version))

    def both_serve_version_1() -> bool:
        return all(any(r == replica and v == 1 for _, _, r, v in seen) for replica in (0, 1))

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load, i % 2) for i in range(4)]
            deadline = time.monotonic() + 60  # the second replica's first request loads the model cold
            while not both_serve_version_1() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert both_serve_version_1(), "a replica never served the alias's first version"
            before_move = time.monotonic()
            assert http.put("/v1/model-names/ring/aliases/prod", json={"version": 2}).status_code == 200
            moved = time.monotonic()
            time.sleep(2.0)
            stop.set()
            for f in futures:
                f.result()
    finally:
        for c in clients:
            c.close()
        second.stop()
    assert all(version is not None for *_, version in seen), "a request failed during the move"
    for replica in (0, 1):
        after = [v for sent, _, r, v in seen if r == replica and sent > moved + 1.0]
        assert after and set(after) == {2}, (replica, after)  # every replica on the new version within a second
        assert {v for _, answered, r, v in seen if r == replica and answered < before_move} == {1}


def test_a_model_travels_to_another_deployment_and_runs_elsewhere(
    http: httpx.Client, live: LiveService, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import io

    import numpy as np
    import onnxruntime as ort

    from tests.conftest import make_settings

    source = http.get("/v1/models/ring:2").json()
    bundle = http.get("/v1/models/ring:2/bundle")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    elsewhere_dir = tmp_path_factory.mktemp("elsewhere")
    elsewhere = LiveService(make_settings(elsewhere_dir, live.settings.redis_url), elsewhere_dir)
    elsewhere.start_api()
    try:
        with httpx.Client(base_url=elsewhere.base_url, timeout=60) as other:
            r = other.post("/v1/models", files={"file": ("ring.zip", bundle.content, "application/zip")})
            assert r.status_code == 201, r.text
            imported = r.json()
            assert imported["imported_from"] == source["id"] and imported["config"] == source["config"]
            request = {"n": 4, "seed": 9, "format": "npy"}
            here = http.post(f"/v1/models/{source['id']}/samples", json=request).content
            there = other.post(f"/v1/models/{imported['id']}/samples", json=request).content
            assert here == there
    finally:
        elsewhere.stop()
    onnx = http.get("/v1/models/ring@prod/export", params={"format": "onnx"})
    assert onnx.status_code == 200
    z = np.random.default_rng(0).normal(size=(4, source["latent_dim"])).astype(np.float32)
    ran = ort.InferenceSession(onnx.content).run(None, {"z": z})[0]
    served = http.post("/v1/models/ring@prod/samples", json={"z": z.tolist(), "format": "npy"}).content
    assert np.abs(ran - np.load(io.BytesIO(served))).max() <= 1e-4
