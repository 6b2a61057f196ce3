"""Big requests in chunks (app/serving/chunks.py): the same bytes as one pass, streamed bodies that parse, small
requests served between a big one's chunks."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from redis import Redis

from app.serving.model_cache import LoadedModel
from tests.app.test_serving import serving
from tests.conftest import make_settings
from tests.helpers import store_untrained_model

BIG = 150  # more than one pass of 64 rows, a last chunk that is not full


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Any]:
    store = tmp_path / "store"
    return {
        "points": store_untrained_model(store),
        "images": store_untrained_model(store, kind="images", shape=(8, 8), classes=[str(d) for d in range(10)]),
        "store": store,
    }


CASES = [
    ("points", "json"),
    ("points", "jsonl"),
    ("points", "npy"),
    ("points", "grid"),
    ("images", "png"),
    ("images", "zip"),
    ("images", "npy"),
    ("images", "json"),
    ("images", "grid"),
]


async def test_a_chunked_request_gets_the_bytes_of_one_pass(
    tmp_path: Path, redis_url: str, redis: Redis, models: dict[str, Any]
) -> None:
    """Chunks of 64 rows against one pass of 256, every format, seeded and with given z: byte for byte the same."""
    bodies: dict[int, list[tuple[str, bytes]]] = {}
    for batch in (64, 256):
        settings = make_settings(tmp_path / str(batch), redis_url, max_batch_size=batch)
        settings = settings.model_copy(update={"store_dir": models["store"]})
        async with serving(settings) as (_, client):
            out = []
            for kind, fmt in CASES:
                r = await client.post(f"/v1/models/{models[kind]}/samples", json={"n": BIG, "seed": 5, "format": fmt})
                assert r.status_code == 200, (kind, fmt, r.text)
                assert r.headers["x-genserve-seed"] == "5"
                out.append((r.headers["content-type"], r.content))
            z = np.random.default_rng(0).normal(size=(BIG, 4)).round(3).tolist()
            r = await client.post(f"/v1/models/{models['points']}/samples", json={"z": z, "format": "json"})
            assert r.status_code == 200 and len(r.json()["samples"]) == BIG
            out.append((r.headers["content-type"], r.content))
            bodies[batch] = out
    assert bodies[64] == bodies[256]
    by_format = dict(zip(CASES, bodies[64], strict=False))
    # The streamed formats parse: npy of the right shape; a zip of BIG PNGs in order; one JSON list per line
    assert np.load(io.BytesIO(by_format["images", "npy"][1])).shape == (BIG, 8, 8)
    archive = zipfile.ZipFile(io.BytesIO(by_format["images", "zip"][1]))
    names = archive.namelist()
    assert names == sorted(names) and len(names) == BIG and by_format["images", "zip"][0] == "application/zip"
    with Image.open(io.BytesIO(archive.read(names[-1]))) as img:
        assert img.size == (8, 8) and img.format == "PNG"
    lines = by_format["points", "jsonl"][1].decode().splitlines()
    assert len(lines) == BIG and all(len(json.loads(line)) == 2 for line in lines)
    assert by_format["points", "jsonl"][0].startswith("application/jsonl")
    # ... and say the same as the json format
    samples = json.loads(by_format["points", "json"][1])["samples"]
    assert [json.loads(line) for line in lines] == samples


async def test_formats_for_the_other_kind_are_refused(settings: Any, models: dict[str, Any]) -> None:
    settings = settings.model_copy(update={"store_dir": models["store"]})
    async with serving(settings) as (_, client):
        for kind, fmt in (("points", "zip"), ("images", "jsonl")):
            r = await client.post(f"/v1/models/{models[kind]}/samples", json={"n": 2, "format": fmt})
            assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "format"], r.text


async def test_small_requests_are_served_between_the_chunks_of_a_big_one(
    settings: Any, models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass never holds more than one chunk: small requests sent while a big one runs are answered in passes
    between its chunks, not after all of them."""
    passes: list[list[int]] = []
    original = LoadedModel.run_batch

    def slow_run_batch(loaded: LoadedModel, jobs: list[Any]) -> Any:
        passes.append([j.n for j in jobs])
        import time

        time.sleep(0.01)  # every pass takes a while, so that the small requests arrive while the big one runs
        return original(loaded, jobs)

    monkeypatch.setattr(LoadedModel, "run_batch", slow_run_batch)
    settings = settings.model_copy(update={"store_dir": models["store"], "max_batch_size": 64})
    async with serving(settings) as (_, client):
        url = f"/v1/models/{models['points']}/samples"
        big = asyncio.create_task(client.post(url, json={"n": 64 * 20, "seed": 1, "format": "npy"}))
        while len(passes) < 3:
            await asyncio.sleep(0.005)
        small = await asyncio.gather(*(client.post(url, json={"n": 1, "seed": s}) for s in range(5)))
        assert all(r.status_code == 200 for r in small)
        assert not big.done()  # answered while the big request still has chunks to run
        r = await big
    assert r.status_code == 200 and np.load(io.BytesIO(r.content)).shape == (64 * 20, 2)
    assert max(sum(p) for p in passes) <= 64  # no pass took more than one chunk
