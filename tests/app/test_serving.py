"""The sampling path in-process (ASGI, real Redis for pub/sub): concurrent callers get their own results,
deadlines answer 504, a full queue 503 + Retry-After, a vanished client is dropped, models hot-reload and the
cache stays within its memory budget."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI
from redis import Redis

from app.main import create_app
from app.serving.model_cache import LoadedModel
from app.settings import Settings
from models.nets import build_model
from models.sampling import InvariantForward, PaddingRule, prepare_for_inference
from models.store import ArtifactStore
from tests.conftest import make_settings
from tests.helpers import store_untrained_model
from worker.state.events import publish_model_event

BLOCKING_SEED = 999_999  # a request with this seed holds its forward pass until the gate opens


class Gate:
    """Holds forward passes that contain the blocking seed, so tests can fill the queue behind them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[int | None]] = []
        original = LoadedModel.run_batch
        gate = self

        def run_batch(loaded: LoadedModel, jobs: list[Any]) -> Any:
            gate.batches.append([j.seed for j in jobs])
            if any(j.seed == BLOCKING_SEED for j in jobs):
                gate.entered.set()
                assert gate.open.wait(20)
            return original(loaded, jobs)

        monkeypatch.setattr(LoadedModel, "run_batch", run_batch)

    async def wait_entered(self) -> None:
        assert await asyncio.get_running_loop().run_in_executor(None, self.entered.wait, 20)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            yield app, client


@pytest.fixture
def store_dir(settings: Settings) -> Path:
    return Path(settings.store_dir)


@pytest.mark.parametrize("inline", ["off", "on"])
async def test_concurrent_callers_each_get_their_own_result(settings: Settings, store_dir: Path, inline: str) -> None:
    settings = settings.model_copy(update={"inline_inference": inline})
    model = store_untrained_model(store_dir, kind="images", shape=(8, 8), classes=["a", "b", "c"])
    url = f"/v1/models/{model}/samples"
    requests = [
        {
            "n": 1 + i % 4,
            "seed": i,
            "labels": [(i + k) % 3 for k in range(1 + i % 4)],
            "format": ("png", "npy", "json")[i % 3],
        }
        for i in range(48)
    ]
    async with serving(settings) as (app, client):
        alone = [(await client.post(url, json=r)).content for r in requests]
        together = await asyncio.gather(*(client.post(url, json=r) for r in requests))
        assert [r.content for r in together] == alone
        metrics = (await client.get("/metrics")).text
    batches = [line for line in metrics.splitlines() if line.startswith("genserve_batch_size_requests_")]
    count = float(next(b for b in batches if "_count" in b).split()[-1])
    total = float(next(b for b in batches if "_sum" in b).split()[-1])
    assert total == 2 * 48 and count < 2 * 48  # the concurrent half shared passes


