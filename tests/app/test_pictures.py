"""Pictures a person looks at, over HTTP: grids upscaled on request within a bound, scatter plots framed by the
training data with the data behind them on request, interpolations of a conditional model one row per class, and a
schema that documents each format's body."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from app.settings import Settings
from tests.helpers import assert_problem, decode_b64_png, store_untrained_model

DIGITS = [str(i) for i in range(10)]


def grid(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_a_grid_is_upscaled_pixel_by_pixel_within_the_limit(client: httpx.Client, settings: Settings) -> None:
    model = store_untrained_model(settings.store_dir, kind="images", shape=(8, 8))
    url = f"/v1/models/{model}/samples"
    small = grid(client.post(url, json={"n": 100, "seed": 1, "format": "grid"}))
    big = grid(client.post(url, json={"n": 100, "seed": 1, "format": "grid", "scale": 4}))
    assert small.shape == (102, 102) and big.shape == (408, 408)
    np.testing.assert_array_equal(big[::4, ::4], small)
    assert_problem(client.post(url, json={"n": 4, "format": "png", "scale": 2}), 422, "scale")  # grids only
    assert_problem(client.post(url, json={"n": 4, "format": "grid", "scale": 17}), 422, "scale")
    body = assert_problem(client.post(url, json={"n": 1024, "format": "grid", "scale": 16}), 422, "scale")
    assert body["limit"] == settings.max_grid_side_px and "GENSERVE_MAX_GRID_SIDE_PX" in body["detail"]
    assert_problem(client.post(url, json={"n": 4, "format": "grid", "show_data": True}), 422, "show_data")


def test_a_scatter_plot_is_framed_by_the_data_and_can_show_it(client: httpx.Client, settings: Settings) -> None:
    model = store_untrained_model(settings.store_dir, dataset="ring2d")
    url = f"/v1/models/{model}/samples"
    plain = grid(client.post(url, json={"n": 200, "seed": 3, "format": "grid"}))
    behind = grid(client.post(url, json={"n": 200, "seed": 3, "format": "grid", "show_data": True}))
    assert plain.shape[:2] == behind.shape[:2] == (512, 512) and not np.array_equal(plain, behind)
    fewer = grid(client.post(url, json={"n": 20, "seed": 4, "format": "grid", "scale": 2}))
    assert fewer.shape[:2] == (1024, 1024)
    assert_problem(client.post(url, json={"n": 4, "format": "json", "show_data": True}), 422, "show_data")
    gone = store_untrained_model(settings.store_dir)  # its dataset ("upload") was never stored
    r = client.post(f"/v1/models/{gone}/samples", json={"n": 5, "format": "grid", "show_data": True})
    assert "no longer stored" in assert_problem(r, 422, "show_data")["detail"]
    assert grid(client.post(f"/v1/models/{gone}/samples", json={"n": 5, "format": "grid"})).shape[:2] == (512, 512)


def test_an_interpolation_of_a_conditional_model_without_a_label_gives_a_path_per_class(
    client: httpx.Client, settings: Settings
) -> None:
    model = store_untrained_model(settings.store_dir, kind="images", shape=(8, 8), classes=DIGITS)
    url = f"/v1/models/{model}/interpolations"
    r = client.post(url, json={"seed_a": 1, "seed_b": 2, "steps": 6})
    assert r.status_code == 200, r.text
    images = [np.asarray(decode_b64_png(b)) for b in r.json()["images"]]
    assert len(images) == 6 * 10
    one = client.post(url, json={"seed_a": 1, "seed_b": 2, "steps": 6, "label": 3}).json()["images"]
    assert r.json()["images"][18:24] == one  # class 3's row is the labelled path
    picture = grid(client.post(url, json={"seed_a": 1, "seed_b": 2, "steps": 6, "format": "grid", "scale": 2}))
    assert picture.shape == (2 * (10 * 10 + 2), 2 * (6 * 10 + 2))  # a row per class, a column per step
    # A path per class counts against the samples a request may ask for
    from fastapi.testclient import TestClient

    from app.main import create_app

    smaller = settings.model_copy(update={"max_samples_per_request": 1024})
    with TestClient(create_app(smaller), raise_server_exceptions=False) as limited:
        body = assert_problem(limited.post(url, json={"seed_a": 1, "seed_b": 2, "steps": 200}), 422, "steps")
    assert "steps x classes" in body["detail"]


def test_the_schema_documents_each_formats_body(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/models/{model_id}/samples", "/v1/models/{model_id}/interpolations"):
        ok = spec["paths"][path]["post"]["responses"]["200"]
        assert "not from `Accept`" in ok["description"]
        content = ok["content"]
        assert {"application/json", "image/png", "application/octet-stream"} <= content.keys()
        bodies = content["application/json"]["schema"]["oneOf"]
        assert [set(b["required"]) for b in bodies] == [{"images", "seed"}, {"samples", "seed"}]
        assert set(content["application/json"]["examples"]) == {"png", "json"}


def test_a_gan_that_draws_its_labels_is_served_unconditional(client: httpx.Client, settings: Settings) -> None:
    """latent_labels: a GAN of labeled data that draws each sample's label from its latent takes z alone."""
    model = store_untrained_model(settings.store_dir, kind="images", shape=(8, 8), classes=DIGITS, latent_labels=True)
    manifest = client.get(f"/v1/models/{model}").json()
    assert manifest["conditional"] is False and not manifest.get("classes")
    assert manifest["config"]["latent_labels"] is True
    url = f"/v1/models/{model}/samples"
    r = client.post(url, json={"n": 4, "seed": 7, "format": "png"})
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 4
    assert_problem(client.post(url, json={"n": 2, "labels": [0, 1]}), 422, "labels")
