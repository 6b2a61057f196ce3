"""`genserve dev`, the README's first command: API + worker + an embedded Redis, all stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from genserve import child_pythonpath, embedded_redis, free_port
from tests.conftest import ROOT, wait_until
from tests.helpers import wait_for_training
from worker.state.connection import answers as redis_answers

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_embedded_redis_is_a_real_server_that_stops(tmp_path: Path) -> None:
    with embedded_redis(tmp_path) as url:
        assert redis_answers(url)
        from redis import Redis

        r = Redis.from_url(url)
        r.set("k", "v")
        assert r.get("k") == b"v"
        assert r.config_get("appendonly")["appendonly"] == "yes"
    assert not redis_answers(url)


def test_dev_runs_api_worker_and_embedded_redis(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
    env.update(
        {
            "GENSERVE_STORE_DIR": str(tmp_path / "store"),
            "GENSERVE_DATA_DIR": str(tmp_path / "data"),
            "GENSERVE_DEVICE": "cpu",
            "PYTHONPATH": child_pythonpath(),
        }
    )
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "genserve", "dev", "--embedded-redis", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, message="genserve dev to be ready")
        with httpx.Client(base_url=base, timeout=30) as http:
            t = http.post(
                "/v1/trainings", json={"dataset": "ring2d", "family": "gan", "steps": 30, "batch_size": 32, "width": 16}
            )
            assert t.status_code == 202, t.text
            done = wait_for_training(http, t.json()["id"], timeout_s=120)
            assert done["status"] == "succeeded", (done, (tmp_path / "dev.log").read_text())
            r = http.post(f"/v1/models/{done['model_id']}/samples", json={"n": 4, "seed": 1})
            assert r.status_code == 200 and len(r.json()["samples"]) == 4
        kids = children(proc.pid)
        assert len(kids) >= 2  # the worker and the redis-server
    finally:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # a second one (a process-group signal, a second Ctrl-C) mid-stop
        proc.wait(60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "dev.log").read_text()
    assert "Traceback" not in (tmp_path / "dev.log").read_text()
    deadline = time.monotonic() + 20
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids)
    assert (tmp_path / "redis" / "redis.log").exists()  # the embedded Redis kept its files beside the store
