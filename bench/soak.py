"""Soak: 64 concurrent samplers for a long while, with trainings running beside them; reports errors and memory.

Starts its own API and worker processes (`genserve serve`, `genserve worker`) on a temporary store and the Redis at
GENSERVE_REDIS_URL (default: the local one, database 14, flushed), trains two small models, then runs the load and
samples the resident memory of both processes every few seconds.

    python -m bench.soak [--minutes 10] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from genserve import child_pythonpath, free_port

ROOT = Path(__file__).resolve().parents[1]

TRAINING = {"dataset": "ring2d", "family": "gan", "steps": 400, "batch_size": 64, "width": 32}
IMAGE_TRAINING = {"dataset": "digits", "family": "vae", "conditional": True, "steps": 300}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (the worker's forked work horses)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    total = rss_mb(pid)
    for child in out.split():
        with contextlib.suppress(FileNotFoundError):  # a horse that just ended
            total += rss_mb(int(child))
    return total


async def wait_trained(http: httpx.AsyncClient, training_id: str) -> dict[str, Any]:
    while True:
        body = (await http.get(f"/v1/trainings/{training_id}")).json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        await asyncio.sleep(0.5)


async def soak(base: str, api_pid: int, worker_pid: int, minutes: float, clients: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        points = (await http.post("/v1/trainings", json=TRAINING)).json()
        images = (await http.post("/v1/trainings", json=IMAGE_TRAINING)).json()
        models = [(await wait_trained(http, t["id"]))["model_id"] for t in (points, images)]
        assert all(models), "the warm-up trainings failed"
        statuses: collections.Counter[str] = collections.Counter()
        latencies: list[float] = []
        trainings: collections.Counter[str] = collections.Counter()
        memory: list[tuple[float, float, float]] = []
        start = time.monotonic()
        end = start + minutes * 60

        async def sampler(k: int) -> None:
            rng = random.Random(k)
            while time.monotonic() < end:
                model = models[rng.randrange(2)]
                body: dict[str, Any] = {"n": rng.choice([1, 1, 1, 4, 16]), "seed": rng.randrange(2**31)}
                body["format"] = rng.choice(["json", "npy", "grid"] if model == models[0] else ["png", "npy", "grid"])
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"/v1/models/{model}/samples", json=body)
                    statuses[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)

        async def trainer() -> None:
            while time.monotonic() < end:
                t = (await http.post("/v1/trainings", json={**TRAINING, "seed": random.randrange(2**31)})).json()
                trainings[(await wait_trained(http, t["id"]))["status"]] += 1

        async def watch_memory() -> None:
            while time.monotonic() < end:
                memory.append((time.monotonic() - start, rss_mb(api_pid), tree_rss_mb(worker_pid)))
                await asyncio.sleep(5)

        await asyncio.gather(watch_memory(), trainer(), *(sampler(k) for k in range(clients)))
        memory.append((time.monotonic() - start, rss_mb(api_pid), tree_rss_mb(worker_pid)))
        elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "elapsed_s": elapsed,
        "statuses": dict(statuses),
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "trainings": dict(trainings),
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="genserve-soak-"))
    redis_url = os.environ.get("GENSERVE_REDIS_URL", "redis://127.0.0.1:6379/14")
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")},
        "GENSERVE_REDIS_URL": redis_url,
        "GENSERVE_STORE_DIR": str(tmp / "store"),
        "GENSERVE_DATA_DIR": str(tmp / "data"),
        "GENSERVE_LOG_LEVEL": "warning",
        "PYTHONPATH": child_pythonpath(),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "genserve", *cmd],
            env=env,
            cwd=ROOT,
            stdout=open(tmp / f"{cmd[0]}.log", "wb"),  # noqa: SIM115 (lives with the process)
            stderr=subprocess.STDOUT,
        )
        for cmd in (["serve", "--port", str(port)], ["worker"])
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        result = asyncio.run(soak(base, procs[0].pid, procs[1].pid, args.minutes, args.clients))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        Redis.from_url(redis_url).flushdb()
    mem = result["memory"]
    warm = next((m for m in mem if m[0] >= 60), mem[0])  # after a minute of load: caches and pools are warm
    print(
        f"# bench/soak.py: {args.clients} samplers for {result['elapsed_s'] / 60:.1f} min with trainings beside "
        f"them; {os.cpu_count()} cores"
    )
    print(
        f"requests: {result['requests']} ({result['rps']:.0f}/s), p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms"
    )
    print(f"responses by status: {result['statuses']}")
    print(f"trainings beside the load: {result['trainings']}")
    print("| t (s) | API RSS (MB) | worker RSS (MB) |\n|---|---|---|")
    for t, api, worker in mem[:: max(1, len(mem) // 12)] + [mem[-1]]:
        print(f"| {t:.0f} | {api:.0f} | {worker:.0f} |")
    print(
        f"API RSS growth after warm-up (t={warm[0]:.0f}s -> end): {mem[-1][1] - warm[1]:+.1f} MB; "
        f"worker: {mem[-1][2] - warm[2]:+.1f} MB"
    )
    if set(result["statuses"]) - {"200"}:  # keep the server logs of a run with failures
        print(f"failures: the API and worker logs are kept in {tmp}")
        shutil.rmtree(tmp / "store", ignore_errors=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
