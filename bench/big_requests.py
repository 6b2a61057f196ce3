"""Big requests beside small ones (issue 25, part 2): one client asks for n = 10,000 samples in a loop while 63
clients ask for one sample each.

The model is an MNIST-sized conv GAN (the product's MNIST recipe, briefly trained, as bench/serve.py makes it).
The API is pinned to one core; wrk (63 connections, single-sample PNG, a fresh seed each) and the big client (its
own process, n = 10,000 in `--format`, streamed and read to the end) share the other. Each round measures:
  small alone:  wrk alone: p50 / p99;
  big alone:    the big client alone: samples/s;
  together:     both at once: the small clients' p50 / p99 against theirs alone, the big client's samples/s;
and before the rounds, the raw in-process rate for that format on the API's core: the model's forward pass at its
best batch size (64, 256 or 1024) plus the format's encoding (npy: the float32 bytes), one thread.
Targets: together, small p99 <= 2x alone, and the big client >= 80% of the raw rate.

    python -m bench.big_requests [--mnist ../shared/data/mnist] [--rounds 3] [--duration 10] [--format npy]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import cpu_model
from bench.serve import Server, load_stored, prepare_model, service_env, wrk
from genserve import child_pythonpath

ROOT = Path(__file__).resolve().parents[1]
BIG_N = 10_000
SMALL_BODY = '{"n": 1, "seed": %d, "format": "png"}'
RAW_BATCHES = (64, 256, 1024)


def raw_rate(store: Path, model_id: str, fmt: str, device: str, seconds: float = 3.0) -> dict[int, float]:
    """Samples/s of forward + encoding in this process, one thread, by batch size."""
    import torch

    from app.serving.encoding import FRAGMENT, encode

    manifest, model = load_stored(store, model_id, device)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    rates = {}
    for bs in RAW_BATCHES:
        with torch.inference_mode():
            model.generate(torch.randn(bs, manifest.latent_dim, generator=gen).to(dev), None)  # warm
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            with torch.inference_mode():
                z = torch.randn(bs, manifest.latent_dim, generator=gen).to(dev)
                out = model.generate(z, None).float().cpu().numpy()
            encode(out, FRAGMENT[fmt], manifest.kind, None)
            done += bs
        rates[bs] = done / (time.perf_counter() - start)
    return rates


def big_client(url: str, fmt: str, seconds: float, out: Path) -> None:
    """Ask for BIG_N samples again and again for `seconds`, reading every body to its end; write samples/s."""
    import httpx

    done, seed, start = 0, 0, time.perf_counter()
    first_byte: list[float] = []
    with httpx.Client(timeout=120) as client:
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            with client.stream("POST", url, json={"n": BIG_N, "seed": seed, "format": fmt}) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.read()[:300]!r}")
                for i, _ in enumerate(r.iter_raw(1 << 20)):
                    if i == 0:
                        first_byte.append(time.perf_counter() - t0)
            done += BIG_N
            seed += 1
    elapsed = time.perf_counter() - start
    out.write_text(json.dumps({"samples_per_s": done / elapsed, "requests": done // BIG_N, "first_byte_s": first_byte}))


def run_big(url: str, fmt: str, seconds: float, cores: str, tmp: Path) -> subprocess.Popen[bytes]:
    cmd = ["taskset", "-c", cores, sys.executable, "-m", "bench.big_requests", "--client", url]
    cmd += ["--format", fmt, "--duration", str(seconds), "--client-out", str(tmp / "big.json")]
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def big_result(proc: subprocess.Popen[bytes], tmp: Path) -> dict[str, Any]:
    if proc.wait() != 0:
        raise RuntimeError("the big client failed")
    result: dict[str, Any] = json.loads((tmp / "big.json").read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--format", default="npy", choices=("npy", "zip", "png", "json"))
    parser.add_argument("--small-clients", type=int, default=63)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--event-loop", default="asyncio", choices=("auto", "asyncio", "uvloop"), help="GENSERVE_EVENT_LOOP"
    )
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--client-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        big_client(args.client, args.format, args.duration, args.client_out)
        return

    tmp = Path(tempfile.mkdtemp(prefix="genserve-big-"))
    store = args.store or tmp / "store"
    model_id = args.model or prepare_model(store, args.mnist, args.train_steps)
    print(
        f"# bench/big_requests.py — {cpu_model()}; API on core {args.server_cores}, wrk and the big client on "
        f"{args.client_cores}; {args.small_clients} single-sample png clients, one client of n = {BIG_N} "
        f"{args.format}; {args.duration} s per run, {args.rounds} rounds",
        flush=True,
    )
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in args.server_cores.split(",")})
    raw = raw_rate(store, model_id, args.format, args.device)
    os.sched_setaffinity(0, own)
    best = max(raw.values())
    print("\n## Raw in-process rate (forward + encoding, one thread, the API's core)")
    print("| batch | samples/s |\n|---|---|")
    for bs, rate in raw.items():
        print(f"| {bs} | {rate:.0f} |")

    env = service_env(store, args.device, args.event_loop, GENSERVE_PRELOAD_MODELS=model_id)
    port = 20000 + os.getpid() % 1000
    cmd = ["taskset", "-c", args.server_cores, sys.executable, "-m", "genserve", "serve", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1/models/{model_id}/samples"
    server = Server(cmd, env, port, tmp / "service.log")
    rounds = []
    print(
        "\n## Rounds\n| round | small alone p50 / p99 ms | together p50 / p99 ms | p99 ratio | big alone samples/s | "
        "big together samples/s | big together / raw | small errors |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    try:
        wrk(url, SMALL_BODY, True, args.small_clients, 2, args.client_cores)  # warm
        for i in range(args.rounds):
            alone = wrk(url, SMALL_BODY, True, args.small_clients, args.duration, args.client_cores)
            big_alone = big_result(run_big(url, args.format, args.duration, args.client_cores, tmp), tmp)
            proc = run_big(url, args.format, args.duration + 2, args.client_cores, tmp)
            time.sleep(1)  # the big client in its loop before the small ones start
            together = wrk(url, SMALL_BODY, True, args.small_clients, args.duration, args.client_cores)
            big_together = big_result(proc, tmp)
            ratio = together["p99_ms"] / alone["p99_ms"]
            share = big_together["samples_per_s"] / best
            rounds.append({"alone": alone, "together": together, "big_alone": big_alone, "big_together": big_together})
            print(
                f"| {i + 1} | {alone['p50_ms']:.2f} / {alone['p99_ms']:.2f} | {together['p50_ms']:.2f} / "
                f"{together['p99_ms']:.2f} | {ratio:.2f} | {big_alone['samples_per_s']:.0f} | "
                f"{big_together['samples_per_s']:.0f} | {share:.2f} | {alone['errors'] + together['errors']} |",
                flush=True,
            )
    finally:
        server.stop()
    worst_p99 = max(r["together"]["p99_ms"] / r["alone"]["p99_ms"] for r in rounds)
    worst_big = min(r["big_together"]["samples_per_s"] for r in rounds) / best
    alone_big = min(r["big_alone"]["samples_per_s"] for r in rounds) / best
    print(
        f"\nTargets: together small p99 <= 2x alone (worst round {worst_p99:.2f}x); big client >= 80% of the raw "
        f"{best:.0f} samples/s (worst round together {worst_big:.2f}, alone {alone_big:.2f})"
    )


if __name__ == "__main__":
    main()
