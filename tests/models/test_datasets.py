"""Built-in datasets and MNIST's IDX reading / checksummed download (tiny files; never the real MNIST)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from models.data import builtin as datasets
from models.data import shapes
from models.data.builtin import (
    BUILTINS,
    GRID2D_MEANS,
    GRID2D_STD,
    RING2D_MEANS,
    RING2D_STD,
    load_builtin,
    mixture_modes,
)
from models.data.mnist import MNIST_FILES, ensure_mnist, find_mnist, load_mnist, read_idx
from models.errors import Invalid, NotFound, Unavailable

CLOSED_PORT_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens there


# --- built-ins ---------------------------------------------------------------------------------------------------
def test_builtin_ids_in_order() -> None:
    assert list(BUILTINS) == ["ring2d", "grid2d", "moons2d", "digits", "mnist", "shapes"]
    for key, info in BUILTINS.items():
        assert info.id == key and info.description and info.name


@pytest.mark.parametrize("dataset_id", ["ring2d", "grid2d", "moons2d", "digits", "shapes"])
def test_generated_builtins_match_their_info(dataset_id: str, tmp_path: Path) -> None:
    info = BUILTINS[dataset_id]
    splits = load_builtin(dataset_id, tmp_path)
    train, test = splits.train, splits.test
    assert len(train) == info.size
    assert train.sample_shape == info.shape == test.sample_shape
    assert train.kind == info.kind == test.kind
    assert train.classes == info.classes == test.classes
    if info.kind == "points":
        assert train.x.dtype == np.float32 and len(test) == 10_000
    else:
        assert train.x.dtype == np.uint8
    if info.classes is not None:
        assert train.y is not None and train.y.dtype == np.int64
        assert set(np.unique(train.y)) == set(range(len(info.classes)))


@pytest.mark.parametrize(
    ("dataset_id", "means", "std"), [("ring2d", RING2D_MEANS, RING2D_STD), ("grid2d", GRID2D_MEANS, GRID2D_STD)]
)
def test_mixtures_have_the_pacgan_modes(dataset_id: str, means: np.ndarray, std: float, tmp_path: Path) -> None:
    assert mixture_modes(dataset_id) == (means, std)
    x = load_builtin(dataset_id, tmp_path).train.x.astype(np.float64)
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    offsets = x - means[nearest]
    assert offsets.mean(0) == pytest.approx([0, 0], abs=std * 0.05)
    assert offsets.std(0) == pytest.approx([std, std], rel=0.03)
    shares = np.bincount(nearest, minlength=len(means)) / len(x)
    assert shares == pytest.approx(np.full(len(means), 1 / len(means)), abs=0.01)


def test_mixture_means_are_the_documented_ones() -> None:
    assert RING2D_MEANS.shape == (8, 2) and GRID2D_MEANS.shape == (25, 2)
    assert np.allclose(np.linalg.norm(RING2D_MEANS, axis=1), 1.0)
    assert np.allclose(RING2D_MEANS[2], [0.0, 1.0])
    assert set(map(tuple, GRID2D_MEANS.tolist())) == {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert (RING2D_STD, GRID2D_STD) == (0.01, 0.05)
    assert mixture_modes("moons2d") is None and mixture_modes("mnist") is None


def test_moons_are_labeled_upper_and_lower(tmp_path: Path) -> None:
    train = load_builtin("moons2d", tmp_path).train
    assert train.classes == ["upper", "lower"]
    assert train.y is not None
    assert train.x[train.y == 0, 1].mean() > train.x[train.y == 1, 1].mean()


def test_digits_split_is_stratified(tmp_path: Path) -> None:
    splits = load_builtin("digits", tmp_path)
    assert len(splits.train) + len(splits.test) == 1797
    assert splits.train.x.shape[1:] == (8, 8) and int(splits.train.x.max()) == 255
    assert splits.train.y is not None and splits.test.y is not None
    per_class = np.bincount(splits.test.y, minlength=10) / (
        np.bincount(splits.test.y, minlength=10) + np.bincount(splits.train.y, minlength=10)
    )
    assert per_class == pytest.approx(np.full(10, 0.2), abs=0.01)


def test_builtins_are_deterministic_cached_and_read_only(tmp_path: Path) -> None:
    first = load_builtin("ring2d", tmp_path)
    assert load_builtin("ring2d", tmp_path) is first
    datasets._generated.cache_clear()
    again = load_builtin("ring2d", tmp_path)
    assert again is not first
    assert np.array_equal(again.train.x, first.train.x) and np.array_equal(again.test.x, first.test.x)
    assert not np.array_equal(first.train.x[:100], first.test.x[:100])
    with pytest.raises(ValueError):
        first.train.x[0, 0] = 1.0


def test_generating_is_fast(tmp_path: Path) -> None:
    load_builtin("moons2d", tmp_path)  # imports scikit-learn once
    datasets._generated.cache_clear()
    start = time.perf_counter()
    for dataset_id in ("ring2d", "grid2d", "moons2d"):
        load_builtin(dataset_id, tmp_path)
    assert time.perf_counter() - start < 1.0


def _one(shape: str, color: str, size: int, cx: float, cy: float) -> np.ndarray:
    """One rendered image (32, 32, 3) of the given factors."""
    return shapes.render(
        np.array([shapes.SHAPES.index(shape)]),
        np.array([list(shapes.COLORS).index(color)]),
        np.array([shapes.SIZES.index(size)]),
        np.array([cx]),
        np.array([cy]),
    )[0]


def test_shapes_are_drawn_as_documented() -> None:
    """Each shape in its documented region, in its exact color where a pixel is fully covered, black far away."""
    r = 9
    square = _one("square", "red", r, 16.0, 16.0)
    assert (square[16 - 7 : 16 + 7, 16 - 7 : 16 + 7] == (255, 0, 0)).all()  # max(|dx|, |dy|) <= 0.8 r = 7.2
    assert square[: 16 - 8].max() == 0 and square[16 + 8 :].max() == 0
    circle = _one("circle", "cyan", r, 16.0, 16.0)
    assert (circle[16, 16] == (0, 255, 255)).all() and circle[16 - 8, 16 - 8].max() == 0  # a corner of its box
    area = circle[..., 1].astype(float).sum() / 255
    assert area == pytest.approx(np.pi * r * r, rel=0.02)  # anti-aliased coverage adds up to the disc's area
    triangle = _one("triangle", "yellow", r, 16.0, 16.0)
    filled = (triangle[..., 0] > 0).sum(axis=1)  # pixels per row: the apex is up (y downwards)
    assert filled[16 - 8] < filled[16] < filled[16 + 8]
    cross = _one("cross", "blue", r, 16.0, 16.0)
    assert cross[16, 16 + 8, 2] == 255 and cross[16 + 8, 16, 2] == 255  # the arms
    assert cross[16 + 7, 16 + 7].max() == 0  # between the arms
    assert (_one("square", "green", 5, 5.0, 27.0)[27, 5] == (0, 255, 0)).all()  # (cx, cy) is (column, row)


def test_shapes_factors_are_uniform_and_inside_the_image() -> None:
    images = shapes.generate(4000, seed=1)
    assert images.x.shape == (4000, 32, 32, 3) and images.x.dtype == np.uint8
    combos = np.bincount(images.shape * len(shapes.COLORS) + images.color, minlength=24) / 4000
    assert combos == pytest.approx(np.full(24, 1 / 24), abs=0.012)
    r = np.array(shapes.SIZES)[images.size]
    assert ((images.cx >= r) & (images.cx <= 32 - r) & (images.cy >= r) & (images.cy <= 32 - r)).all()
    # Every image holds exactly one color: the channels that are on are those of its palette entry.
    palette = np.array(list(shapes.COLORS.values()))[images.color]
    lit = images.x.reshape(4000, -1, 3).max(axis=1)
    assert np.array_equal(lit > 0, palette > 0)
    assert np.array_equal(shapes.generate(200, seed=2).x, shapes.generate(200, seed=2).x)  # seeded


def test_shapes_builtin_is_labeled_by_shape(tmp_path: Path) -> None:
    splits = load_builtin("shapes", tmp_path)
    train = shapes.shapes_split("train")
    assert splits.train.y is not None and np.array_equal(splits.train.y, train.shape)
    assert len(splits.test) == shapes.TEST_SIZE
    assert not np.array_equal(splits.train.x[:100], splits.test.x[:100])
    with pytest.raises(ValueError):
        train.color[0] = 1


def test_unknown_builtin_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_builtin("cifar10", tmp_path)


# --- IDX ---------------------------------------------------------------------------------------------------------
_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    head = bytes([0, 0, _CODES[array.dtype], array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 0, 70000], dtype=np.int32),
        np.array([[1.5, -2.25]], dtype=np.float32),
        np.array([-1, 2], dtype=np.int16),
    ],
)
def test_idx_round_trip(array: np.ndarray, gz: bool, tmp_path: Path) -> None:
    data = idx_bytes(array)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=") and np.array_equal(back, array)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "type code"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05ab", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01ab", "longer"),
        (b"\x00\x00\x08\x03\x00\x00", "header"),
        (b"\x00\x00", "short"),
    ],
)
def test_bad_idx_is_invalid(data: bytes, words: str, tmp_path: Path) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(Invalid, match=words):
        read_idx(path)


def test_truncated_gzip_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))[:-12])
    with pytest.raises(Invalid):
        read_idx(path)


# --- MNIST -------------------------------------------------------------------------------------------------------
def tiny_mnist(directory: Path, gz: bool | None = None) -> dict[str, bytes]:
    """Tiny MNIST-shaped IDX files (6 train, 4 test images); gz None alternates raw and gzipped."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test_labels": np.array([5, 6, 7, 8], dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    raw: dict[str, bytes] = {}
    for i, (key, array) in enumerate(arrays.items()):
        name = MNIST_FILES[key][0]
        raw[key] = idx_bytes(array)
        zipped = (i % 2 == 1) if gz is None else gz
        if zipped:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw[key]))
        else:
            (directory / name).write_bytes(raw[key])
    return raw


