"""The artifact store on both backends (a local directory, S3 on moto: tests/models/conftest.py): content addressing,
atomic writes (also under SIGKILL), ids that never reach a path, compare-and-swap record updates that lose nothing
under concurrent writers, create-only publication (exactly one of two publishers wins), the read-through cache."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
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
from tests.models.conftest import Backend


def points(n: int = 10, seed: int = 0) -> ArrayDataset:
    return ArrayDataset(x=np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32), y=None, kind="points")


def test_datasets_are_content_addressed(store: ArtifactStore) -> None:
    first, created = store.put_dataset("a", points())
    again, created_again = store.put_dataset("b", points())
    other, _ = store.put_dataset("c", points(seed=1))
    assert created and not created_again
    assert first["id"] == again["id"] != other["id"]
    assert again["name"] == "a"  # the stored dataset is returned as it is
    loaded = store.load_dataset(first["id"])
    np.testing.assert_array_equal(loaded.x, points().x)
    assert [d["id"] for d in store.list_datasets()] == [first["id"], other["id"]]


def test_labeled_images_round_trip(store: ArtifactStore) -> None:
    data = ArrayDataset(x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 1, 0]), kind="images", classes=["a", "b"])
    manifest, _ = store.put_dataset("imgs", data)
    assert manifest["shape"] == [8, 8] and manifest["classes"] == ["a", "b"] and manifest["size"] == 4
    back = store.load_dataset(manifest["id"])
    assert back.x.dtype == np.uint8 and back.y is not None and back.y.tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("bad", ["../etc", "ds_../../x", "mdl_XYZ", "", "tr_12/34", "ds_" + "0" * 65, "mdl_0123abcd\n"])
def test_ids_that_are_not_ids_never_reach_a_path(store: ArtifactStore, bad: str) -> None:
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


def test_model_publish_is_all_or_nothing(backend: Backend) -> None:
    store = backend.open()
    model_id = new_id("mdl")
    spec = ModelSpec(
        family="gan", kind="points", sample_shape=(2,), latent_dim=1, num_classes=0, architecture="mlp", width=8
    )
    manifest = ModelManifest(id=model_id, dataset="ds_x", created_at=utcnow(), spec=spec)
    shared = torch.zeros(4)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses tensors that share memory
        store.put_model(manifest, {"a": shared, "b": shared[:2]})
    assert not store.has_model(model_id)
    assert store.objects.list("models/") == []
    if backend.name == "local":
        assert list((backend.root / "models").iterdir()) == []
        assert list((backend.root / "tmp").iterdir()) == []
    store.put_model(manifest, {"w": torch.arange(3.0)})
    assert store.has_model(model_id)
    assert torch.equal(store.load_model_tensors(model_id)["w"], torch.arange(3.0))
    assert [m.id for m in store.list_models()] == [model_id]
    store.delete_model(model_id)
    with pytest.raises(NotFound):
        store.get_model(model_id)
    with pytest.raises(NotFound):
        store.load_model_tensors(model_id)
    assert store.objects.list("models/") == [] and store.list_models() == []
    if backend.name == "local":
        assert list((backend.root / "trash").iterdir()) == []


def test_weights_without_a_manifest_are_no_model(store: ArtifactStore) -> None:
    """A publisher that died between its weights and its manifest left no model behind."""
    model_id = new_id("mdl")
    store.put_model_weights(model_id, {"w": torch.ones(2)})
    assert not store.has_model(model_id) and store.list_models() == []
    with pytest.raises(NotFound):
        store.get_model(model_id)


def test_checkpoint_with_mismatched_weights_is_ignored(backend: Backend) -> None:
    store = backend.open()
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    store.save_checkpoint(tid, {"w": torch.ones(2)}, {"step": 5})
    tensors, meta = backend.open().load_checkpoint(tid)  # type: ignore[misc]  # another worker resumes it
    assert meta["step"] == 5 and torch.equal(tensors["w"], torch.ones(2))
    store.objects.put(f"trainings/{tid}/checkpoint.safetensors", b"torn")
    assert store.load_checkpoint(tid) is None
    store.delete_checkpoint(tid)
    assert store.load_checkpoint(tid) is None and store.get_training(tid)["status"] == "running"


def test_history_previews_and_deletion_of_a_training(store: ArtifactStore) -> None:
    tid = new_id("tr")
    with pytest.raises(NotFound):
        store.list_previews(tid)
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    assert store.get_history(tid) is None and store.list_previews(tid) == []
    store.put_history(tid, {"loss": [1.0, 0.5]})
    for step in (200, 100, 1000):
        store.put_preview(tid, step, f"png {step}".encode())
    assert store.get_history(tid) == {"loss": [1.0, 0.5]}
    assert store.list_previews(tid) == [100, 200, 1000] and store.get_preview(tid, 200) == b"png 200"
    assert [t for t, _ in store.training_files()] == [tid] and store.list_trainings()[0]["id"] == tid
    store.delete_training(tid)
    for call in (store.get_training, store.get_history, store.list_previews):
        with pytest.raises(NotFound):
            call(tid)
    assert store.training_files() == [] and store.objects.list("trainings/") == []


def test_stale_staging_directories_are_swept(tmp_path: Path) -> None:
    ArtifactStore(tmp_path)
    stale = tmp_path / "tmp" / "half-built"
    stale.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    ArtifactStore(tmp_path)
    assert not stale.exists()


def _count(backend: Backend, tid: str, n: int) -> None:
    """Add n to the record's counter, each by a compare-and-set that retries when another process came first."""
    store = backend.open()
    done = 0
    while done < n:
        seen = store.get_training(tid).get("n", 0)
        if store.update_training_if(tid, lambda r, seen=seen: r.get("n", 0) == seen, n=seen + 1) is not None:
            done += 1


