"""The artifact store: datasets, trainings, checkpoints and models, kept as objects (`models/objects.py`) in a local
directory or in S3-compatible object storage. `open_store` is the one place that chooses between them.

It is the source of truth (Redis only carries the queue and live progress), so it is shared by every API replica
and worker: on one file system (`GENSERVE_STORE_DIR`, NFS or a volume for many machines) or in a bucket
(`GENSERVE_STORE_URL=s3://bucket/prefix`, no shared file system). The logic below is written once over the object
layer's operations, and keeps its guarantees on both:

- Every write is whole: an object is replaced atomically (a renamed temporary file, or one PutObject), so a crash at
  any point leaves the old state or the new one, never a torn file.
- A model appears whole or not at all: its weights are written first, its manifest last by a create-only write; a
  reader sees a model only through its manifest. A crash between the two leaves unreferenced weights, never a model
  without weights. Of two publishers of one manifest exactly one wins.
- Uploads are content-addressed and deduplicated by a create-only write of the dataset's manifest: the first
  uploader's manifest (its `owner`, for quotas) stays.
- The training record is updated by compare-and-swap on its ETag, retried on conflict (`_update_record`). This
  replaces the flock (`trainings/<id>/.lock`) that serialized read-modify-writes of the record by API replicas,
  workers and watchdogs: a writer whose read went stale writes nothing and reads again, so no update is lost, and a
  check (`update_training_if`) is made against the very record the write replaces.
- Checkpoints are one object each (tensors with their JSON meta in the safetensors header): any worker resumes
  another's.
- Two locks stay locks, because they order actions rather than protect one read-modify-write: a dataset against its
  deletion (`dataset_lock`) and a feature classifier trained once (`classifier_lock`); a flock on the local backend,
  a lease object on S3.

With S3, model weights and dataset arrays are read through a bounded local cache (`ReadCache`): their bytes never
change under their key, so a cached copy is never stale.

Layout (keys; the local backend's files have these paths, as in earlier versions)::

    datasets/<id>/manifest.json, x.npy, y.npy      id = ds_ + sha256 of the content (content-addressed)
    trainings/<id>/training.json                   the training record (compare-and-swap on its ETag)
    trainings/<id>/checkpoint.safetensors          tensors + JSON meta (in the safetensors header), one object
    trainings/<id>/history.json, previews/<step>.png
    models/<id>/weights.safetensors, manifest.json  (weights first, the manifest last and create-only)
    names/<name>/registry.json                     model names, versions, aliases (models/registry.py)
    classifiers/<key>/weights.safetensors, manifest.json   feature classifiers of labeled image datasets
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save

from models.data.arrays import ArrayDataset
from models.errors import NotFound
from models.manifest import ModelManifest
from models.objects import LocalObjects, Objects, ReadCache, S3Objects, cas_pause
from models.objects import atomic_write_bytes as atomic_write_bytes

ID_PATTERN = re.compile(r"(ds|tr|mdl)_[0-9a-f]{8,64}\Z")  # with match(): the whole string, no trailing newline
CLASSIFIER_KEY_PATTERN = re.compile(r"^clf_[0-9a-f]{8,64}$")
CALIBRATION_KEY_PATTERN = re.compile(r"^pad_[0-9a-f]{32}$")
CHECKPOINT_META_KEY = "genserve_meta"  # the checkpoint's JSON meta, in the safetensors header's __metadata__
FOLDERS = ("datasets", "trainings", "models", "names", "classifiers")  # created up front by the local backend
T = TypeVar("T")


def utcnow() -> str:
    """Timestamps as ISO 8601 in UTC, the one format of every record."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def json_bytes(obj: Any) -> bytes:
    """Records and manifests as they are stored: indented, keys sorted."""
    return json.dumps(obj, indent=2, sort_keys=True).encode()


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


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _tensor_blob(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def open_store(
    store_url: str | None, store_dir: Path | str, cache_dir: Path | str | None = None, cache_mb: int = 2048
) -> ArtifactStore:
    """The artifact store the settings name, and the one place that chooses its backend: `store_url` unset, the
    local directory `store_dir`; `s3://bucket/prefix`, S3-compatible object storage (endpoint, region, credentials
    from the AWS_* environment variables) read through a local cache of `cache_mb` MiB in `cache_dir`."""
    if not store_url:
        return ArtifactStore(store_dir)
    objects = S3Objects(store_url)
    cache = ReadCache(cache_dir or Path(store_dir).parent / "cache", cache_mb * 1024 * 1024, namespace=objects.location)
    return ArtifactStore(objects, cache)


class ArtifactStore:
    """Datasets, trainings and models over an object layer; safe for concurrent readers and writers."""

    def __init__(self, where: Path | str | Objects, cache: ReadCache | None = None) -> None:
        """`where`: a directory (the local backend) or an object layer; `cache`: where immutable objects are read
        through when the layer keeps no local files."""
        self.objects = where if isinstance(where, Objects) else LocalObjects(where, FOLDERS)
        self.cache = cache
        self.location = self.objects.location  # for logs: a directory or s3://bucket/prefix
        self._listed: dict[str, tuple[str, bytes]] = {}  # key -> (version, bytes) of listed records and manifests

    # --- generic helpers ----------------------------------------------------------------------------------------
    @staticmethod
    def _key(kind: str, item_id: str, leaf: str = "") -> str:
        """The key of one record's object; ids that do not match the pattern never reach a key."""
        if not ID_PATTERN.match(item_id):
            raise NotFound(f"no {kind[:-1]} with id {item_id!r}")
        return f"{kind}/{item_id}/{leaf}"

    def _read_immutable(self, key: str, from_path: Callable[[Path], T], from_bytes: Callable[[bytes], T]) -> T:
        """Read an object whose bytes never change under its key (weights, dataset arrays): the local file itself,
        else a cached copy; FileNotFoundError when there is none."""
        path = self.objects.local_path(key)
        if path is not None:
            return from_path(path)
        if self.cache is None:
            return from_bytes(self.objects.get(key))
        return self.cache.use(key, lambda: self.objects.get(key), from_path)

    def _forget(self, *keys: str) -> None:
        if self.cache is not None:
            for key in keys:
                self.cache.discard(key)

    def _list(self, kind: str, leaf: str) -> list[dict[str, Any]]:
        """The parsed `leaf` of every record of `kind`: one listing, and a read of each object not seen at its
        version yet (S3: in parallel)."""
        entries = self.objects.list(f"{kind}/", leaf)
        fresh = [e for e in entries if ID_PATTERN.match(e.key.split("/")[1])]
        wanted = [e.key for e in fresh if self._listed.get(e.key, ("",))[0] != e.version]
        got = self.objects.get_many(wanted)
        listed = {}
        for e in fresh:
            if e.key in got:
                listed[e.key] = (e.version, got[e.key])
            elif e.key in self._listed and e.key not in wanted:
                listed[e.key] = self._listed[e.key]
        self._listed = {k: v for k, v in self._listed.items() if not k.startswith(f"{kind}/")} | listed
        items = []
        for _, raw in listed.values():
            with contextlib.suppress(json.JSONDecodeError):
                items.append(json.loads(raw))
        return items

    def is_writable(self) -> bool:
        key = f"tmp/probe-{secrets.token_hex(4)}"
        try:
            self.objects.put(key, b"ok")
            self.objects.delete(key)
        except OSError:
            return False
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
        manifest_key = self._key("datasets", dataset_id, "manifest.json")
        with contextlib.suppress(FileNotFoundError):
            return json.loads(self.objects.get(manifest_key)), False
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
        # The arrays are the same bytes for every uploader of this content: whoever writes them last, they hold.
        self.objects.put(self._key("datasets", dataset_id, "x.npy"), _npy(np.ascontiguousarray(data.x)))
        if data.y is not None:
            self.objects.put(
                self._key("datasets", dataset_id, "y.npy"), _npy(np.ascontiguousarray(data.y, dtype=np.int64))
            )
        if not self.objects.put_new(manifest_key, json_bytes(manifest)):
            return json.loads(self.objects.get(manifest_key)), False
        return manifest, True

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        try:
            return json.loads(self.objects.get(self._key("datasets", dataset_id, "manifest.json")))  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None

    def load_dataset(self, dataset_id: str) -> ArrayDataset:
        manifest = self.get_dataset(dataset_id)

        def array(name: str) -> np.ndarray:
            return self._read_immutable(
                self._key("datasets", dataset_id, name),
                lambda path: np.load(path, allow_pickle=False),
                lambda raw: np.load(io.BytesIO(raw), allow_pickle=False),
            )

        try:
            x = array("x.npy")
        except FileNotFoundError:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None
        y = None if manifest["classes"] is None else array("y.npy")  # labels and classes come together
        return ArrayDataset(x=x, y=y, kind=manifest["kind"], classes=manifest["classes"])

    def list_datasets(self) -> list[dict[str, Any]]:
        return sorted(self._list("datasets", "manifest.json"), key=lambda m: m["created_at"])

    @contextlib.contextmanager
    def dataset_lock(self, dataset_id: str) -> Iterator[None]:
        """An exclusive lock on one uploaded dataset, held across processes and machines: a training that starts on
        a dataset and the dataset's deletion take it, so that one of them sees the other (never a training on a
        deleted dataset). Not a read-modify-write, so it stays a lock: a flock on the dataset's directory itself
        (no file left behind) on the local backend, a lease object on S3. NotFound when there is no such dataset
        (callers check again once they hold it: it may have been deleted meanwhile)."""
        if not self.objects.exists(self._key("datasets", dataset_id, "manifest.json")):
            raise NotFound(f"no dataset with id {dataset_id!r}")
        try:
            lock = self.objects.lock(f"datasets/{dataset_id}", create=False)
        except FileNotFoundError:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None
        with lock:
            yield

    def delete_dataset(self, dataset_id: str) -> None:
        self.get_dataset(dataset_id)
        self.objects.delete(self._key("datasets", dataset_id, "manifest.json"))  # gone for readers at once
        self.objects.delete_prefix(self._key("datasets", dataset_id))
        self._forget(self._key("datasets", dataset_id, "x.npy"), self._key("datasets", dataset_id, "y.npy"))

    # --- trainings ----------------------------------------------------------------------------------------------
    def put_training(self, record: dict[str, Any]) -> None:
        self.objects.put(self._key("trainings", record["id"], "training.json"), json_bytes(record))

    def get_training(self, training_id: str) -> dict[str, Any]:
        try:
            return json.loads(self.objects.get(self._key("trainings", training_id, "training.json")))  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise NotFound(f"no training with id {training_id!r}") from None

    def _update_record(
        self, training_id: str, check: Callable[[dict[str, Any]], bool] | None, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Read the record with its ETag, apply `changes` (when `check` holds), write it back only if the ETag is
        still current; on a conflict read again. Replaces the flock of earlier versions (see the module)."""
        key = self._key("trainings", training_id, "training.json")
        attempt = 0
        while True:
            try:
                raw, etag = self.objects.get_versioned(key)
            except FileNotFoundError:
                raise NotFound(f"no training with id {training_id!r}") from None
            record: dict[str, Any] = json.loads(raw)
            if check is not None and not check(record):
                return None
            record.update(changes)
            if self.objects.put_if(key, json_bytes(record), etag):
                return record
            cas_pause(attempt)
            attempt += 1

    def update_training(self, training_id: str, **changes: Any) -> dict[str, Any]:
        record = self._update_record(training_id, None, changes)
        assert record is not None
        return record

    def update_training_if(
        self, training_id: str, check: Callable[[dict[str, Any]], bool], **changes: Any
    ) -> dict[str, Any] | None:
        """Apply `changes` only when `check(record)` holds, atomically (a compare-and-set); None when it does not."""
        return self._update_record(training_id, check, changes)

    def training_files(self) -> list[tuple[str, str]]:
        """(training id, a version of its record that changes whenever the record does) of every training: one
        listing (a directory scan and a stat each; on S3, the bucket listing's ETags), so that a reader may keep the
        records it has parsed (worker/state/records.py)."""
        return [
            (e.key.split("/")[1], e.version)
            for e in self.objects.list("trainings/", "training.json")
            if ID_PATTERN.match(e.key.split("/")[1])
        ]

    def list_trainings(self) -> list[dict[str, Any]]:
        return sorted(self._list("trainings", "training.json"), key=lambda r: r["created_at"], reverse=True)

    def delete_training(self, training_id: str) -> None:
        self.objects.delete(self._key("trainings", training_id, "training.json"))  # gone for readers at once
        self.objects.delete_prefix(self._key("trainings", training_id))

    # History and previews live beside the record, so they outlive Redis and go with the training when it is deleted.
    def put_history(self, training_id: str, history: dict[str, Any]) -> None:
        self.objects.put(self._key("trainings", training_id, "history.json"), json.dumps(history).encode())

    def _training_exists(self, training_id: str) -> bool:
        return self.objects.exists(self._key("trainings", training_id, "training.json"))

    def get_history(self, training_id: str) -> dict[str, Any] | None:
        """The training's stored history (None before its first checkpoint); NotFound for an unknown training."""
        try:
            return json.loads(self.objects.get(self._key("trainings", training_id, "history.json")))  # type: ignore[no-any-return]
        except FileNotFoundError:
            if not self._training_exists(training_id):
                raise NotFound(f"no training with id {training_id!r}") from None
            return None

    def put_preview(self, training_id: str, step: int, png: bytes) -> None:
        self.objects.put(self._key("trainings", training_id, f"previews/{step:010d}.png"), png)

    def list_previews(self, training_id: str) -> list[int]:
        """The steps that have a preview, in order; NotFound for an unknown training."""
        if not self._training_exists(training_id):
            raise NotFound(f"no training with id {training_id!r}")
        names = (e.key.rsplit("/", 1)[1] for e in self.objects.list(self._key("trainings", training_id, "previews/")))
        return sorted(int(n[:-4]) for n in names if n.endswith(".png") and n[:-4].isdigit())

    def get_preview(self, training_id: str, step: int) -> bytes:
        try:
            return self.objects.get(self._key("trainings", training_id, f"previews/{step:010d}.png"))
        except FileNotFoundError:
            raise NotFound(f"training {training_id} has no preview at step {step}") from None

    def save_checkpoint(self, training_id: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Checkpoint tensors and their JSON meta as one object (the meta rides in the safetensors header), replaced
        atomically: a crash at any point leaves the previous checkpoint or this one, never a mismatched pair."""
        blob = _tensor_blob(tensors, metadata={CHECKPOINT_META_KEY: json.dumps(meta)})
        self.objects.put(self._key("trainings", training_id, "checkpoint.safetensors"), blob)
        self.objects.delete(self._key("trainings", training_id, "checkpoint.json"))  # earlier versions' two files

    def load_checkpoint(self, training_id: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        try:
            blob = self.objects.get(self._key("trainings", training_id, "checkpoint.safetensors"))
        except FileNotFoundError:
            return None
        try:
            header_len = int.from_bytes(blob[:8], "little")
            header = json.loads(blob[8 : 8 + header_len])
            raw_meta = (header.get("__metadata__") or {}).get(CHECKPOINT_META_KEY)
            if raw_meta is not None:
                meta = json.loads(raw_meta)
            else:  # an earlier version's pair: checkpoint.json names the weights by hash
                meta = json.loads(self.objects.get(self._key("trainings", training_id, "checkpoint.json")))
                if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                    return None
            return load(blob), meta
        except (ValueError, AttributeError, FileNotFoundError, SafetensorError):  # torn or foreign: no checkpoint
            return None

    def delete_checkpoint(self, training_id: str) -> None:
        for name in ("checkpoint.json", "checkpoint.safetensors"):
            self.objects.delete(self._key("trainings", training_id, name))

    # --- models -------------------------------------------------------------------------------------------------
    def put_model_weights(self, model_id: str, tensors: dict[str, torch.Tensor]) -> None:
        """The first half of a publication: the weights, invisible until `put_model_manifest` (create-only:
        FileExistsError when the id is taken)."""
        blob = _tensor_blob(tensors)  # before any write: safetensors refuses tensors that share memory
        if not self.objects.put_new(self._key("models", model_id, "weights.safetensors"), blob):
            raise FileExistsError(f"model {model_id} already exists")

    def put_model_manifest(self, manifest: ModelManifest) -> None:
        """The second half: the manifest, created only when absent, makes the model visible whole."""
        if not self.objects.put_new(self._key("models", manifest.id, "manifest.json"), manifest.to_json()):
            raise FileExistsError(f"model {manifest.id} already exists")

    def put_model(self, manifest: ModelManifest, tensors: dict[str, torch.Tensor]) -> None:
        """Publish a model: weights and manifest appear together or not at all (FileExistsError when the id is
        taken; of two publishers of one id, exactly one succeeds)."""
        self.put_model_weights(manifest.id, tensors)
        self.put_model_manifest(manifest)

    def drop_unpublished_weights(self, model_id: str) -> None:
        """Delete the weights of a publication cut short before its manifest (never visible); a published model's
        weights are left alone."""
        if self.has_model(model_id):
            return
        key = self._key("models", model_id, "weights.safetensors")
        self.objects.delete(key)
        self._forget(key)

    def get_model(self, model_id: str) -> ModelManifest:
        try:
            return ModelManifest.model_validate_json(self.objects.get(self._key("models", model_id, "manifest.json")))
        except FileNotFoundError:
            raise NotFound(f"no model with id {model_id!r}") from None

    def has_model(self, model_id: str) -> bool:
        """An existence check made before serving each request: one stat on the local backend (no Path objects);
        one HEAD request on S3."""
        return bool(ID_PATTERN.match(model_id)) and self.objects.exists(f"models/{model_id}/manifest.json")

    def load_model_tensors(self, model_id: str) -> dict[str, torch.Tensor]:
        try:
            return self._read_immutable(self._key("models", model_id, "weights.safetensors"), load_file, load)
        except FileNotFoundError:
            raise NotFound(f"no model with id {model_id!r}") from None

    def list_models(self) -> list[ModelManifest]:
        """Every model, newest first."""
        manifests = [ModelManifest.model_validate(m) for m in self._list("models", "manifest.json")]
        return sorted(manifests, key=lambda m: m.created_at, reverse=True)

    def delete_model(self, model_id: str) -> None:
        self.get_model(model_id)
        self.objects.delete(self._key("models", model_id, "manifest.json"))  # gone for readers at once
        self.objects.delete_prefix(self._key("models", model_id))
        self._forget(self._key("models", model_id, "weights.safetensors"))

    # --- padding rules (models/sampling.py `calibration_key`) -----------------------------------------------
    @staticmethod
    def _calibration_key(key: str) -> str:
        if not CALIBRATION_KEY_PATTERN.match(key):
            raise ValueError(f"not a calibration key: {key!r}")
        return f"calibrations/{key}.json"

    def get_calibration(self, key: str) -> dict[str, Any] | None:
        """A padding rule found before for this key (net shapes, kernels, threads), or None."""
        try:
            found = json.loads(self.objects.get(self._calibration_key(key)))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return found if isinstance(found, dict) else None

    def put_calibration(self, key: str, rule: dict[str, Any]) -> None:
        """Keep a padding rule for the next process that loads a net of the same key; the first writer wins (racing
        writers found the same rule)."""
        self.objects.put_new(self._calibration_key(key), json_bytes(rule))

    # --- feature classifiers (models/classifier.py) ---------------------------------------------------------
    @staticmethod
    def _classifier_key(key: str, leaf: str) -> str:
        if not CLASSIFIER_KEY_PATTERN.match(key):
            raise NotFound(f"no classifier with key {key!r}")
        return f"classifiers/{key}/{leaf}"

    def load_classifier(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The cached classifier (weights, manifest), or None when there is none yet."""
        try:
            manifest = json.loads(self.objects.get(self._classifier_key(key, "manifest.json")))
            return load(self.objects.get(self._classifier_key(key, "weights.safetensors"))), manifest
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put_classifier(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bool:
        """Publish a classifier (weights, then the manifest by a create-only write); False when one was there first
        (it wins). Racing writers' weights are classifiers of the same data, either one good."""
        manifest_key = self._classifier_key(key, "manifest.json")
        if self.objects.exists(manifest_key):
            return False
        self.objects.put(self._classifier_key(key, "weights.safetensors"), _tensor_blob(tensors))
        return self.objects.put_new(manifest_key, json_bytes({**meta, "created_at": utcnow()}))

    def classifier_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on one classifier key, so that concurrent workers train it once (a flock on
        `classifiers/<key>.lock`, a lease on S3); where the file system has no locks this degrades to
        first-writer-wins in `put_classifier`."""
        self._classifier_key(key, "")
        return self.objects.lock(f"classifiers/{key}.lock", create=True, best_effort=True)
