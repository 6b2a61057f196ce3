"""Bad requests get a 4xx problem+json that names the field (and the limit), and leave nothing behind."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from redis import Redis

from app.settings import Settings
from models.data.arrays import ArrayDataset, DatasetSplits
from models.recipes import resolve_config
from models.store import ArtifactStore
from models.training import train
from tests.helpers import assert_problem, blobs_csv, store_files, training_record
from worker.jobs import store_model


def snapshot(settings: Settings, redis: Redis) -> dict[str, Any]:
    files = store_files(settings.store_dir)
    return {"files": files, "keys": sorted(redis.keys("*"))}


@pytest.fixture
def models(settings: Settings) -> dict[str, str]:
    """A tiny unconditional point GAN, trained in-process and stored as the worker stores models."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype(np.float32)
    data = ArrayDataset(x=x, y=None, kind="points")
    config = resolve_config(
        {"family": "gan", "steps": 5, "batch_size": 16, "width": 16, "latent_dim": 3, "seed": 1},
        dataset_id="upload",
        kind="points",
        sample_shape=(2,),
        num_classes=0,
    )
    result = train(config, DatasetSplits(train=data, test=data), device=__import__("torch").device("cpu"))
    store = ArtifactStore(settings.store_dir)
    record = training_record("ring2d", config.to_dict(), None)
    return {"gan": store_model(store, record, result)}


BAD_TRAININGS: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown dataset", {"dataset": "nope", "family": "vae"}, 422, "body.dataset"),
    ("unknown family", {"dataset": "ring2d", "family": "diffusion"}, 422, "body.family"),
    ("zero steps", {"dataset": "ring2d", "family": "vae", "steps": 0}, 422, "body.steps"),
    ("steps over the limit", {"dataset": "ring2d", "family": "vae", "steps": 10**9}, 422, "body.steps"),
    ("lr out of range", {"dataset": "ring2d", "family": "gan", "lr": 5}, 422, "body.lr"),
    ("negative batch", {"dataset": "ring2d", "family": "gan", "batch_size": -4}, 422, "body.batch_size"),
    ("latent too big", {"dataset": "ring2d", "family": "gan", "latent_dim": 100_000}, 422, "body.latent_dim"),
    ("conditional on unlabeled", {"dataset": "ring2d", "family": "vae", "conditional": True}, 422, "body.conditional"),
    ("conv on points", {"dataset": "ring2d", "family": "vae", "architecture": "conv"}, 422, "body.architecture"),
    ("typo in a field", {"dataset": "ring2d", "family": "vae", "stepz": 10}, 422, "body.stepz"),
    ("GAN option on a VAE", {"dataset": "ring2d", "family": "vae", "gan_loss": "hinge"}, 422, "body.gan_loss"),
    ("VAE option on a GAN", {"dataset": "ring2d", "family": "gan", "free_bits": 0.5}, 422, "body.free_bits"),
    (
        "mode of a Gaussian",
        {"dataset": "ring2d", "family": "vae", "decoder_output": "mode"},
        422,
        "body.decoder_output",
    ),
    (
        "too many latent categories",
        {"dataset": "ring2d", "family": "gan", "latent_categories": 5000},
        422,
        "body.latent_categories",
    ),
    (
        "too many latent bins in all",  # moons2d: its recipe sets no bins, so all 64 coordinates are binned
        {"dataset": "moons2d", "family": "gan", "latent_dim": 64, "latent_categories": 1000},
        422,
        "body.latent_categories",
    ),
    (
        "latent categories on a VAE",
        {"dataset": "ring2d", "family": "vae", "latent_categories": 8},
        422,
        "body.latent_categories",
    ),
    ("seed negative", {"dataset": "ring2d", "family": "gan", "seed": -1}, 422, "body.seed"),
    ("string for a number", {"dataset": "ring2d", "family": "gan", "steps": "many"}, 422, "body.steps"),
    ("missing family", {"dataset": "ring2d"}, 422, "body.family"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_TRAININGS, ids=[c[0] for c in BAD_TRAININGS])
