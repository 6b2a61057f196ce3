"""Generated samples as the server sent them, decoded on request into NumPy arrays or Pillow images.

numpy and Pillow are optional (the `numpy` and `images` extras): a caller who only saves the bytes, or reads JSON,
installs neither; they are imported when a decoding method first needs them.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import numpy.typing as npt
    from PIL.Image import Image

SEED_HEADER = "x-genserve-seed"


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module.split('.')[0]} is needed for this; install it with: pip install 'genserve-client[{extra}]'"
        ) from exc


def format_of(media_type: str, content: bytes) -> str:
    """The format of an answer whose request left it to the server's default (png for images, json for points)."""
    if media_type == "application/octet-stream":
        return "npy"
    if media_type == "image/png":
        return "grid"
    try:
        body = json.loads(content)
    except ValueError:
        return "json"
    return "png" if isinstance(body, dict) and "images" in body else "json"


@dataclass(frozen=True)
class Samples:
    """The answer of a samples, interpolations or reconstructions request.

    `format`: `npy` (a .npy of float32, shape (n, *sample_shape), images in [0, 1]), `json` (`{"samples", "seed"}`),
    `png` (`{"images": [base64 PNG, ...], "seed"}`, image models) or `grid` (one PNG picture of them all).
    """

    content: bytes
    media_type: str
    format: str
    seed: int | None  # the seed the samples came from; None when they came from given latents or inputs
    headers: dict[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_response(cls, response: httpx.Response, requested: str | None) -> Samples:
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        fmt = requested or format_of(media_type, response.content)
        seed_header = response.headers.get(SEED_HEADER)
        seed: int | None = int(seed_header) if seed_header and seed_header.isdigit() else None
        if seed is None and media_type.endswith("json"):
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("seed"), int):
                seed = body["seed"]
        return cls(response.content, media_type, fmt, seed, dict(response.headers))

    def json(self) -> Any:
        """The body of a `json` or `png` answer."""
        if self.format not in ("json", "png"):
            raise ValueError(f"a {self.format!r} answer is not JSON; use .array() or .images()")
        return json.loads(self.content)

    def array(self) -> npt.NDArray[Any]:
        """The samples as one array: float32 (n, *sample_shape) for `npy` and `json`; uint8 pixels
        (n, H, W[, C]) for `png`; the one picture's uint8 pixels (H, W[, C]) for `grid`."""
        np = require("numpy", "numpy")
        if self.format == "npy":
            return np.load(io.BytesIO(self.content), allow_pickle=False)  # type: ignore[no-any-return]
        if self.format == "json":
            return np.asarray(self.json()["samples"], dtype=np.float32)  # type: ignore[no-any-return]
        pictures = [np.asarray(image) for image in self.images()]
        return pictures[0] if self.format == "grid" else np.stack(pictures)  # type: ignore[no-any-return]

    def images(self) -> list[Image]:
        """The samples as Pillow images: one per sample (`png`, or `npy` of an image model), or the one picture
        (`grid`). Points have no images: ask for `grid` to get their scatter plot."""
        image_module = require("PIL.Image", "images")
        if self.format == "grid":
            return [_open_png(image_module, self.content)]
        if self.format == "png":
            return [_open_png(image_module, base64.b64decode(s)) for s in self.json()["images"]]
        if self.format == "npy":
            np = require("numpy", "images")
            x = self.array()
            if x.ndim not in (3, 4):
                raise ValueError(f"samples of shape {x.shape[1:]} are points, not images; ask for format='grid'")
            pixels = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
            if pixels.ndim == 4 and pixels.shape[-1] == 1:
                pixels = pixels[..., 0]
            return [image_module.fromarray(p) for p in pixels]
        raise ValueError("json samples are points, not images; ask for format='grid' or 'npy'")


def _open_png(image_module: ModuleType, data: bytes) -> Image:
    image = image_module.open(io.BytesIO(data))
    image.load()  # read now: the bytes object goes away
    return image  # type: ignore[no-any-return]
