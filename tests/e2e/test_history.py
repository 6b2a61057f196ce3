"""Training history and previews over real HTTP, with a real worker: curves and pictures during and after a
training, announced on the event stream, the same pictures for the same seed, and still there after Redis loses
everything."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from redis import Redis

from tests.conftest import LiveService
from tests.helpers import blobs_csv, sse_events, wait_for_training

pytestmark = pytest.mark.slow
STORE_BACKENDS = ["local", "s3"]  # the whole module on each (tests/conftest.py's `live`)

PLAN = {"family": "gan", "steps": 600, "batch_size": 32, "width": 32, "latent_dim": 4, "seed": 11, "preview_every": 200}


@pytest.fixture(scope="module")
def dataset(http: httpx.Client) -> str:
    r = http.post("/v1/datasets", files={"file": ("blobs.csv", blobs_csv(), "text/csv")}, data={"name": "blobs"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_curves_and_previews_of_a_training(http: httpx.Client, dataset: str, live: LiveService) -> None:
    r = http.post("/v1/trainings", json={"dataset": dataset, **PLAN})
    assert r.status_code == 202, r.text
    tid = r.json()["id"]
    streamed = sse_events(http, f"/v1/trainings/{tid}/events")
    announced = [d for e, d in streamed if e == "preview"]
    assert [d["step"] for d in announced] == [200, 400, 600], streamed
    assert announced[0]["url"] == f"/v1/trainings/{tid}/previews/200"
    done = wait_for_training(http, tid)
    assert done["status"] == "succeeded", done

    history = http.get(f"/v1/trainings/{tid}/history").json()
    steps = history["steps"]
    assert steps[0] == 1 and steps[-1] == 600 and all(b > a for a, b in zip(steps, steps[1:], strict=False))
    assert {"loss_d", "loss_g", "lr"} <= history["series"].keys()
    assert all(len(values) == len(steps) for values in history["series"].values())
    assert history["metrics"] == done["metrics"] and history["total_steps"] == 600
    curve = png(http.get(f"/v1/trainings/{tid}/history", params={"format": "png"}))
    assert curve.size[0] >= 600 and np.asarray(curve.convert("L")).std() > 10  # a picture, not a blank

    listed = http.get(f"/v1/trainings/{tid}/previews").json()["items"]
    assert [p["step"] for p in listed] == [200, 400, 600]
    first = http.get(listed[0]["url"])
    assert png(first).size == (512, 512)
    assert http.get(f"/v1/trainings/{tid}/previews/300").status_code == 404
    assert http.get("/v1/trainings/tr_nope/history").status_code == 404

    again = http.post("/v1/trainings", json={"dataset": dataset, **PLAN}).json()["id"]
    assert wait_for_training(http, again)["status"] == "succeeded"
    if live.settings.device == "cpu":  # the same seed, the same pictures (bitwise on the CPU)
        assert http.get(f"/v1/trainings/{again}/previews/200").content == first.content

    Redis.from_url(live.settings.redis_url).flushdb()  # Redis loses everything: the store still has it all
    assert http.get(f"/v1/trainings/{tid}/history").json()["steps"] == steps
    assert [p["step"] for p in http.get(f"/v1/trainings/{tid}/previews").json()["items"]] == [200, 400, 600]


def test_a_training_without_previews(http: httpx.Client, dataset: str) -> None:
    tid = http.post("/v1/trainings", json={"dataset": dataset, **PLAN, "preview_every": 0}).json()["id"]
    assert wait_for_training(http, tid)["status"] == "succeeded"
    assert http.get(f"/v1/trainings/{tid}/previews").json()["items"] == []
    assert http.get(f"/v1/trainings/{tid}").json()["config"]["preview_every"] == 0
