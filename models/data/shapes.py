"""`shapes`: a procedural color-image dataset with known factors (dSprites-like), generated from fixed seeds.

Each 32x32 RGB image holds one filled shape (the label) on black, in one of six colors, three sizes and a uniform
position; docs/api.md (Datasets) states the exact definition for users, which this module implements. Edges are
anti-aliased by supersampling. Every image's factors are kept (`ShapeImages`), so that benchmarks can check the
shape and color combinations of generated samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SIDE = 32  # px per side
SHAPES = ["square", "circle", "triangle", "cross"]
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
SIZES = (5, 7, 9)  # half-extents r, px
SUPERSAMPLE = 4  # sub-pixels per side of each pixel
TRAIN_SIZE = 20_000
TEST_SIZE = 5_000
SEEDS = (20250, 20251)  # (train, test)
_CHUNK = 1000  # images rendered at once (bounds the sub-pixel arrays' memory)


@dataclass(frozen=True)
class ShapeImages:
    """Rendered images (n, 32, 32, 3) uint8 and their factors, each (n,): shape, color and size as indices into
    SHAPES, COLORS and SIZES, cx and cy in px."""

    x: np.ndarray
    shape: np.ndarray
    color: np.ndarray
    size: np.ndarray
    cx: np.ndarray
    cy: np.ndarray


def _inside(shape: int, r: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Which sub-pixels lie inside one kind of shape (an index into SHAPES); r (n, 1, 1), dx and dy (n, S, S)."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == 0:
        return np.maximum(ax, ay) <= 0.8 * r
    if shape == 1:
        return dx * dx + dy * dy <= r * r
    if shape == 2:
        return (dy >= -r) & (dy <= r) & (ax <= (dy + r) / 2)
    third = r / 3
    return ((ax <= third) & (ay <= r)) | ((ay <= third) & (ax <= r))


def render(shape: np.ndarray, color: np.ndarray, size: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Images (n, 32, 32, 3) uint8 of the given factors (shape, color, size as indices; cx, cy in px)."""
    sub = (np.arange(SIDE * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE  # sub-pixel centres, px
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    radii = np.array(SIZES, dtype=np.float32)
    out = np.empty((len(shape), SIDE, SIDE, 3), dtype=np.uint8)
    for kind in range(len(SHAPES)):
        members = np.flatnonzero(shape == kind)
        for start in range(0, len(members), _CHUNK):
            idx = members[start : start + _CHUNK]
            dx = sub[None, None, :] - cx[idx, None, None].astype(np.float32)  # (m, 1, S)
            dy = sub[None, :, None] - cy[idx, None, None].astype(np.float32)  # (m, S, 1)
            inside = _inside(kind, radii[size[idx]][:, None, None], dx, dy)  # (m, S, S)
            cover = inside.reshape(len(idx), SIDE, SUPERSAMPLE, SIDE, SUPERSAMPLE).mean(axis=(2, 4), dtype=np.float32)
            out[idx] = np.rint(cover[..., None] * palette[color[idx]][:, None, None, :]).astype(np.uint8)
    return out


def generate(n: int, seed: int) -> ShapeImages:
    """n images with factors drawn from a generator seeded with `seed` (the same images for the same arguments)."""
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, len(SHAPES), n)
    color = rng.integers(0, len(COLORS), n)
    size = rng.integers(0, len(SIZES), n)
    r = np.array(SIZES, dtype=np.float64)[size]
    cx = rng.uniform(r, SIDE - r)
    cy = rng.uniform(r, SIDE - r)
    return ShapeImages(render(shape, color, size, cx, cy), shape, color, size, cx, cy)


@lru_cache(maxsize=2)
def shapes_split(split: str) -> ShapeImages:
    """The built-in's "train" or "test" split (cached; its arrays are shared, so read-only)."""
    n, seed = (TRAIN_SIZE, SEEDS[0]) if split == "train" else (TEST_SIZE, SEEDS[1])
    images = generate(n, seed)
    for a in (images.x, images.shape, images.color, images.size, images.cx, images.cy):
        a.flags.writeable = False
    return images
