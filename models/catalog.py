"""One view over built-in and uploaded datasets: their descriptions and their data, by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.data import DatasetSplits
from models.datasets import BUILTINS, load_builtin
from models.errors import NotFound
from models.mnist import find_mnist
from models.store import ArtifactStore

UPLOAD_TEST_FRACTION = 0.1  # uploads keep this share of samples out of training, for end-of-training metrics
UPLOAD_SPLIT_SEED = 0


@dataclass(frozen=True)
class Catalog:
    store: ArtifactStore
    data_dir: Path
    download_url: str | None = None
    download_timeout_s: float = 30.0

    def builtin_infos(self) -> list[dict[str, Any]]:
        return [self._builtin_info(i) for i in BUILTINS]

    def _builtin_info(self, dataset_id: str) -> dict[str, Any]:
        b = BUILTINS[dataset_id]
        available = dataset_id != "mnist" or find_mnist(self.data_dir) is not None
        return {
            "id": b.id,
            "name": b.name,
            "kind": b.kind,
            "shape": list(b.shape),
            "size": b.size,
            "classes": b.classes,
            "builtin": True,
            "created_at": None,
            "description": b.description,
            "available": available,
        }

    def list(self) -> list[dict[str, Any]]:
        """Built-ins first, then uploads (oldest first)."""
        return self.builtin_infos() + self.store.list_datasets()

    def info(self, dataset_id: str) -> dict[str, Any]:
        if dataset_id in BUILTINS:
            return self._builtin_info(dataset_id)
        try:
            return self.store.get_dataset(dataset_id)
        except NotFound:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None

    def load(self, dataset_id: str) -> DatasetSplits:
        """Training and held-out data. Built-ins come with their own test split; uploads are split here."""
        if dataset_id in BUILTINS:
            return load_builtin(
                dataset_id, self.data_dir, download_url=self.download_url, timeout_s=self.download_timeout_s
            )
        return self.store.load_dataset(dataset_id).split(UPLOAD_TEST_FRACTION, seed=UPLOAD_SPLIT_SEED)
