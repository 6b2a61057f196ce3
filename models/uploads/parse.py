"""The two entry points of upload parsing: a dataset upload, and the images sent to a VAE. The type comes from the
content (magic bytes) and must agree with the file name's extension; the format's own module does the rest."""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

from models.data.arrays import ArrayDataset
from models.errors import Invalid, UnsupportedFormat
from models.uploads.csv_table import parse_csv
from models.uploads.images import decode_image, read_zip_images
from models.uploads.limits import FILE, UploadLimits, too_large
from models.uploads.npy import npz_dataset, npz_images, read_npz
from models.uploads.zips import looks_like_npz, open_zip

DATASET_TYPES = (
    ".npz (array x, optional integer array y), .csv (a header row; numeric columns, optional label column), "
    ".zip (PNG/JPEG images; a top-level folder per class gives labels)"
)


IMAGE_TYPES = ".png, .jpg/.jpeg (one image), .zip (PNG/JPEG images), .npz (array x of images)"


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


JPEG_MAGIC = b"\xff\xd8\xff"


ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with entries; an empty archive


def parse_upload(filename: str, content: bytes, limits: UploadLimits) -> ArrayDataset:
    """Validate an uploaded dataset (.npz, .csv, or .zip of images) and return its arrays."""
    _check_size(content, limits)
    suffix = _suffix(filename)
    expected = {".npz": "npz", ".csv": "csv", ".zip": "zip"}.get(suffix)
    if expected is None:
        raise UnsupportedFormat(
            f"{_named(filename)} is not a dataset type genserve reads; accepted: {DATASET_TYPES}", field=FILE
        )
    found = _sniff(content)
    if expected == "csv":
        if found != "other":
            raise _mismatch(filename, found, DATASET_TYPES)
        return parse_csv(content, limits)
    if found != "zip":
        raise _mismatch(filename, found, DATASET_TYPES)
    zf, infos = open_zip(content, limits)
    with zf:
        is_npz = looks_like_npz(infos)
        if expected == "npz":
            if is_npz is False:
                raise UnsupportedFormat(
                    f"{_named(filename)} is a zip archive of other files, not an .npz of "
                    f".npy arrays; accepted: {DATASET_TYPES}",
                    field=FILE,
                )
            x, y = read_npz(zf, infos, limits)
            return npz_dataset(x, y, limits)
        if is_npz is True:
            raise UnsupportedFormat(
                f"{_named(filename)} holds .npy arrays: name it .npz; accepted: {DATASET_TYPES}", field=FILE
            )
        images, labels, classes = read_zip_images(zf, infos, limits, labeled=True)
        return ArrayDataset(x=images, y=labels, kind="images", classes=classes)


def parse_images(filename: str, content: bytes, limits: UploadLimits) -> np.ndarray:
    """For VAE reconstructions: one PNG/JPEG image, a .zip of images, or a .npz with array x -> images
    (N,H,W) or (N,H,W,3) as float32 in [0, 1]."""
    _check_size(content, limits)
    suffix = _suffix(filename)
    expected = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".zip": "zip", ".npz": "zip"}.get(suffix)
    if expected is None:
        raise UnsupportedFormat(
            f"{_named(filename)} is not an image type genserve reads; accepted: {IMAGE_TYPES}", field=FILE
        )
    found = _sniff(content)
    if found != expected:
        raise _mismatch(filename, found, IMAGE_TYPES)
    if found in ("png", "jpeg"):
        pixels, _ = decode_image(content, FILE, "the image", limits, None)
        x = pixels[None]
    else:
        zf, infos = open_zip(content, limits)
        with zf:
            if suffix == ".npz":
                if looks_like_npz(infos) is False:
                    raise UnsupportedFormat(
                        f"{_named(filename)} is a zip archive of other files, not an .npz "
                        f"of .npy arrays; accepted: {IMAGE_TYPES}",
                        field=FILE,
                    )
                arr, _ = read_npz(zf, infos, limits, with_y=False)
                if arr.ndim == 2:
                    raise Invalid(
                        f"x has shape {arr.shape}: points, not images; send points as JSON", field=("file", "x")
                    )
                x = npz_images(arr, limits)
            else:
                x, _, _ = read_zip_images(zf, infos, limits, labeled=False)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


def _check_size(content: bytes, limits: UploadLimits) -> None:
    if not content:
        raise Invalid("the file is empty", field=FILE)
    if len(content) > limits.max_bytes:
        raise too_large(f"the file has {len(content)} bytes", limits, "max_bytes")


def _suffix(filename: str) -> str:
    return PurePosixPath((filename or "").replace("\\", "/")).suffix.lower()


def _named(filename: str) -> str:
    return f"{filename!r}" if filename else "the file (no name)"


def _sniff(content: bytes) -> str:
    """'zip', 'png', 'jpeg' or 'other' (text, or binary genserve does not read), from the magic bytes."""
    if content.startswith(ZIP_MAGICS):
        return "zip"
    if content.startswith(PNG_MAGIC):
        return "png"
    if content.startswith(JPEG_MAGIC):
        return "jpeg"
    return "other"


_DESCRIBED = {"zip": "a zip archive", "png": "a PNG image", "jpeg": "a JPEG image", "other": "text or other data"}


def _mismatch(filename: str, found: str, accepted: str) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"{_named(filename)} holds {_DESCRIBED[found]}, which does not match its extension; accepted: {accepted}",
        field=FILE,
    )
