"""Steering trainings over real HTTP with one real worker: priorities decide who runs next, the queue is listed in
that order with positions and start estimates; retried and concurrent POSTs with one Idempotency-Key make one
training."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.conftest import LiveService
from tests.helpers import assert_problem, wait_for_training

pytestmark = pytest.mark.slow

TINY = {"dataset": "ring2d", "family": "gan", "steps": 50, "batch_size": 32, "width": 16, "latent_dim": 2}


def test_a_high_priority_training_runs_before_normal_ones_queued_earlier(http: httpx.Client, live: LiveService) -> None:
    assert wait_for_training(http, http.post("/v1/trainings", json=TINY).json()["id"])["status"] == "succeeded"
    busy = http.post("/v1/trainings", json={**TINY, "steps": 200_000}).json()["id"]
    deadline = time.monotonic() + 60
    while http.get(f"/v1/trainings/{busy}").json()["progress"]["step"] == 0:  # the one worker is busy
        assert time.monotonic() < deadline, live.logs()
        time.sleep(0.1)
    normal = [http.post("/v1/trainings", json=TINY).json()["id"] for _ in range(3)]
    low = http.post("/v1/trainings", json={**TINY, "priority": "low"}).json()["id"]
    high = http.post("/v1/trainings", json={**TINY, "priority": "high"}).json()["id"]

    queue = http.get("/v1/trainings", params={"status": "queued"}).json()["items"]
    everything = [(t["id"], t["status"], t["queue_position"]) for t in http.get("/v1/trainings").json()["items"]]
    assert [t["id"] for t in queue] == [high, *normal, low], (everything, high, low)
    assert [t["id"] for t in queue] == [high, *normal, low]
    assert [t["queue_position"] for t in queue] == [1, 2, 3, 4, 5]
    starts = [t["start_eta_seconds"] for t in queue]
    assert all(s is not None for s in starts) and starts == sorted(starts), starts  # a finished one gives durations
    assert http.get(f"/v1/trainings/{high}").json()["request"]["priority"] == "high"
    assert http.get(f"/v1/trainings/{busy}").json()["queue_position"] is None  # running: no place in the queue
    assert http.post("/v1/trainings", json={**TINY, "priority": "urgent"}).status_code == 422

    http.post(f"/v1/trainings/{busy}/cancel")
    done = {tid: wait_for_training(http, tid, timeout_s=120) for tid in [high, *normal, low]}
    assert all(d["status"] == "succeeded" for d in done.values()), done
    order = sorted(done, key=lambda tid: done[tid]["started_at"])
    assert order == [high, *normal, low], order
    assert http.get("/v1/trainings", params={"status": "queued"}).json()["items"] == []


def test_concurrent_retries_with_one_idempotency_key_make_one_training(http: httpx.Client) -> None:
    before = {t["id"] for t in http.get("/v1/trainings").json()["items"]}

    def post(_: int) -> httpx.Response:
        return http.post("/v1/trainings", json=TINY, headers={"Idempotency-Key": "same-retry"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 7
    after = {t["id"] for t in http.get("/v1/trainings").json()["items"]}
    assert len(after - before) == 1


def test_a_training_continues_from_a_stored_model(http: httpx.Client) -> None:
    first = wait_for_training(http, http.post("/v1/trainings", json={**TINY, "steps": 120}).json()["id"])
    parent = first["model_id"]
    r = http.post("/v1/trainings", json={"dataset": "ring2d", "family": "gan", "init_from": parent, "steps": 60})
    assert r.status_code == 202, r.text
    assert r.json()["config"]["width"] == TINY["width"]  # the parent's recipe, not the dataset's
    done = wait_for_training(http, r.json()["id"])
    assert done["status"] == "succeeded", done
    child = http.get(f"/v1/models/{done['model_id']}").json()
    assert child["parent_model_id"] == parent and child["config"]["steps"] == 60
    samples = http.post(f"/v1/models/{child['id']}/samples", json={"n": 4, "seed": 1}).json()["samples"]
    assert len(samples) == 4

    wider = http.post("/v1/trainings", json={"dataset": "ring2d", "family": "gan", "init_from": parent, "width": 32})
    assert "width 16 -> 32" in assert_problem(wider, 422, "init_from")["detail"]
    vae = http.post("/v1/trainings", json={"dataset": "ring2d", "family": "vae", "init_from": parent})
    assert_problem(vae, 422, "init_from")
    assert_problem(http.post("/v1/trainings", json={**TINY, "init_from": "mdl_nope"}), 422, "init_from")
    images = http.post("/v1/trainings", json={"dataset": "digits", "family": "gan", "init_from": parent})
    assert_problem(images, 422, "init_from")
