"""The main path against a real service: upload, train, follow, sample; the answers as the server sent them."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import TINY, Service
from genserve_client import Client, Dataset, Event, Model, Training


@dataclass
class Trained:
    dataset: Dataset
    training: Training
    model: Model
    seen: list[Training | Event]


def ring_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angles = rng.integers(0, 8, n) * (np.pi / 4)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) + rng.normal(0, 0.02, (n, 2))


@pytest.fixture(scope="module")
def points_vae(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A CSV upload (with a label column) and a VAE trained on it, followed to its end."""
    path = tmp_path_factory.mktemp("csv") / "ring.csv"
    points = ring_points(400)
    rows = [f"{x:.5f},{y:.5f},{'top' if y > 0 else 'bottom'}" for x, y in points]
    path.write_text("x,y,label\n" + "\n".join(rows) + "\n")
    with service.client() as c:
        dataset = c.datasets.upload(path, name="client ring")
        training = c.trainings.create(dataset.id, "vae", steps=150, **TINY)
        seen: list[Training | Event] = []
        model = training.wait(progress=seen.append, timeout=60)
    return Trained(dataset, training, model, seen)


def test_a_csv_upload_reads_as_a_dataset(points_vae: Trained) -> None:
    d = points_vae.dataset
    assert d.id.startswith("ds_") and d.name == "client ring"
    assert (d.kind, d.shape, d.size, d.classes, d.builtin) == ("points", (2,), 400, ("bottom", "top"), False)
    assert d.created_at is not None and d.created_at.tzinfo is not None


def test_arrays_upload_as_npz_and_equal_content_answers_the_stored_dataset(client: Client) -> None:
    points = ring_points(200, seed=1).astype(np.float32)
    first = client.datasets.upload(points, name="client array")
    assert (first.kind, first.shape, first.size, first.classes) == ("points", (2,), 200, None)
    again = client.datasets.upload(points, name="another name")
    assert again.id == first.id and again.name == "client array" and again.note  # stored already: its first name
    images = np.random.default_rng(2).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    labeled = client.datasets.upload(images, name="client images", labels=[i % 2 for i in range(20)])
    assert (labeled.kind, labeled.shape, labeled.size, labeled.classes) == ("images", (8, 8), 20, ("0", "1"))
    assert client.datasets.get(labeled.id).classes == ("0", "1")
    client.datasets.delete(labeled.id)


def test_wait_follows_the_events_and_returns_the_model(client: Client, points_vae: Trained) -> None:
    training, model, seen = points_vae.training, points_vae.model, points_vae.seen
    events = [e for e in seen if isinstance(e, Event)]
    assert events == seen  # the stream was there: no polling
    steps = [e.progress.step for e in events if e.event == "progress" and e.progress]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] == 150
    assert events[-1].is_terminal and events[-1].status == "succeeded"
    assert training.status == "succeeded" and training.model_id == model.id and training.done
    assert training.progress is not None and training.progress.step == 150
    assert (model.family, model.dataset, model.kind, model.sample_shape, model.latent_dim) == (
        "vae",
        points_vae.dataset.id,
        "points",
        (2,),
        4,
    )
    fresh = client.trainings.get(training.id)
    assert fresh.refresh() is fresh and fresh.model_id == model.id and fresh.finished_at is not None


def test_samples_are_the_bytes_the_server_sends(service: Service, client: Client, points_vae: Trained) -> None:
    model = points_vae.model
    samples = client.models.sample(model.id, n=16, seed=3, format="npy")
    raw = httpx.post(
        f"{service.url}/v1/models/{model.id}/samples",
        json={"n": 16, "seed": 3, "format": "npy"},
        headers=service.headers(),
    )
    assert raw.status_code == 200 and samples.content == raw.content
    assert (samples.format, samples.media_type, samples.seed) == ("npy", "application/octet-stream", 3)
    x = samples.array()
    assert x.shape == (16, 2) and x.dtype == np.float32
    as_json = client.models.sample(model, n=16, seed=3, format="json")
    assert np.allclose(as_json.array(), x, atol=1e-5) and as_json.json()["seed"] == 3
    default = client.models.sample(model.id, n=2, format=None)  # the server's default for points: json
    assert default.format == "json" and default.seed is not None
    grid = client.models.sample(model.id, n=64, seed=3, format="grid")  # points: a scatter plot
    (picture,) = grid.images()
    assert grid.media_type == "image/png" and picture.size[0] > 100 and grid.array().ndim == 3
    with pytest.raises(ValueError, match="points"):
        samples.images()


def test_interpolations_reconstructions_and_scores_of_points(client: Client, points_vae: Trained) -> None:
    model = points_vae.model
    path = client.models.interpolate(model.id, seed_a=1, seed_b=2, steps=5)
    assert path.array().shape == (5, 2)
    z = np.zeros((2, 4), dtype=np.float32)
    from_z = client.models.sample(model.id, z=z, format="npy")
    assert from_z.array().shape == (2, 2) and from_z.seed is None
    between = client.models.interpolate(model.id, z_a=z[0], z_b=np.ones(4), steps=3, format="json")
    assert between.array().shape == (3, 2)
    points = ring_points(3, seed=4)
    assert client.models.reconstruct(model.id, points.tolist()).array().shape == (3, 2)
    assert client.models.reconstruct(model.id, points, format="json").array().shape == (3, 2)
    scores = client.models.score(model.id, points, k=4)
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    far = client.models.score(model.id, [[50.0, 50.0]], k=4)
    assert far[0] < min(scores)  # an outlier scores lower


def digits_zip() -> bytes:
    """A zip of 8x8 PNGs in two class folders: bars across ("h") and down ("v")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(24):
            pixels = np.zeros((8, 8), dtype=np.uint8)
            if i % 2:
                pixels[:, i % 8] = 255
            else:
                pixels[i % 8, :] = 255
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG")
            archive.writestr(f"{'vh'[i % 2 == 0]}/{i:02d}.png", png.getvalue())
    return buffer.getvalue()


def test_an_image_model_answers_pictures(client: Client, tmp_path: Path) -> None:
    archive = digits_zip()
    dataset = client.datasets.upload(archive, name="client bars")  # bytes: the zip's extension comes from its content
    assert (dataset.kind, dataset.shape, dataset.classes) == ("images", (8, 8), ("h", "v"))
    training = client.trainings.create(dataset, "vae", steps=60, batch_size=8, width=16, latent_dim=2)
    model = training.wait(timeout=60)
    assert (model.kind, model.sample_shape) == ("images", (8, 8))
    png = client.models.sample(model.id, n=4, seed=1, format="png")
    images = png.images()
    assert len(images) == 4 and all(im.size == (8, 8) for im in images)
    assert png.array().shape == (4, 8, 8) and png.array().dtype == np.uint8
    npy = client.models.sample(model.id, n=4, seed=1)
    assert npy.array().shape == (4, 8, 8) and [im.size for im in npy.images()] == [(8, 8)] * 4
    assert client.models.sample(model.id, n=4, format=None).format == "png"  # the server's default for images
    (grid,) = client.models.sample(model.id, n=4, seed=1, format="grid").images()
    assert grid.size[0] >= 16
    inputs = npy.array()  # (N, H, W) floats: sent as an .npz upload
    assert client.models.reconstruct(model.id, inputs).array().shape == (4, 8, 8)
    (tmp_path / "one.png").write_bytes(png_bytes(images[0]))
    assert client.models.reconstruct(model.id, tmp_path / "one.png").array().shape == (1, 8, 8)
    assert len(client.models.score(model.id, archive, k=2)) == 24


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
