"""MNIST: reading IDX files and fetching the four standard files, checksummed.

The files live in `data_dir/mnist/`, each either raw (`train-images-idx3-ubyte`) or gzipped (`...-ubyte.gz`).
When they are missing and a base URL is configured, `ensure_mnist` downloads `<name>.gz` from it, checks the MD5 of
the uncompressed bytes against `MNIST_FILES` and only then writes the files (temp file + `os.replace`).

Checksums: downloaded files are verified before anything is written. Local files are verified too, when they are
loaded (`load_mnist` reads and decompresses every byte anyway, so the MD5 costs ~0.1 s, once per process thanks to
the cache in `models.data.builtin`): a damaged or non-standard copy is reported instead of silently training on it.
`find_mnist` / `ensure_mnist` only look for the files (cheap, called on every request that lists datasets).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from models.data.arrays import ArrayDataset, DatasetSplits
from models.errors import Invalid, Unavailable
from models.store import atomic_write_bytes

MNIST_SUBDIR = "mnist"
MNIST_CLASSES = [str(i) for i in range(10)]
MNIST_IMAGE_SHAPE = (28, 28)

# key -> (file name, MD5 of the uncompressed bytes)
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}

DEFAULT_URL_SETTING = "the MNIST download URL setting"  # what the errors call it when the caller does not say
MAX_IDX_BYTES = 256 * 1024 * 1024  # an IDX file larger than this (uncompressed) is refused (train-images: ~45 MiB)
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # cap on one downloaded (compressed) file
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --- IDX ---------------------------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzipped (by magic bytes, whatever its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == GZIP_MAGIC:
            with gzip.open(path, "rb") as g:
                data = g.read(MAX_IDX_BYTES + 1)
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise Invalid(f"cannot read {path}: {exc}", field=(str(path),)) from exc
    if len(data) > MAX_IDX_BYTES:
        raise Invalid(
            f"{path} is larger than {MAX_IDX_BYTES} bytes uncompressed", field=(str(path),), limit=MAX_IDX_BYTES
        )
    return data


def parse_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes: magic 0x00 0x00 <type> <ndim>, ndim big-endian uint32 sizes, then the values."""
    field = (source,)
    if len(data) < 4:
        raise Invalid(f"{source} is too short to be an IDX file ({len(data)} bytes)", field=field)
    if data[0] != 0 or data[1] != 0:
        raise Invalid(f"{source} is not an IDX file (bad magic {data[:4].hex()})", field=field)
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise Invalid(f"{source} has unknown IDX type code 0x{type_code:02x}", field=field)
    if ndim == 0:
        raise Invalid(f"{source} declares 0 dimensions", field=field)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise Invalid(f"{source} is truncated inside its header", field=field)
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = 1
    for d in dims:
        count *= d
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise Invalid(f"{source} is {what}: dims {dims} need {expected} bytes, it has {len(data)}", field=field)
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzipped (.gz) or raw; Invalid when the magic, type, dims or size are wrong."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


# --- finding and downloading -------------------------------------------------------------------------------------
def _mnist_dir(data_dir: Path) -> Path:
    return Path(data_dir) / MNIST_SUBDIR


