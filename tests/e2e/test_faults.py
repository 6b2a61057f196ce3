"""Faults, for real: a worker killed with SIGKILL (parent and horse) or stopped with SIGTERM, the API stopped with
SIGTERM mid-request, a private Redis stopped and restarted empty, a training that diverges.

The end-to-end tests (slow) run `genserve serve` and `genserve worker` as processes on a private redis-server of
their own, with a short lease, watchdog interval and checkpoint interval so that recovery takes seconds, and assert
the bounds the service promises (a lost worker noticed within 60 s). The watchdog, the fence and the store's atomic
writes are driven directly by tests/worker/test_state.py and tests/models/test_store.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from redis import Redis

from genserve import embedded_redis, free_port
from models.store import ArtifactStore
from tests.conftest import LiveService, make_settings, wait_until
from tests.helpers import blobs_csv, sse_events, wait_for_training
from worker.state import events, keys

FAST = {"lease_ttl_s": 4.0, "watchdog_interval_s": 1.0, "checkpoint_interval_s": 1.0}
DETECTION_BOUND_S = 60.0  # the bound on noticing a killed worker
TINY = {"batch_size": 32, "width": 32, "latent_dim": 4}
LONG_GAN = {"dataset": "ring2d", "family": "gan", **TINY, "steps": 5000}  # ~10 s on one CPU core


class PrivateRedis:
    """A redis-server of the test's own on a fixed port; `restart_empty` brings it back without its data."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._stack: contextlib.ExitStack | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(embedded_redis(self.tmp / f"redis-{self.starts}", self.port))  # a fresh dir: empty

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def restart_empty(self) -> None:
        self.stop()
        self.start()


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session: a worker's parent and its work horse (which RQ puts in a process group
    of its own, so killing the parent's group would spare it)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getsid(int(entry)) == sid:
                    os.kill(int(entry), signal.SIGKILL)


def session_alive(sid: int) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid and " Z " not in Path(f"/proc/{entry}/stat").read_text():
                return True
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    return False


