"""Turning sample arrays into response bodies: PNG, a PNG grid, .npy bytes, JSON.

Pure functions of their input (the same array gives the same bytes), so they can run in worker threads.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.plots import PointsFrame, grid_png, scatter_png
from models.png import png_from_scanlines, png_scanlines, to_uint8


def _png_items(lines: np.ndarray, gray: bool) -> bytes:
    """The items of the png format's `images` list, `"<base64>", "<base64>"`, as json.dumps writes them."""
    encoded = b'", "'.join(base64.b64encode(png_from_scanlines(img, gray)) for img in lines)
    return b'"' + encoded + b'"' if len(lines) else b""


def _seed_json(seed: int | None) -> bytes:
    return b"null" if seed is None else str(seed).encode()


def png_json_from_items(items: Iterable[bytes], seed: int | None) -> bytes:
    """The png format's body, `{"images": [base64 PNG, ...], "seed": s}`, from its items (one piece or a chunk
    each): byte for byte what json.dumps gives, built without decoding the base64 to str and encoding it back (the
    single-sample hot path)."""
    return b'{"images": [' + b", ".join(i for i in items if i) + b'], "seed": ' + _seed_json(seed) + b"}"


def _png_json_from_scanlines(lines: np.ndarray, gray: bool, seed: int | None) -> bytes:
    return png_json_from_items([_png_items(lines, gray)], seed)


def json_from_items(items: Iterable[bytes], seed: int | None) -> bytes:
    """The json format's body, `{"samples": [...], "seed": s}`, from its items as `json_items` writes them."""
    return b'{"samples": [' + b", ".join(i for i in items if i) + b'], "seed": ' + _seed_json(seed) + b"}"


def json_items(samples: np.ndarray) -> bytes:
    """The items of the json format's `samples` list (never NaN in JSON)."""
    return json.dumps(samples.tolist(), allow_nan=False)[1:-1].encode()


def jsonl_lines(samples: np.ndarray) -> bytes:
    """The jsonl format: one sample per line, as a JSON list (points)."""
    return b"".join(json.dumps(row, allow_nan=False).encode() + b"\n" for row in samples.tolist())


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header of a float32 C-order array of this shape: what `npy_bytes` writes before the data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


class ZipStream:
    """A .zip of PNG files written as it goes: each `add` returns the bytes to send next, `close` the central
    directory. Entries are stored (PNGs are compressed already) with a fixed date, so the same images give the same
    bytes; the stdlib writes data descriptors for a stream it cannot seek back in."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", compression=zipfile.ZIP_STORED)

    def add(self, name: str, data: bytes) -> bytes:
        self._zip.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), data)
        return self._sink.take()

    def close(self) -> bytes:
        self._zip.close()
        return self._sink.take()


class _Sink(io.RawIOBase):
    """A write-only stream that cannot seek (so zipfile streams), drained by `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def zip_name(index: int, n: int) -> str:
    """The file name of sample `index` of n in a zip: its index, zero-padded so that names sort in order."""
    return f"{index:0{max(5, len(str(n - 1)))}d}.png"


def png_files(images: np.ndarray) -> tuple[bytes, ...]:
    """Each image of a batch (n, H, W[, 3]) in [0, 1] as PNG file bytes."""
    gray = images.ndim == 3
    return tuple(png_from_scanlines(img, gray) for img in png_scanlines(to_uint8(images)))


def zip_body(pngs: Sequence[bytes]) -> bytes:
    stream = ZipStream()
    return b"".join(stream.add(zip_name(i, len(pngs)), png) for i, png in enumerate(pngs)) + stream.close()


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
    """A response body, ready to send; or a chunk's piece of one (`FRAGMENT` formats), which for png_files is one
    PNG per sample in `files`."""

    body: bytes
    media_type: str
    seed: int | None = None
    files: tuple[bytes, ...] = ()


# The piece each chunk of a big request is encoded to, by the request's format (app/serving/chunks.py joins them).
FRAGMENT = {
    "png": "png_items",
    "json": "json_items",
    "npy": "rows",
    "grid": "rows",
    "zip": "png_files",
    "jsonl": "jsonl",
}
MEDIA_TYPES = {
    "png": "application/json",
    "json": "application/json",
    "grid": "image/png",
    "npy": "application/octet-stream",
    "zip": "application/zip",
    "jsonl": "application/jsonl",
}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: entries do not depend on the clock


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
    png = kind == "images" and any(p.fmt in PNG_FORMATS for p in parts)
    lines = png_scanlines(to_uint8(samples)) if png else None
    gray = samples.ndim == 3

    def one(i: int) -> Encoded | Exception:
        p, lo, hi = parts[i], starts[i], ends[i]
        try:
            if lines is not None and p.fmt == "png":
                return Encoded(_png_json_from_scanlines(lines[lo:hi], gray, p.seed), "application/json", p.seed)
            if lines is not None and p.fmt == "png_items":
                return Encoded(_png_items(lines[lo:hi], gray), "application/json")
            return encode(samples[lo:hi], p.fmt, kind, p.seed, p.view)
        except Exception as exc:
            return exc

    return list(map_fn(one, range(len(parts))))


PNG_FORMATS = ("png", "png_items")


def encode(samples: np.ndarray, fmt: str, kind: str, seed: int | None, view: View = DEFAULT_VIEW) -> Encoded:
    """The body of a sample response in format png | grid | npy | json | zip | jsonl (see the API contract), or a
    chunk's piece of one (a `FRAGMENT` format)."""
    if fmt == "png_items":
        return Encoded(_png_items(png_scanlines(to_uint8(samples)), samples.ndim == 3), "application/json")
    if fmt == "json_items":
        return Encoded(json_items(samples), "application/json")
    if fmt == "rows":
        return Encoded(np.ascontiguousarray(samples, dtype=np.float32).tobytes(), "application/octet-stream")
    if fmt == "png_files":
        return Encoded(b"", "application/zip", files=png_files(samples))
    if fmt == "zip":
        return Encoded(zip_body(png_files(samples)), "application/zip", seed)
    if fmt == "jsonl":
        return Encoded(jsonl_lines(samples), "application/jsonl", seed)
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
        return Encoded(json_from_items([json_items(samples)], seed), "application/json", seed)
    raise ValueError(f"unknown format {fmt!r}")
