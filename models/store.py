"""The artifact store: a directory that holds datasets, trainings, checkpoints and models.

It is the source of truth (Redis only carries the queue and live progress), so it can be shared by many API
replicas and workers on one file system. Every write is atomic: a file is written to a temporary name in the same
directory, flushed, and renamed into place; a directory is assembled under `tmp/` and renamed into place. A crash at
any point leaves the old state or the new one, never a torn file.

Layout::

    datasets/<id>/manifest.json, x.npy, y.npy      id = ds_ + sha256 of the content (content-addressed)
    trainings/<id>/training.json                   the training record (read-modify-write under a lock file)
    trainings/<id>/checkpoint.safetensors          tensors + JSON meta (in the safetensors header), one file
    models/<id>/manifest.json, weights.safetensors
    classifiers/<key>/manifest.json, weights.safetensors   feature classifiers of labeled image datasets
    classifiers/<key>.lock                          held while one worker trains that classifier
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save

from models.data.arrays import ArrayDataset
from models.errors import NotFound
from models.manifest import ModelManifest

ID_PATTERN = re.compile(r"(ds|tr|mdl)_[0-9a-f]{8,64}\Z")  # with match(): the whole string, no trailing newline
CLASSIFIER_KEY_PATTERN = re.compile(r"^clf_[0-9a-f]{8,64}$")
STALE_TMP_AGE_S = 3600
CHECKPOINT_META_KEY = "genserve_meta"  # the checkpoint's JSON meta, in the safetensors header's __metadata__

# Record lock files this process holds open. A flock belongs to the open file, which a fork() shares with the child:
# a work horse forked while another thread held a record's lock would hold it for as long as it lives. The child
# closes its copies at once, so the lock stays the parent's alone.
_HELD_LOCK_FDS: set[int] = set()


def _close_inherited_lock_fds() -> None:
    for fd in list(_HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_inherited_lock_fds)


@contextlib.contextmanager
def flocked(fd: int) -> Iterator[None]:
    """Hold an exclusive flock on an open descriptor (closed, and the lock released, on exit); a child forked
    meanwhile does not keep it (`_HELD_LOCK_FDS`)."""
    _HELD_LOCK_FDS.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _HELD_LOCK_FDS.discard(fd)
        os.close(fd)


def utcnow() -> str:
    """Timestamps as ISO 8601 in UTC, the one format of every record."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def content_id(data: ArrayDataset) -> str:
    """The content address of a dataset: equal data gives an equal id."""
    h = hashlib.sha256()
    h.update(json.dumps([data.kind, str(data.x.dtype), list(data.x.shape), data.classes]).encode())
    h.update(np.ascontiguousarray(data.x).tobytes())
    if data.y is not None:
        h.update(np.ascontiguousarray(data.y, dtype=np.int64).tobytes())
    return "ds_" + h.hexdigest()[:24]


def stored_bytes(data: ArrayDataset) -> int:
    """What an uploaded dataset takes in the store (its arrays; the manifest is small)."""
    return int(data.x.nbytes) + (0 if data.y is None else len(data.y) * 8)


