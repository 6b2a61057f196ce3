"""PNG and JPEG images, alone or in a zip (a folder per class): sizes come from the headers and are checked before
any pixel is decoded, and decoded pixels count against the uncompressed budget."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.errors import Invalid
from models.uploads.labels import remap
from models.uploads.limits import FILE, Budget, UploadLimits, entry_field, reason, too_large
from models.uploads.zips import ignored, read_entry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


IMAGE_FORMATS = {"PNG", "JPEG", "MPO"}  # MPO: multi-picture JPEG as cameras write it; the first picture is used


_PILLOW_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    Image.DecompressionBombError,
)


def _layout(names: list[str]) -> tuple[list[str | None], str | None, str | None]:
    """Class per image (None: unlabeled); plus a top-level file and a folder when both kinds are present."""
    paths = [n.split("/") for n in names]
    while paths and all(len(p) > 1 for p in paths) and len({p[0] for p in paths}) == 1:
        paths = [p[1:] for p in paths]  # one wrapping folder, as zipping a directory gives
    loose = next((n for n, p in zip(names, paths, strict=True) if len(p) == 1), None)
    folder = next((p[0] for p in paths if len(p) > 1), None)
    if loose is not None and folder is not None:
        return [], loose, folder
    return [p[0] if len(p) > 1 else None for p in paths], None, None


def read_zip_images(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: UploadLimits, *, labeled: bool
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    entries = sorted((i for i in infos if not ignored(i)), key=lambda i: i.filename)
    for info in entries:
        if not info.filename.lower().endswith(IMAGE_SUFFIXES):
            raise Invalid(
                f"zip entry {info.filename!r} is not a PNG or JPEG image (.png, .jpg, .jpeg)",
                field=entry_field(info.filename),
            )
    if not entries:
        raise Invalid("the zip holds no PNG or JPEG images", field=FILE)
    if len(entries) > limits.max_images:
        raise too_large(f"the zip holds {len(entries)} images", limits, "max_images")
    classes_of: list[str | None] = [None] * len(entries)
    if labeled:
        classes_of, loose, folder = _layout([i.filename for i in entries])
        if loose is not None:
            raise Invalid(
                f"the zip mixes images at the top level ({loose!r}) with class folders ('{folder}/'); put "
                f"every image in a class folder, or none in folders",
                field=entry_field(loose),
            )

    budget = Budget(limits)
    n = len(entries)
    pixels: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    first = ""
    any_color = False
    for info in entries:
        name = info.filename
        data = read_entry(zf, info)
        budget.take(len(data), f"the entries up to {name!r}")
        image, color = decode_image(
            data, entry_field(name), f"zip entry {name!r}", limits, (size, first) if size else None
        )
        if size is None:
            size, first = (image.shape[1], image.shape[0]), name
            _check_decoded(n, size, 1, limits)
        if color and not any_color:
            any_color = True
            _check_decoded(n, size, 3, limits)
        pixels.append(image)
    if any_color:
        x = np.stack([p if p.ndim == 3 else np.repeat(p[:, :, None], 3, axis=2) for p in pixels])
    else:
        x = np.stack(pixels)
    if not labeled:
        return x, None, None
    if classes_of[0] is None:
        return x, None, None
    y, classes = remap([c for c in classes_of if c is not None])
    return x, y, classes


def _check_decoded(n: int, size: tuple[int, int], channels: int, limits: UploadLimits) -> None:
    total = n * size[0] * size[1] * channels
    if total > limits.max_uncompressed_bytes:
        raise too_large(
            f"the {n} images decode to {total} bytes ({size[0]}x{size[1]}x{channels} each)",
            limits,
            "max_uncompressed_bytes",
        )


def decode_image(
    data: bytes, field: tuple[str, ...], what: str, limits: UploadLimits, expected: tuple[tuple[int, int], str] | None
) -> tuple[np.ndarray, bool]:
    """uint8 pixels (H, W) or (H, W, 3) and whether the image is in color; sizes checked before decoding."""
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires on a header claiming a huge picture
        raise too_large(
            f"{what} declares a picture too large to decode ({reason(exc)})", limits, "max_image_side", field
        ) from exc
    except _PILLOW_ERRORS as exc:
        raise Invalid(f"{what} is not a readable PNG or JPEG image ({reason(exc)})", field=field) from exc
    with img:
        if img.format not in IMAGE_FORMATS:
            raise Invalid(f"{what} is a {img.format} image; genserve reads PNG and JPEG", field=field)
        w, h = img.size
        if w == 0 or h == 0:
            raise Invalid(f"{what} has no pixels ({w}x{h})", field=field)
        if max(w, h) > limits.max_image_side:
            raise too_large(f"{what} is {w}x{h} pixels (side {max(w, h)})", limits, "max_image_side", field)
        if expected is not None and (w, h) != expected[0]:
            ew, eh = expected[0]
            raise Invalid(
                f"{what} is {w}x{h} pixels but {expected[1]!r} is {ew}x{eh}; all images must have the same size",
                field=field,
            )
        try:
            img.load()
            return _pixels(img)
        except _PILLOW_ERRORS as exc:
            raise Invalid(f"{what} is truncated or corrupt ({reason(exc)})", field=field) from exc


def _pixels(img: Image.Image) -> tuple[np.ndarray, bool]:
    mode = img.mode
    if mode in ("1", "L", "LA", "La", "F"):
        return np.asarray(img.convert("L"), dtype=np.uint8), False
    if mode == "I" or mode.startswith("I;16"):
        wide = np.asarray(img).astype(np.float64)  # 16-bit grayscale: scale 0..65535 to 0..255
        return np.rint(wide.clip(0, 65535) / 257.0).astype(np.uint8), False
    if mode in ("P", "PA"):
        rgb = np.asarray(img.convert("RGBA").convert("RGB"), dtype=np.uint8)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return np.ascontiguousarray(rgb[..., 0]), False
        return rgb, True
    return np.asarray(img.convert("RGB"), dtype=np.uint8), True
