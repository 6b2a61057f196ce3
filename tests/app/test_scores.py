"""POST /v1/models/{id}/scores over HTTP: VAE log-likelihood bounds per input, and its problem responses."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from app.settings import Settings
from models.data.arrays import ArrayDataset, DatasetSplits
from models.recipes import resolve_config
from models.store import ArtifactStore
from models.training import TrainResult, train
from tests.helpers import DEVICE, assert_problem, training_record
from worker.jobs import store_model

DEV = torch.device(DEVICE)  # the CPU unless GENSERVE_TEST_DEVICE says otherwise


def _train(data: ArrayDataset, dataset_id: str, **overrides: Any) -> tuple[TrainResult, dict[str, Any]]:
    """A tiny model trained in-process, and the training record the worker would have."""
    config = resolve_config(
        {"steps": 150, "batch_size": 64, "width": 32, "latent_dim": 2, "seed": 1, "eval_iw_k": 4, **overrides},
        dataset_id=dataset_id,
        kind=data.kind,
        sample_shape=data.sample_shape,
        num_classes=data.num_classes,
    )
    result = train(config, DatasetSplits(train=data, test=data), device=DEV)
    return result, training_record(dataset_id, config.to_dict(), data.classes)


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[TrainResult, dict[str, Any]]]:
    rng = np.random.default_rng(0)
    points = ArrayDataset(rng.normal(size=(512, 2)).astype(np.float32), None, "points")
    y = rng.integers(0, 2, 256)
    x = np.full((256, 8, 8), 20, np.uint8)
    x[y == 0, :4] = 230
    x[y == 1, 4:] = 230
    images = ArrayDataset(x, y.astype(np.int64), "images", ["top", "bottom"])
    return {
        "vae": _train(points, "ds_points", family="vae"),
        "gan": _train(points, "ds_points", family="gan", steps=5),
        "image_vae": _train(images, "ds_bars", family="vae", conditional=True, steps=60, width=8),
    }


@pytest.fixture
def models(settings: Settings, trained: dict[str, tuple[TrainResult, dict[str, Any]]]) -> dict[str, str]:
    """The trained models, stored as the worker stores them."""
    store = ArtifactStore(settings.store_dir)
    return {name: store_model(store, record, result) for name, (result, record) in trained.items()}


def npz(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x)
    return buf.getvalue()


def test_in_distribution_points_score_higher(client: httpx.Client, models: dict[str, str]) -> None:
    points = [[0.0, 0.0], [0.5, -0.5], [20.0, 20.0], [-8.0, 3.0]]
    r = client.post(f"/v1/models/{models['vae']}/scores", json={"points": points})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 100 and body["unit"] == "nats" and len(body["scores"]) == 4
    near, far = body["scores"][:2], body["scores"][2:]
    assert min(near) > max(far) + 10
    again = client.post(f"/v1/models/{models['vae']}/scores", json={"points": points}).json()
    assert again["scores"] == body["scores"]  # fixed noise: the same input, the same score
    swapped = client.post(f"/v1/models/{models['vae']}/scores", json={"points": points[::-1]}).json()
    assert swapped["scores"] == pytest.approx(body["scores"][::-1], rel=1e-5)  # independent of its neighbours
    elbo = client.post(f"/v1/models/{models['vae']}/scores?k=1", json={"points": points[:1]}).json()
    assert elbo["k"] == 1 and elbo["scores"][0] <= body["scores"][0] + 1e-3  # the IW bound is tighter


def test_image_scores_from_an_upload(client: httpx.Client, models: dict[str, str]) -> None:
    x = np.full((3, 8, 8), 20, np.uint8)
    x[0, :4] = 230
    x[1, 4:] = 230
    x[2] = np.random.default_rng(0).integers(0, 256, (8, 8))  # noise: an outlier
    r = client.post(
        f"/v1/models/{models['image_vae']}/scores?k=20",
        files={"file": ("x.npz", npz(x), "application/octet-stream")},
        data={"labels": "0,1,0"},
    )
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    assert len(scores) == 3 and max(scores[:2]) < 0 and scores[2] < min(scores[:2])


@pytest.mark.parametrize(
    ("case", "model", "url", "kwargs", "status", "field"),
    [
        ("a GAN", "gan", "", {"json": {"points": [[0.0, 0.0]]}}, 422, "path.model_id"),
        ("wrong dims", "vae", "", {"json": {"points": [[0.0, 0.0, 1.0]]}}, 422, "body.points"),
        ("k zero", "vae", "?k=0", {"json": {"points": [[0.0, 0.0]]}}, 422, "query.k"),
        ("k too big", "vae", "?k=100000", {"json": {"points": [[0.0, 0.0]]}}, 422, "query.k"),
        ("unknown field", "vae", "", {"json": {"points": [[0.0, 0.0]], "k": 3}}, 422, "body.k"),
        ("format", "vae", "", {"json": {"points": [[0.0, 0.0]], "format": "npy"}}, 422, "body.format"),
        (
            "no labels",
            "image_vae",
            "",
            {"files": {"file": ("x.npz", npz(np.zeros((1, 8, 8), np.uint8)))}},
            422,
            "body.labels",
        ),
        ("points as a form", "vae", "", {"files": {"file": ("x.npz", b"...")}}, 415, "header.content-type"),
    ],
)
def test_bad_score_requests(
    client: httpx.Client,
    models: dict[str, str],
    case: str,
    model: str,
    url: str,
    kwargs: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body = assert_problem(client.post(f"/v1/models/{models[model]}/scores{url}", **kwargs), status, field)
    if case == "a GAN":
        assert models["gan"] in body["detail"]


def test_unknown_model(client: httpx.Client) -> None:
    assert_problem(client.post("/v1/models/mdl_0123456789abcdef/scores", json={"points": [[0.0, 0.0]]}), 404)