def test_bad_training_requests(
    client: httpx.Client, settings: Settings, redis: Redis, case: str, body: dict[str, Any], status: int, field: str
) -> None:
    before = snapshot(settings, redis)
    assert_problem(client.post("/v1/trainings", json=body), status, field)
    assert snapshot(settings, redis) == before


def test_malformed_json_and_wrong_content_type(client: httpx.Client, settings: Settings, redis: Redis) -> None:
    before = snapshot(settings, redis)
    assert_problem(
        client.post("/v1/trainings", content=b"{nope", headers={"content-type": "application/json"}), 422, "body"
    )
    assert_problem(
        client.post(
            "/v1/trainings", content=b"dataset=ring2d", headers={"content-type": "application/x-www-form-urlencoded"}
        ),
        422,
        "body",
    )
    assert snapshot(settings, redis) == before


def test_mnist_missing_offline_says_where_and_why(
    client: httpx.Client, settings: Settings, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The answer says MNIST could not be had; where it was looked for and why it failed go to the log only."""
    before = snapshot(settings, redis)
    body = assert_problem(client.post("/v1/trainings", json={"dataset": "mnist", "family": "vae"}), 503)
    assert "mnist" in body["detail"] and "log" in body["detail"]
    assert str(settings.data_dir) not in body["detail"] and settings.mnist_url not in body["detail"]
    assert int(client.post("/v1/trainings", json={"dataset": "mnist", "family": "gan"}).headers["retry-after"]) > 0
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert str(settings.data_dir) in logged and "127.0.0.1:9" in logged
    assert snapshot(settings, redis) == before


def test_batch_larger_than_the_dataset(client: httpx.Client, settings: Settings, redis: Redis) -> None:
    r = client.post("/v1/datasets", files={"file": ("few.csv", blobs_csv(n=20), "text/csv")}, data={"name": "few"})
    assert r.status_code == 201
    before = snapshot(settings, redis)
    assert_problem(
        client.post("/v1/trainings", json={"dataset": r.json()["id"], "family": "gan", "batch_size": 64}),
        422,
        "body.batch_size",
    )
    assert snapshot(settings, redis) == before


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


BAD_UPLOADS: list[tuple[str, dict[str, Any], dict[str, str], int, str]] = [
    ("wrong file type", {"file": ("notes.txt", b"hello", "text/plain")}, {"name": "x"}, 415, "body.file"),
    ("empty file", {"file": ("empty.csv", b"", "text/csv")}, {"name": "x"}, 422, "body.file"),
    ("corrupt zip", {"file": ("broken.zip", b"PK\x03\x04garbage", "application/zip")}, {"name": "x"}, 422, "body.file"),
    (
        "fake png in zip",
        {"file": ("a.zip", _zip({"cats/1.png": b"\x89PNG not really"}), "application/zip")},
        {"name": "x"},
        422,
        "body.file.cats/1.png",
    ),
    ("csv with text", {"file": ("t.csv", b"x,y\n1,2\n3,abc\n", "text/csv")}, {"name": "x"}, 422, "body.file"),
    ("missing name", {"file": ("ok.csv", b"x,y\n1,2\n3,4\n", "text/csv")}, {}, 422, "body.name"),
    ("missing file", {}, {"name": "x"}, 422, "body.file"),
]


@pytest.mark.parametrize(("case", "files", "data", "status", "field"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_bad_uploads(
    client: httpx.Client,
    settings: Settings,
    redis: Redis,
    case: str,
    files: dict[str, Any],
    data: dict[str, str],
    status: int,
    field: str,
) -> None:
    before = snapshot(settings, redis)
    assert_problem(client.post("/v1/datasets", files=files or None, data=data), status, field)
    assert snapshot(settings, redis) == before


def test_upload_over_the_byte_limit(tmp_path: Path, redis_url: str, redis: Redis) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, redis_url, max_upload_bytes=1000)
    with TestClient(create_app(settings)) as c:
        before = snapshot(settings, redis)
        body = assert_problem(
            c.post("/v1/datasets", files={"file": ("big.csv", blobs_csv(n=500), "text/csv")}, data={"name": "big"}), 413
        )
        assert "GENSERVE_MAX_UPLOAD_BYTES" in body["detail"] or body.get("limit")
        assert snapshot(settings, redis) == before


def bad_samples(gan: str) -> list[tuple[str, str, dict[str, Any], int, str | None]]:
    url = f"/v1/models/{gan}/samples"
    return [
        ("n zero", url, {"n": 0}, 422, "body.n"),
        ("n too large", url, {"n": 10**6}, 422, "body.n"),
        ("seed negative", url, {"seed": -5}, 422, "body.seed"),
        ("seed too large", url, {"seed": 2**40}, 422, "body.seed"),
        ("labels on unconditional", url, {"n": 2, "labels": [0, 1]}, 422, "body.labels"),
        ("z of the wrong size", url, {"n": 1, "z": [[0.0] * 7]}, 422, "body.z"),
        ("z count differs from n", url, {"n": 3, "z": [[0.0, 0.0, 0.0]]}, 422, "body.z"),
        ("unknown format", url, {"format": "gif"}, 422, "body.format"),
        ("png for points", url, {"format": "png"}, 422, "body.format"),
        ("timeout zero", url, {"timeout_ms": 0}, 422, "body.timeout_ms"),
        ("unknown model", "/v1/models/mdl_0123456789abcdef/samples", {"n": 1}, 404, None),
        ("garbage model id", "/v1/models/..%2F..%2Fetc/samples", {"n": 1}, 404, None),
        (
            "interpolation of one step",
            f"/v1/models/{gan}/interpolations",
            {"seed_a": 1, "seed_b": 2, "steps": 1},
            422,
            "body.steps",
        ),
        ("interpolation without ends", f"/v1/models/{gan}/interpolations", {"steps": 3}, 422, "body"),
        ("reconstruction from a GAN", f"/v1/models/{gan}/reconstructions", {"points": [[0, 0]]}, 422, "model_id"),
    ]


def test_bad_sample_requests(client: httpx.Client, settings: Settings, redis: Redis, models: dict[str, str]) -> None:
    before = snapshot(settings, redis)
    for case, url, body, status, field in bad_samples(models["gan"]):
        response = client.post(url, json=body)
        try:
            assert_problem(response, status, field)
        except AssertionError as exc:
            raise AssertionError(f"{case}: {exc}") from None
    assert snapshot(settings, redis) == before


def test_unknown_ids_and_forbidden_deletes(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/trainings/tr_0123456789abcdef"), 404)
    assert_problem(client.post("/v1/trainings/tr_0123456789abcdef/cancel"), 404)
    assert_problem(client.get("/v1/trainings/tr_0123456789abcdef/events"), 404)
    assert_problem(client.get("/v1/models/whatever"), 404)
    assert_problem(client.delete("/v1/models/mdl_0123456789abcdef"), 404)
    assert_problem(client.get("/v1/datasets/ds_0123456789abcdef"), 404)
    assert_problem(client.delete("/v1/datasets/digits"), 403)
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.put("/v1/datasets"), 405)


def test_a_download_in_progress_is_answered_at_once(tmp_path: Path, redis_url: str, redis: Redis) -> None:
    """An MNIST URL that never answers: the first request starts the one download and waits briefly; every other
    request is answered 503 at once, and the API's other routes stay quick."""
    import socket
    import threading
    import time

    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    settings = make_settings(tmp_path, redis_url, mnist_url=url, download_timeout_s=20.0)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            started = time.monotonic()
            first = client.post("/v1/trainings", json={"dataset": "mnist", "family": "vae"})
            assert_problem(first, 503)
            assert "being downloaded" in first.json()["detail"] and int(first.headers["retry-after"]) > 0
            assert time.monotonic() - started < 10
            answers: list[tuple[int, float]] = []

            def ask() -> None:
                t = time.monotonic()
                r = client.post("/v1/trainings", json={"dataset": "mnist", "family": "gan"})
                answers.append((r.status_code, time.monotonic() - t))

            threads = [threading.Thread(target=ask) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert all(code == 503 and took < 2.0 for code, took in answers), answers
            t = time.monotonic()
            assert client.get("/v1/trainings").status_code == 200 and time.monotonic() - t < 2.0
    finally:
        silent.close()