def test_record_updates_from_several_processes_lose_nothing(backend: Backend) -> None:
    store = backend.open()
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    ctx = multiprocessing.get_context("fork")
    per_process = 40 if backend.name == "local" else 15
    procs = [ctx.Process(target=_count, args=(backend, tid, per_process)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert store.get_training(tid)["n"] == 3 * per_process


def test_concurrent_read_modify_writes_of_a_record_lose_nothing(backend: Backend) -> None:
    """Threads of several store instances (API replicas, workers, watchdogs) each set fields of one record at the
    same time: every write carries the whole record, so a lost update would drop another writer's fields."""
    store = backend.open()
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    writers, each = 4, 8
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        mine = backend.open()
        start.wait()
        try:
            for j in range(each):
                mine.update_training(tid, **{f"w{i}_{j}": j})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    record = store.get_training(tid)
    assert {f"w{i}_{j}" for i in range(writers) for j in range(each)} <= record.keys()
    assert record["status"] == "running"


def test_two_publishers_of_one_model_exactly_one_wins(backend: Backend) -> None:
    """Create-only publication: two publishers of one id (different content) at once; one succeeds, the other gets
    FileExistsError, and the stored model is the winner's whole (its manifest with its weights)."""
    model_id = new_id("mdl")
    spec = ModelSpec(
        family="gan", kind="points", sample_shape=(2,), latent_dim=1, num_classes=0, architecture="mlp", width=8
    )
    start = threading.Barrier(2)
    won: list[str] = []
    lost: list[str] = []

    def publish(dataset: str, value: float) -> None:
        store = backend.open()
        manifest = ModelManifest(id=model_id, dataset=dataset, created_at=utcnow(), spec=spec)
        start.wait()
        try:
            store.put_model(manifest, {"w": torch.full((64,), value)})
            won.append(dataset)
        except FileExistsError:
            lost.append(dataset)

    threads = [threading.Thread(target=publish, args=(f"ds_{i}", float(i))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(lost) == 1
    store = backend.open()
    assert store.get_model(model_id).dataset == won[0]
    assert torch.equal(store.load_model_tensors(model_id)["w"], torch.full((64,), float(won[0][-1])))


def test_conditional_writes_of_the_object_layer(store: ArtifactStore) -> None:
    """What the backend must honour (S3: If-None-Match: * and If-Match on PutObject, 412 on conflict)."""
    objects = store.objects
    assert objects.put_new("tmp/k", b"one") and not objects.put_new("tmp/k", b"two")
    data, etag = objects.get_versioned("tmp/k")
    assert data == b"one"
    assert objects.put_if("tmp/k", b"three", etag)
    assert not objects.put_if("tmp/k", b"four", etag)  # the ETag went stale
    assert not objects.put_if("tmp/missing", b"five", etag)
    assert objects.get("tmp/k") == b"three" and objects.exists("tmp/k") and not objects.exists("tmp/missing")
    with pytest.raises(FileNotFoundError):
        objects.get("tmp/missing")
    objects.delete("tmp/k")
    objects.delete("tmp/k")  # absent: nothing to do
    assert not objects.exists("tmp/k")
    with pytest.raises(ValueError):
        objects.get("tmp/../names")


def test_dataset_lock_excludes_across_stores(backend: Backend) -> None:
    """The dataset lock (a flock, or an S3 lease) lets one holder in at a time, across store instances."""
    store = backend.open()
    manifest, _ = store.put_dataset("a", points())
    inside, most = [0], [0]

    def hold() -> None:
        mine = backend.open()
        for _ in range(3):
            with mine.dataset_lock(manifest["id"]):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.01)
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most[0] == 1
    store.delete_dataset(manifest["id"])
    with pytest.raises(NotFound), store.dataset_lock(manifest["id"]):
        pass


def _checkpoint_writer(backend: Backend, tid: str) -> None:
    store = backend.open()
    i = 0
    while True:
        i += 1
        store.save_checkpoint(tid, {"w": torch.full((100_000,), float(i))}, {"step": i})


def test_sigkill_mid_checkpoint_leaves_the_old_or_the_new_one(backend: Backend) -> None:
    store = backend.open()
    tid = new_id("tr")
    store.put_training({"id": tid, "status": "running", "created_at": utcnow()})
    store.save_checkpoint(tid, {"w": torch.zeros(100_000)}, {"step": 0})
    ctx = multiprocessing.get_context("fork")
    for delay in (0.01, 0.03, 0.05, 0.08, 0.13, 0.21):
        proc = ctx.Process(target=_checkpoint_writer, args=(backend, tid))
        proc.start()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        loaded = store.load_checkpoint(tid)
        assert loaded is not None  # never torn, never a mismatched pair
        tensors, meta = loaded
        assert bool((tensors["w"] == float(meta["step"])).all())
