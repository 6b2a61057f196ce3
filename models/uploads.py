"""Parsing and validating uploaded files: datasets (.npz, .csv, .zip of images) and images for reconstructions.

Everything here treats the upload as hostile: the type comes from the content (magic bytes) and must agree with
the extension; .npz members are decoded by hand from their .npy headers (never unpickled, shapes checked before
any array is allocated); zip headers are checked (entry count, names, symlinks, encryption, compression ratio,
total size) before anything is decompressed, and sizes are enforced again while reading; image sizes are checked
from their headers before pixels are decoded.

Every error carries `field=("file",)` or `("file", <entry or array name>, ...)` and, for limits, `limit=` plus a
message naming the setting (`GENSERVE_*`) that raises it.

Choices worth knowing:
- Labels: `y` (npz), the `label` column (csv) or the class folders (zip) give `classes` sorted (numerically when
  every label is an integer, else as strings) and `y` remapped to 0..K-1. A single class is allowed (K >= 1).
- zip layout: when every image sits under one and the same top-level folder (what zipping a directory gives),
  that folder is stripped first; so a zip needs two or more class folders to be labeled.
- Images decode to uint8; all grayscale -> (N, H, W), any color -> every image RGB (N, H, W, 3). Alpha is dropped;
  16-bit grayscale is scaled to 8 bits; palette images whose colors are all gray count as grayscale.
- Decoded pixels count against `max_uncompressed_bytes` too, so small compressed images cannot expand without bound.
- npz integer images (other than uint8) are accepted when their values are within 0..255; bool arrays are refused.
- npz archives get the same zip header checks as zip uploads (entries, names, ratio, total size).
"""

from __future__ import annotations

import csv
import io
import math
import re
import stat
import struct
import zipfile
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image, UnidentifiedImageError

from models.data import ArrayDataset
from models.errors import Invalid, TooLarge, UnsupportedFormat


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_images: int = 100_000
    max_image_side: int = 128
    max_points: int = 1_000_000
    max_point_dims: int = 64
    max_zip_entries: int = 100_000
    max_zip_ratio: float = 200.0
    max_uncompressed_bytes: int = 512 * 1024 * 1024


SETTINGS: dict[str, str] = {
    "max_bytes": "GENSERVE_MAX_UPLOAD_BYTES",
    "max_images": "GENSERVE_MAX_IMAGES",
    "max_image_side": "GENSERVE_MAX_IMAGE_SIDE",
    "max_points": "GENSERVE_MAX_POINTS",
    "max_point_dims": "GENSERVE_MAX_POINT_DIMS",
    "max_zip_entries": "GENSERVE_MAX_ZIP_ENTRIES",
    "max_zip_ratio": "GENSERVE_MAX_ZIP_RATIO",
    "max_uncompressed_bytes": "GENSERVE_MAX_UNCOMPRESSED_BYTES",
}

DATASET_TYPES = (
    ".npz (array x, optional integer y), .csv (numeric columns, optional label column), "
    ".zip (PNG/JPEG images, a top-level folder per class)"
)
IMAGE_TYPES = ".png, .jpg/.jpeg (one image), .zip (PNG/JPEG images), .npz (array x of images)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = {"PNG", "JPEG", "MPO"}  # MPO: multi-picture JPEG as cameras write it; the first picture is used
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
READ_CHUNK = 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # an archive with entries; an empty archive
EOCD_MAGIC = b"PK\x05\x06"
FILE: tuple[str, ...] = ("file",)

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
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    struct.error,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)


def _limit(what: str, limits: UploadLimits, name: str, field: Sequence[str | int] = FILE) -> TooLarge:
    value = getattr(limits, name)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return TooLarge(f"{what}; the limit is {shown} ({SETTINGS[name]})", field=field, limit=value)


def _entry_field(name: str) -> tuple[str, str]:
    return ("file", name.replace("\x00", "\\0"))


