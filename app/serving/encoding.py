"""Turning sample arrays into response bodies: PNG, a PNG grid, .npy bytes, JSON.

Pure functions of their input (the same array gives the same bytes), so they can run in worker threads.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.plots import PointsFrame, grid_png, scatter_png
from models.png import png_from_scanlines, png_scanlines, to_uint8


def _png_json_from_scanlines(lines: np.ndarray, gray: bool, seed: int | None) -> bytes:
    """The png format's body, `{"images": [base64 PNG, ...], "seed": s}`: byte for byte what json.dumps gives, built
    without decoding the base64 to str and encoding it back (the single-sample hot path)."""
    encoded = b'", "'.join(base64.b64encode(png_from_scanlines(img, gray)) for img in lines)
    listed = b'["' + encoded + b'"]' if len(lines) else b"[]"
    return b'{"images": ' + listed + b', "seed": ' + (b"null" if seed is None else str(seed).encode()) + b"}"


def png_json_body(images: np.ndarray, seed: int | None) -> bytes:
    """The png format's body for a batch (n, H, W[, 3]) in [0, 1]."""
    return _png_json_from_scanlines(png_scanlines(to_uint8(images)), images.ndim == 3, seed)


def png_base64_list(images: np.ndarray) -> list[str]:
    """Each image of a batch (n, H, W[, 3]) in [0, 1] as base64 PNG."""
    gray = images.ndim == 3
    return [base64.b64encode(png_from_scanlines(img, gray)).decode("ascii") for img in png_scanlines(to_uint8(images))]


def npy_bytes(samples: np.ndarray) -> bytes:
    """A NumPy .npy file of the float32 array: header plus the raw buffer, no per-sample work."""
    arr = np.ascontiguousarray(samples, dtype=np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


@dataclass(frozen=True, eq=False)
class View:
    """How a `grid` picture is drawn (other formats ignore it): images tiled `columns` wide (None: near-square) and
    upscaled `scale` times; points framed by their training data (`frame`; None: by the samples), over that data
    drawn faintly when `show_data`."""

    scale: int = 1
    columns: int | None = None
    frame: PointsFrame | None = None
    show_data: bool = False


DEFAULT_VIEW = View()


@dataclass(frozen=True)
class Encoded:
    """A response body, ready to send."""

    body: bytes
    media_type: str
    seed: int | None = None


class Part(Protocol):
    """One request's share of a batch: `n` rows, in format `fmt`, answered with `seed` (a sampling job is one)."""

    @property
    def n(self) -> int: ...
    @property
    def fmt(self) -> str: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def view(self) -> View: ...


def encode_batch(
    samples: np.ndarray,
    parts: Sequence[Part],
    kind: str,
    map_fn: Callable[..., Iterable[Encoded | Exception]] = map,
) -> list[Encoded | Exception]:
    """The bodies of consecutive parts of one pass's output (rows in order), each what `encode` would give it alone.

    The batch-wide work (0..255 bytes, PNG scanlines) is done once for all png parts, so a part of one sample costs
    little more than its compression; `map_fn` may spread the per-part work over threads. A part whose body cannot
    be made gets its exception in its place, so that it reaches that part's caller only.
    """
    ends = np.cumsum([p.n for p in parts]).tolist()
    starts = [0, *ends[:-1]]
    png = kind == "images" and any(p.fmt == "png" for p in parts)
    lines = png_scanlines(to_uint8(samples)) if png else None
    gray = samples.ndim == 3

    def one(i: int) -> Encoded | Exception:
        p, lo, hi = parts[i], starts[i], ends[i]
        try:
            if p.fmt == "png" and lines is not None:
                return Encoded(_png_json_from_scanlines(lines[lo:hi], gray, p.seed), "application/json", p.seed)
            return encode(samples[lo:hi], p.fmt, kind, p.seed, p.view)
        except Exception as exc:
            return exc

    return list(map_fn(one, range(len(parts))))


def encode(samples: np.ndarray, fmt: str, kind: str, seed: int | None, view: View = DEFAULT_VIEW) -> Encoded:
    """The body of a sample response in format png | grid | npy | json (see the API contract)."""
    if fmt == "png":
        return Encoded(png_json_body(samples, seed), "application/json", seed)
    if fmt == "grid":
        if kind == "points":
            picture = scatter_png(samples, view.frame, view.show_data, view.scale)
        else:
            picture = grid_png(samples, view.columns, view.scale)
        return Encoded(picture, "image/png", seed)
    if fmt == "npy":
        return Encoded(npy_bytes(samples), "application/octet-stream", seed)
    if fmt == "json":
        body = json.dumps({"samples": samples.tolist(), "seed": seed}, allow_nan=False)  # never NaN in JSON
        return Encoded(body.encode(), "application/json", seed)
    raise ValueError(f"unknown format {fmt!r}")
