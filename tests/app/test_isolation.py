"""Failures stay with the request that caused them: inside a forward pass, in the batcher, and at the edge."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI

from app.main import create_app
from app.serving.batching import Batcher
from app.serving.model_cache import SampleJob
from app.settings import Settings
from tests.helpers import store_untrained_model


async def test_an_exception_in_one_slot_reaches_only_its_caller() -> None:
    def run(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, executor=ThreadPoolExecutor(1), max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -2"
    await batcher.close()


async def test_a_pass_that_fails_is_rerun_request_by_request(settings: Settings) -> None:
    model_id = store_untrained_model(settings.store_dir)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        loaded = await app.state.services.models.get(model_id)
        good = SampleJob(n=2, fmt="json", seed=1)
        nan = SampleJob(n=1, fmt="json", z=torch.full((1, loaded.forward.latent_dim), float("nan")))
        results = loaded.run_batch([good, nan, SampleJob(n=1, fmt="npy", seed=2)])
        assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
        assert isinstance(results[1], ValueError)  # NaN never in a JSON body: that request alone fails
        assert results[0] == loaded.run_batch([good])[0]  # the others' bytes are what they get alone
        other = SampleJob(n=1, fmt="json", seed=3)  # any neighbour leaves a request's bytes as they are alone
        assert loaded.run_batch([good, other])[0] == results[0]


async def test_every_model_has_its_own_inference_thread(settings: Settings) -> None:
    first, second = store_untrained_model(settings.store_dir), store_untrained_model(settings.store_dir, width=8)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        a = await app.state.services.models.get(first)
        b = await app.state.services.models.get(second)
        assert a.executor is not b.executor


async def test_an_unexpected_error_is_one_500_and_not_raised_to_the_server(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app: FastAPI = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals at /some/path")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)  # an exception would surface here
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/boom")
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/problem+json")
    assert "secret" not in r.text and "/some/path" not in r.text
    assert sum("unhandled error" in rec.getMessage() for rec in caplog.records) == 1  # logged once