@pytest.fixture
def tiny_checksums(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """MNIST_FILES pointing at the MD5s of tiny files kept in tmp_path/source."""
    raw = tiny_mnist(tmp_path / "source", gz=True)
    for key, data in raw.items():
        monkeypatch.setitem(MNIST_FILES, key, (MNIST_FILES[key][0], hashlib.md5(data).hexdigest()))
    return raw


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server over tmp_path/source; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    (tmp_path / "source").mkdir(exist_ok=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path / "source")))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_find_mnist_accepts_raw_and_gz(tmp_path: Path) -> None:
    assert find_mnist(tmp_path) is None
    tiny_mnist(tmp_path / "mnist")
    found = find_mnist(tmp_path)
    assert found is not None and set(found) == set(MNIST_FILES)
    assert {p.suffix for p in found.values()} == {"", ".gz"}


def test_load_local_mnist(tiny_checksums: dict[str, bytes], tmp_path: Path) -> None:
    tiny_mnist(tmp_path / "data" / "mnist")
    splits = load_mnist(tmp_path / "data")
    assert splits.train.x.shape == (6, 28, 28) and splits.train.x.dtype == np.uint8
    assert splits.test.x.shape == (4, 28, 28)
    assert splits.train.classes == [str(i) for i in range(10)]
    assert splits.train.y is not None and splits.train.y.tolist() == [0, 1, 2, 3, 4, 9]
    assert load_builtin("mnist", tmp_path / "data") is load_builtin("mnist", tmp_path / "data")


