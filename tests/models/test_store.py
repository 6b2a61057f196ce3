"""The artifact store: content addressing, atomic writes (also under SIGKILL), ids that never reach a path."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data.arrays import ArrayDataset
from models.errors import NotFound
from models.manifest import ModelManifest
from models.nets import ModelSpec
from models.store import ID_PATTERN, ArtifactStore, atomic_write_bytes, new_id, utcnow


def points(n: int = 10, seed: int = 0) -> ArrayDataset:
    return ArrayDataset(x=np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32), y=None, kind="points")


def test_datasets_are_content_addressed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first, created = store.put_dataset("a", points())
    again, created_again = store.put_dataset("b", points())
    other, _ = store.put_dataset("c", points(seed=1))
    assert created and not created_again
    assert first["id"] == again["id"] != other["id"]
    assert again["name"] == "a"  # the stored dataset is returned as it is
    loaded = store.load_dataset(first["id"])
    np.testing.assert_array_equal(loaded.x, points().x)
    assert [d["id"] for d in store.list_datasets()] == [first["id"], other["id"]]


def test_labeled_images_round_trip(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = ArrayDataset(x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 1, 0]), kind="images", classes=["a", "b"])
    manifest, _ = store.put_dataset("imgs", data)
    assert manifest["shape"] == [8, 8] and manifest["classes"] == ["a", "b"] and manifest["size"] == 4
    back = store.load_dataset(manifest["id"])
    assert back.x.dtype == np.uint8 and back.y is not None and back.y.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("bad", ["../etc", "ds_../../x", "mdl_XYZ", "", "tr_12/34", "ds_" + "0" * 65, "mdl_0123abcd\n"])
def test_ids_that_are_not_ids_never_reach_a_path(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path)
    for get in (store.get_dataset, store.get_training, store.get_model):
        with pytest.raises(NotFound):
            get(bad)
    assert not store.has_model(bad)
    assert not ID_PATTERN.match(bad)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def _writer(path: str) -> None:
    i = 0
    while True:
        i += 1
        atomic_write_bytes(Path(path), json.dumps({"i": i, "pad": "x" * 200_000}).encode())


def test_sigkill_mid_write_leaves_a_whole_file(tmp_path: Path) -> None:
    """A writer killed at arbitrary moments never leaves a torn file behind."""
    target = tmp_path / "record.json"
    atomic_write_bytes(target, json.dumps({"i": 0, "pad": ""}).encode())
    ctx = multiprocessing.get_context("fork")
    for delay in (0.01, 0.03, 0.05, 0.08, 0.13):
        proc = ctx.Process(target=_writer, args=(str(target),))
        proc.start()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        json.loads(target.read_bytes())  # parses: old or new, never half


def test_model_publish_is_all_or_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    model_id = new_id("mdl")
    spec = ModelSpec(
        family="gan", kind="points", sample_shape=(2,), latent_dim=1, num_classes=0, architecture="mlp", width=8
    )
    manifest = ModelManifest(id=model_id, dataset="ds_x", created_at=utcnow(), spec=spec)
    shared = torch.zeros(4)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses tensors that share memory
        store.put_model(manifest, {"a": shared, "b": shared[:2]})
    assert not store.has_model(model_id)
    assert list((tmp_path / "models").iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    store.put_model(manifest, {"w": torch.arange(3.0)})
    assert store.has_model(model_id)
    assert torch.equal(store.load_model_tensors(model_id)["w"], torch.arange(3.0))
    store.delete_model(model_id)
    with pytest.raises(NotFound):
        store.get_model(model_id)
    assert list((tmp_path / "trash").iterdir()) == []


def test_checkpoint_with_mismatched_weights_is_ignored(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    store.save_checkpoint(tid, {"w": torch.ones(2)}, {"step": 5})
    tensors, meta = store.load_checkpoint(tid)  # type: ignore[misc]
    assert meta["step"] == 5 and torch.equal(tensors["w"], torch.ones(2))
    (tmp_path / "trainings" / tid / "checkpoint.safetensors").write_bytes(b"torn")
    assert store.load_checkpoint(tid) is None


def test_stale_staging_directories_are_swept(tmp_path: Path) -> None:
    ArtifactStore(tmp_path)
    stale = tmp_path / "tmp" / "half-built"
    stale.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    ArtifactStore(tmp_path)
    assert not stale.exists()


def _count(root: str, tid: str, n: int) -> None:
    """Add n to the record's counter, each by a compare-and-set that retries when another process came first."""
    store = ArtifactStore(root)
    done = 0
    while done < n:
        seen = store.get_training(tid).get("n", 0)
        if store.update_training_if(tid, lambda r, seen=seen: r.get("n", 0) == seen, n=seen + 1) is not None:
            done += 1


def test_record_updates_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_count, args=(str(tmp_path), tid, 40)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert store.get_training(tid)["n"] == 120


def _checkpoint_writer(root: str, tid: str) -> None:
    store = ArtifactStore(root)
    i = 0
    while True:
        i += 1
        store.save_checkpoint(tid, {"w": torch.full((100_000,), float(i))}, {"step": i})


def test_sigkill_mid_checkpoint_leaves_the_old_or_the_new_one(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    store.save_checkpoint(tid, {"w": torch.zeros(100_000)}, {"step": 0})
    ctx = multiprocessing.get_context("fork")
    for delay in (0.01, 0.03, 0.05, 0.08, 0.13, 0.21):
        proc = ctx.Process(target=_checkpoint_writer, args=(str(tmp_path), tid))
        proc.start()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        loaded = store.load_checkpoint(tid)
        assert loaded is not None  # never torn, never a mismatched pair
        tensors, meta = loaded
        assert bool((tensors["w"] == float(meta["step"])).all())
