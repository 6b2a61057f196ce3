"""The object layer's parts that the store tests do not reach: the read-through cache of an S3 store, the choice of
backend from the settings, S3 URLs and leases, and stores written by earlier versions (the local layout)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save

from models.data.arrays import ArrayDataset
from models.errors import NotFound
from models.objects import LEASE_TTL_S, LOCKS_PREFIX, LocalObjects, ReadCache, S3Objects, parse_s3_url
from models.registry import ModelRegistry
from models.store import ArtifactStore, content_id, new_id, utcnow
from tests.models.conftest import Backend, tiny_model
from worker.state.settings import WorkerSettings


def test_the_cache_keeps_the_most_recently_used_within_its_bound(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path / "cache", max_bytes=3000, namespace="s3://b/")
    fetched: list[str] = []

    def fetch(key: str) -> bytes:
        fetched.append(key)
        return key.encode() * (1000 // len(key))

    def read(key: str) -> bytes:
        return cache.use(key, lambda: fetch(key), Path.read_bytes)

    for key in ("a/1", "a/2", "a/3"):
        read(key)
        time.sleep(0.01)  # distinct modification times
    read("a/1")  # a hit: now the most recently used
    time.sleep(0.01)
    read("a/4")  # over the bound: a/2, the least recently used, goes
    assert fetched == ["a/1", "a/2", "a/3", "a/4"]
    read("a/1"), read("a/3")
    assert fetched == ["a/1", "a/2", "a/3", "a/4"]
    read("a/2")
    assert fetched[-1] == "a/2"
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) <= 3000
    cache.discard("a/2")
    read("a/2")
    assert fetched.count("a/2") == 3


@pytest.mark.parametrize("backend", ["s3"], indirect=True)  # the local backend reads its own files
def test_an_s3_store_reads_weights_and_datasets_through_its_cache(backend: Backend) -> None:
    writer, reader = backend.open(), backend.open()  # a worker and an API replica: no shared file system
    model_id = tiny_model(writer)
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    data = ArrayDataset(x=x, y=np.array([0, 1] * 3), kind="points", classes=["a", "b"])
    dataset, _ = writer.put_dataset("d", data)
    gets: list[str] = []
    real_get = reader.objects.get

    def counting_get(key: str) -> bytes:
        gets.append(key)
        return real_get(key)

    reader.objects.get = counting_get  # type: ignore[method-assign]
    for _ in range(3):
        assert torch.equal(reader.load_model_tensors(model_id)["w"], torch.arange(8.0))
        loaded = reader.load_dataset(dataset["id"])
        np.testing.assert_array_equal(loaded.x, data.x)
        assert loaded.y is not None and loaded.y.tolist() == [0, 1] * 3
    weights = f"models/{model_id}/weights.safetensors"
    assert gets.count(weights) == 1 and gets.count(f"datasets/{dataset['id']}/x.npy") == 1
    reader.delete_model(model_id)  # its cached copy goes with it
    with pytest.raises(NotFound):
        reader.load_model_tensors(model_id)
    assert reader.cache is not None and not any(reader.cache.directory.glob("*.safetensors"))


def test_the_settings_choose_the_backend(tmp_path: Path) -> None:
    local = WorkerSettings(store_dir=tmp_path / "store").artifact_store()
    assert isinstance(local.objects, LocalObjects) and local.cache is None
    s3 = WorkerSettings(
        store_url="s3://genserve-models/prod/", store_dir=tmp_path / "store", cache_dir=tmp_path / "c", cache_mb=5
    ).artifact_store()
    assert isinstance(s3.objects, S3Objects) and s3.location == "s3://genserve-models/prod/"
    assert s3.cache is not None and s3.cache.directory == tmp_path / "c" and s3.cache.max_bytes == 5 * 1024 * 1024
    for bad in ("http://bucket/x", "s3://", "s3://Bad_Bucket/x", "s3://bucket/../x"):
        with pytest.raises(ValidationError):
            WorkerSettings(store_url=bad)
    assert WorkerSettings(store_url="").store_url is None


def test_s3_urls() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket/a/b/") == ("my.bucket", "a/b/")
    with pytest.raises(ValueError):
        parse_s3_url("s3://bucket/a//b")


@pytest.mark.parametrize("backend", ["s3"], indirect=True)  # a flock goes with its holder's process
def test_an_expired_lease_is_taken_over(backend: Backend) -> None:
    """A holder that died leaves its lease object; once expired, the next holder takes it over."""
    store = backend.open()
    manifest, _ = store.put_dataset("a", ArrayDataset(x=np.zeros((3, 2), np.float32), y=None, kind="points"))
    lease = f"{LOCKS_PREFIX}datasets/{manifest['id']}"
    dead = {"owner": "gone:1:x", "expires": time.time() - 1}
    store.objects.put(lease, json.dumps(dead).encode())
    started = time.monotonic()
    with store.dataset_lock(manifest["id"]):
        assert json.loads(store.objects.get(lease))["owner"] != "gone:1:x"
    assert time.monotonic() - started < LEASE_TTL_S / 3
    assert not store.objects.exists(lease)  # released


def test_a_store_written_by_an_earlier_version_loads(tmp_path: Path) -> None:
    """The local backend's keys are the paths earlier versions wrote: their stores load and update as they are."""
    root = tmp_path / "store"
    data = ArrayDataset(x=np.ones((4, 2), np.float32), y=None, kind="points")
    dataset_id = content_id(data)
    (root / "datasets" / dataset_id).mkdir(parents=True)
    np.save(root / "datasets" / dataset_id / "x.npy", data.x)
    manifest = {"id": dataset_id, "name": "old", "kind": "points", "shape": [2], "size": 4, "classes": None}
    manifest |= {"builtin": False, "created_at": utcnow(), "owner": None, "stored_bytes": 32}
    (root / "datasets" / dataset_id / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tid = new_id("tr")
    (root / "trainings" / tid).mkdir(parents=True)
    (root / "trainings" / tid / ".lock").touch()
    (root / "trainings" / tid / "training.json").write_text(json.dumps({"id": tid, "created_at": utcnow(), "n": 1}))
    blob = save({"w": torch.ones(3)})  # the two-file checkpoint of earlier versions
    (root / "trainings" / tid / "checkpoint.safetensors").write_bytes(blob)
    import hashlib

    meta = {"step": 7, "sha256": hashlib.sha256(blob).hexdigest()}
    (root / "trainings" / tid / "checkpoint.json").write_text(json.dumps(meta))

    store = ArtifactStore(root)
    model_id = tiny_model(store)
    assert (root / "models" / model_id / "manifest.json").is_file()
    assert (root / "models" / model_id / "weights.safetensors").is_file()
    assert store.put_dataset("again", data) == (manifest, False)  # deduplicated against the old upload
    np.testing.assert_array_equal(store.load_dataset(dataset_id).x, data.x)
    assert store.update_training(tid, n=2)["n"] == 2
    assert store.training_files()[0][0] == tid
    loaded = store.load_checkpoint(tid)
    assert loaded is not None and loaded[1]["step"] == 7
    assert ModelRegistry(store).names() == []
    assert sorted(os.listdir(root)) == ["classifiers", "datasets", "models", "names", "tmp", "trainings", "trash"]
