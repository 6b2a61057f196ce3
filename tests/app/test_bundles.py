"""Model bundles over HTTP (in-process apps, real Redis): exported from one store and imported into another, the
model gives byte-identical samples; hostile bundles get a 4xx naming what is wrong, and nothing is stored."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load, save

from app.main import create_app
from app.settings import Settings
from tests.conftest import make_settings
from tests.helpers import assert_problem, store_untrained_model


@pytest.fixture
def other(tmp_path: Path, redis_url: str) -> Iterator[TestClient]:
    """A second deployment: its own store."""
    with TestClient(create_app(make_settings(tmp_path / "other", redis_url)), raise_server_exceptions=False) as c:
        yield c


def bundle_of(client: httpx.Client, ref: str) -> bytes:
    r = client.get(f"/v1/models/{ref}/bundle")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    return r.content


def upload(client: httpx.Client, content: bytes, **form: str) -> httpx.Response:
    return client.post("/v1/models", files={"file": ("model.zip", content, "application/zip")}, data=form)


def test_a_bundle_travels_and_samples_the_same(client: httpx.Client, settings: Settings, other: TestClient) -> None:
    source = store_untrained_model(settings.store_dir, kind="images", shape=(8, 8), classes=["a", "b"], width=16)
    content = bundle_of(client, source)
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert set(zf.namelist()) == {"manifest.json", "weights.safetensors", "README.md", "samples.png"}
        card = zf.read("README.md").decode()
    assert "GAN of images (8, 8)" in card and "## Recipe" in card and "samples.png" in card
    r = upload(other, content, name="bars")
    assert r.status_code == 201, r.text
    imported = r.json()
    assert imported["imported_from"] == source and (imported["name"], imported["version"]) == ("bars", 1)
    request = {"n": 6, "seed": 11, "labels": [0, 1, 0, 1, 0, 1]}
    here = client.post(f"/v1/models/{source}/samples", json=request)
    there = other.post("/v1/models/bars:1/samples", json=request)
    assert here.status_code == there.status_code == 200
    assert here.content == there.content  # the same PNG bytes


def rewrite(content: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    change(files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tensors_changed(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[dict[str, bytes]], None]:
    def change(files: dict[str, bytes]) -> None:
        tensors = dict(load(files["weights.safetensors"]))
        edit(tensors)
        files["weights.safetensors"] = save(tensors)

    return change


def manifest_changed(edit: Callable[[dict[str, object]], None]) -> Callable[[dict[str, bytes]], None]:
    def change(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        edit(manifest)
        files["manifest.json"] = json.dumps(manifest).encode()

    return change


def first_float(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)


HOSTILE: list[tuple[str, Callable[[dict[str, bytes]], None], int, str]] = [
    ("no manifest", lambda f: f.pop("manifest.json"), 422, "manifest.json"),
    ("no weights", lambda f: f.pop("weights.safetensors"), 422, "weights.safetensors"),
    ("manifest not JSON", lambda f: f.update({"manifest.json": b"{nope"}), 422, "manifest.json"),
    ("manifest not a manifest", lambda f: f.update({"manifest.json": b'{"id": 3}'}), 422, "manifest.json"),
    ("an unknown family", manifest_changed(lambda m: m["spec"].update(family="diffusion")), 422, "manifest.json"),  # type: ignore[attr-defined]
    ("a manifest lying about the width", manifest_changed(lambda m: m["spec"].update(width=32)), 422, "file"),  # type: ignore[attr-defined]
    ("weights not safetensors", lambda f: f.update({"weights.safetensors": b"\x00" * 64}), 422, "weights"),
    ("a missing tensor", tensors_changed(lambda t: t.pop(first_float(t))), 422, "weights"),
    ("an extra tensor", tensors_changed(lambda t: t.update(extra=torch.zeros(3))), 422, "weights"),
    ("a wrong shape", tensors_changed(lambda t: t.update({first_float(t): torch.zeros(2, 2)})), 422, "weights"),
    (
        "a wrong dtype",
        tensors_changed(lambda t: t.update({first_float(t): t[first_float(t)].double()})),
        422,
        "weights",
    ),
    ("NaN weights", tensors_changed(lambda t: t[first_float(t)].view(-1).__setitem__(0, float("nan"))), 422, "weights"),
    ("path traversal", lambda f: f.update({"../evil.txt": b"x"}), 422, "file"),
    ("a zip bomb", lambda f: f.update({"zeros.bin": b"\x00" * 50_000_000}), 413, "file"),
]


@pytest.mark.parametrize(("case", "change", "status", "field"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bundles_are_refused_and_nothing_is_stored(
    client: httpx.Client,
    settings: Settings,
    other: TestClient,
    case: str,
    change: Callable[[dict[str, bytes]], None],
    status: int,
    field: str,
) -> None:
    good = bundle_of(client, store_untrained_model(settings.store_dir, width=16))
    assert_problem(upload(other, rewrite(good, change), name="x"), status, field)
    assert other.get("/v1/models").json()["items"] == [] and other.get("/v1/model-names").json()["items"] == []


def test_not_a_zip_and_a_bad_name(client: httpx.Client, settings: Settings, other: TestClient) -> None:
    assert_problem(upload(other, b"just bytes"), 422, "file")
    good = bundle_of(client, store_untrained_model(settings.store_dir))
    assert_problem(upload(other, good, name="Bad Name"), 422, "name")
    assert other.get("/v1/models").json()["items"] == []


def test_the_export_route(client: httpx.Client, settings: Settings) -> None:
    import onnxruntime as ort

    model = store_untrained_model(settings.store_dir, kind="images", shape=(8, 8), classes=["a", "b"])
    r = client.get(f"/v1/models/{model}/export", params={"format": "onnx"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream", r.text
    session = ort.InferenceSession(r.content)
    z = torch.zeros(2, client.get(f"/v1/models/{model}").json()["latent_dim"]).numpy()
    out = session.run(None, {"z": z, "labels": torch.tensor([0, 1]).numpy()})[0]
    assert out.shape == (2, 8, 8) and out.min() >= 0.0 and out.max() <= 1.0  # the npy format's values
    r = client.get(f"/v1/models/{model}/export", params={"format": "torchscript"})
    assert r.status_code == 200 and len(r.content) > 1000
    assert_problem(client.get(f"/v1/models/{model}/export", params={"format": "pickle"}), 422, "format")
    assert_problem(client.get("/v1/models/mdl_0123456789abcdef/export", params={"format": "onnx"}), 404)
