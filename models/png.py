"""PNG bytes from uint8 arrays, written directly (signature, IHDR, one IDAT, IEND) rather than through Pillow: for
small images the per-image overhead of a general encoder is most of the cost, and this path serves every sample
request (app/serving/encoding.py) as well as the pictures of models/plots.py."""

from __future__ import annotations

import functools
import math
import struct
import zlib

import numpy as np

PNG_COMPRESS_LEVEL = 1  # small images: fast encoding matters more than a few bytes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 0..255 bytes, rounding half up."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_scanlines(images: np.ndarray) -> np.ndarray:
    """A batch of uint8 images (n, H, W) or (n, H, W, 3) as PNG scanlines, (n, H, 1 + W * channels): each row led by
    filter byte 0 (none). One array operation for the whole batch instead of one per image."""
    n, h = images.shape[:2]
    lines = np.zeros((n, h, 1 + math.prod(images.shape[2:])), dtype=np.uint8)
    lines[:, :, 1:] = images.reshape(lines[:, :, 1:].shape)
    return lines


def png_from_scanlines(lines: np.ndarray, gray: bool) -> bytes:
    """One image's scanlines (H, 1 + W * channels) as PNG (8-bit grayscale or RGB, no filtering, zlib level 1).

    Written directly (signature, IHDR, IDAT, IEND) rather than through Pillow: for small images the per-image
    overhead of a general encoder is most of the cost, and this path serves every sample request.
    """
    h, row = lines.shape
    data = zlib.compress(lines.tobytes(), PNG_COMPRESS_LEVEL)
    return b"".join(
        (
            _png_start(h, (row - 1) // (1 if gray else 3), gray),
            struct.pack(">I", len(data)),
            b"IDAT",
            data,
            struct.pack(">I", zlib.crc32(data, IDAT_CRC)),
            PNG_END,
        )
    )


def png_bytes(image: np.ndarray) -> bytes:
    """One uint8 image (H, W) or (H, W, 3) as PNG."""
    return png_from_scanlines(png_scanlines(image[None])[0], image.ndim == 2)


@functools.lru_cache(maxsize=64)
def _png_start(h: int, w: int, gray: bool) -> bytes:
    """Signature and IHDR chunk: the same for every image of one shape."""
    return PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if gray else 2, 0, 0, 0))


PNG_END = _chunk(b"IEND", b"")
IDAT_CRC = zlib.crc32(b"IDAT")
