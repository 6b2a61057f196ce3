"""One view over built-in and uploaded datasets: their descriptions (`DatasetInfo`) and their data, by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from models.config import Kind
from models.data.arrays import DatasetSplits
from models.data.builtin import BUILTINS, load_builtin
from models.data.mnist import DEFAULT_URL_SETTING, ensure_mnist, find_mnist
from models.errors import NotFound
from models.store import ArtifactStore

UPLOAD_TEST_FRACTION = 0.1  # uploads keep this share of samples out of training, for end-of-training metrics
UPLOAD_SPLIT_SEED = 0


class DatasetInfo(BaseModel):
    """What is known of a dataset without loading it: a built-in's description, or an upload's stored manifest."""

    id: str
    name: str
    kind: Kind
    shape: list[int]  # per sample
    size: int  # training samples
    classes: list[str] | None
    builtin: bool
    created_at: str | None
    description: str | None = None
    available: bool = True  # False for built-ins whose files are missing (MNIST offline)
    owner: str | None = None  # uploads: the API key (its name) that uploaded it first, for quotas
    stored_bytes: int | None = None  # uploads: what its arrays take in the store

    @property
    def num_classes(self) -> int:
        return len(self.classes or [])


@dataclass(frozen=True)
class Catalog:
    store: ArtifactStore
    data_dir: Path
    download_url: str | None = None
    download_timeout_s: float = 30.0
    url_setting: str = DEFAULT_URL_SETTING  # what the download URL's setting is called, for errors

    def _builtin_info(self, dataset_id: str) -> DatasetInfo:
        b = BUILTINS[dataset_id]
        return DatasetInfo(
            id=b.id,
            name=b.name,
            kind=b.kind,
            shape=list(b.shape),
            size=b.size,
            classes=b.classes,
            builtin=True,
            created_at=None,
            description=b.description,
            available=dataset_id != "mnist" or find_mnist(self.data_dir) is not None,
        )

    def uploads(self) -> list[DatasetInfo]:
        """The uploaded datasets, oldest first."""
        return [DatasetInfo.model_validate(m) for m in self.store.list_datasets()]

    def list(self) -> list[DatasetInfo]:
        """Built-ins first, then uploads (oldest first)."""
        uploads: list[dict[str, Any]] = self.store.list_datasets()
        return [self._builtin_info(i) for i in BUILTINS] + [DatasetInfo.model_validate(m) for m in uploads]

    def info(self, dataset_id: str) -> DatasetInfo:
        if dataset_id in BUILTINS:
            return self._builtin_info(dataset_id)
        try:
            return DatasetInfo.model_validate(self.store.get_dataset(dataset_id))
        except NotFound:
            raise NotFound(f"no dataset with id {dataset_id!r}") from None

    def fetch(self, dataset_id: str) -> DatasetInfo:
        """`info`, after fetching a built-in's missing files (MNIST: downloaded, or Unavailable saying how to fix)."""
        info = self.info(dataset_id)
        if not info.available:
            ensure_mnist(self.data_dir, self.download_url, self.download_timeout_s, self.url_setting)
            info = self.info(dataset_id)
        return info

    def load(self, dataset_id: str) -> DatasetSplits:
        """Training and held-out data. Built-ins come with their own test split; uploads are split here."""
        if dataset_id in BUILTINS:
            return load_builtin(
                dataset_id,
                self.data_dir,
                download_url=self.download_url,
                timeout_s=self.download_timeout_s,
                url_setting=self.url_setting,
            )
        return self.store.load_dataset(dataset_id).split(UPLOAD_TEST_FRACTION, seed=UPLOAD_SPLIT_SEED)