def _find_one(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_mnist(data_dir: Path) -> dict[str, Path] | None:
    """The four files in data_dir/mnist (each raw or .gz; raw preferred), or None when any is missing."""
    directory = _mnist_dir(data_dir)
    found: dict[str, Path] = {}
    for key, (name, _) in MNIST_FILES.items():
        path = _find_one(directory, name)
        if path is None:
            return None
        found[key] = path
    return found


def _where(directory: Path, missing: list[str]) -> str:
    names = ", ".join(f"{n}[.gz]" for n in missing)
    return f"MNIST is not available: looked in {directory} for {names} and did not find them"


def _how_to_fix(directory: Path, url_setting: str) -> str:
    names = ", ".join(name for name, _ in MNIST_FILES.values())
    return (
        f"To fix it, copy the four standard MNIST IDX files ({names}; gzipped or not) into {directory}, "
        f"or let the server reach the download URL ({url_setting})."
    )


def _download(url: str, timeout_s: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        chunks: list[bytes] = []
        total = 0
        while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
            total += len(chunk)
            if total > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"the response is larger than {MAX_DOWNLOAD_BYTES} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def _gunzip_capped(data: bytes) -> bytes:
    d = zlib.decompressobj(wbits=31)  # gzip container
    out = d.decompress(data, MAX_IDX_BYTES + 1)
    if len(out) > MAX_IDX_BYTES:
        raise ValueError(f"it decompresses to more than {MAX_IDX_BYTES} bytes")
    if not d.eof:
        raise ValueError("the gzip stream is truncated")
    return out


def ensure_mnist(
    data_dir: Path, base_url: str | None, timeout_s: float, url_setting: str = DEFAULT_URL_SETTING
) -> dict[str, Path]:
    """Return the four files; download the missing ones from base_url when it is given (`url_setting` says where
    that URL is configured, for the errors).

    Every missing file is downloaded as `<name>.gz` and its uncompressed MD5 checked before any file is written,
    so a failed attempt leaves data_dir untouched. Unavailable says where it looked, why the download failed (or
    that downloading is off) and how to fix it.
    """
    directory = _mnist_dir(data_dir)
    found: dict[str, Path] = {}
    missing: dict[str, tuple[str, str]] = {}
    for key, (name, md5) in MNIST_FILES.items():
        path = _find_one(directory, name)
        if path is None:
            missing[key] = (name, md5)
        else:
            found[key] = path
    if not missing:
        return found
    missing_names = [name for name, _ in missing.values()]
    if not base_url:
        raise Unavailable(
            f"{_where(directory, missing_names)}, and downloading is off (no download URL is "
            f"configured: {url_setting} is empty). {_how_to_fix(directory, url_setting)}"
        )

    fetched: dict[str, tuple[Path, bytes]] = {}
    for key, (name, md5) in missing.items():
        url = base_url.rstrip("/") + f"/{name}.gz"
        try:
            body = _download(url, timeout_s)
            raw = _gunzip_capped(body) if body[:2] == GZIP_MAGIC else body
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            reason = f"{exc.reason}"
        except TimeoutError:
            reason = f"no answer within {timeout_s:g} s"
        except (OSError, http.client.HTTPException, ValueError, zlib.error) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            actual = hashlib.md5(raw).hexdigest()
            if actual == md5:
                target = directory / (f"{name}.gz" if body[:2] == GZIP_MAGIC else name)
                fetched[key] = (target, body)
                continue
            reason = f"checksum mismatch: the uncompressed MD5 is {actual}, expected {md5}"
        raise Unavailable(
            f"{_where(directory, missing_names)}, and downloading {url} failed ({reason}); nothing "
            f"was written. {_how_to_fix(directory, url_setting)}"
        )

    try:
        directory.mkdir(parents=True, exist_ok=True)
        for key, (target, body) in fetched.items():
            atomic_write_bytes(target, body)
            found[key] = target
    except OSError as exc:
        raise Unavailable(
            f"{_where(directory, missing_names)}; they were downloaded but cannot be written "
            f"there ({exc}). {_how_to_fix(directory, url_setting)}"
        ) from exc
    return {key: found[key] for key in MNIST_FILES}


# --- loading -----------------------------------------------------------------------------------------------------
def _read_checked(path: Path, md5: str, directory: Path, url_setting: str) -> np.ndarray:
    try:
        data = _read_bytes(path)
        actual = hashlib.md5(data).hexdigest()
        if actual != md5:
            raise Invalid(f"its uncompressed MD5 is {actual}, expected {md5} (a damaged or non-standard copy)")
        return parse_idx(data, str(path))
    except Invalid as exc:
        raise Unavailable(
            f"MNIST file {path} cannot be used: {exc.detail}. Replace it with the standard file "
            f"(or delete it so it is downloaded again). {_how_to_fix(directory, url_setting)}"
        ) from exc


def _split(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path) -> ArrayDataset:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != MNIST_IMAGE_SHAPE:
        raise Unavailable(
            f"{images_path} does not hold uint8 28x28 images (dtype {images.dtype}, shape {images.shape})"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise Unavailable(
            f"{labels_path} does not hold one uint8 label per image of {images_path} "
            f"(labels {labels.shape}, images {len(images)})"
        )
    if labels.size and labels.max() > 9:
        raise Unavailable(f"{labels_path} holds a label {int(labels.max())}; MNIST labels are 0..9")
    return ArrayDataset(x=images, y=labels.astype(np.int64), kind="images", classes=list(MNIST_CLASSES))


def load_mnist(
    data_dir: Path, base_url: str | None = None, timeout_s: float = 30.0, url_setting: str = DEFAULT_URL_SETTING
) -> DatasetSplits:
    """MNIST as uint8 (N, 28, 28) images with labels 0..9: 60,000 train, 10,000 test. MD5s are verified."""
    files = ensure_mnist(data_dir, base_url, timeout_s, url_setting)
    directory = _mnist_dir(data_dir)
    arrays = {key: _read_checked(files[key], MNIST_FILES[key][1], directory, url_setting) for key in MNIST_FILES}
    return DatasetSplits(
        train=_split(arrays["train_images"], arrays["train_labels"], files["train_images"], files["train_labels"]),
        test=_split(arrays["test_images"], arrays["test_labels"], files["test_images"], files["test_labels"]),
    )
