"""The keep-alive race: a client reuses an idle connection just as the server closes it.

httpx (like requests) keeps an idle connection for 5 s, and uvicorn's own default closes one after 5 s idle. A
request sent on a connection in the instant before the server's close reaches the client fails with a ReadError or
RemoteProtocolError, though the server did nothing wrong. This script starts `genserve serve` once per keep-alive
setting and runs clients that each wait just under 5 s between requests on their one pooled connection, then prints
the failures per setting.

    python -m bench.keepalive [--clients 32] [--rounds 8] [--settings 5,75]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.machine import cpu_model
from genserve import child_pythonpath, free_port

ROOT = Path(__file__).resolve().parents[1]

IDLE_S = (4.95, 5.0)  # client waits between requests: just under httpx's 5 s keep-alive expiry
CLIENT_KEEPALIVE_S = 5.0  # httpx's default keepalive_expiry, stated so the script does not depend on it


async def client(base: str, rounds: int, rng: random.Random, outcomes: collections.Counter[str]) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=CLIENT_KEEPALIVE_S)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as http:
        for i in range(rounds + 1):
            try:
                r = await http.get("/healthz")
                if i:  # the first request only opens the connection
                    outcomes[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
            await asyncio.sleep(rng.uniform(*IDLE_S))


async def run(base: str, clients: int, rounds: int) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    rng = random.Random(0)
    await asyncio.gather(*(client(base, rounds, random.Random(rng.random()), outcomes) for _ in range(clients)))
    return outcomes


def measure(keep_alive_s: int, clients: int, rounds: int, tmp: Path) -> tuple[collections.Counter[str], float]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")},
        "GENSERVE_STORE_DIR": str(tmp / "store"),
        "GENSERVE_DATA_DIR": str(tmp / "data"),
        "GENSERVE_REDIS_URL": os.environ.get("GENSERVE_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "GENSERVE_KEEP_ALIVE_S": str(keep_alive_s),
        "GENSERVE_LOG_LEVEL": "warning",
        "PYTHONPATH": child_pythonpath(),
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "genserve", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                raise RuntimeError("genserve serve did not start")
            time.sleep(0.2)
        start = time.perf_counter()
        outcomes = asyncio.run(run(base, clients, rounds))
        return outcomes, time.perf_counter() - start
    finally:
        api.terminate()
        api.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8, help="reuses of each client's idle connection")
    parser.add_argument("--settings", default="5,75", help="GENSERVE_KEEP_ALIVE_S values to compare")
    args = parser.parse_args()
    print(
        f"command: `python -m bench.keepalive --clients {args.clients} --rounds {args.rounds} "
        f"--settings {args.settings}`  \nmachine: {cpu_model()}; client idle {IDLE_S[0]}-{IDLE_S[1]} s "
        f"between requests, httpx keepalive_expiry {CLIENT_KEEPALIVE_S} s\n"
    )
    print("| GENSERVE_KEEP_ALIVE_S | requests on a reused connection | 200 | failed | failures by type | wall |")
    print("|---|---|---|---|---|---|")
    for setting in (int(s) for s in args.settings.split(",")):
        with tempfile.TemporaryDirectory(prefix="genserve-keepalive-") as tmp:
            outcomes, wall = measure(setting, args.clients, args.rounds, Path(tmp))
        ok = outcomes.get("200", 0)
        total = sum(outcomes.values())
        failures = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "200") or "none"
        print(f"| {setting} s | {total} | {ok} | {total - ok} | {failures} | {wall:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