def test_local_mnist_with_wrong_checksum_is_unavailable(tmp_path: Path) -> None:
    tiny_mnist(tmp_path / "mnist")  # the real MD5s cannot match
    with pytest.raises(Unavailable, match="MD5") as err:
        load_mnist(tmp_path)
    assert str(tmp_path / "mnist") in err.value.detail


def test_missing_mnist_offline_is_unavailable_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(Unavailable) as err:
        load_builtin("mnist", tmp_path, download_url=CLOSED_PORT_URL, timeout_s=5)
    assert time.perf_counter() - start < 5
    detail = err.value.detail
    assert str(tmp_path / "mnist") in detail
    assert "train-images-idx3-ubyte" in detail and "t10k-labels-idx1-ubyte" in detail
    assert "127.0.0.1:9" in detail and "failed" in detail and "copy" in detail
    assert not (tmp_path / "mnist").exists()


def test_missing_mnist_without_url_says_downloading_is_off(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="downloading is off") as err:
        ensure_mnist(tmp_path, None, 1.0)
    assert str(tmp_path / "mnist") in err.value.detail and "copy" in err.value.detail


def test_download_verifies_checksums_and_writes_files(
    tiny_checksums: dict[str, bytes], server: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    files = ensure_mnist(data_dir, server, 5.0)
    assert set(files) == set(MNIST_FILES)
    assert all(p.parent == data_dir / "mnist" and p.name.endswith(".gz") for p in files.values())
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(p.name for p in files.values())
    splits = load_builtin("mnist", data_dir, download_url=server)
    assert len(splits.train) == 6 and len(splits.test) == 4


def test_download_with_checksum_mismatch_writes_nothing(
    tiny_checksums: dict[str, bytes], server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(MNIST_FILES, "test_labels", (MNIST_FILES["test_labels"][0], "0" * 32))
    data_dir = tmp_path / "data"
    with pytest.raises(Unavailable, match="checksum mismatch") as err:
        ensure_mnist(data_dir, server, 5.0)
    assert str(data_dir / "mnist") in err.value.detail
    assert not (data_dir / "mnist").exists() or not any((data_dir / "mnist").iterdir())


def test_download_http_error_is_unavailable(server: str, tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="HTTP 404"):
        ensure_mnist(tmp_path, server, 5.0)
