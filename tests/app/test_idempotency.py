"""Idempotency-Key on the creating routes (in-process app, real Redis): a retried POST answers the first request's
resource, a reused key with another request is a 422 naming the header, a failed request frees its key."""

from __future__ import annotations

import httpx
from redis import Redis

from tests.helpers import assert_problem, blobs_csv

TRAINING = {"dataset": "ring2d", "family": "gan", "steps": 10}


def test_a_retried_training_request_gets_the_first_training(client: httpx.Client, redis: Redis) -> None:
    first = client.post("/v1/trainings", json=TRAINING, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    again = client.post("/v1/trainings", json=TRAINING, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.headers["location"] == first.headers["location"]
    assert len(client.get("/v1/trainings").json()["items"]) == 1
    other = client.post("/v1/trainings", json={**TRAINING, "steps": 11}, headers={"Idempotency-Key": "k-1"})
    assert "another request" in assert_problem(other, 422, "idempotency-key")["detail"]
    fresh = client.post("/v1/trainings", json=TRAINING, headers={"Idempotency-Key": "k-2"})
    assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]
    assert client.post("/v1/trainings", json=TRAINING).json()["id"] not in (first.json()["id"], fresh.json()["id"])
    ttl = max(redis.ttl(k) for k in redis.scan_iter("genserve:idempotency:*"))
    assert 23 * 3600 < ttl <= 24 * 3600


def test_a_failed_request_frees_its_key(client: httpx.Client) -> None:
    failed = client.post("/v1/trainings", json={**TRAINING, "dataset": "nope"}, headers={"Idempotency-Key": "k"})
    assert_problem(failed, 422, "dataset")
    assert client.post("/v1/trainings", json=TRAINING, headers={"Idempotency-Key": "k"}).status_code == 202
    for bad in ("", "x" * 256, "a\tb"):
        r = client.post("/v1/trainings", json=TRAINING, headers={"Idempotency-Key": bad})
        assert_problem(r, 422, "idempotency-key")


def test_a_retried_upload_gets_the_first_dataset(client: httpx.Client) -> None:
    def upload(name: str, key: str, content: bytes) -> httpx.Response:
        files = {"file": ("points.csv", content, "text/csv")}
        return client.post("/v1/datasets", files=files, data={"name": name}, headers={"Idempotency-Key": key})

    first = upload("blobs", "u-1", blobs_csv(seed=5))
    assert first.status_code == 201
    again = upload("blobs", "u-1", blobs_csv(seed=5))  # a new multipart boundary, the same request
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert_problem(upload("blobs", "u-1", blobs_csv(seed=6)), 422, "idempotency-key")
    assert_problem(upload("other name", "u-1", blobs_csv(seed=5)), 422, "idempotency-key")
