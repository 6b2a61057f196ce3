"""Sampling throughput with the artifact store on S3 (moto's server on 127.0.0.1) against the local directory: the
same model, the same server settings, 64 connections of single-sample PNG requests with a fresh seed each, rounds
interleaved (local, S3, S3, local, ...), the server pinned to one core and wrk to the other. The S3 store must cost
nothing on the hot path: a loaded model is served from memory, and the store is asked again only every 10 s.

    python -m bench.store_backends [--rounds 3] [--duration 10] [--mnist ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.s3 import moto_bucket
from bench.serve import ROOT, Server, measure, prepare_model
from genserve import child_pythonpath, embedded_redis, free_port


def copy_to_s3(local_dir: Path, model_id: str, store_url: str, cache_dir: Path) -> None:
    from models.store import ArtifactStore, open_store

    local = ArtifactStore(local_dir)
    open_store(store_url, local_dir.parent / "unused", cache_dir).put_model(
        local.get_model(model_id), local.load_model_tensors(model_id)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="genserve-bench-store-"))
    model_id = prepare_model(tmp / "local", args.mnist if args.mnist.exists() else None, steps=100)
    store_url = "s3://bench/genserve"
    rows: list[tuple[int, str, dict[str, float]]] = []
    with moto_bucket("bench"), embedded_redis(tmp / "redis") as redis_url:
        copy_to_s3(tmp / "local", model_id, store_url, tmp / "copy-cache")
        base = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
        base.update(PYTHONPATH=child_pythonpath(), OMP_NUM_THREADS="1", GENSERVE_REDIS_URL=redis_url)
        backends = {
            "local": {"GENSERVE_STORE_DIR": str(tmp / "local")},
            "s3": {"GENSERVE_STORE_URL": store_url, "GENSERVE_CACHE_DIR": str(tmp / "cache")},
        }
        for r in range(args.rounds):
            for name in ("local", "s3") if r % 2 == 0 else ("s3", "local"):
                port = free_port()
                cmd = [
                    "taskset",
                    "-c",
                    args.server_cores,
                    sys.executable,
                    "-m",
                    "genserve",
                    "serve",
                    "--port",
                    str(port),
                ]
                server = Server(cmd, {**base, **backends[name]}, port, tmp / f"{name}-{r}.log")
                try:
                    url = f"http://127.0.0.1:{port}/v1/models/{model_id}/samples"
                    result = measure(url, '{"n": 1}', True, args.concurrency, args)
                finally:
                    server.stop()
                rows.append((r, name, result))
                print(
                    f"round {r + 1} {name:5s} {result['rps']:9.0f} req/s  p50 {result['p50_ms']:.2f} ms"
                    f"  p99 {result['p99_ms']:.2f} ms  errors {result['errors']}",
                    flush=True,
                )

    ratios = []
    for r in range(args.rounds):
        by = {name: res for rr, name, res in rows if rr == r}
        ratios.append(by["s3"]["rps"] / by["local"]["rps"])
    print()
    print(f"| round | local req/s | S3 req/s | S3 / local |  ({args.concurrency} connections, {args.duration} s each)")
    print("|---|---|---|---|")
    for r in range(args.rounds):
        by = {name: res for rr, name, res in rows if rr == r}
        print(f"| {r + 1} | {by['local']['rps']:.0f} | {by['s3']['rps']:.0f} | {ratios[r]:.3f} |")
    print(
        f"median S3 / local: {statistics.median(ratios):.3f} (target >= 0.97); "
        f"errors: {sum(res['errors'] for _, _, res in rows)}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


if __name__ == "__main__":
    main()
