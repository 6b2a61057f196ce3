"""Fixtures: a real genserve service for the client to talk to, and the stand-ins the failure tests need.

The service is `python -m genserve dev` (an embedded redis-server, one API process, one RQ worker) on a free port,
with its store, data and Redis files in pytest's temporary directory. Its environment has no GENSERVE_REDIS_URL,
so it never touches a Redis of the user's. GENSERVE_TEST_URL (and GENSERVE_TEST_API_KEY) point the tests at a
service already running instead; without either, and without the server package importable (the client installed
on its own), the tests that need a service are skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from genserve_client import Client

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
FULL_KEY = "client-tests-full-key-0123456789"  # sample+train
READ_KEY = "client-tests-read-key-0123456789"  # sample only
TINY = {"batch_size": 32, "width": 32, "latent_dim": 4}  # a training of seconds on a CPU core


@dataclass(frozen=True)
class Service:
    url: str
    api_key: str | None
    read_only_key: str | None = None  # a key without the train scope, where known

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, self.api_key, **kwargs)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevService:
    """`genserve dev` as a child process: started, waited for, stopped with SIGTERM (it stops its API, worker and
    Redis in order)."""

    def __init__(self, root: Path, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "service.log"
        self.stopping = False
        (root / "service").mkdir(parents=True)  # the store's parent: the embedded Redis keeps its files beside it
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}  # no GENSERVE_REDIS_URL
        env.update(
            GENSERVE_STORE_DIR=str(root / "service" / "store"),
            GENSERVE_DATA_DIR=str(root / "data"),
            GENSERVE_PROGRESS_INTERVAL_S="0.1",
            GENSERVE_MNIST_URL="http://127.0.0.1:9/",  # nothing listens there: no download is ever attempted for real
            OMP_NUM_THREADS="1",
            **extra_env,
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "genserve", "dev", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest reaches it only through stop()
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"genserve dev exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"genserve dev did not answer /healthz within {START_TIMEOUT_S:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def terminate(self) -> None:
        """Ask it to stop (once: it ignores a second signal while stopping)."""
        if self.proc.poll() is None and not self.stopping:
            self.proc.send_signal(signal.SIGTERM)
            self.stopping = True

    def stop(self) -> None:
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the children it could not stop
                self.proc.wait()


def _external() -> Service | None:
    url = os.environ.get("GENSERVE_TEST_URL")
    return Service(url.rstrip("/"), os.environ.get("GENSERVE_TEST_API_KEY") or None) if url else None


SERVICE_FIXTURES = {"open": "service", "keyed": "keyed_service"}


@pytest.fixture(scope="session")
def _dev_services(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, DevService]]:
    """The services this session's tests use, started together (their start-ups overlap) and stopped together."""
    if importlib.util.find_spec("genserve") is None:
        pytest.skip("the genserve server is not installed here (set GENSERVE_TEST_URL to test against a running one)")
    env = {"open": {}, "keyed": {"GENSERVE_API_KEYS": f"{FULL_KEY}:sample+train,{READ_KEY}:sample"}}
    used = {n for n, f in SERVICE_FIXTURES.items() if any(f in item.fixturenames for item in request.session.items)}
    started: dict[str, DevService] = {}
    try:
        for name in sorted(used or {"open"}):
            started[name] = DevService(tmp_path_factory.mktemp(name), env[name])
        yield started
    finally:
        for dev in started.values():
            dev.terminate()
        for dev in started.values():
            dev.stop()


@pytest.fixture(scope="session")
def service(request: pytest.FixtureRequest) -> Service:
    """The service without API keys (or GENSERVE_TEST_URL's)."""
    external = _external()
    if external is not None:
        return external
    dev: DevService = request.getfixturevalue("_dev_services")["open"]
    dev.wait_ready()
    return Service(dev.url, None)


@pytest.fixture(scope="session")
def keyed_service(request: pytest.FixtureRequest) -> Service:
    """A service with API keys: FULL_KEY (sample+train) and READ_KEY (sample). With GENSERVE_TEST_URL, that service
    when GENSERVE_TEST_API_KEY is set (it has keys), else skipped."""
    external = _external()
    if external is not None:
        if external.api_key is None:
            pytest.skip("GENSERVE_TEST_URL's service has no GENSERVE_TEST_API_KEY: no keys to test")
        return external
    dev: DevService = request.getfixturevalue("_dev_services")["keyed"]
    dev.wait_ready()
    return Service(dev.url, FULL_KEY, READ_KEY)


@pytest.fixture
def client(service: Service) -> Iterator[Client]:
    with service.client() as c:
        yield c


class RequestCounter:
    """An httpx event hook that counts the requests a client sends (retries included)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def http_client(self) -> httpx.Client:
        return httpx.Client(event_hooks={"request": [self]})


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


# A TCP proxy whose connections can be cut, as a network failure would


class CuttableProxy:
    """Forwards each TCP connection to `target`; `cut()` breaks every connection open now. Records the bytes each
    client connection sent, so a test can read the requests (and their headers) that went through."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.sent: list[bytearray] = []  # per connection, what the client sent
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            record = bytearray()
            with self._lock:
                self.sent.append(record)
                self._open += [downstream, upstream]
            threading.Thread(target=self._pipe, args=(downstream, upstream, record), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, None), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while chunk := source.recv(65536):
                if record is not None:
                    record += chunk
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def requests_text(self) -> list[str]:
        with self._lock:
            return [bytes(r).decode("latin-1") for r in self.sent]

    def close(self) -> None:
        self._listener.close()
        self.cut()


@pytest.fixture
def proxy(service: Service) -> Iterator[CuttableProxy]:
    url = httpx.URL(service.url)
    p = CuttableProxy((url.host, url.port or 80))
    yield p
    p.close()


# A scripted HTTP server: the stand-in for the retry tests (what it tests is the client's logic, not the service)


@dataclass
class Answer:
    status: int
    body: object = None  # JSON, or bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class ScriptedServer:
    """Answers requests with `script` in order (the last answer repeats), noting when each request came."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.hits: list[tuple[float, str, str]] = []  # (monotonic time, method, path)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.hits.append((time.monotonic(), self.command, self.path))
                answer = owner.script[min(len(owner.hits), len(owner.script)) - 1]
                body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PUT = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