# --- entry points ------------------------------------------------------------------------------------------------
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
        return _parse_csv(content, limits)
    if found != "zip":
        raise _mismatch(filename, found, DATASET_TYPES)
    zf, infos = _open_zip(content, limits)
    with zf:
        is_npz = _looks_like_npz(infos)
        if expected == "npz":
            if is_npz is False:
                raise UnsupportedFormat(
                    f"{_named(filename)} is a zip archive of other files, not an .npz of "
                    f".npy arrays; accepted: {DATASET_TYPES}",
                    field=FILE,
                )
            x, y = _read_npz(zf, infos, limits)
            return _npz_dataset(x, y, limits)
        if is_npz is True:
            raise UnsupportedFormat(
                f"{_named(filename)} holds .npy arrays: name it .npz; accepted: {DATASET_TYPES}", field=FILE
            )
        images, labels, classes = _read_zip_images(zf, infos, limits, labeled=True)
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
        pixels, _ = _decode_image(content, FILE, "the image", limits, None)
        x = pixels[None]
    else:
        zf, infos = _open_zip(content, limits)
        with zf:
            if suffix == ".npz":
                if _looks_like_npz(infos) is False:
                    raise UnsupportedFormat(
                        f"{_named(filename)} is a zip archive of other files, not an .npz "
                        f"of .npy arrays; accepted: {IMAGE_TYPES}",
                        field=FILE,
                    )
                arr, _ = _read_npz(zf, infos, limits, with_y=False)
                if arr.ndim == 2:
                    raise Invalid(
                        f"x has shape {arr.shape}: points, not images; send points as JSON", field=("file", "x")
                    )
                x = _npz_images(arr, limits)
            else:
                x, _, _ = _read_zip_images(zf, infos, limits, labeled=False)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


# --- type detection ----------------------------------------------------------------------------------------------
def _check_size(content: bytes, limits: UploadLimits) -> None:
    if not content:
        raise Invalid("the file is empty", field=FILE)
    if len(content) > limits.max_bytes:
        raise _limit(f"the file has {len(content)} bytes", limits, "max_bytes")


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


# --- zip containers ----------------------------------------------------------------------------------------------
def _declared_entries(content: bytes) -> int | None:
    """The entry count in the end-of-central-directory record (None when absent or zip64)."""
    idx = content.rfind(EOCD_MAGIC, max(0, len(content) - (22 + 65535)))
    if idx < 0 or idx + 22 > len(content):
        return None
    (total,) = struct.unpack_from("<H", content, idx + 10)
    return None if total == 0xFFFF else int(total)


