"""Two "machines" on this box, sharing only Redis and an S3 endpoint (moto's server): each has its own API process,
worker process, store directory (unused) and cache directory, and no directory in common. Upload through A, train
on B's worker, sample through both (the same bytes), delete through B and see A answer 404 within a second, kill B's
worker mid-training and watch A's worker resume it from the checkpoint in S3."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from models.store import open_store
from tests.conftest import S3_ENV, LiveService, make_settings, wait_until
from tests.e2e.test_faults import FAST, LONG_GAN, TINY, kill_session, session_alive
from tests.helpers import blobs_csv, wait_for_training

pytestmark = pytest.mark.slow


class Machine:
    def __init__(self, name: str, root: Path, redis_url: str, store_url: str, endpoint: str) -> None:
        self.root = root
        root.mkdir(parents=True)
        settings = make_settings(root, redis_url, store_url=store_url, cache_dir=root / "cache", **FAST)
        self.live = LiveService(settings, root)
        self.live.env.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
        self.http = httpx.Client(base_url=self.live.base_url, timeout=60)
        self.name = name


@pytest.fixture
def machines(
    tmp_path: Path, redis_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Machine, Machine, str]]:
    import boto3

    bucket = f"genserve-two-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **_keys()).create_bucket(Bucket=bucket)
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)  # this process reads the bucket too (checkpoints)
    Redis.from_url(redis_url).flushdb()
    store_url = f"s3://{bucket}/deployment"
    a = Machine("A", tmp_path / "a", redis_url, store_url, s3_endpoint)
    b = Machine("B", tmp_path / "b", redis_url, store_url, s3_endpoint)
    try:
        yield a, b, store_url
    except BaseException:
        for m in (a, b):
            print(f"=== machine {m.name}\n{m.live.logs()}")
        raise
    finally:
        for m in (a, b):
            m.http.close()
            m.live.stop()
        Redis.from_url(redis_url).flushdb()


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}


def test_two_machines_share_only_redis_and_s3(machines: tuple[Machine, Machine, str], tmp_path: Path) -> None:
    a, b, store_url = machines
    worker_b = b.live.start_worker()
    a.live.start_api()
    b.live.start_api()

    # Upload through A; train on B's worker (the only one so far).
    upload = a.http.post("/v1/datasets", files={"file": ("blobs.csv", blobs_csv())}, data={"name": "blobs"})
    assert upload.status_code == 201, upload.text
    dataset = upload.json()["id"]
    started = a.http.post("/v1/trainings", json={"dataset": dataset, "family": "gan", **TINY, "steps": 300}).json()
    done = wait_for_training(a.http, started["id"], timeout_s=120)
    assert done["status"] == "succeeded", done
    model = done["model_id"]

    # The same bytes through either API; B had never seen the model (its first sample loads it from S3, cold).
    body = {"n": 64, "seed": 5, "format": "npy"}
    cold = time.monotonic()
    from_b = b.http.post(f"/v1/models/{model}/samples", json=body)
    cold_s = time.monotonic() - cold
    from_a = a.http.post(f"/v1/models/{model}/samples", json=body)
    assert from_a.status_code == from_b.status_code == 200 and from_a.content == from_b.content

    # Deleted through B: A answers 404 within a second.
    assert b.http.delete(f"/v1/models/{model}").status_code == 204
    deleted = time.monotonic()
    wait_until(
        lambda: a.http.post(f"/v1/models/{model}/samples", json=body).status_code == 404,
        1.0,
        interval_s=0.02,
        message="A to answer 404",
    )
    noticed_s = time.monotonic() - deleted

    # B's worker killed mid-training; A's worker resumes it from the checkpoint in S3.
    long = a.http.post("/v1/trainings", json={**LONG_GAN, "steps": 2500}).json()
    store = open_store(store_url, tmp_path / "reader-store", tmp_path / "reader-cache", 64)

    def checkpoint_step() -> int:
        loaded = store.load_checkpoint(long["id"])
        return 0 if loaded is None else int(loaded[1]["step"])

    wait_until(lambda: checkpoint_step() > 0, 60, message="a first checkpoint in S3")
    kill_session(worker_b.pid)
    worker_b.wait(10)
    wait_until(lambda: not session_alive(worker_b.pid), 10, message="B's worker to die")
    checkpointed = checkpoint_step()
    a.live.start_worker()
    resumed = wait_for_training(b.http, long["id"], timeout_s=120)
    assert resumed["status"] == "succeeded", resumed
    assert resumed["lost_workers"] == 1 and resumed["resumed_from_step"] >= checkpointed > 0, resumed

    # No directory in common, and nothing in either machine's local store directory: everything went to S3.
    for m in (a, b):
        local = m.live.settings.store_dir
        assert not local.exists() or not any(p.is_file() for p in local.rglob("*")), list(local.rglob("*"))[:5]
    assert {a.live.settings.cache_dir, b.live.settings.cache_dir}.isdisjoint({tmp_path})
    print(
        f"cold first sample on a new replica {cold_s * 1000:.0f} ms; delete noticed by the other in {noticed_s:.2f} s"
    )
