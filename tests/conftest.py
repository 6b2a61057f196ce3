"""Shared fixtures: a real Redis of the tests' own (an embedded redis-server, or an empty database named by
GENSERVE_TEST_REDIS_URL), settings on a temporary artifact store, the ASGI app, and a live service (uvicorn + an RQ
worker process) for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from redis import Redis

from app.settings import Settings, get_settings
from genserve import child_pythonpath, embedded_redis, free_port
from tests.helpers import DEVICE

TEST_REDIS_ENV = "GENSERVE_TEST_REDIS_URL"
SERVICE_START_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' Redis: a server of their own (an embedded redis-server), or the database GENSERVE_TEST_REDIS_URL
    names when it is empty. Never GENSERVE_REDIS_URL: the tests flush their database, and a user's is not theirs."""
    configured = os.environ.get(TEST_REDIS_ENV)
    if configured:
        refuse_unless_empty(configured)
        yield configured
    else:
        with embedded_redis(tmp_path_factory.mktemp("redis")) as url:
            yield url


def refuse_unless_empty(url: str) -> None:
    """Stop the session, saying why, when the database the tests would flush holds keys they did not write."""
    client = Redis.from_url(url)
    try:
        keys = client.dbsize()
    finally:
        client.close()
    if keys:
        pytest.exit(
            f"{TEST_REDIS_ENV} names a database that holds {keys} keys; the tests flush their database, so they "
            "need an empty one (unset it to let the tests start a Redis of their own)",
            returncode=3,
        )


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def make_settings(tmp: Path, redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "store_dir": tmp / "store",
        "data_dir": tmp / "data",
        "mnist_url": "http://127.0.0.1:9/",  # nothing listens there: "downloads" fail fast, offline-like
        "download_timeout_s": 2.0,
        "progress_interval_s": 0.1,
        "device": DEVICE,
        # The same on any number of cores (auto would go inline under `taskset -c 0`): tests that hold a forward pass
        # with a thread event need the inference thread. Inline passes have tests of their own.
        "inline_inference": "off",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[f"GENSERVE_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = child_pythonpath()
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis: Redis) -> Iterator[Settings]:
    s = make_settings(tmp_path, redis_url)
    yield s
    get_settings.cache_clear()


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    """The ASGI app in-process (lifespan included) behind a real HTTP client interface."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {message}")


class LiveService:
    """`genserve serve` and `genserve worker` as real processes on a temporary store."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = settings_env(settings)
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / log_name, "ab")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(
            [sys.executable, "-m", "genserve", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_api(self) -> None:
        self.api = self._spawn(["serve", "--port", str(self.port)], "api.log")
        wait_until(self._healthy, SERVICE_START_TIMEOUT_S, message="the API to answer /healthz")

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn(["worker"], f"worker-{len(self.workers)}.log")
        self.workers.append(proc)
        return proc

    def _healthy(self) -> bool:
        assert self.api is not None
        if self.api.poll() is not None:
            raise AssertionError(f"API exited: {(self.log_dir / 'api.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.api]:
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LiveService]:
    """One API process and one worker process for a whole test module (trainings take seconds, not ms)."""
    tmp = tmp_path_factory.mktemp("live")
    Redis.from_url(redis_url).flushdb()
    service = LiveService(make_settings(tmp, redis_url), tmp)
    try:
        service.start_worker()
        service.start_api()
        yield service
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.stop()
        with contextlib.suppress(Exception):
            Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def http(live: LiveService) -> Iterator[httpx.Client]:
    """A client of the module's live service (modules with other needs define their own `http`)."""
    with httpx.Client(base_url=live.base_url, timeout=60) as c:
        yield c