def _unsafe_name(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "contains '..'"
    return None


def _open_zip(content: bytes, limits: UploadLimits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open an archive and check every header before anything is decompressed."""
    declared = _declared_entries(content)
    if declared is not None and declared > limits.max_zip_entries:
        raise _limit(f"the zip holds {declared} entries", limits, "max_zip_entries")
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        infos = zf.infolist()
    except _ZIP_ERRORS as exc:
        raise Invalid(f"the file is not a readable zip archive ({exc})", field=FILE) from exc
    try:
        if len(infos) > limits.max_zip_entries:
            raise _limit(f"the zip holds {len(infos)} entries", limits, "max_zip_entries")
        total = 0
        for info in infos:
            name = info.orig_filename
            field = _entry_field(name)
            reason = _unsafe_name(name)
            if reason:
                raise Invalid(f"zip entry {name!r} {reason}; entry names must be relative paths", field=field)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise Invalid(f"zip entry {name!r} is a symbolic link; links are not allowed", field=field)
            if info.flag_bits & 0x1:
                raise Invalid(f"zip entry {name!r} is encrypted; upload an archive without a password", field=field)
            if info.compress_type not in ZIP_METHODS:
                raise Invalid(
                    f"zip entry {name!r} uses compression method {info.compress_type}; genserve reads "
                    f"stored and deflate entries",
                    field=field,
                )
            if info.file_size > 0:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_zip_ratio:
                    raise _limit(
                        f"zip entry {name!r} expands {ratio:.0f}x ({info.compress_size} -> {info.file_size} bytes)",
                        limits,
                        "max_zip_ratio",
                        field,
                    )
            total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise _limit(f"the zip's entries hold {total} bytes uncompressed", limits, "max_uncompressed_bytes")
    except BaseException:
        zf.close()
        raise
    return zf, infos


def _ignored(info: zipfile.ZipInfo) -> bool:
    """Directories, macOS metadata (__MACOSX/, ._*) and dot-files."""
    parts = [p for p in info.filename.split("/") if p]
    return info.is_dir() or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _looks_like_npz(infos: list[zipfile.ZipInfo]) -> bool | None:
    """True: only .npy members; False: other files too; None: nothing to tell (empty archive)."""
    names = [i.filename for i in infos if not _ignored(i)]
    if not names:
        return None
    return all(n.endswith(".npy") for n in names)


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """An entry's bytes, read in chunks and cut off when they run past the declared size (headers can lie)."""
    out = bytearray()
    try:
        with zf.open(info) as f:
            while chunk := f.read(READ_CHUNK):
                out += chunk
                if len(out) > info.file_size:
                    raise Invalid(
                        f"zip entry {info.filename!r} holds more than the {info.file_size} bytes its header declares",
                        field=_entry_field(info.filename),
                        limit=info.file_size,
                    )
    except _ZIP_ERRORS as exc:
        raise Invalid(f"zip entry {info.filename!r} cannot be read ({exc})", field=_entry_field(info.filename)) from exc
    return bytes(out)


class _Budget:
    """Bytes decompressed so far, against max_uncompressed_bytes (enforced again while reading)."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.used = 0

    def take(self, n: int, what: str) -> None:
        self.used += n
        if self.used > self.limits.max_uncompressed_bytes:
            raise _limit(
                f"{what} bring the uncompressed size to {self.used} bytes", self.limits, "max_uncompressed_bytes"
            )


# --- npz ---------------------------------------------------------------------------------------------------------
def _npy_header(data: bytes, field: tuple[str, ...]) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of .npy bytes, from the header alone."""
    f = io.BytesIO(data)
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        raise Invalid(f"{field[-1]} is not a valid .npy array ({exc})", field=field) from exc
    return tuple(int(s) for s in shape), bool(fortran), dtype, f.tell()


def _npy_array(data: bytes, header: tuple[tuple[int, ...], bool, np.dtype, int], field: tuple[str, ...]) -> np.ndarray:
    shape, fortran, dtype, offset = header
    count = math.prod(shape)
    need = count * dtype.itemsize
    if len(data) - offset < need:
        raise Invalid(
            f"{field[-1]} is truncated: shape {shape} needs {need} bytes of data, it has {len(data) - offset}",
            field=field,
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def _check_dtype(dtype: np.dtype, field: tuple[str, ...], kinds: str, what: str) -> None:
    name = field[-1]
    if dtype.hasobject:
        raise Invalid(
            f"{name} is an object array (dtype {dtype}); genserve never loads pickled data: save numeric arrays",
            field=field,
        )
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in kinds:
        raise Invalid(f"{name} has dtype {dtype}; it must hold {what}", field=field)


def _read_npz(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: UploadLimits, with_y: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy") and not _ignored(i)}
    if "x" not in members:
        held = ", ".join(sorted(members)) or "nothing"
        raise Invalid(f"the .npz has no array named x (it holds: {held})", field=("file", "x"))
    budget = _Budget(limits)
    field = ("file", "x")
    data = _read_entry(zf, members["x"])
    budget.take(len(data), "x's bytes")
    header = _npy_header(data, field)
    _check_dtype(header[2], field, "iuf", "numbers (integers or floats)")
    _check_x_shape(header[0], limits)
    x = _npy_array(data, header, field)
    y = None
    if with_y and "y" in members:
        yfield = ("file", "y")
        ydata = _read_entry(zf, members["y"])
        budget.take(len(ydata), "y's bytes")
        yheader = _npy_header(ydata, yfield)
        _check_dtype(yheader[2], yfield, "iu", "integer labels")
        if len(yheader[0]) != 1 or yheader[0][0] != x.shape[0]:
            raise Invalid(
                f"y has shape {yheader[0]}; it must be ({x.shape[0]},), one label per sample of x", field=yfield
            )
        y = _npy_array(ydata, yheader, yfield)
    return x, y


def _check_x_shape(shape: tuple[int, ...], limits: UploadLimits) -> None:
    """Rules that only need the shape; checked before the data is touched."""
    field = ("file", "x")
    if len(shape) not in (2, 3, 4):
        raise Invalid(
            f"x has {len(shape)} dimensions (shape {shape}); it must be (N, D) points, (N, H, W) or "
            f"(N, H, W, C) images",
            field=field,
        )
    n = shape[0]
    if n == 0:
        raise Invalid("x holds no samples (N = 0)", field=field)
    if len(shape) == 2:
        if n > limits.max_points:
            raise _limit(f"x holds {n} points", limits, "max_points", field)
        if shape[1] == 0:
            raise Invalid("x has 0 columns", field=field)
        if shape[1] > limits.max_point_dims:
            raise _limit(f"x has {shape[1]} dimensions per point", limits, "max_point_dims", field)
        return
    if len(shape) == 4 and shape[3] not in (1, 3):
        hint = " (RGBA?): convert to RGB" if shape[3] == 4 else ""
        raise Invalid(
            f"x has {shape[3]} channels{hint}; images must have 1 (grayscale) or 3 (RGB) channels", field=field
        )
    if n > limits.max_images:
        raise _limit(f"x holds {n} images", limits, "max_images", field)
    h, w = shape[1], shape[2]
    if h == 0 or w == 0:
        raise Invalid(f"x holds images of size {h}x{w}", field=field)
    if max(h, w) > limits.max_image_side:
        raise _limit(f"x holds {h}x{w} images (side {max(h, w)})", limits, "max_image_side", field)


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _npz_images(x: np.ndarray, limits: UploadLimits) -> np.ndarray:
    field = ("file", "x")
    _check_x_shape(x.shape, limits)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            raise Invalid(f"x holds NaN or infinite values (first at index {_first_bad(~finite)})", field=field)
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise Invalid(
                f"x holds float images with values in [{lo:g}, {hi:g}]; float images must be within "
                f"[0, 1] (uint8 images may use 0..255)",
                field=field,
            )
        return np.array(x, dtype=np.float32, order="C")
    if x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise Invalid(
                f"x holds {x.dtype} images with values in [{lo}, {hi}]; integer images must be "
                f"within 0..255 (or send floats in [0, 1])",
                field=field,
            )
    return np.array(x, dtype=np.uint8, order="C")


def _npz_dataset(x: np.ndarray, y: np.ndarray | None, limits: UploadLimits) -> ArrayDataset:
    field = ("file", "x")
    if x.ndim == 2:
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise Invalid(f"x holds NaN or infinite values (first at index {_first_bad(~np.isfinite(x))})", field=field)
        with np.errstate(over="ignore"):
            points = np.array(x, dtype=np.float32, order="C")
        if not np.isfinite(points).all():
            raise Invalid(
                f"x holds values too large for float32 (first at index {_first_bad(~np.isfinite(points))})", field=field
            )
        data_x, kind = points, "points"
    else:
        data_x, kind = _npz_images(x, limits), "images"
    labels, classes = _labels(y) if y is not None else (None, None)
    return ArrayDataset(x=data_x, y=labels, kind=kind, classes=classes)  # type: ignore[arg-type]


def _labels(y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if y.size and int(y.min()) < 0:
        raise Invalid(f"y holds a negative label ({int(y.min())}); labels must be >= 0", field=("file", "y"))
    values, inverse = np.unique(y, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1), [str(int(v)) for v in values]


def _class_order(names: Sequence[str]) -> list[str]:
    """Sorted class names: numerically when every name is an integer, else as strings."""
    unique = set(names)
    try:
        return sorted(unique, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(unique)


def _remap(names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    classes = _class_order(names)
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names)), classes


# --- csv ---------------------------------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise Invalid(f"the csv cannot be parsed ({exc})", field=FILE) from exc


def _parse_csv(content: bytes, limits: UploadLimits) -> ArrayDataset:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"the csv is not UTF-8 text (byte 0x{content[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            field=FILE,
        ) from exc
    if "\x00" in text:
        raise Invalid("the csv holds NUL characters; it is not a text file", field=FILE)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = _rows(reader)
    header = next((r for r in rows if r), None)
    if header is None:
        raise Invalid("the csv is empty: it needs a header row of column names and data rows", field=FILE)
    names = [c.strip() for c in header]
    if all(_is_number(n) for n in names):
        raise Invalid("the csv's first row holds numbers; it must be a header row of column names", field=FILE)
    for i, n in enumerate(names):
        if not n:
            raise Invalid(f"column {i + 1} of the header has no name", field=FILE)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise Invalid(f"the header names column {dup!r} twice", field=FILE)
    label_cols = [i for i, n in enumerate(names) if n.lower() == "label"]
    if len(label_cols) > 1:
        raise Invalid("the header has more than one label column", field=FILE)
    label_col = label_cols[0] if label_cols else None
    num_cols = [i for i in range(len(names)) if i != label_col]
    if not num_cols:
        raise Invalid("the csv has no numeric columns besides label", field=FILE)
    if len(num_cols) > limits.max_point_dims:
        raise _limit(f"the csv has {len(num_cols)} numeric columns", limits, "max_point_dims")

    width = len(names)
    values = array("d")
    lines = array("q")
    labels: list[str] = []
    all_numeric = label_col is None
    for row in rows:
        if not row:
            continue  # blank line
        line = reader.line_num
        if len(row) != width:
            raise Invalid(f"line {line} has {len(row)} cells; the header has {width}", field=("file", f"line {line}"))
        if len(lines) >= limits.max_points:
            raise _limit(f"the csv has more than {limits.max_points} data rows", limits, "max_points")
        try:
            values.extend(map(float, row if all_numeric else (row[i] for i in num_cols)))
        except ValueError:
            for i in num_cols:
                if not _is_number(row[i]):
                    raise Invalid(
                        f"line {line}, column {names[i]!r}: {row[i]!r} is not a number",
                        field=("file", f"line {line}", names[i]),
                    ) from None
            raise
        if label_col is not None:
            label = row[label_col].strip()
            if not label:
                raise Invalid(f"line {line} has an empty label", field=("file", f"line {line}", names[label_col]))
            labels.append(label)
        lines.append(line)
    if not lines:
        raise Invalid("the csv has a header but no data rows", field=FILE)
    x64 = np.frombuffer(values, dtype=np.float64).reshape(len(lines), len(num_cols))
    with np.errstate(over="ignore"):
        x = x64.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = _first_bad(bad)
        line, col = int(lines[r]), names[num_cols[c]]
        cell = x64[r, c]
        why = "is NaN or infinite" if not np.isfinite(cell) else "is too large for float32"
        raise Invalid(f"line {line}, column {col!r}: the value {why}", field=("file", f"line {line}", col))
    if label_col is None:
        return ArrayDataset(x=x, y=None, kind="points")
    y, classes = _remap(labels)
    return ArrayDataset(x=x, y=y, kind="points", classes=classes)


# --- zip of images -----------------------------------------------------------------------------------------------
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


def _read_zip_images(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: UploadLimits, *, labeled: bool
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    entries = sorted((i for i in infos if not _ignored(i)), key=lambda i: i.filename)
    for info in entries:
        if not info.filename.lower().endswith(IMAGE_SUFFIXES):
            raise Invalid(
                f"zip entry {info.filename!r} is not a PNG or JPEG image (.png, .jpg, .jpeg)",
                field=_entry_field(info.filename),
            )
    if not entries:
        raise Invalid("the zip holds no PNG or JPEG images", field=FILE)
    if len(entries) > limits.max_images:
        raise _limit(f"the zip holds {len(entries)} images", limits, "max_images")
    classes_of: list[str | None] = [None] * len(entries)
    if labeled:
        classes_of, loose, folder = _layout([i.filename for i in entries])
        if loose is not None:
            raise Invalid(
                f"the zip mixes images at the top level ({loose!r}) with class folders ('{folder}/'); put "
                f"every image in a class folder, or none in folders",
                field=_entry_field(loose),
            )

    budget = _Budget(limits)
    n = len(entries)
    pixels: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    first = ""
    any_color = False
    for info in entries:
        name = info.filename
        data = _read_entry(zf, info)
        budget.take(len(data), f"the entries up to {name!r}")
        image, color = _decode_image(
            data, _entry_field(name), f"zip entry {name!r}", limits, (size, first) if size else None
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
    y, classes = _remap([c for c in classes_of if c is not None])
    return x, y, classes


def _check_decoded(n: int, size: tuple[int, int], channels: int, limits: UploadLimits) -> None:
    total = n * size[0] * size[1] * channels
    if total > limits.max_uncompressed_bytes:
        raise _limit(
            f"the {n} images decode to {total} bytes ({size[0]}x{size[1]}x{channels} each)",
            limits,
            "max_uncompressed_bytes",
        )


def _decode_image(
    data: bytes, field: tuple[str, ...], what: str, limits: UploadLimits, expected: tuple[tuple[int, int], str] | None
) -> tuple[np.ndarray, bool]:
    """uint8 pixels (H, W) or (H, W, 3) and whether the image is in color; sizes checked before decoding."""
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires on a header claiming a huge picture
        raise _limit(f"{what} declares a picture too large to decode ({exc})", limits, "max_image_side", field) from exc
    except _PILLOW_ERRORS as exc:
        raise Invalid(f"{what} is not a readable PNG or JPEG image ({exc})", field=field) from exc
    with img:
        if img.format not in IMAGE_FORMATS:
            raise Invalid(f"{what} is a {img.format} image; genserve reads PNG and JPEG", field=field)
        w, h = img.size
        if w == 0 or h == 0:
            raise Invalid(f"{what} has no pixels ({w}x{h})", field=field)
        if max(w, h) > limits.max_image_side:
            raise _limit(f"{what} is {w}x{h} pixels (side {max(w, h)})", limits, "max_image_side", field)
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
            raise Invalid(f"{what} is truncated or corrupt ({exc})", field=field) from exc


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
