"""Request bodies made from what a caller has at hand: a file path, bytes, a NumPy array, a list of points.

The server reads an upload's type from its content and insists that the file name's extension agrees (else 415),
so bytes without a name get the extension their content shows.
"""

from __future__ import annotations

import io
import mimetypes
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .samples import require

FileInput = str | os.PathLike[str] | bytes | bytearray | memoryview
"""A file to send: its path, or its content."""


@dataclass(frozen=True)
class Body:
    """What a request carries: JSON, or a multipart form (`files` and text fields `data`)."""

    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None


def is_file(value: object) -> bool:
    return isinstance(value, str | os.PathLike | bytes | bytearray | memoryview)


def is_array(value: object) -> bool:
    """A NumPy array, or anything else NumPy can take without copying guesses (`__array__`)."""
    return hasattr(value, "__array__")


def file_part(file: FileInput, filename: str | None, stem: str) -> tuple[str, bytes, str]:
    """(file name, content, media type) of a multipart file field. Read whole: a retried request sends it again."""
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        content = path.read_bytes()
        filename = filename or path.name
    else:
        content = bytes(file)
        filename = filename or sniff_filename(content, stem)
    return filename, content, mimetypes.guess_type(filename)[0] or "application/octet-stream"


def sniff_filename(content: bytes, stem: str) -> str:
    """A file name whose extension matches the content: PNG, JPEG, a NumPy .npz (a zip of .npy entries), another
    zip, and else CSV (the one text format the server reads)."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return f"{stem}.png"
    if content.startswith(b"\xff\xd8\xff"):
        return f"{stem}.jpg"
    if content.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            names = []
        return f"{stem}.npz" if names and all(n.endswith(".npy") for n in names) else f"{stem}.zip"
    return f"{stem}.csv"


def npz(x: Any, y: Any = None) -> bytes:
    """Arrays as the server reads an .npz: `x` the samples, `y` the optional integer labels."""
    np = require("numpy", "numpy")
    buffer = io.BytesIO()
    arrays = {"x": np.asarray(x)}
    if y is not None:
        arrays["y"] = np.asarray(y, dtype=np.int64)
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def dataset_upload(file: FileInput | Any, name: str, filename: str | None, labels: Any) -> Body:
    """`POST /v1/datasets`: a file (path or bytes), or an array of points (N, D) or images (N, H, W[, C]) sent as
    an .npz with `labels` as its `y`."""
    if is_file(file):
        if labels is not None:
            raise ValueError("labels go with an array; a file carries its own (a label column, y, class folders)")
        part = file_part(file, filename, "data")
    else:
        part = (filename or "data.npz", npz(file, labels), "application/octet-stream")
    return Body(files={"file": part}, data={"name": name})


def vae_inputs(inputs: Any, labels: Sequence[int] | None, fmt: str | None) -> Body:
    """The inputs of reconstructions, encodings and scores: points as JSON, images as a multipart upload.

    Points: a sequence of points, or a 2-D array. Images: a file (an image, a .zip of images, an .npz with `x`, as
    a path or bytes), or an array (N, H, W[, C]) sent as .npz."""
    if is_file(inputs):
        return _images(file_part(inputs, None, "inputs"), labels, fmt)
    if is_array(inputs):
        np = require("numpy", "numpy")
        x = np.asarray(inputs)
        if x.ndim in (3, 4):
            return _images(("inputs.npz", npz(x), "application/octet-stream"), labels, fmt)
        if x.ndim != 2:
            raise ValueError(f"inputs of shape {x.shape}: points are (N, D), images (N, H, W) or (N, H, W, C)")
        inputs = x.astype(float).tolist()
    body: dict[str, Any] = {"points": [[float(v) for v in point] for point in inputs]}
    if labels is not None:
        body["labels"] = [int(label) for label in labels]
    if fmt is not None:
        body["format"] = fmt
    return Body(json=body)


def _images(part: tuple[str, bytes, str], labels: Sequence[int] | None, fmt: str | None) -> Body:
    data: dict[str, str] = {}
    if labels is not None:
        data["labels"] = ",".join(str(int(label)) for label in labels)
    if fmt is not None:
        data["format"] = fmt
    return Body(files={"file": part}, data=data)