class Rig:
    """API and worker processes on a private Redis and a temporary store."""

    def __init__(self, tmp: Path, redis: PrivateRedis, **overrides: Any) -> None:
        self.redis = redis
        self.settings = make_settings(tmp, redis.url, **{**FAST, **overrides})
        self.live = LiveService(self.settings, tmp)
        self.store = ArtifactStore(self.settings.store_dir)
        self.http = httpx.Client(base_url=self.live.base_url, timeout=60)

    def record(self, training_id: str) -> dict[str, Any]:
        return self.store.get_training(training_id)

    def events(self, training_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Every event of the training's stream in Redis (the SSE endpoint sends only the end of an ended one)."""
        client = Redis.from_url(self.redis.url)
        try:
            return [events.decode_event(fields) for _, fields in client.xrange(keys.events(training_id))]
        finally:
            client.close()

    def checkpoint_step(self, training_id: str) -> int:
        loaded = self.store.load_checkpoint(training_id)
        return 0 if loaded is None else int(loaded[1]["step"])

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        kill_session(proc.pid)
        proc.wait(10)
        wait_until(lambda: not session_alive(proc.pid), 10, message="the worker's processes to die")

    def close(self) -> None:
        self.http.close()
        self.live.stop()
        for proc in self.live.workers:
            kill_session(proc.pid)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def rig(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**overrides: Any) -> Rig:
        made.append(Rig(tmp_path, private_redis, **overrides))
        return made[-1]

    yield make
    for r in made:
        print(r.live.logs())  # shown when the test failed
        r.close()


def start_training(r: Rig, body: dict[str, Any]) -> str:
    resp = r.http.post("/v1/trainings", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def assert_finite_model(r: Rig, model_id: str) -> None:
    tensors = r.store.load_model_tensors(model_id)
    assert tensors and all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())
    resp = r.http.post(f"/v1/models/{model_id}/samples", json={"n": 64, "seed": 1})
    assert resp.status_code == 200, resp.text
    samples = np.array(resp.json()["samples"])
    assert samples.shape == (64, 2) and np.isfinite(samples).all()


# --- a worker killed -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_worker_is_noticed_and_its_training_resumes_from_the_checkpoint(rig: Callable[..., Rig]) -> None:
    r = rig()
    first = r.live.start_worker()
    r.live.start_api()
    tid = start_training(r, LONG_GAN)
    wait_until(lambda: r.checkpoint_step(tid) > 0, 60, message="a first checkpoint")
    first_job = r.record(tid)["job_id"]
    r.kill_worker(first)  # SIGKILL, parent and horse, no chance to write anything
    killed_at = time.monotonic()
    checkpointed = r.checkpoint_step(tid)
    assert r.record(tid)["status"] == "running"  # the store still says so: only the missing lease tells
    r.live.start_worker()
    wait_until(
        lambda: r.record(tid)["job_id"] != first_job,
        DETECTION_BOUND_S,
        interval_s=0.2,
        message="the watchdog to re-queue the training",
    )
    detected_s = time.monotonic() - killed_at
    done = wait_for_training(r.http, tid, timeout_s=120)
    assert done["status"] == "succeeded", done
    record = r.record(tid)
    assert record["lost_workers"] == 1 and record["attempts"] == 2, record
    assert record["resumed_from_step"] >= checkpointed > 0, record
    assert record["progress"]["step"] == 5000
    assert detected_s < DETECTION_BOUND_S
    assert_finite_model(r, done["model_id"])
    assert r.store.load_checkpoint(tid) is None  # cleaned up once the model is stored
    # The history continues from the checkpoint: every step once, in order, no gap wider than a report's.
    steps = r.http.get(f"/v1/trainings/{tid}/history").json()["steps"]
    gaps = np.diff(steps)
    assert steps[-1] == 5000 and gaps.min() > 0, steps
    resume_gap = next(
        int(b - a) for a, b in zip(steps, steps[1:], strict=False) if a <= record["resumed_from_step"] < b
    )
    others = [int(g) for g in gaps]
    others.remove(resume_gap)
    assert resume_gap <= max(others) + 1, (resume_gap, steps)
    every = done["config"]["preview_every"]
    assert [p["step"] for p in r.http.get(f"/v1/trainings/{tid}/previews").json()["items"]] == list(
        range(every, 5001, every)
    )
    statuses = [d for e, d in r.events(tid) if e == "status"]
    assert any(d["status"] == "queued" and "worker lost" in d.get("reason", "") for d in statuses), statuses
    assert any(d.get("resumed_from_step", 0) > 0 for d in statuses), statuses
    print(f"killed worker noticed and re-queued after {detected_s:.1f}s")


@pytest.mark.slow
def test_a_training_whose_workers_keep_dying_fails_with_the_reason(rig: Callable[..., Rig]) -> None:
    r = rig(max_attempts=2)
    worker = r.live.start_worker()
    r.live.start_api()
    tid = start_training(r, {**LONG_GAN, "steps": 200_000})
    for attempt in (1, 2):
        wait_until(
            lambda a=attempt: (
                r.record(tid)["attempts"] == a
                and r.record(tid)["status"] == "running"  # type: ignore[misc]
                and r.http.get(f"/v1/trainings/{tid}").json()["progress"]["step"] > 0
            ),
            60,
            message=f"attempt {attempt} to run",
        )
        r.kill_worker(worker)
        if attempt == 1:
            worker = r.live.start_worker()
    done = wait_for_training(r.http, tid, timeout_s=DETECTION_BOUND_S)
    assert done["status"] == "failed" and done["model_id"] is None, done
    assert "worker lost 2 times" in done["error"] and "last seen" in done["error"], done["error"]
    assert "at step" in done["error"] and "pid" in done["error"], done["error"]
    assert r.store.load_checkpoint(tid) is None and r.store.list_models() == []


# --- a worker stopped ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_checkpoints_requeues_and_exits_cleanly_then_another_worker_resumes(rig: Callable[..., Rig]) -> None:
    r = rig(checkpoint_interval_s=3600.0)  # so the only checkpoint is the one SIGTERM makes
    worker = r.live.start_worker()
    r.live.start_api()
    tid = start_training(r, LONG_GAN)
    wait_until(lambda: r.http.get(f"/v1/trainings/{tid}").json()["progress"]["step"] > 200, 60, message="some progress")
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert time.monotonic() - asked < 10
    wait_until(lambda: not session_alive(worker.pid), 10, message="the horse to end")
    record = r.record(tid)
    assert record["status"] == "queued" and record["preemptions"] == 1 and record.get("lost_workers", 0) == 0, record
    stopped_at = r.checkpoint_step(tid)
    assert 200 < stopped_at < 5000
    r.live.start_worker()
    done = wait_for_training(r.http, tid, timeout_s=120)
    assert done["status"] == "succeeded", done
    record = r.record(tid)
    assert record["resumed_from_step"] == stopped_at and record["attempts"] == 2, record
    assert_finite_model(r, done["model_id"])


# --- the API stopped -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_api_sigterm_finishes_the_request_in_flight_then_exits_0(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.live.start_api()
    assert r.live.api is not None
    boundary = "genserve-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nslow\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blobs.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n"
    ).encode()
    body = head + blobs_csv() + f"\r\n--{boundary}--\r\n".encode()
    first_half_sent, go_on = threading.Event(), threading.Event()
    result: dict[str, httpx.Response] = {}

    def slow_body() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        first_half_sent.set()
        go_on.wait(30)
        yield body[len(body) // 2 :]

    def upload() -> None:
        result["response"] = httpx.post(
            f"{r.live.base_url}/v1/datasets",
            content=slow_body(),
            timeout=60,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )

    client = threading.Thread(target=upload)
    client.start()
    assert first_half_sent.wait(30)
    time.sleep(0.5)  # the server has the request and waits for the rest of its body
    r.live.api.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert r.live.api.poll() is None, "the API exited with a request in flight"
    go_on.set()
    client.join(30)
    response = result["response"]
    assert response.status_code == 201, response.text
    assert response.json()["size"] == 400 and response.json()["name"] == "slow"
    assert r.live.api.wait(30) == 0


# --- Redis down, then back empty ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_redis_down_then_back_empty(rig: Callable[..., Rig], private_redis: PrivateRedis) -> None:
    r = rig()
    r.live.start_worker()
    r.live.start_api()
    small = wait_for_training(r.http, start_training(r, {"dataset": "ring2d", "family": "gan", **TINY, "steps": 200}))
    assert small["status"] == "succeeded", small
    model_url = f"/v1/models/{small['model_id']}/samples"
    before = r.http.post(model_url, json={"n": 8, "seed": 4, "format": "npy"}).content
    running = start_training(r, {**LONG_GAN, "steps": 4000})
    queued = start_training(r, {"dataset": "ring2d", "family": "vae", **TINY, "steps": 300})
    wait_until(
        lambda: r.http.get(f"/v1/trainings/{running}").json()["progress"]["step"] > 0,
        60,
        message="the first training to run",
    )

    private_redis.stop()
    sampled = r.http.post(model_url, json={"n": 8, "seed": 4, "format": "npy"})
    assert sampled.status_code == 200 and sampled.content == before  # models on disk keep serving
    refused = r.http.post("/v1/trainings", json={"dataset": "ring2d", "family": "gan"})
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    ready = r.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("down"), ready.text
    assert ready.json()["checks"]["store"] == "ok"
    for tid, status in ((running, "running"), (queued, "queued")):  # answered from the store
        got = r.http.get(f"/v1/trainings/{tid}")
        assert got.status_code == 200 and got.json()["status"] == status, got.text
    # The running training ends while Redis is down: its outcome goes to the store; RQ's bookkeeping fails, and
    # the worker (whose work loop RQ ends on such errors) must outlive that.
    wait_until(lambda: r.record(running)["status"] == "succeeded", 60, message="the running training to end")
    time.sleep(2)
    assert all(p.poll() is None for p in r.live.workers) and r.live.api is not None and r.live.api.poll() is None

    private_redis.restart_empty()  # no persistence: the queue and every job are gone
    for tid in (running, queued):
        done = wait_for_training(r.http, tid, timeout_s=120)
        assert done["status"] == "succeeded", done
        assert_finite_model(r, done["model_id"])
    assert r.record(queued)["enqueues"] == 2  # the watchdog put it back on the (new, empty) queue
    assert r.http.get("/readyz").status_code == 200
    assert all(p.poll() is None for p in r.live.workers)


# --- a diverging training --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_diverging_training_fails_with_the_reason_and_stores_no_model(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.live.start_worker()
    r.live.start_api()
    rng = np.random.default_rng(0)
    x = (rng.choice([-1.0, 1.0], size=(200, 2)) * 3e38 * rng.uniform(0.9, 1.0, size=(200, 2))).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x)  # finite float32 values, so the upload is valid; their scale overflows the training
    up = r.http.post(
        "/v1/datasets", files={"file": ("huge.npz", buf.getvalue(), "application/octet-stream")}, data={"name": "huge"}
    )
    assert up.status_code == 201, up.text
    tid = start_training(r, {"dataset": up.json()["id"], "family": "gan", **TINY, "steps": 300})
    done = wait_for_training(r.http, tid, timeout_s=60)
    assert done["status"] == "failed" and done["model_id"] is None, done
    assert "diverged" in done["error"] and "non-finite" in done["error"], done["error"]
    assert r.store.list_models() == [] and r.store.load_checkpoint(tid) is None
    final = [d for e, d in sse_events(r.http, f"/v1/trainings/{tid}/events") if e == "status"][-1]
    assert final["status"] == "failed" and "diverged" in final["error"]
    assert json.dumps(done, allow_nan=False)  # no NaN leaks into the record


