"""The artifact store's two backends for the store and registry tests: a local directory, and S3 served by moto's
server on 127.0.0.1 (one server per session, a fresh bucket per test).

The S3 server is tests/conftest.py's `s3_endpoint`.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from models.manifest import ModelManifest
from models.nets import ModelSpec
from models.store import ArtifactStore, new_id, open_store, utcnow
from tests.conftest import S3_ENV

BACKENDS = ["local", "s3"]


@dataclass
class Backend:
    """Where a test's store lives; `open()` gives another store on it, as another process or machine would."""

    name: str
    root: Path  # the local store's directory; the S3 store's cache directory is beside it
    url: str | None = None
    cache_mb: int = 64

    def open(self) -> ArtifactStore:
        return open_store(self.url, self.root, self.root.parent / f"cache-{os.getpid()}", self.cache_mb)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "local":
        return Backend("local", tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"genserve-test-{uuid.uuid4().hex[:12]}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return Backend("s3", tmp_path / "store", url=f"s3://{bucket}/deploy/a")


@pytest.fixture
def store(backend: Backend) -> ArtifactStore:
    return backend.open()


def tiny_model(store: ArtifactStore, width: int = 8) -> str:
    """A small GAN's manifest and made-up weights in the store (enough for the store and registry tests)."""
    spec = ModelSpec(
        family="gan", kind="points", sample_shape=(2,), latent_dim=1, num_classes=0, architecture="mlp", width=width
    )
    manifest = ModelManifest(id=new_id("mdl"), dataset="ds_x", created_at=utcnow(), spec=spec)
    store.put_model(manifest, {"w": torch.arange(float(width)), "b": torch.ones(3)})
    return manifest.id
