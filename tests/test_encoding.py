"""Response encodings: real PNGs that Pillow decodes to the same pixels, grids, .npy, all deterministic."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from app.encoding import (
    encode,
    grid_png,
    npy_bytes,
    png_base64_list,
    png_bytes,
    png_json_body,
    scatter_png,
    to_uint8,
)


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