# --- a work horse whose worker is killed ---------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.slow
def test_a_work_horse_stops_within_seconds_when_only_its_worker_is_killed(rig: Callable[..., Rig]) -> None:
    """SIGKILL to the worker's process alone (an OOM kill): its horse must not train on as an orphan; it
    checkpoints, hands the training back to the queue, and exits within seconds."""
    r = rig()
    worker = r.live.start_worker()
    r.live.start_api()
    tid = start_training(r, {**LONG_GAN, "steps": 30_000})  # far longer than the bound below
    wait_until(lambda: r.checkpoint_step(tid) > 0, 60, message="a first checkpoint")
    horse = int(r.record(tid)["worker"]["pid"])
    assert horse != worker.pid and pid_alive(horse)
    os.kill(worker.pid, signal.SIGKILL)  # the worker only: the horse is in a process group of its own
    worker.wait(10)
    killed_at = time.monotonic()
    wait_until(lambda: not pid_alive(horse), 10, interval_s=0.2, message="the orphaned work horse to stop")
    assert time.monotonic() - killed_at < 10
    record = r.record(tid)
    assert record["status"] == "queued" and record["preemptions"] == 1, record  # handed back, checkpointed
    assert r.checkpoint_step(tid) > 0
    r.http.post(f"/v1/trainings/{tid}/cancel")  # no need to train it to the end here


# --- a hung Redis ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_hung_redis_costs_one_short_wait_not_one_per_training(
    rig: Callable[..., Rig], private_redis: PrivateRedis
) -> None:
    r = rig()
    r.live.start_api()  # no worker: the trainings stay queued
    ids = [start_training(r, {**LONG_GAN, "seed": s}) for s in range(6)]
    server_pid = int(Redis.from_url(private_redis.url).info("server")["process_id"])
    os.kill(server_pid, signal.SIGSTOP)  # hung, not dead: connections open, no answers
    try:
        started = time.monotonic()
        listed = r.http.get("/v1/trainings")
        first_s = time.monotonic() - started
        assert listed.status_code == 200 and {t["id"] for t in listed.json()["items"]} == set(ids)
        assert all(t["status"] == "queued" for t in listed.json()["items"])  # what the store knows
        started = time.monotonic()
        assert r.http.get(f"/v1/trainings/{ids[0]}").status_code == 200
        again_s = time.monotonic() - started
    finally:
        os.kill(server_pid, signal.SIGCONT)
    assert first_s < 4.0, first_s  # one short read timeout, not one per training (6 x 5 s before)
    assert again_s < 1.0, again_s  # Redis is not asked again for a while
