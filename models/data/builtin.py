"""Built-in datasets: two PacGAN mixtures, scikit-learn's two moons and 8x8 digits, MNIST, and colored shapes.

Every built-in is deterministic (fixed seeds: the same arrays on every call) and cached in-process, keyed by id and
data directory. The cached arrays are shared and marked read-only; copy before changing them in place.
`size` in `BuiltinInfo` is the number of *training* samples (what a training iterates over and what `batch_size`
is checked against); each built-in also has its own held-out test split, described in `description`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from models.data import shapes
from models.data.arrays import ArrayDataset, DatasetSplits
from models.data.mnist import DEFAULT_URL_SETTING, MNIST_CLASSES, ensure_mnist, load_mnist
from models.errors import NotFound

MIXTURE_TRAIN_SIZE = 100_000
MIXTURE_TEST_SIZE = 10_000
MOONS_NOISE = 0.05
MOONS_CLASSES = ["upper", "lower"]  # scikit-learn's label 0 is the upper moon, 1 the lower one
DIGITS_TEST_FRACTION = 0.2
DIGITS_TRAIN_SIZE = 1_438  # stratified 80/20, rounded per class: 359 test images
DIGITS_CLASSES = [str(i) for i in range(10)]

# PacGAN (Lin et al., 2018), section 5: 2-D mixtures of equally likely Gaussians.
RING2D_MEANS: np.ndarray = np.array(
    [[np.cos(2 * np.pi * i / 8), np.sin(2 * np.pi * i / 8)] for i in range(8)], dtype=np.float64
)
RING2D_STD: float = 0.01
GRID2D_MEANS: np.ndarray = np.array([[a, b] for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)], dtype=np.float64)
GRID2D_STD: float = 0.05
RING2D_MEANS.flags.writeable = False
GRID2D_MEANS.flags.writeable = False

# Fixed seeds: (train, test) per generated dataset, and the digits split.
_SEEDS: dict[str, tuple[int, int]] = {"ring2d": (20180, 20181), "grid2d": (20182, 20183), "moons2d": (20184, 20185)}
_DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class BuiltinInfo:
    id: str
    name: str
    kind: Literal["points", "images"]
    shape: tuple[int, ...]  # per sample
    size: int  # training samples
    classes: list[str] | None
    description: str


BUILTINS: dict[str, BuiltinInfo] = {
    "ring2d": BuiltinInfo(
        id="ring2d",
        name="Ring of 8 Gaussians",
        kind="points",
        shape=(2,),
        size=MIXTURE_TRAIN_SIZE,
        classes=None,
        description="8 equally likely 2-D Gaussians with means (cos 2πi/8, sin 2πi/8) and std 0.01, as in "
        "PacGAN; 100,000 training points and 10,000 fresh test points.",
    ),
    "grid2d": BuiltinInfo(
        id="grid2d",
        name="Grid of 25 Gaussians",
        kind="points",
        shape=(2,),
        size=MIXTURE_TRAIN_SIZE,
        classes=None,
        description="25 equally likely 2-D Gaussians with means {-4,-2,0,2,4}² and std 0.05, as in PacGAN; "
        "100,000 training points and 10,000 fresh test points.",
    ),
    "moons2d": BuiltinInfo(
        id="moons2d",
        name="Two moons",
        kind="points",
        shape=(2,),
        size=MIXTURE_TRAIN_SIZE,
        classes=list(MOONS_CLASSES),
        description="scikit-learn's two interleaving half circles (noise 0.05), labeled upper/lower; "
        "100,000 training points and 10,000 test points.",
    ),
    "digits": BuiltinInfo(
        id="digits",
        name="8x8 digits",
        kind="images",
        shape=(8, 8),
        size=DIGITS_TRAIN_SIZE,
        classes=list(DIGITS_CLASSES),
        description="scikit-learn's 1,797 handwritten 8x8 grayscale digits (UCI), 10 classes; stratified "
        "80/20 split: 1,438 training and 359 test images.",
    ),
    "mnist": BuiltinInfo(
        id="mnist",
        name="MNIST",
        kind="images",
        shape=(28, 28),
        size=60_000,
        classes=list(MNIST_CLASSES),
        description="LeCun, Cortes and Burges' 28x28 grayscale handwritten digits, 10 classes; 60,000 training "
        "and 10,000 test images, read from the four IDX files in the data directory or downloaded there.",
    ),
    "shapes": BuiltinInfo(
        id="shapes",
        name="Colored shapes",
        kind="images",
        shape=(shapes.SIDE, shapes.SIDE, 3),
        size=shapes.TRAIN_SIZE,
        classes=list(shapes.SHAPES),
        description="32x32 RGB images of one filled shape on black, labeled by shape (square, circle, triangle, "
        "cross), in one of 6 colors, 3 sizes and a uniform position; generated from fixed seeds at first use: "
        "20,000 training and 5,000 test images.",
    ),
}


def mixture_modes(dataset_id: str) -> tuple[np.ndarray, float] | None:
    """(means (K, 2), std) of a Gaussian-mixture built-in, for mode-coverage metrics; None for the others."""
    if dataset_id == "ring2d":
        return RING2D_MEANS, RING2D_STD
    if dataset_id == "grid2d":
        return GRID2D_MEANS, GRID2D_STD
    return None


def _mixture(means: np.ndarray, std: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    component = rng.integers(0, len(means), size=n)
    return (means[component] + std * rng.standard_normal((n, means.shape[1]))).astype(np.float32)


def _frozen(data: ArrayDataset) -> ArrayDataset:
    data.x.flags.writeable = False
    if data.y is not None:
        data.y.flags.writeable = False
    return data


def _points(x: np.ndarray, y: np.ndarray | None = None, classes: list[str] | None = None) -> ArrayDataset:
    return _frozen(ArrayDataset(x=x, y=y, kind="points", classes=classes))


def _moons(n: int, seed: int) -> ArrayDataset:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=MOONS_NOISE, random_state=seed)
    return _points(x.astype(np.float32), y.astype(np.int64), list(MOONS_CLASSES))


def _digits() -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    # Stratified: the same share of every class goes to the test split, chosen by a seeded shuffle.
    rng = np.random.default_rng(_DIGITS_SPLIT_SEED)
    test: list[np.ndarray] = []
    for c in range(len(DIGITS_CLASSES)):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: int(round(len(members) * DIGITS_TEST_FRACTION))])
    test_index = np.sort(np.concatenate(test))
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_index] = False
    train_index = rng.permutation(np.flatnonzero(train_mask))
    test_index = rng.permutation(test_index)

    def part(index: np.ndarray) -> ArrayDataset:
        return _frozen(ArrayDataset(x=images[index], y=labels[index], kind="images", classes=list(DIGITS_CLASSES)))

    return DatasetSplits(train=part(train_index), test=part(test_index))


@lru_cache(maxsize=8)
def _generated(dataset_id: str) -> DatasetSplits:
    """The built-ins that need no files."""
    if dataset_id in ("ring2d", "grid2d"):
        means, std = (RING2D_MEANS, RING2D_STD) if dataset_id == "ring2d" else (GRID2D_MEANS, GRID2D_STD)
        train_seed, test_seed = _SEEDS[dataset_id]
        return DatasetSplits(
            train=_points(_mixture(means, std, MIXTURE_TRAIN_SIZE, train_seed)),
            test=_points(_mixture(means, std, MIXTURE_TEST_SIZE, test_seed)),
            mixture=(means, std),
        )
    if dataset_id == "moons2d":
        train_seed, test_seed = _SEEDS[dataset_id]
        return DatasetSplits(train=_moons(MIXTURE_TRAIN_SIZE, train_seed), test=_moons(MIXTURE_TEST_SIZE, test_seed))
    if dataset_id == "digits":
        return _digits()
    if dataset_id == "shapes":
        train, test = shapes.shapes_split("train"), shapes.shapes_split("test")
        classes = list(shapes.SHAPES)
        return DatasetSplits(
            train=ArrayDataset(x=train.x, y=train.shape, kind="images", classes=classes),
            test=ArrayDataset(x=test.x, y=test.shape, kind="images", classes=classes),
        )
    raise NotFound(f"no built-in dataset {dataset_id!r}")


@lru_cache(maxsize=4)
def _mnist(data_dir: Path) -> DatasetSplits:
    splits = load_mnist(data_dir)
    return DatasetSplits(train=_frozen(splits.train), test=_frozen(splits.test))


def load_builtin(
    dataset_id: str,
    data_dir: Path,
    *,
    download_url: str | None = None,
    timeout_s: float = 30.0,
    url_setting: str = DEFAULT_URL_SETTING,
) -> DatasetSplits:
    """Training and test data of a built-in (cached); NotFound for an unknown id.

    mnist is read from data_dir/mnist, downloaded there first from download_url when missing (Unavailable when
    neither works; `url_setting` names where the URL is configured).
    """
    if dataset_id not in BUILTINS:
        raise NotFound(f"no built-in dataset {dataset_id!r}; built-ins are {', '.join(BUILTINS)}", field=("dataset",))
    if dataset_id == "mnist":
        ensure_mnist(data_dir, download_url, timeout_s, url_setting)  # a few stat() calls when the files are there
        return _mnist(Path(data_dir).absolute())
    return _generated(dataset_id)
