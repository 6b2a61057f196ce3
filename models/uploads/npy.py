"""Arrays from .npz archives, decoded by hand from their .npy headers: never unpickled, and every shape and dtype is
checked before an array is allocated."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from models.data.arrays import ArrayDataset
from models.errors import Invalid
from models.uploads.labels import int_labels
from models.uploads.limits import Budget, UploadLimits, first_bad, reason, too_large
from models.uploads.zips import ignored, read_entry


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
        raise Invalid(f"{field[-1]} is not a valid .npy array ({reason(exc)})", field=field) from exc
    dims = tuple(int(s) for s in shape)
    if any(d < 0 for d in dims):
        raise Invalid(f"{field[-1]} has a negative dimension (shape {dims})", field=field)
    return dims, bool(fortran), dtype, f.tell()


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


def read_npz(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: UploadLimits, with_y: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy") and not ignored(i)}
    if "x" not in members:
        held = ", ".join(sorted(members)) or "nothing"
        raise Invalid(f"the .npz has no array named x (it holds: {held})", field=("file", "x"))
    budget = Budget(limits)
    field = ("file", "x")
    data = read_entry(zf, members["x"])
    budget.take(len(data), "x's bytes")
    header = _npy_header(data, field)
    _check_dtype(header[2], field, "iuf", "numbers (integers or floats)")
    _check_x_shape(header[0], limits)
    x = _npy_array(data, header, field)
    y = None
    if with_y and "y" in members:
        yfield = ("file", "y")
        ydata = read_entry(zf, members["y"])
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
            raise too_large(f"x holds {n} points", limits, "max_points", field)
        if shape[1] == 0:
            raise Invalid("x has 0 columns", field=field)
        if shape[1] > limits.max_point_dims:
            raise too_large(f"x has {shape[1]} dimensions per point", limits, "max_point_dims", field)
        return
    if len(shape) == 4 and shape[3] not in (1, 3):
        hint = " (RGBA?): convert to RGB" if shape[3] == 4 else ""
        raise Invalid(
            f"x has {shape[3]} channels{hint}; images must have 1 (grayscale) or 3 (RGB) channels", field=field
        )
    if n > limits.max_images:
        raise too_large(f"x holds {n} images", limits, "max_images", field)
    h, w = shape[1], shape[2]
    if h == 0 or w == 0:
        raise Invalid(f"x holds images of size {h}x{w}", field=field)
    if max(h, w) > limits.max_image_side:
        raise too_large(f"x holds {h}x{w} images (side {max(h, w)})", limits, "max_image_side", field)


def npz_images(x: np.ndarray, limits: UploadLimits) -> np.ndarray:
    field = ("file", "x")
    _check_x_shape(x.shape, limits)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            raise Invalid(f"x holds NaN or infinite values (first at index {first_bad(~finite)})", field=field)
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


def npz_dataset(x: np.ndarray, y: np.ndarray | None, limits: UploadLimits) -> ArrayDataset:
    field = ("file", "x")
    if x.ndim == 2:
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise Invalid(f"x holds NaN or infinite values (first at index {first_bad(~np.isfinite(x))})", field=field)
        with np.errstate(over="ignore"):
            points = np.array(x, dtype=np.float32, order="C")
        if not np.isfinite(points).all():
            raise Invalid(
                f"x holds values too large for float32 (first at index {first_bad(~np.isfinite(points))})", field=field
            )
        data_x, kind = points, "points"
    else:
        data_x, kind = npz_images(x, limits), "images"
    labels, classes = int_labels(y) if y is not None else (None, None)
    return ArrayDataset(x=data_x, y=labels, kind=kind, classes=classes)  # type: ignore[arg-type]
