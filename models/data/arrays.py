"""In-memory datasets: the arrays every parser produces and every training consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["points", "images"]


@dataclass(frozen=True)
class ArrayDataset:
    """Samples and optional labels.

    points: `x` float32 (N, D).
    images: `x` uint8 in 0..255 or float32 in [0, 1], shaped (N, H, W) for grayscale or (N, H, W, 3) for color.
    `y`: int64 (N,) with values in 0..len(classes)-1, or None when unlabeled (then `classes` is None too).
    """

    x: np.ndarray
    y: np.ndarray | None
    kind: Kind
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if (self.y is None) != (self.classes is None):
            raise ValueError("labels and classes come together")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError("x and y differ in length")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    def float_x(self) -> np.ndarray:
        """Samples as a new, writable float32 array; images scaled to [0, 1]."""
        if self.x.dtype == np.uint8:
            return self.x.astype(np.float32) / 255.0
        return np.array(self.x, dtype=np.float32)

    def subset(self, index: np.ndarray) -> ArrayDataset:
        return ArrayDataset(
            x=self.x[index], y=None if self.y is None else self.y[index], kind=self.kind, classes=self.classes
        )

    def split(self, test_fraction: float, seed: int = 0) -> DatasetSplits:
        """A deterministic train/test split (uploads have no test set of their own)."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n)
        n_test = max(1, int(round(n * test_fraction))) if n > 1 else 0
        return DatasetSplits(train=self.subset(order[n_test:]), test=self.subset(order[:n_test]))


@dataclass(frozen=True)
class DatasetSplits:
    """Training data and held-out data for the metrics computed when a training ends."""

    train: ArrayDataset
    test: ArrayDataset
    # A Gaussian mixture of known components (means (K, D), std), for mode-coverage metrics; None for other data.
    mixture: tuple[np.ndarray, float] | None = None
