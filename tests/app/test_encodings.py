"""VAE encodings over HTTP (in-process app): the posterior of each input, whose mean decodes (as `z` to samples) to
exactly the reconstruction, and which interpolations take as ends."""

from __future__ import annotations

import io

import httpx
import numpy as np

from app.settings import Settings
from tests.helpers import assert_problem, png, store_untrained_model


def test_points_encode_and_their_means_decode_to_the_reconstructions(client: httpx.Client, settings: Settings) -> None:
    vae = store_untrained_model(settings.store_dir, family="vae", latent_dim=3)
    points = [[0.5, -1.0], [2.0, 0.25]]
    r = client.post(f"/v1/models/{vae}/encodings", json={"points": points})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["latent_dim"] == 3 and np.asarray(body["mean"]).shape == (2, 3) == np.asarray(body["logvar"]).shape
    decoded = client.post(f"/v1/models/{vae}/samples", json={"z": body["mean"], "format": "json"}).json()["samples"]
    rebuilt = client.post(f"/v1/models/{vae}/reconstructions", json={"points": points, "format": "json"}).json()
    np.testing.assert_allclose(decoded, rebuilt["samples"], rtol=1e-5, atol=1e-6)
    path = client.post(
        f"/v1/models/{vae}/interpolations", json={"z_a": body["mean"][0], "z_b": body["mean"][1], "steps": 4}
    )
    assert path.status_code == 200 and len(path.json()["samples"]) == 4
    assert_problem(client.post(f"/v1/models/{vae}/encodings", json={"points": points, "format": "json"}), 422, "format")
    gan = store_untrained_model(settings.store_dir)
    assert_problem(client.post(f"/v1/models/{gan}/encodings", json={"points": points}), 422, "model_id")


def test_images_encode_from_an_upload(client: httpx.Client, settings: Settings) -> None:
    vae = store_untrained_model(settings.store_dir, family="vae", kind="images", shape=(8, 8), latent_dim=4)
    image = png((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8))
    r = client.post(f"/v1/models/{vae}/encodings", files={"file": ("x.png", io.BytesIO(image), "image/png")})
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["mean"]).shape == (1, 4)
