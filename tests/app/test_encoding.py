"""Response encodings: real PNGs that Pillow decodes to the same pixels, grids, .npy, all deterministic."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from app.serving.encoding import DEFAULT_VIEW, View, encode, encode_batch, npy_bytes, png_base64_list, png_json_body
from models.plots import grid_png, grid_side_px, scatter_png
from models.png import png_bytes, to_uint8


@pytest.mark.parametrize("shape", [(28, 28), (8, 8), (16, 16, 3), (1, 1), (5, 128, 3)])
def test_png_decodes_to_the_same_pixels(shape: tuple[int, ...]) -> None:
    pixels = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    image = Image.open(io.BytesIO(png_bytes(pixels)))
    image.load()
    assert image.mode == ("L" if len(shape) == 2 else "RGB")
    np.testing.assert_array_equal(np.asarray(image), pixels)
    assert png_bytes(pixels) == png_bytes(pixels.copy())


def test_to_uint8_rounds_and_clips() -> None:
    assert to_uint8(np.array([-1.0, 0.0, 0.5, 1 / 255 * 0.49, 1.0, 7.0])).tolist() == [0, 0, 128, 0, 255, 255]


def test_grid_tiles_rows_with_gaps() -> None:
    images = np.ones((5, 4, 6), dtype=np.float32)
    grid = Image.open(io.BytesIO(grid_png(images)))
    assert grid.size == (3 * (6 + 2) + 2, 2 * (4 + 2) + 2)  # 3 columns, 2 rows
    arr = np.asarray(grid)
    assert arr[2:6, 2:8].min() == 255 and arr[0].max() == 0  # a tile, and the gap above it


@pytest.mark.parametrize(
    ("n", "shape", "columns", "scale"), [(5, (4, 6), None, 1), (100, (8, 8), None, 4), (12, (28, 28, 3), 4, 3)]
)
def test_a_scaled_grid_repeats_each_pixel(n: int, shape: tuple[int, ...], columns: int | None, scale: int) -> None:
    """Nearest-neighbour upscaling: every pixel becomes a scale x scale block; `grid_side_px` predicts the size."""
    images = np.random.default_rng(3).random((n, *shape)).astype(np.float32)
    small = np.asarray(Image.open(io.BytesIO(grid_png(images, columns))))
    big = np.asarray(Image.open(io.BytesIO(grid_png(images, columns, scale))))
    assert big.shape[:2] == (small.shape[0] * scale, small.shape[1] * scale)
    for dy in range(scale):
        for dx in range(scale):
            np.testing.assert_array_equal(big[dy::scale, dx::scale], small)
    assert grid_side_px(n, shape, columns, scale) == max(big.shape[:2])


def test_scatter_and_npy() -> None:
    points = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    assert Image.open(io.BytesIO(scatter_png(points))).size == (512, 512)
    back = np.load(io.BytesIO(npy_bytes(points)), allow_pickle=False)
    assert back.dtype == np.float32 and np.array_equal(back, points)


def test_encode_formats() -> None:
    images = np.random.default_rng(2).random((3, 8, 8)).astype(np.float32)
    png = encode(images, "png", "images", 9)
    body = json.loads(png.body)
    assert png.media_type == "application/json" and body["seed"] == 9 and len(body["images"]) == 3
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0]))))
    np.testing.assert_array_equal(first, to_uint8(images[0]))
    assert encode(images, "grid", "images", 9).media_type == "image/png"
    assert json.loads(encode(images, "json", "images", None).body)["samples"][0][0][0] == pytest.approx(images[0, 0, 0])
    with pytest.raises(ValueError):
        encode(images, "gif", "images", None)


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("seed", [None, 0, 2**31 - 1])
def test_png_body_is_what_json_dumps_gives(n: int, seed: int | None) -> None:
    images = np.random.default_rng(n).random((n, 28, 28)).astype(np.float32)
    expected = json.dumps({"images": png_base64_list(images), "seed": seed}).encode()
    assert png_json_body(images, seed) == expected
    assert encode(images, "png", "images", seed).body == expected


@dataclass(frozen=True)
class _Part:
    n: int
    fmt: str
    seed: int | None
    view: View = DEFAULT_VIEW


@pytest.mark.parametrize("shape", [(28, 28), (16, 16, 3)])
def test_a_batch_gives_each_part_the_body_it_would_get_alone(shape: tuple[int, ...]) -> None:
    """Batch-wide PNG preparation must not change a byte: every part (any n, format, seed) gets `encode`'s body."""
    parts = [
        _Part(1, "png", 5),
        _Part(3, "png", None),
        _Part(2, "npy", 7),
        _Part(0, "png", 1),
        _Part(1, "json", 2),
        _Part(4, "grid", 3),
        _Part(1, "png", 2**31 - 1),
    ]
    samples = np.random.default_rng(3).random((sum(p.n for p in parts), *shape)).astype(np.float32) * 1.2 - 0.1
    expected, row = [], 0
    for p in parts:
        expected.append(encode(samples[row : row + p.n], p.fmt, "images", p.seed))
        row += p.n
    assert encode_batch(samples, parts, "images") == expected
    with ThreadPoolExecutor(3) as pool:
        assert encode_batch(samples, parts, "images", pool.map) == expected


def test_a_points_batch_is_encoded_part_by_part() -> None:
    points = np.random.default_rng(4).normal(size=(5, 2)).astype(np.float32)
    parts = [_Part(2, "json", 1), _Part(3, "npy", None)]
    assert encode_batch(points, parts, "points") == [
        encode(points[:2], "json", "points", 1),
        encode(points[2:], "npy", "points", None),
    ]
