"""A corpus of hostile inputs over HTTP: each gets a 4xx problem+json naming the field or file (and the limit where
one was crossed), nothing is unpickled, and nothing is left in the store."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from app.settings import Settings
from tests.conftest import make_settings
from tests.helpers import assert_problem, png, store_files, store_untrained_model

LIMITS = {"max_zip_entries": 50, "max_image_side": 64, "max_request_bytes": 64 * 1024, "max_upload_bytes": 2_000_000}


@pytest.fixture
def hostile(tmp_path: Path, redis_url: str, redis: Redis) -> Iterator[tuple[TestClient, Settings, Redis]]:
    settings = make_settings(tmp_path, redis_url, **LIMITS)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, settings, redis


def zip_of(entries: list[tuple[zipfile.ZipInfo | str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def npz_of(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def digit(seed: int = 0, size: int = 8) -> bytes:
    return png((np.random.default_rng(seed).random((size, size)) * 255).astype(np.uint8))


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("cats/link.png")
    info.external_attr = 0o120777 << 16  # a symlink (to wherever its content says)
    return info


def encrypted_zip() -> bytes:
    """A zip whose only entry has the "encrypted" flag set (zipfile cannot write one, so the flags are patched)."""
    data = bytearray(zip_of([("cats/secret.png", digit())]))
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    return bytes(data)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge picture (a decompression bomb's calling card) with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> dict[str, Any]:
    return {"files": {"file": (name, data, content_type)}, "data": {"name": "hostile"}}


UPLOADS: list[tuple[str, Callable[[], dict[str, Any]], int, str, bool]] = [
    # (case, request kwargs, status, field substring, the body names a limit)
    (
        "zip bomb",
        lambda: upload("bomb.zip", zip_of([("a/x.png", b"\0" * 20_000_000), ("b/y.png", digit())])),
        413,
        "file",
        True,
    ),
    (
        "path traversal",
        lambda: upload("t.zip", zip_of([("../evil.png", digit()), ("b/y.png", digit())])),
        422,
        "file",
        False,
    ),
    ("absolute path", lambda: upload("t.zip", zip_of([("/etc/evil.png", digit())])), 422, "file", False),
    ("backslash path", lambda: upload("t.zip", zip_of([("a\\..\\..\\evil.png", digit())])), 422, "file", False),
    (
        "symlink in zip",
        lambda: upload("t.zip", zip_of([(symlink_entry(), b"/etc/passwd"), ("b/y.png", digit())])),
        422,
        "file",
        False,
    ),
    ("encrypted entry", lambda: upload("t.zip", encrypted_zip()), 422, "file", False),
    (
        "truncated png",
        lambda: upload("t.zip", zip_of([("a/x.png", digit()[:40]), ("b/y.png", digit())])),
        422,
        "file",
        False,
    ),
    (
        "fake image",
        lambda: upload("t.zip", zip_of([("a/x.png", b"#!/bin/sh\nrm -rf /\n"), ("b/y.png", digit())])),
        422,
        "file",
        False,
    ),
    (
        "decompression bomb header",
        lambda: upload("t.zip", zip_of([("a/x.png", png_header_only(60000, 60000))])),
        413,
        "file",
        True,
    ),
    ("image over the side limit", lambda: upload("t.zip", zip_of([("a/x.png", digit(size=100))])), 413, "file", True),
    (
        "mixed image sizes",
        lambda: upload("t.zip", zip_of([("a/x.png", digit(size=8)), ("a/y.png", digit(size=16))])),
        422,
        "file",
        False,
    ),
    (
        "too many entries",
        lambda: upload("t.zip", zip_of([(f"a/{i}.png", digit(i)) for i in range(60)])),
        413,
        "file",
        True,
    ),
    ("not a zip at all", lambda: upload("t.zip", b"PK\x03\x04" + b"\xff" * 100), 422, "file", False),
    ("NaN points", lambda: upload("p.npz", npz_of(x=np.array([[0.0, np.nan], [1.0, 2.0]]))), 422, "file", False),
    ("inf points", lambda: upload("p.npz", npz_of(x=np.array([[0.0, np.inf], [1.0, 2.0]]))), 422, "file", False),
    (
        "object array (pickle)",
        lambda: upload("p.npz", npz_of(x=np.array([{"a": 1}, None], dtype=object))),
        422,
        "file",
        False,
    ),
    ("five dimensions", lambda: upload("p.npz", npz_of(x=np.zeros((2, 2, 2, 2, 2)))), 422, "file", False),
    ("huge declared shape", lambda: upload("p.npz", npz_of(x=np.zeros((2, 100_000)))), 413, "file", True),
    ("empty file", lambda: upload("p.csv", b""), 422, "file", False),
    ("png named .npz", lambda: upload("p.npz", digit()), 415, "file", False),
    ("executable", lambda: upload("run.sh", b"#!/bin/sh\necho hi\n"), 415, "file", False),
    ("csv ragged rows", lambda: upload("p.csv", b"x,y\n1,2\n3\n"), 422, "file", False),
    ("csv not UTF-8", lambda: upload("p.csv", b"x,y\n\xff\xfe,1\n"), 422, "file", False),
    ("csv with inf", lambda: upload("p.csv", b"x,y\n1,inf\n2,3\n"), 422, "file", False),
    (
        "name with control characters",
        lambda: {"files": {"file": ("p.csv", b"x,y\n1,2\n3,4\n", "text/csv")}, "data": {"name": "bad\x1b[31mname"}},
        422,
        "name",
        False,
    ),
    ("upload over the byte limit", lambda: upload("big.csv", b"x,y\n" + b"1,2\n" * 600_000), 413, "body", True),
]


@pytest.mark.parametrize(("case", "make", "status", "field", "names_limit"), UPLOADS, ids=[u[0] for u in UPLOADS])
def test_hostile_uploads(
    hostile: tuple[TestClient, Settings, Redis],
    case: str,
    make: Callable[[], dict[str, Any]],
    status: int,
    field: str,
    names_limit: bool,
) -> None:
    client, settings, redis = hostile
    before = store_files(settings.store_dir)
    body = assert_problem(client.post("/v1/datasets", **make()), status, field)
    if names_limit:
        assert "limit" in body or "GENSERVE_" in body["detail"], body
    assert store_files(settings.store_dir) == before


def deep_json(depth: int) -> bytes:
    return b'{"n": 1, "z": ' + b"[" * depth + b"]" * depth + b"}"


REQUESTS: list[tuple[str, str, Callable[[str], bytes | dict[str, Any]], int, str]] = [
    ("malformed json", "/v1/trainings", lambda m: b'{"dataset": "ring2d", "family": ', 422, "body"),
    ("json array instead of object", "/v1/trainings", lambda m: b"[1, 2, 3]", 422, "body"),
    (
        "negative steps",
        "/v1/trainings",
        lambda m: {"dataset": "ring2d", "family": "gan", "steps": -5},
        422,
        "body.steps",
    ),
    (
        "enormous steps",
        "/v1/trainings",
        lambda m: {"dataset": "ring2d", "family": "gan", "steps": 10**30},
        422,
        "body.steps",
    ),
    ("enormous lr", "/v1/trainings", lambda m: {"dataset": "ring2d", "family": "gan", "lr": 1e308}, 422, "body.lr"),
    ("NaN literal", "/v1/trainings", lambda m: b'{"dataset": "ring2d", "family": "gan", "lr": NaN}', 422, "body"),
    (
        "dataset id traversal",
        "/v1/trainings",
        lambda m: {"dataset": "../../etc/passwd", "family": "gan"},
        422,
        "body.dataset",
    ),
    ("deeply nested json", "/v1/models/{m}/samples", lambda m: deep_json(5000), 400, "body"),
    ("n as a float", "/v1/models/{m}/samples", lambda m: {"n": 1.5}, 422, "body.n"),
    ("n enormous", "/v1/models/{m}/samples", lambda m: {"n": 10**20}, 422, "body.n"),
    ("z with infinity", "/v1/models/{m}/samples", lambda m: b'{"n": 1, "z": [[Infinity, 0, 0, 0]]}', 422, "body.z"),
    ("label enormous", "/v1/models/{m}/samples", lambda m: {"n": 1, "labels": [10**30]}, 422, "body.labels"),
    ("body over the byte limit", "/v1/models/{m}/samples", lambda m: {"n": 1, "pad": "x" * 100_000}, 413, "body"),
]


@pytest.mark.parametrize(("case", "path", "make", "status", "field"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_hostile_requests(
    hostile: tuple[TestClient, Settings, Redis],
    case: str,
    path: str,
    make: Callable[[str], bytes | dict[str, Any]],
    status: int,
    field: str,
) -> None:
    client, settings, redis = hostile
    model = store_untrained_model(settings.store_dir)
    before, keys = store_files(settings.store_dir), sorted(redis.keys("*"))
    payload = make(model)
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = client.post(path.format(m=model), content=content, headers={"content-type": "application/json"})
    assert_problem(response, status, field)
    assert store_files(settings.store_dir) == before and sorted(redis.keys("*")) == keys


def test_nothing_from_a_client_is_unpickled(hostile: tuple[TestClient, Settings, Redis], tmp_path: Path) -> None:
    """An npz whose array is a pickle that would create a file when loaded: refused, and no file appears."""
    client, settings, redis = hostile
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    np.savez(buf, x=np.array([Exploit(), Exploit()], dtype=object))
    assert_problem(client.post("/v1/datasets", **upload("evil.npz", buf.getvalue())), 422, "file")
    assert not marker.exists()
