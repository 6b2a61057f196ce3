"""Shared fixtures: a real Redis of the tests' own (an embedded redis-server, or an empty database named by
GENSERVE_TEST_REDIS_URL), settings on a temporary artifact store, the ASGI app, and a live service (uvicorn + an RQ
worker process) for end-to-end tests."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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
        if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
            pytest.exit(
                f"{TEST_REDIS_ENV} names one database, which the tests flush: run them in one process (no -n)",
                returncode=3,
            )
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module's live service runs on the stores its STORE_BACKENDS names ("local", "s3"; default local only):
    each of its tests once per store."""
    if "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", getattr(metafunc.module, "STORE_BACKENDS", ["local"]), scope="module")


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str, store_backend: str
) -> Iterator[LiveService]:
    """One API process and one worker process for a whole test module (trainings take seconds, not ms), on the
    module's store backend. With S3, this process's environment names the endpoint too while the module runs (a
    test that starts more processes from the service's settings passes it on)."""
    tmp = tmp_path_factory.mktemp(f"live-{store_backend}")
    if store_backend == "local":
        yield from run_live(tmp, redis_url)
        return
    overrides, env = s3_store(request.getfixturevalue("s3_endpoint"), tmp, "e2e")
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield from run_live(tmp, redis_url, overrides)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_live(
    tmp: Path, redis_url: str, overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> Iterator[LiveService]:
    """A worker and an API on these settings (and extra environment), stopped (and Redis emptied) at the end."""
    Redis.from_url(redis_url).flushdb()
    service = LiveService(make_settings(tmp, redis_url, **(overrides or {})), tmp)
    service.env.update(env or {})
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


# --- S3 ---------------------------------------------------------------------------------------------------------------
# moto checks a PutObject's If-None-Match / If-Match and then writes, in two steps that its threaded server does not
# make atomic (moto/s3/responses.py, put_object): two conditional writes arriving together could both pass the check.
# S3 and MinIO decide a conditional write atomically, so the test server runs one request at a time (`_OneAtATime`):
# the conditional writes the tests race are then as atomic as a real endpoint's, and a lost update would be the
# store's fault, not the fake's.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class _OneAtATime:
    """A WSGI app that serves one request at a time (its body read and its answer built under one lock)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, for the whole session."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def s3_store(endpoint: str, tmp: Path, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A fresh bucket on `endpoint`: the settings and the environment that put a service's store in it."""
    import uuid

    import boto3

    bucket = f"genserve-{name}-{uuid.uuid4().hex[:10]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=bucket)
    overrides = {"store_url": f"s3://{bucket}/{name}", "cache_dir": tmp / "cache"}
    return overrides, {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