async def test_deadline_passes_while_queued_gives_504(
    settings: Settings, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    model = store_untrained_model(store_dir)
    url = f"/v1/models/{model}/samples"
    async with serving(settings) as (app, client):
        blocker = asyncio.create_task(client.post(url, json={"seed": BLOCKING_SEED}))
        await gate.wait_entered()
        late = await client.post(url, json={"seed": 1, "timeout_ms": 100})
        assert late.status_code == 504 and late.headers["content-type"] == "application/problem+json"
        assert late.json()["errors"][0]["loc"] == ["body", "timeout_ms"]
        gate.open.set()
        assert (await blocker).status_code == 200
        assert (await client.post(url, json={"seed": 1})).status_code == 200
        assert 'genserve_sample_rejected_total{reason="timeout"} 1.0' in (await client.get("/metrics")).text
    assert gate.batches == [[BLOCKING_SEED], [1]]  # the timed-out request never reached a forward pass


async def test_full_queue_gives_503_with_retry_after(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, redis_url, max_batch_size=2, max_queue_samples=2)
    gate = Gate(monkeypatch)
    model = store_untrained_model(settings.store_dir)
    url = f"/v1/models/{model}/samples"
    async with serving(settings) as (app, client):
        blocker = asyncio.create_task(client.post(url, json={"seed": BLOCKING_SEED}))
        await gate.wait_entered()
        queued = [asyncio.create_task(client.post(url, json={"seed": s})) for s in (1, 2)]
        await asyncio.sleep(0.05)
        full = await client.post(url, json={"seed": 3})
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert full.headers["content-type"] == "application/problem+json"
        gate.open.set()
        assert [r.status_code for r in await asyncio.gather(blocker, *queued)] == [200, 200, 200]


async def test_a_client_that_disconnects_is_dropped(
    settings: Settings, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    model = store_untrained_model(store_dir)
    url = f"/v1/models/{model}/samples"
    async with serving(settings) as (app, client):
        blocker = asyncio.create_task(client.post(url, json={"seed": BLOCKING_SEED}))
        await gate.wait_entered()
        body = json.dumps({"seed": 4242}).encode()
        messages = [{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else await asyncio.Future()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": url,
            "raw_path": url.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
            "state": {},
        }
        await asyncio.wait_for(app(scope, receive, send), 5)  # returns while the pass ahead is still held
        assert sent[0]["status"] == 499
        gate.open.set()
        assert (await blocker).status_code == 200
        assert 'genserve_sample_rejected_total{reason="disconnected"} 1.0' in (await client.get("/metrics")).text
    assert all(4242 not in seeds for seeds in gate.batches)


async def test_models_hot_reload_across_replicas(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, redis_url, preload_models="all")
    first = store_untrained_model(settings.store_dir)
    gate = Gate(monkeypatch)
    async with serving(settings) as (app, client):
        cache = app.state.services.models
        assert cache.loaded == [first]  # preloaded at start
        await asyncio.sleep(0.2)  # the listener subscribes
        second = store_untrained_model(settings.store_dir)
        publish_model_event(redis, "created", second)  # as the worker announces a new model
        for _ in range(100):
            if second in cache.loaded:
                break
            await asyncio.sleep(0.05)
        assert second in cache.loaded  # loaded before its first request
        url = f"/v1/models/{second}/samples"
        in_flight = asyncio.create_task(client.post(url, json={"seed": BLOCKING_SEED}))
        await gate.wait_entered()
        app.state.services.store.delete_model(second)  # deleted through another replica
        publish_model_event(redis, "deleted", second)
        await asyncio.sleep(0.2)
        gate.open.set()
        assert (await in_flight).status_code == 200  # the request in flight still completes
        assert (await client.post(url, json={"seed": 1})).status_code == 404
        assert second not in cache.loaded
        assert (await client.post(f"/v1/models/{first}/samples", json={"seed": 1})).status_code == 200


async def test_lru_cache_stays_within_its_memory_budget(tmp_path: Path, redis_url: str, redis: Redis) -> None:
    settings = make_settings(tmp_path, redis_url, model_cache_mb=1)
    models = [store_untrained_model(settings.store_dir, width=256) for _ in range(4)]  # ~0.53 MB each
    async with serving(settings) as (app, client):
        cache = app.state.services.models
        for model in models:
            assert (await client.post(f"/v1/models/{model}/samples", json={"seed": 1})).status_code == 200
            assert cache.used_bytes <= 1024 * 1024
        assert cache.loaded == [models[-1]]  # a second one would cross the 1 MB budget
        await client.post(f"/v1/models/{models[0]}/samples", json={"seed": 1})  # reloaded on demand
        assert cache.loaded == [models[0]]


async def test_models_in_memory_never_exceed_the_budget_while_making_room(
    tmp_path: Path, redis_url: str, redis: Redis
) -> None:
    """Room for a model is made before it joins the cache: while three small models are evicted one by one (each
    eviction waits for its queue to drain) to make room for a big one, the weights in memory stay within the
    budget at every step, not only once the room is made."""
    settings = make_settings(tmp_path, redis_url, model_cache_mb=1)
    small = [store_untrained_model(settings.store_dir, width=128) for _ in range(3)]
    big, bigger = (store_untrained_model(settings.store_dir, width=256) for _ in range(2))
    async with serving(settings) as (app, client):
        cache = app.state.services.models
        for model in [*small, big]:
            assert (await client.post(f"/v1/models/{model}/samples", json={"seed": 1})).status_code == 200
        assert len(cache.loaded) == 4
        seen = []
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.append(cache.used_bytes)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        r = await client.post(f"/v1/models/{bigger}/samples", json={"seed": 1})
        done.set()
        await watcher
        assert r.status_code == 200 and cache.loaded[-1] == bigger
        assert len(seen) > 3 and max(seen) <= 1024 * 1024, (max(seen), len(seen))


@pytest.mark.parametrize(
    ("setting", "cores", "inline"),
    [("auto", {0}, True), ("auto", {0, 1}, False), ("on", {0, 1}, True), ("off", {0}, False)],
)
def test_inline_inference_is_on_for_a_cpu_model_on_one_core(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, setting: str, cores: set[int], inline: bool
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cores)
    app = create_app(settings.model_copy(update={"inline_inference": setting, "device": "cpu"}))
    assert app.state.services.models.options.inline is inline


async def test_a_latent_longer_than_512_can_be_trained_and_sampled_with_explicit_z(settings: Settings) -> None:
    """GENSERVE_MAX_LATENT_DIM raised past 512: the training request is accepted, and the model's samples can be
    asked for with explicit z of its full length (the sample schema once capped z at a hard-coded 512)."""
    settings = settings.model_copy(update={"max_latent_dim": 1024})
    latent_dim = 600
    model = store_untrained_model(settings.store_dir, latent_dim=latent_dim)
    async with serving(settings) as (_, client):
        accepted = await client.post("/v1/trainings", json={"dataset": "ring2d", "family": "gan", "latent_dim": 700})
        assert accepted.status_code == 202, accepted.text
        z = [[0.01 * (i % 7) for i in range(latent_dim)], [-0.02 * (i % 5) for i in range(latent_dim)]]
        r = await client.post(f"/v1/models/{model}/samples", json={"z": z, "format": "json"})
        assert r.status_code == 200, r.text
        assert len(r.json()["samples"]) == 2
        short = await client.post(f"/v1/models/{model}/samples", json={"z": [[0.0] * 512], "format": "json"})
        assert short.status_code == 422 and "latent_dim is 600" in short.text


async def test_the_hot_path_asks_the_store_only_every_recheck(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store I/O per sampling request: a loaded model is taken on the models channel's word, and the store is
    asked again only every STORE_RECHECK_S (which catches a deletion whose announcement was lost)."""
    from app.serving import model_cache

    monkeypatch.setattr(model_cache, "STORE_RECHECK_S", 0.5)
    settings = make_settings(tmp_path, redis_url)
    model_id = store_untrained_model(settings.store_dir)
    async with serving(settings) as (app, client):
        store = app.state.services.store
        asked = 0
        has_model = store.has_model

        def counting(model: str) -> bool:
            nonlocal asked
            asked += 1
            return has_model(model)

        monkeypatch.setattr(store, "has_model", counting)
        url = f"/v1/models/{model_id}/samples"
        for seed in range(20):
            assert (await client.post(url, json={"seed": seed})).status_code == 200
        assert asked <= 2, asked  # the first load, and perhaps one recheck, not one per request
        store.delete_model(model_id)  # and no announcement: as if Redis had lost it
        await asyncio.sleep(0.6)
        # The first request after the interval is served while the store is asked in the background; then 404.
        statuses = []
        for _ in range(20):
            statuses.append((await client.post(url, json={"seed": 1})).status_code)
            if statuses[-1] == 404:
                break
            await asyncio.sleep(0.05)
        assert statuses[-1] == 404 and len(statuses) <= 5, statuses


async def test_a_burst_of_first_requests_loads_a_cold_model_once(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thundering herd: 32 requests arriving together for a model not yet in memory wait on one load, and only
    the first asks the store whether the model exists."""
    from app.serving.model_cache import ModelCache

    settings = make_settings(tmp_path, redis_url)
    model_id = store_untrained_model(settings.store_dir)
    loads, asked = [], []
    from models.store import ArtifactStore

    load, has_model = ModelCache._load, ArtifactStore.has_model

    def counting_load(cache: ModelCache, model: str) -> LoadedModel:
        loads.append(model)
        time.sleep(0.2)  # a slow load: every request of the burst arrives while it runs
        return load(cache, model)

    def counting_has(store: Any, model: str) -> bool:
        asked.append(model)
        return has_model(store, model)

    monkeypatch.setattr(ModelCache, "_load", counting_load)
    monkeypatch.setattr(ArtifactStore, "has_model", counting_has)
    async with serving(settings) as (app, client):
        url = f"/v1/models/{model_id}/samples"
        answers = await asyncio.gather(*(client.post(url, json={"seed": s}) for s in range(32)))
    assert [a.status_code for a in answers] == [200] * 32
    assert loads == [model_id] and asked == [model_id], (loads, asked)


async def test_eviction_never_fails_a_request_in_flight(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model evicted to make room (the cache's memory budget) while a request of it is in its forward pass: the
    request is answered, then the model goes."""
    settings = make_settings(tmp_path, redis_url, model_cache_mb=1)
    first, second, third = (store_untrained_model(settings.store_dir, width=256) for _ in range(3))  # ~0.53 MB each
    gate = Gate(monkeypatch)
    async with serving(settings) as (app, client):
        cache = app.state.services.models
        in_flight = asyncio.create_task(client.post(f"/v1/models/{first}/samples", json={"seed": BLOCKING_SEED}))
        await gate.wait_entered()
        others = [
            asyncio.create_task(client.post(f"/v1/models/{m}/samples", json={"seed": 1})) for m in (second, third)
        ]
        await asyncio.sleep(0.3)  # loading them pushes the first out of the budget while its pass is held
        gate.open.set()
        assert (await in_flight).status_code == 200
        assert [(await o).status_code for o in others] == [200, 200]
        assert first not in cache.loaded


async def test_a_cold_load_of_known_shapes_skips_calibration(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calibrating a model's padding rule is most of a cold load's cost (BENCHMARKS.md). The rule depends on the
    net's shapes and the kernels, not its weights: a process calibrates once per key, keeps the rule in the store,
    and the next process reads it there; what it reads is what calibrating would have found."""
    settings = make_settings(tmp_path, redis_url)
    first, twin = (store_untrained_model(settings.store_dir, init_seed=s) for s in (1, 2))  # same shapes
    other = store_untrained_model(settings.store_dir, width=32)
    calibrated: list[str] = []
    calibrate = InvariantForward.calibrate

    def counting(forward: InvariantForward) -> Any:
        calibrated.append(str(forward.model.spec.width))  # type: ignore[union-attr]
        return calibrate(forward)

    monkeypatch.setattr(InvariantForward, "calibrate", counting)

    async def sample_each(models: list[str]) -> dict[str, bytes]:
        async with serving(settings) as (app, client):
            bodies = {}
            for m in models:
                r = await client.post(f"/v1/models/{m}/samples", json={"seed": 3, "n": 5, "format": "npy"})
                assert r.status_code == 200, r.text
                bodies[m] = r.content
            return bodies | {"rules": [app.state.services.models.cached(m).forward.rule for m in models]}

    found = await sample_each([first, twin, other])
    assert calibrated == ["16", "32"]  # the twin's weights differ, its shapes do not
    # A new process reads both rules from the store and samples the same bytes
    again = await sample_each([twin, other, first])
    assert calibrated == ["16", "32"] and again[twin] == found[twin] and again[first] == found[first]
    # ... and each rule is the one the model's own calibration finds
    store, cpu = ArtifactStore(settings.store_dir), torch.device("cpu")
    for m, rule in zip([twin, other, first], again["rules"], strict=True):
        net = build_model(store.get_model(m).spec)
        net.load_state_dict(store.load_model_tensors(m))
        assert calibrate(InvariantForward(prepare_for_inference(net, cpu), cpu, PaddingRule())) == rule
    cache_dir = settings.store_dir / "calibrations"
    rules = sorted(cache_dir.glob("pad_*.json"))
    assert len(rules) == 2
    # A rule the store holds that this version cannot read is calibrated again, never trusted
    for path in rules:
        path.write_text('{"chunk": "sixty-four"}')
    await sample_each([first])
    assert calibrated == ["16", "32", "16"]


async def test_a_cancelled_request_still_lets_the_model_it_evicted_stop(
    tmp_path: Path, redis_url: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a model evicts another and waits for its queued requests to drain. When the request that caused it
    goes away meanwhile, the evicted model's batcher still drains and stops (it once waited forever)."""
    settings = make_settings(tmp_path, redis_url, model_cache_mb=1)
    first, second = (store_untrained_model(settings.store_dir, width=256) for _ in range(2))  # ~0.53 MB each
    gate = Gate(monkeypatch)
    async with serving(settings) as (app, client):
        cache = app.state.services.models
        held = asyncio.create_task(client.post(f"/v1/models/{first}/samples", json={"seed": BLOCKING_SEED}))
        await gate.wait_entered()
        batcher = cache.cached(first).batcher
        loading = asyncio.create_task(cache.get(second))  # over the budget: evicts the first, waits for its drain
        await asyncio.sleep(0.3)
        assert not loading.done() and first not in cache.loaded
        loading.cancel()
        gate.open.set()
        assert (await held).status_code == 200
        for _ in range(100):
            if batcher._task.done():
                break
            await asyncio.sleep(0.02)
        assert batcher._task.done()


async def test_a_model_evicted_again_and_again_answers_503_not_500(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache far too small for its traffic can push a model out again between each reload and the request's
    turn; after a few reloads the request gets a 503 with Retry-After naming the budget, never a 500."""
    from app.serving.batching import Batcher, Closed

    model_id = store_untrained_model(settings.store_dir)
    reloads = []

    def always_evicted(batcher: Batcher[Any, Any], *args: Any, **kwargs: Any) -> Any:
        reloads.append(1)
        raise Closed("batcher is closed")

    async with serving(settings) as (app, client):
        monkeypatch.setattr(Batcher, "enqueue", always_evicted)
        r = await client.post(f"/v1/models/{model_id}/samples", json={"seed": 1})
        metrics = (await client.get("/metrics")).text
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert "GENSERVE_MODEL_CACHE_MB" in r.json()["detail"] and len(reloads) > 1
    assert 'genserve_sample_rejected_total{reason="evicted"} 1.0' in metrics
