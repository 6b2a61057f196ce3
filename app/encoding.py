"""Turning sample arrays into response bodies: PNG, a PNG grid, .npy bytes, JSON.

Pure functions of their input (the same array gives the same bytes), so they can run in worker threads.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image, ImageDraw

PNG_COMPRESS_LEVEL = 1  # small images: fast encoding matters more than a few bytes
GRID_PADDING_PX = 2
SCATTER_SIZE_PX = 512
SCATTER_MARGIN = 0.05


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 0..255 bytes, rounding half up."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """One image (H, W) or (H, W, 3), uint8, as PNG."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="L" if image.ndim == 2 else "RGB").save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return buf.getvalue()


def png_base64_list(images: np.ndarray) -> list[str]:
    """Each image of a batch (n, H, W[, 3]) in [0, 1] as base64 PNG."""
    return [base64.b64encode(png_bytes(img)).decode("ascii") for img in to_uint8(images)]


def grid_png(images: np.ndarray, columns: int | None = None) -> bytes:
    """All images of a batch tiled into one PNG, row by row, near-square unless `columns` is given."""
    n = images.shape[0]
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    h, w = images.shape[1], images.shape[2]
    pad = GRID_PADDING_PX
    shape = (rows * (h + pad) + pad, cols * (w + pad) + pad) + images.shape[3:]
    canvas = np.zeros(shape, dtype=np.uint8)
    data = to_uint8(images)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = data[i]
    return png_bytes(canvas)


def scatter_png(points: np.ndarray) -> bytes:
    """Points (n, D) drawn as a scatter plot of their first two coordinates (the grid of a points model)."""
    size = SCATTER_SIZE_PX
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    xy = points[:, :2] if points.shape[1] >= 2 else np.concatenate([points, np.zeros_like(points)], axis=1)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, span = lo - SCATTER_MARGIN * span, span * (1 + 2 * SCATTER_MARGIN)
    pix = (xy - lo) / span * (size - 1)
    for px, py in pix:
        y = size - 1 - py
        draw.ellipse((px - 1.5, y - 1.5, px + 1.5, y + 1.5), fill=(31, 119, 180))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def npy_bytes(samples: np.ndarray) -> bytes:
    """A NumPy .npy file of the float32 array: header plus the raw buffer, no per-sample work."""
    arr = np.ascontiguousarray(samples, dtype=np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()
