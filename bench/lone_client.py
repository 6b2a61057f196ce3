"""One client must not pay for batching (issue 25, part 4): p50 and p99 of single-sample PNG requests from one
connection, batching on (GENSERVE_MAX_BATCH_SIZE=64) against off (1), in interleaved rounds.

Both services run at once, each pinned to the same core (only the one being measured gets requests), so that the
rounds alternate within seconds: on, off, on, off, ... wrk (one connection, a fresh seed per request) runs on
another core. The model is bench/serve.py's (the MNIST GAN recipe, briefly trained), or `--store S --model M`.

    python -m bench.lone_client [--rounds 3] [--duration 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.machine import cpu_model
from bench.serve import Server, prepare_model, service_env, wrk

ROOT = Path(__file__).resolve().parents[1]
BODY = '{"n": 1, "seed": %d, "format": "png"}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--event-loop", default="asyncio", choices=("auto", "asyncio", "uvloop"), help="GENSERVE_EVENT_LOOP"
    )
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="genserve-lone-"))
    store = args.store or tmp / "store"
    model_id = args.model or prepare_model(store, args.mnist, args.train_steps)
    env = service_env(store, args.device, args.event_loop, GENSERVE_PRELOAD_MODELS=model_id)
    print(
        f"# bench/lone_client.py — {cpu_model()}; services on core {args.server_cores}, wrk (1 connection) on "
        f"{args.client_cores}; {args.duration} s per point, {args.rounds} interleaved rounds",
        flush=True,
    )
    servers = {}
    base = 21000 + os.getpid() % 1000
    try:
        for i, batch in enumerate((64, 1)):
            port = base + i
            cmd = ["taskset", "-c", args.server_cores, sys.executable, "-m", "genserve", "serve", "--port", str(port)]
            servers[batch] = Server(cmd, {**env, "GENSERVE_MAX_BATCH_SIZE": str(batch)}, port, tmp / f"s{batch}.log")
        urls = {b: f"http://127.0.0.1:{s.port}/v1/models/{model_id}/samples" for b, s in servers.items()}
        for b in servers:
            wrk(urls[b], BODY, True, 1, 2, args.client_cores)  # warm
        print("\n| round | on p50 / p99 ms | off p50 / p99 ms | p50 on/off | p99 on/off |\n|---|---|---|---|---|")
        ratios: list[tuple[float, float]] = []
        for r in range(args.rounds):
            on = wrk(urls[64], BODY, True, 1, args.duration, args.client_cores)
            off = wrk(urls[1], BODY, True, 1, args.duration, args.client_cores)
            ratios.append((on["p50_ms"] / off["p50_ms"], on["p99_ms"] / off["p99_ms"]))
            print(
                f"| {r + 1} | {on['p50_ms']:.3f} / {on['p99_ms']:.3f} | {off['p50_ms']:.3f} / {off['p99_ms']:.3f} | "
                f"{ratios[-1][0] - 1:+.1%} | {ratios[-1][1] - 1:+.1%} |",
                flush=True,
            )
        p50 = statistics.median(x for x, _ in ratios)
        p99 = statistics.median(y for _, y in ratios)
        print(f"\nmedian on/off: p50 {p50 - 1:+.1%} (target <= +5%), p99 {p99 - 1:+.1%} (target <= +10%)")
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
