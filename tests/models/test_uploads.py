"""Upload parsing: good files of each format, and a corpus of bad and hostile ones."""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image

from app.settings import Settings
from models.errors import Invalid, TooLarge, UnsupportedFormat
from models.uploads import UploadLimits, parse_images, parse_upload

LIMITS: UploadLimits = Settings.model_construct().upload_limits()  # the defaults, named by their settings
UNPICKLED: list[str] = []


# --- builders ----------------------------------------------------------------------------------------------------
def image_bytes(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def gray(value: int, h: int = 6, w: int = 5) -> bytes:
    return image_bytes(np.full((h, w), value, dtype=np.uint8))


def make_zip(
    entries: dict[str, bytes] | list[tuple[zipfile.ZipInfo | str, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for name, data in entries.items() if isinstance(entries, dict) else entries:
            zf.writestr(name, data)
    return out.getvalue()


def npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _mark_unpickled() -> str:
    UNPICKLED.append("oops")
    return "unpickled"


class Trap:
    """Unpickling this calls _mark_unpickled: proof that a parser ran pickle."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_mark_unpickled, ())


def expect(
    exc_type: type[Exception],
    filename: str,
    content: bytes,
    limits: UploadLimits = LIMITS,
    field: tuple[str, ...] = ("file",),
    words: tuple[str, ...] = (),
    parser=parse_upload,
) -> Invalid:
    with pytest.raises(exc_type) as err:
        parser(filename, content, limits)
    assert type(err.value) is exc_type
    assert err.value.field == field
    for w in words:
        assert w in err.value.detail, err.value.detail
    return err.value


def expect_limit(
    filename: str,
    content: bytes,
    limits: UploadLimits,
    name: str,
    setting: str,
    field: tuple[str, ...] = ("file",),
    parser=parse_upload,
) -> None:
    value = getattr(limits, name)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    err = expect(TooLarge, filename, content, limits, field, (f"the limit is {shown}", setting), parser)
    assert err.limit == value


# --- good files --------------------------------------------------------------------------------------------------
def test_npz_points_with_labels_are_remapped() -> None:
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    data = parse_upload("p.npz", npz(x=x, y=np.array([10, 2, 2, 10, 7, 2])), LIMITS)
    assert data.kind == "points" and data.x.dtype == np.float32 and data.x.shape == (6, 2)
    assert data.classes == ["2", "7", "10"]
    assert data.y is not None and data.y.tolist() == [2, 0, 0, 2, 1, 0] and data.y.dtype == np.int64


def test_npz_points_without_labels_compressed() -> None:
    data = parse_upload("p.NPZ", npz(compressed=True, x=np.ones((4, 3), np.int32)), LIMITS)
    assert data.kind == "points" and data.y is None and data.classes is None and data.x.dtype == np.float32


@pytest.mark.parametrize(
    ("x", "shape", "dtype"),
    [
        (np.zeros((3, 8, 9), np.uint8), (3, 8, 9), np.uint8),
        (np.zeros((3, 8, 9, 1), np.uint8), (3, 8, 9), np.uint8),
        (np.zeros((3, 8, 9, 3), np.uint8), (3, 8, 9, 3), np.uint8),
        (np.full((2, 4, 4), 0.5, np.float64), (2, 4, 4), np.float32),
        (np.full((2, 4, 4), 255, np.int64), (2, 4, 4), np.uint8),
    ],
)
def test_npz_images(x: np.ndarray, shape: tuple[int, ...], dtype: type) -> None:
    data = parse_upload("i.npz", npz(x=x, y=np.arange(len(x))), LIMITS)
    assert data.kind == "images" and data.x.shape == shape and data.x.dtype == dtype
    assert data.classes == [str(i) for i in range(len(x))]


def test_csv_points_with_label_column() -> None:
    content = "\ufeffa, b ,Label\n1,2,10\n\n3,4e-1,2\n-5,6,10\n".encode()
    data = parse_upload("pts.csv", content, LIMITS)
    assert data.kind == "points" and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x, [[1, 2], [3, 0.4], [-5, 6]], rtol=1e-6)
    assert data.classes == ["2", "10"] and data.y is not None and data.y.tolist() == [1, 0, 1]


def test_csv_points_without_labels_and_string_labels() -> None:
    assert parse_upload("p.csv", b"x,y,z\n1,2,3\n", LIMITS).classes is None
    data = parse_upload("p.csv", b"x,label\n1,dog\n2,cat\n3,dog\r\n", LIMITS)
    assert data.classes == ["cat", "dog"] and data.y is not None and data.y.tolist() == [1, 0, 1]


def test_zip_with_class_folders_is_labeled() -> None:
    entries = {f"{c}/{i}.png": gray(i * 10) for c in ("dogs", "cats") for i in range(2)}
    entries.update({"__MACOSX/cats/._0.png": b"junk", "cats/.DS_Store": b"junk", "dogs/": b""})
    data = parse_upload("d.zip", make_zip(entries), LIMITS)
    assert data.kind == "images" and data.x.shape == (4, 6, 5) and data.x.dtype == np.uint8
    assert data.classes == ["cats", "dogs"]
    assert data.y is not None and data.y.tolist() == [0, 0, 1, 1]
    assert data.x[:, 0, 0].tolist() == [0, 10, 0, 10]


def test_zip_wrapper_folder_is_stripped_and_flat_zip_is_unlabeled() -> None:
    labeled = parse_upload("d.zip", make_zip({"top/a/1.png": gray(1), "top/b/2.png": gray(2)}), LIMITS)
    assert labeled.classes == ["a", "b"]
    flat = parse_upload(
        "d.zip",
        make_zip({"data/1.png": gray(1), "data/2.jpg": image_bytes(np.full((6, 5), 9, np.uint8), "JPEG")}),
        LIMITS,
    )
    assert flat.classes is None and flat.y is None and flat.x.shape == (2, 6, 5)


def test_zip_color_and_gray_become_rgb() -> None:
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0] = 200
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 1] = 100
    rgba[..., 3] = 255
    entries = {
        "a.png": gray(50),
        "b.png": image_bytes(rgb),
        "c.png": image_bytes(rgba),
        "d.jpg": image_bytes(rgb, "JPEG"),
    }
    data = parse_upload("c.zip", make_zip(entries, zipfile.ZIP_STORED), LIMITS)
    assert data.x.shape == (4, 6, 5, 3) and data.x.dtype == np.uint8
    assert data.x[0, 0, 0].tolist() == [50, 50, 50]
    assert data.x[1, 0, 0].tolist() == [200, 0, 0]
    assert data.x[2, 0, 0].tolist() == [0, 100, 0]


def test_zip_palette_16bit_and_bilevel_images() -> None:
    palette_gray = image_bytes(np.full((6, 5), 77, np.uint8), mode="P")
    wide = Image.fromarray(np.full((6, 5), 65535, np.uint16))
    out = io.BytesIO()
    wide.save(out, format="PNG")
    bilevel = image_bytes(np.full((6, 5), 255, np.uint8), mode="1")
    data = parse_upload("g.zip", make_zip({"a.png": palette_gray, "b.png": out.getvalue(), "c.png": bilevel}), LIMITS)
    assert data.x.shape == (3, 6, 5)
    assert data.x[:, 0, 0].tolist() == [77, 255, 255]
    colored = np.zeros((6, 5, 3), np.uint8)
    colored[..., 2] = 255
    data = parse_upload("p.zip", make_zip({"a.png": image_bytes(colored, mode="P")}), LIMITS)
    assert data.x.shape == (1, 6, 5, 3) and data.x[0, 0, 0].tolist() == [0, 0, 255]


def test_parse_images_for_reconstructions() -> None:
    one = parse_images("one.PNG", gray(255), LIMITS)
    assert one.shape == (1, 6, 5) and one.dtype == np.float32 and float(one.max()) == 1.0
    jpeg = parse_images("c.jpeg", image_bytes(np.zeros((7, 7, 3), np.uint8), "JPEG"), LIMITS)
    assert jpeg.shape == (1, 7, 7, 3)
    mixed = parse_images("z.zip", make_zip({"a.png": gray(0), "sub/b.png": gray(51)}), LIMITS)
    assert mixed.shape == (2, 6, 5) and mixed[1, 0, 0] == pytest.approx(0.2)
    arr = parse_images("x.npz", npz(x=np.full((2, 4, 4, 1), 255, np.uint8)), LIMITS)
    assert arr.shape == (2, 4, 4) and arr.dtype == np.float32 and float(arr.max()) == 1.0
    expect(Invalid, "x.npz", npz(x=np.zeros((3, 2))), field=("file", "x"), words=("points",), parser=parse_images)
    expect(UnsupportedFormat, "x.csv", b"a\n1\n", words=(".png",), parser=parse_images)
    expect(UnsupportedFormat, "x.png", image_bytes(np.zeros((4, 4), np.uint8), "JPEG"), parser=parse_images)


# --- bad files: type and size ------------------------------------------------------------------------------------
def test_empty_file() -> None:
    expect(Invalid, "a.csv", b"", words=("empty",))


def test_file_over_max_bytes() -> None:
    expect_limit("a.csv", b"a,b\n1,2\n", replace(LIMITS, max_bytes=5), "max_bytes", "GENSERVE_MAX_UPLOAD_BYTES")


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("data.csv", npz(x=np.zeros((2, 2)))),
        ("data.npz", b"a,b\n1,2\n"),
        ("data.zip", gray(1)),
        ("data.txt", b"a,b\n1,2\n"),
        ("data", b"a,b\n1,2\n"),
        ("image.png", gray(1)),
        ("data.zip", make_zip({"x.npy": npy(np.zeros((2, 2)))})),
        ("data.npz", make_zip({"a.png": gray(1)})),
    ],
)
def test_content_must_match_extension(filename: str, content: bytes) -> None:
    expect(UnsupportedFormat, filename, content, words=(".npz", ".csv", ".zip"))


# --- bad zips ----------------------------------------------------------------------------------------------------
def test_random_bytes_named_png_in_zip() -> None:
    content = make_zip({"a.png": gray(1), "b.png": np.random.default_rng(0).bytes(300)})
    expect(Invalid, "d.zip", content, field=("file", "b.png"), words=("b.png",))


def test_truncated_png_in_zip() -> None:
    big = image_bytes(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
    content = make_zip({"a.png": big, "b.png": big[: len(big) // 2]})
    expect(Invalid, "d.zip", content, field=("file", "b.png"), words=("truncated",))


def test_gif_and_text_entries_are_refused() -> None:
    gif = io.BytesIO()
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(gif, format="GIF")
    expect(Invalid, "d.zip", make_zip({"a.png": gif.getvalue()}), field=("file", "a.png"), words=("GIF",))
    expect(
        Invalid,
        "d.zip",
        make_zip({"a.png": gray(1), "notes.txt": b"hi"}),
        field=("file", "notes.txt"),
        words=("notes.txt",),
    )


def test_zip_bomb_is_refused_before_decompressing() -> None:
    content = make_zip({"a.png": gray(1), "bomb.png": bytes(20 * 1024 * 1024)})
    assert len(content) < 100_000
    start = time.perf_counter()
    expect_limit("d.zip", content, LIMITS, "max_zip_ratio", "GENSERVE_MAX_ZIP_RATIO", ("file", "bomb.png"))
    assert time.perf_counter() - start < 0.5


def test_total_uncompressed_size_is_limited() -> None:
    content = make_zip({f"{i}.png": gray(i) for i in range(5)}, zipfile.ZIP_STORED)
    expect_limit(
        "d.zip",
        content,
        replace(LIMITS, max_uncompressed_bytes=200),
        "max_uncompressed_bytes",
        "GENSERVE_MAX_UNCOMPRESSED_BYTES",
    )


def test_decoded_pixels_count_against_the_uncompressed_limit() -> None:
    content = make_zip({f"{i}.png": gray(i, 100, 100) for i in range(4)})
    expect_limit(
        "d.zip",
        content,
        replace(LIMITS, max_uncompressed_bytes=30_000),
        "max_uncompressed_bytes",
        "GENSERVE_MAX_UNCOMPRESSED_BYTES",
    )


def test_header_that_understates_the_size_is_caught_while_reading() -> None:
    payload = gray(3, 20, 20)
    content = bytearray(make_zip({"a.png": payload}, zipfile.ZIP_STORED))
    central = content.index(b"PK\x01\x02")
    size = len(payload).to_bytes(4, "little")
    assert content[central + 24 : central + 28] == size  # uncompressed size in the central directory
    content[central + 24 : central + 28] = (len(payload) - 10).to_bytes(4, "little")
    expect(Invalid, "d.zip", bytes(content), field=("file", "a.png"))


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../evil.png", "'..'"),
        ("cats/../../evil.png", "'..'"),
        ("/etc/evil.png", "absolute"),
        ("C:/evil.png", "absolute"),
        ("cats\\evil.png", "backslash"),
    ],
)
def test_unsafe_entry_names(name: str, words: str) -> None:
    expect(
        Invalid,
        "d.zip",
        make_zip([("ok.png", gray(1)), (zipfile.ZipInfo(name), gray(2))]),
        field=("file", name),
        words=(words,),
    )


def test_nul_in_entry_name() -> None:
    content = make_zip({"ok.png": gray(1), "aXb.png": gray(2)}).replace(b"aXb.png", b"a\x00b.png")
    expect(Invalid, "d.zip", content, field=("file", "a\\0b.png"), words=("NUL",))


def test_symlink_entry() -> None:
    link = zipfile.ZipInfo("link.png")
    link.external_attr = 0o120777 << 16
    link.create_system = 3
    expect(
        Invalid,
        "d.zip",
        make_zip([("ok.png", gray(1)), (link, b"/etc/passwd")]),
        field=("file", "link.png"),
        words=("symbolic link",),
    )


def test_encrypted_entry() -> None:
    content = bytearray(make_zip({"a.png": gray(1)}))
    central = content.index(b"PK\x01\x02")
    content[central + 8] |= 0x1
    expect(Invalid, "d.zip", bytes(content), field=("file", "a.png"), words=("encrypted",))


def test_too_many_entries() -> None:
    content = make_zip({f"{i}.png": gray(i) for i in range(4)})
    expect_limit("d.zip", content, replace(LIMITS, max_zip_entries=3), "max_zip_entries", "GENSERVE_MAX_ZIP_ENTRIES")
    err = expect(TooLarge, "d.zip", content, replace(LIMITS, max_zip_entries=3))
    assert err.detail == "the zip holds 4 entries; the limit is 3 (GENSERVE_MAX_ZIP_ENTRIES)"


def test_too_many_images() -> None:
    content = make_zip({f"{i}.png": gray(i) for i in range(4)})
    expect_limit("d.zip", content, replace(LIMITS, max_images=3), "max_images", "GENSERVE_MAX_IMAGES")


def test_image_too_large_in_zip() -> None:
    content = make_zip({"a.png": gray(1, 17, 8)})
    expect_limit(
        "d.zip",
        content,
        replace(LIMITS, max_image_side=16),
        "max_image_side",
        "GENSERVE_MAX_IMAGE_SIDE",
        ("file", "a.png"),
    )


def test_decompression_bomb_image_is_refused_before_decoding() -> None:
    bomb = image_bytes(np.zeros((3000, 3000), np.uint8))
    assert len(bomb) < 20_000
    start = time.perf_counter()
    expect_limit(
        "d.zip",
        make_zip({"bomb.png": bomb}, zipfile.ZIP_STORED),
        LIMITS,
        "max_image_side",
        "GENSERVE_MAX_IMAGE_SIDE",
        ("file", "bomb.png"),
    )
    expect_limit("bomb.png", bomb, LIMITS, "max_image_side", "GENSERVE_MAX_IMAGE_SIDE", parser=parse_images)
    assert time.perf_counter() - start < 0.5


def test_mixed_image_sizes() -> None:
    content = make_zip({"a.png": gray(1, 6, 5), "b.png": gray(1, 6, 5), "c.png": gray(1, 7, 5)})
    expect(Invalid, "d.zip", content, field=("file", "c.png"), words=("c.png", "5x7", "a.png", "5x6"))


def test_mixed_files_and_class_folders() -> None:
    content = make_zip({"cats/a.png": gray(1), "dogs/b.png": gray(1), "loose.png": gray(1)})
    expect(Invalid, "d.zip", content, field=("file", "loose.png"), words=("loose.png", "folder"))


def test_zip_without_images_and_broken_zip() -> None:
    expect(Invalid, "d.zip", make_zip({"__MACOSX/._a.png": b"x", ".hidden.png": b"x"}), words=("no PNG",))
    expect(Invalid, "d.zip", b"PK\x03\x04" + bytes(100), words=("zip",))


# --- bad npz -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_in_arrays(value: float) -> None:
    points = np.zeros((5, 2))
    points[3, 1] = value
    expect(Invalid, "a.npz", npz(x=points), field=("file", "x"), words=("NaN or infinite",))
    images = np.zeros((2, 4, 4), np.float32)
    images[1, 2, 3] = value
    expect(Invalid, "a.npz", npz(x=images), field=("file", "x"), words=("NaN or infinite",))


def test_points_too_large_for_float32() -> None:
    expect(Invalid, "a.npz", npz(x=np.full((2, 2), 1e300)), field=("file", "x"), words=("float32",))


def test_object_array_is_never_unpickled() -> None:
    UNPICKLED.clear()
    x = np.empty(2, dtype=object)
    x[0], x[1] = Trap(), Trap()
    expect(Invalid, "a.npz", npz(x=x), field=("file", "x"), words=("object",))
    expect(Invalid, "a.npz", npz(x=np.zeros((2, 2)), y=x), field=("file", "y"), words=("object",))
    assert UNPICKLED == []


@pytest.mark.parametrize(
    ("x", "words"),
    [
        (np.zeros((2, 2, 2, 2, 2), np.uint8), ("5 dimensions",)),
        (np.zeros(4), ("1 dimensions",)),
        (np.array([["a", "b"]]), ("dtype",)),
        (np.zeros((2, 2), bool), ("dtype",)),
        (np.zeros((0, 2)), ("N = 0",)),
        (np.zeros((2, 4, 4, 4), np.uint8), ("RGBA",)),
        (np.zeros((2, 4, 4, 2), np.uint8), ("2 channels",)),
        (np.full((2, 4, 4), 1.5, np.float32), ("[0, 1]", "1.5")),
        (np.full((2, 4, 4), -0.1, np.float64), ("[0, 1]",)),
        (np.full((2, 4, 4), 300, np.int32), ("0..255",)),
    ],
)
def test_bad_x(x: np.ndarray, words: tuple[str, ...]) -> None:
    expect(Invalid, "a.npz", npz(x=x), field=("file", "x"), words=words)


def test_missing_x() -> None:
    expect(Invalid, "a.npz", npz(data=np.zeros((2, 2))), field=("file", "x"), words=("no array named x", "data"))


@pytest.mark.parametrize(
    ("y", "words"),
    [
        (np.array([0, 1, 1]), ("(4,)",)),
        (np.array([[0], [1], [1], [0]]), ("(4,)",)),
        (np.array([0.0, 1.0, 1.0, 0.0]), ("integer",)),
        (np.array([0, -1, 1, 0]), ("negative",)),
    ],
)
def test_bad_y(y: np.ndarray, words: tuple[str, ...]) -> None:
    expect(Invalid, "a.npz", npz(x=np.zeros((4, 2)), y=y), field=("file", "y"), words=words)


def test_point_limits() -> None:
    expect_limit(
        "a.npz",
        npz(x=np.zeros((6, 2))),
        replace(LIMITS, max_points=5),
        "max_points",
        "GENSERVE_MAX_POINTS",
        ("file", "x"),
    )
    expect_limit(
        "a.npz",
        npz(x=np.zeros((2, 3))),
        replace(LIMITS, max_point_dims=2),
        "max_point_dims",
        "GENSERVE_MAX_POINT_DIMS",
        ("file", "x"),
    )
    expect_limit(
        "a.npz",
        npz(x=np.zeros((4, 2, 2), np.uint8)),
        replace(LIMITS, max_images=3),
        "max_images",
        "GENSERVE_MAX_IMAGES",
        ("file", "x"),
    )
    expect_limit(
        "a.npz",
        npz(x=np.zeros((1, 2, 9), np.uint8)),
        replace(LIMITS, max_image_side=8),
        "max_image_side",
        "GENSERVE_MAX_IMAGE_SIDE",
        ("file", "x"),
    )


def test_npy_header_with_a_huge_shape_is_refused_before_allocating() -> None:
    out = io.BytesIO()
    npy_format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)})
    out.write(bytes(64))
    expect_limit(
        "a.npz", make_zip({"x.npy": out.getvalue()}), LIMITS, "max_points", "GENSERVE_MAX_POINTS", ("file", "x")
    )


def test_truncated_and_garbage_npy() -> None:
    expect(Invalid, "a.npz", make_zip({"x.npy": npy(np.zeros((4, 2)))[:-8]}), field=("file", "x"), words=("truncated",))
    expect(Invalid, "a.npz", make_zip({"x.npy": b"not an npy file"}), field=("file", "x"), words=(".npy",))


# --- bad csv -----------------------------------------------------------------------------------------------------
def test_csv_ragged_row() -> None:
    expect(Invalid, "a.csv", b"a,b\n1,2\n3\n", field=("file", "line 3"), words=("line 3", "1 cells", "2"))


def test_csv_non_numeric_cell() -> None:
    expect(Invalid, "a.csv", b"a,b\n1,2\n3,x7\n", field=("file", "line 3", "b"), words=("line 3", "'b'", "x7"))
    expect(Invalid, "a.csv", b"a,b\n1,\n", field=("file", "line 2", "b"), words=("''",))


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "1e39"])
def test_csv_nan_inf_and_overflow(cell: str) -> None:
    expect(Invalid, "a.csv", f"a,b\n1,2\n3,{cell}\n".encode(), field=("file", "line 3", "b"), words=("line 3",))


def test_csv_limits() -> None:
    expect_limit(
        "a.csv",
        b"a,b,c,label\n1,2,3,x\n",
        replace(LIMITS, max_point_dims=2),
        "max_point_dims",
        "GENSERVE_MAX_POINT_DIMS",
    )
    expect_limit("a.csv", b"a\n1\n2\n3\n", replace(LIMITS, max_points=2), "max_points", "GENSERVE_MAX_POINTS")


def test_csv_not_utf8() -> None:
    expect(Invalid, "a.csv", "a,b\n1,2\nä,3\n".encode("latin-1"), words=("UTF-8",))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"1,2\n3,4\n", ("header",)),
        (b"a,b\n", ("no data rows",)),
        (b"\n\n", ("empty",)),
        (b"a,,c\n1,2,3\n", ("no name",)),
        (b"a,a\n1,2\n", ("twice",)),
        (b"label\nx\n", ("no numeric",)),
        (b"a,label\n1, \n", ("empty label",)),
    ],
)
def test_csv_structure(content: bytes, words: tuple[str, ...]) -> None:
    with pytest.raises(Invalid) as err:
        parse_upload("a.csv", content, LIMITS)
    assert err.value.field is not None and err.value.field[0] == "file"
    for w in words:
        assert w in err.value.detail