class ArtifactStore:
    """Files under one root directory; safe for concurrent readers and one writer per record."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._models_prefix = os.path.join(self.root, "models", "")  # a str: has_model runs on every request
        for sub in ("datasets", "trainings", "models", "classifiers", "tmp", "trash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._sweep_tmp()

    # --- generic helpers ----------------------------------------------------------------------------------------
    def _dir(self, kind: str, item_id: str) -> Path:
        """The directory of one record; ids that do not match the pattern never reach a path."""
        if not ID_PATTERN.match(item_id):
            raise NotFound(f"no {kind[:-1]} with id {item_id!r}")
        return self.root / kind / item_id

    def _sweep_tmp(self) -> None:
        """Remove half-built directories a crashed writer left behind."""
        now = time.time()
        for sub in ("tmp", "trash"):
            for entry in (self.root / sub).iterdir():
                with contextlib.suppress(OSError):
                    if sub == "trash" or now - entry.stat().st_mtime > STALE_TMP_AGE_S:
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh directory to assemble a record in before it is renamed into place."""
        tmp = Path(tempfile.mkdtemp(dir=self.root / "tmp"))
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _publish_dir(self, staged: Path, final: Path) -> bool:
        """Rename a staged directory into place; False when `final` already exists."""
        for f in staged.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(staged, final)
        except OSError:
            if final.exists():
                return False
            raise
        _fsync_dir(final.parent)
        return True

    def _remove_dir(self, path: Path) -> None:
        """Remove a record at once (rename into trash), then delete its files."""
        trash = self.root / "trash" / f"{path.name}-{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _list(self, kind: str, manifest: str) -> list[dict[str, Any]]:
        items = []
        for entry in (self.root / kind).iterdir():
            if not ID_PATTERN.match(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                items.append(read_json(entry / manifest))
        return items

    def is_writable(self) -> bool:
        try:
            atomic_write_bytes(self.root / "tmp" / f"probe-{secrets.token_hex(4)}", b"ok")
        except OSError:
            return False
        for probe in (self.root / "tmp").glob("probe-*"):
            with contextlib.suppress(OSError):
                probe.unlink()
        return True

    # --- datasets -----------------------------------------------------------------------------------------------
    def put_dataset(
        self,
        name: str,
        data: ArrayDataset,
        owner: str | None = None,
        before_new: Callable[[], None] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Store an uploaded dataset; returns (manifest, created). Equal content is stored once (its first uploader
        stays its `owner`, for quotas); `before_new` runs only when the content is new (a quota check may raise)."""
        dataset_id = content_id(data)
        final = self.root / "datasets" / dataset_id
        if (final / "manifest.json").exists():
            return read_json(final / "manifest.json"), False
        if before_new is not None:
            before_new()
        manifest = {
            "id": dataset_id,
            "name": name,
            "kind": data.kind,
            "shape": list(data.sample_shape),
            "size": len(data),
            "classes": data.classes,
            "builtin": False,
            "created_at": utcnow(),
            "owner": owner,
            "stored_bytes": stored_bytes(data),
        }
        with self._staging() as tmp:
            np.save(tmp / "x.npy", np.ascontiguousarray(data.x), allow_pickle=False)
            if data.y is not None:
                np.save(tmp / "y.npy", np.ascontiguousarray(data.y, dtype=np.int64), allow_pickle=False)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
            created = self._publish_dir(tmp, final)
        if not created:
            return read_json(final / "manifest.json"), False
        return manifest, True

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        path = self._dir("datasets", dataset_id) / "manifest.json"
        try:
            return read_json(path)
        except FileNotFoundError:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None

    def load_dataset(self, dataset_id: str) -> ArrayDataset:
        manifest = self.get_dataset(dataset_id)
        d = self._dir("datasets", dataset_id)
        x = np.load(d / "x.npy", allow_pickle=False)
        y = np.load(d / "y.npy", allow_pickle=False) if (d / "y.npy").exists() else None
        return ArrayDataset(x=x, y=y, kind=manifest["kind"], classes=manifest["classes"])

    def list_datasets(self) -> list[dict[str, Any]]:
        return sorted(self._list("datasets", "manifest.json"), key=lambda m: m["created_at"])

    @contextlib.contextmanager
    def dataset_lock(self, dataset_id: str) -> Iterator[None]:
        """An exclusive lock (flock) on one uploaded dataset, held across processes: a training that starts on a
        dataset and the dataset's deletion take it, so that one of them sees the other (never a training on a
        deleted dataset). The lock is on the dataset's directory itself, so it leaves no file behind; NotFound when
        there is no such dataset (callers check again once they hold it: it may have been deleted meanwhile)."""
        try:
            fd = os.open(self._dir("datasets", dataset_id), os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None
        with flocked(fd):
            yield

    def delete_dataset(self, dataset_id: str) -> None:
        self.get_dataset(dataset_id)
        self._remove_dir(self._dir("datasets", dataset_id))

    # --- trainings ----------------------------------------------------------------------------------------------
    def put_training(self, record: dict[str, Any]) -> None:
        atomic_write_json(self._dir("trainings", record["id"]) / "training.json", record)

    def get_training(self, training_id: str) -> dict[str, Any]:
        try:
            return read_json(self._dir("trainings", training_id) / "training.json")
        except FileNotFoundError:
            raise NotFound(f"no training with id {training_id!r}") from None

    @contextlib.contextmanager
    def _training_lock(self, training_id: str) -> Iterator[None]:
        """An exclusive advisory lock (flock) on one training record: API replicas, workers and watchdogs update
        the same record, and a read-modify-write must not lose another's change."""
        path = self._dir("trainings", training_id) / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise NotFound(f"no training with id {training_id!r}") from None
        with flocked(fd):
            yield

    def update_training(self, training_id: str, **changes: Any) -> dict[str, Any]:
        with self._training_lock(training_id):
            record = self.get_training(training_id)
            record.update(changes)
            self.put_training(record)
            return record

    def update_training_if(
        self, training_id: str, check: Callable[[dict[str, Any]], bool], **changes: Any
    ) -> dict[str, Any] | None:
        """Apply `changes` only when `check(record)` holds, atomically (a compare-and-set); None when it does not."""
        with self._training_lock(training_id):
            record = self.get_training(training_id)
            if not check(record):
                return None
            record.update(changes)
            self.put_training(record)
            return record

    def training_files(self) -> list[tuple[str, int]]:
        """(training id, the record file's modification time in ns) of every training: one directory scan and a
        stat each, so that a reader may keep the records it has parsed (worker/state/records.py)."""
        out = []
        with os.scandir(self.root / "trainings") as entries:
            for entry in entries:
                if ID_PATTERN.match(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        out.append((entry.name, os.stat(os.path.join(entry.path, "training.json")).st_mtime_ns))
        return out

    def list_trainings(self) -> list[dict[str, Any]]:
        return sorted(self._list("trainings", "training.json"), key=lambda r: r["created_at"], reverse=True)

    def delete_training(self, training_id: str) -> None:
        self._remove_dir(self._dir("trainings", training_id))

    # History and previews live beside the record, so they outlive Redis and go with the training when it is deleted.
    def put_history(self, training_id: str, history: dict[str, Any]) -> None:
        atomic_write_bytes(self._dir("trainings", training_id) / "history.json", json.dumps(history).encode())

    def get_history(self, training_id: str) -> dict[str, Any] | None:
        """The training's stored history (None before its first checkpoint); NotFound for an unknown training."""
        d = self._dir("trainings", training_id)
        try:
            return read_json(d / "history.json")
        except FileNotFoundError:
            if not (d / "training.json").exists():
                raise NotFound(f"no training with id {training_id!r}") from None
            return None

    def put_preview(self, training_id: str, step: int, png: bytes) -> None:
        atomic_write_bytes(self._dir("trainings", training_id) / "previews" / f"{step:010d}.png", png)

    def list_previews(self, training_id: str) -> list[int]:
        """The steps that have a preview, in order; NotFound for an unknown training."""
        d = self._dir("trainings", training_id)
        if not (d / "training.json").exists():
            raise NotFound(f"no training with id {training_id!r}")
        return sorted(int(p.stem) for p in (d / "previews").glob("*.png") if p.stem.isdigit())

    def get_preview(self, training_id: str, step: int) -> bytes:
        try:
            return (self._dir("trainings", training_id) / "previews" / f"{step:010d}.png").read_bytes()
        except FileNotFoundError:
            raise NotFound(f"training {training_id} has no preview at step {step}") from None

    def save_checkpoint(self, training_id: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Checkpoint tensors and their JSON meta as one file (the meta rides in the safetensors header), replaced
        atomically: a crash at any point leaves the previous checkpoint or this one, never a mismatched pair."""
        d = self._dir("trainings", training_id)
        blob = save(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            metadata={CHECKPOINT_META_KEY: json.dumps(meta)},
        )
        atomic_write_bytes(d / "checkpoint.safetensors", blob)
        with contextlib.suppress(FileNotFoundError):
            (d / "checkpoint.json").unlink()  # the two-file format of earlier versions

    def load_checkpoint(self, training_id: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        d = self._dir("trainings", training_id)
        try:
            blob = (d / "checkpoint.safetensors").read_bytes()
        except FileNotFoundError:
            return None
        try:
            header_len = int.from_bytes(blob[:8], "little")
            header = json.loads(blob[8 : 8 + header_len])
            raw_meta = (header.get("__metadata__") or {}).get(CHECKPOINT_META_KEY)
            if raw_meta is not None:
                meta = json.loads(raw_meta)
            else:  # an earlier version's pair: checkpoint.json names the weights by hash
                meta = read_json(d / "checkpoint.json")
                if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                    return None
            return load(blob), meta
        except (ValueError, AttributeError, OSError, SafetensorError):  # torn or foreign: no usable checkpoint
            return None

    def delete_checkpoint(self, training_id: str) -> None:
        d = self._dir("trainings", training_id)
        for name in ("checkpoint.json", "checkpoint.safetensors"):
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()

    # --- models -------------------------------------------------------------------------------------------------
    def put_model(self, manifest: ModelManifest, tensors: dict[str, torch.Tensor]) -> None:
        """Publish a model: weights and manifest appear together or not at all."""
        final = self._dir("models", manifest.id)
        with self._staging() as tmp:
            blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
            (tmp / "weights.safetensors").write_bytes(blob)
            (tmp / "manifest.json").write_bytes(manifest.to_json())
            if not self._publish_dir(tmp, final):
                raise FileExistsError(f"model {manifest.id} already exists")

    def get_model(self, model_id: str) -> ModelManifest:
        try:
            return ModelManifest.model_validate_json((self._dir("models", model_id) / "manifest.json").read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no model with id {model_id!r}") from None

    def has_model(self, model_id: str) -> bool:
        """A cheap existence check (one stat, no Path objects), made before serving each request."""
        return bool(ID_PATTERN.match(model_id)) and os.path.exists(f"{self._models_prefix}{model_id}/manifest.json")

    def load_model_tensors(self, model_id: str) -> dict[str, torch.Tensor]:
        path = self._dir("models", model_id) / "weights.safetensors"
        try:
            return load_file(path)
        except FileNotFoundError:
            raise NotFound(f"no model with id {model_id!r}") from None

    def list_models(self) -> list[ModelManifest]:
        """Every model, newest first."""
        manifests = [ModelManifest.model_validate(m) for m in self._list("models", "manifest.json")]
        return sorted(manifests, key=lambda m: m.created_at, reverse=True)

    def delete_model(self, model_id: str) -> None:
        self.get_model(model_id)
        self._remove_dir(self._dir("models", model_id))

    # --- feature classifiers (models/classifier.py) ---------------------------------------------------------
    def _classifier_dir(self, key: str) -> Path:
        if not CLASSIFIER_KEY_PATTERN.match(key):
            raise NotFound(f"no classifier with key {key!r}")
        return self.root / "classifiers" / key

    def load_classifier(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The cached classifier (weights, manifest), or None when there is none yet."""
        d = self._classifier_dir(key)
        try:
            return load_file(d / "weights.safetensors"), read_json(d / "manifest.json")
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put_classifier(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bool:
        """Publish a classifier (weights + manifest, atomically); False when one was there first (it wins)."""
        final = self._classifier_dir(key)
        with self._staging() as tmp:
            (tmp / "weights.safetensors").write_bytes(
                save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
            )
            (tmp / "manifest.json").write_text(json.dumps({**meta, "created_at": utcnow()}, indent=2, sort_keys=True))
            return self._publish_dir(tmp, final)

    @contextlib.contextmanager
    def classifier_lock(self, key: str) -> Iterator[None]:
        """An exclusive lock (flock) on one classifier key, so that concurrent workers train it once; where the
        file system has no locks this degrades to first-writer-wins in `put_classifier`."""
        path = self._classifier_dir(key).with_suffix(".lock")
        with open(path, "a+b") as f:
            locked = False
            with contextlib.suppress(OSError):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                locked = True
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
