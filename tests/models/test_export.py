"""Exports that run outside genserve: TorchScript against eager PyTorch, ONNX under onnxruntime, at a batch size
other than the one traced, within 1e-4 of the served model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models import export
from models.nets import build_model
from models.store import ArtifactStore
from tests.helpers import store_untrained_model

CASES = [
    {"family": "gan", "kind": "points", "shape": (2,)},
    {"family": "gan", "kind": "images", "shape": (8, 8), "classes": ["a", "b", "c"]},
    {"family": "vae", "kind": "images", "shape": (8, 8)},
    {"family": "gan", "kind": "images", "shape": (8, 8), "classes": ["a", "b"], "latent_labels": True},
    {"family": "vae", "kind": "images", "shape": (8, 8), "vamp_components": 5},
    {"family": "vae", "kind": "images", "shape": (8, 8), "classes": ["a", "b"], "vamp_components": 3},
    {"family": "vae", "kind": "images", "shape": (8, 8), "decoder_output": "mode"},
]


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[
        "points GAN",
        "conditional image GAN",
        "image VAE",
        "image GAN drawing its labels",
        "image VAE, VampPrior",
        "conditional image VAE, VampPrior",
        "image VAE serving its mode",
    ],
)
def test_exports_match_the_served_model(tmp_path: Path, case: dict) -> None:  # type: ignore[type-arg]
    store = ArtifactStore(tmp_path)
    manifest = store.get_model(store_untrained_model(tmp_path, **case))
    tensors = store.load_model_tensors(manifest.id)
    served = build_model(manifest.spec)
    served.load_state_dict(tensors)
    served.eval()
    batch = 5  # not the traced batch
    z = torch.randn(batch, manifest.spec.latent_dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(batch) % manifest.spec.num_classes if manifest.spec.num_classes else None
    with torch.no_grad():
        expected = served.generate(z, labels).numpy()

    scripted = torch.jit.load(io.BytesIO(export.to_torchscript(manifest.spec, tensors)))
    with torch.no_grad():
        got = (scripted(z, labels) if labels is not None else scripted(z)).numpy()
    assert np.abs(got - expected).max() <= 1e-4

    session = ort.InferenceSession(export.to_onnx(manifest.spec, tensors))
    feeds = {"z": z.numpy()} | ({"labels": labels.numpy()} if labels is not None else {})
    assert [i.name for i in session.get_inputs()] == list(feeds)
    got = session.run(None, feeds)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4
