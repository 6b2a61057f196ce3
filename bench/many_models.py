"""Many models (issue 25, part 1): a thousand small stored models, requests spread over them by a Zipf law.

Stores `--models` freshly initialized models of four kinds, in turn: the product's recipes for ring2d (an MLP GAN and
an MLP VAE on 2-D points) and for digits (a conditional conv GAN and a conv VAE on 8x8 images). Serving costs do not
depend on training, so the weights are initial ones, each model's own. The API is pinned to one core, and wrk to
the other, at `--clients` connections, one sample per request in the model's default format, a fresh seed each:

  single <kind>: every request for that kind's first model (batching at its best);
  zipf:          request i goes to model k with probability proportional to 1 / k^s (s = 1.1), models ranked in
                 storage order, so every kind gets about a quarter of the traffic: a first run while the models it
                 touches load (first touches), then the measured run; when the budget holds every model, each
                 is first requested once, so that the measured run is the steady state (no loads).

The Zipf run is compared with what the single-model runs predict for its mix of kinds: 1 / sum(share_k / rate_k).
`GENSERVE_MODEL_CACHE_MB` is set below the models' total (`--cache-share`), so the LRU evicts during the run; the
largest weight bytes in memory (sampled from /metrics every 0.5 s) are reported against it, and cold loads from the
server's histogram (load = store reads, net build, padding rule; by whether the rule was known or calibrated).
Last, on an idle server, the first request of `--cold` models never asked before, one at a time (a client's view of
a cold model), and the same for the first model of each kind in a store that has no padding rules yet.

With `--py-spy DIR`, py-spy (`pip install py-spy`) samples the API during each single-model run and the measured Zipf
run, and the server's CPU per request is split into model loads, the forward passes with their encoding
(`LoadedModel.run_batch`), socket writes, and the rest (HTTP parsing, routing, validation, the event loop): where a
request's CPU goes when passes serve one request each instead of many.

    python -m bench.many_models [--models 1000] [--clients 64] [--duration 20] [--out FILE] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.machine import cpu_model
from bench.serve import Server, run_wrk, service_env, wrk

ROOT = Path(__file__).resolve().parents[1]
WRK_ZIPF = ROOT / "bench" / "wrk_zipf.lua"
KINDS = (  # (label, dataset whose recipe it uses, family, conditional)
    ("points gan", "ring2d", "gan", False),
    ("points vae", "ring2d", "vae", False),
    ("8x8 cond gan", "digits", "gan", True),
    ("8x8 vae", "digits", "vae", False),
)
BODY = '{"n": 1, "seed": %d}'


def store_models(store_dir: Path, count: int) -> tuple[list[str], list[int]]:
    """`count` models, kinds in turn; returns their ids and weight bytes."""
    import torch

    from models.data.builtin import load_builtin
    from models.nets import build_model, spec_for
    from models.recipes import resolve_config
    from models.store import ArtifactStore, new_id, utcnow
    from models.training import TrainResult
    from worker.jobs import store_model
    from worker.state.records import TrainingRecord

    store = ArtifactStore(store_dir)
    shapes = {}
    for _, dataset, _, _ in KINDS:
        if dataset not in shapes:
            data = load_builtin(dataset, store_dir.parent / "data").train
            shapes[dataset] = (data.kind, data.sample_shape, data.num_classes, data.classes)
    ids, sizes = [], []
    for i in range(count):
        _, dataset, family, conditional = KINDS[i % len(KINDS)]
        kind, shape, num_classes, classes = shapes[dataset]
        config = resolve_config(
            {"family": family, "conditional": conditional, "seed": i},
            dataset_id=dataset,
            kind=kind,
            sample_shape=shape,
            num_classes=num_classes,
        )
        spec = spec_for(config, kind, shape, num_classes)
        torch.manual_seed(i)
        model = build_model(spec).eval()
        sizes.append(sum(t.numel() * t.element_size() for t in model.state_dict().values()))
        record = TrainingRecord(
            id=new_id("tr"),
            status="running",
            request={"dataset": dataset},
            config=config.to_dict(),
            classes=list(classes or []) if conditional else None,
            created_at=utcnow(),
        )
        ids.append(store_model(store, record, TrainResult(model, spec, {}, 0, False)))
    return ids, sizes


def zipf_shares(count: int, s: float) -> list[float]:
    weights = [1.0 / (k + 1) ** s for k in range(count)]
    total = sum(weights)
    return [w / total for w in weights]


def wrk_zipf(port: int, paths: Path, s: float, clients: int, duration: int, cores: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    return run_wrk(
        WRK_ZIPF, url, clients, duration, cores, BENCH_PATHS=str(paths), BENCH_ZIPF_S=str(s), BENCH_BODY=BODY
    )


def scrape(port: int) -> dict[str, float]:
    """The /metrics samples this benchmark reads, by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    wanted = ("genserve_model_load_seconds", "genserve_model_evictions_total", "genserve_models_loaded")
    values = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def histogram_quantile(values: dict[str, float], rule: str, q: float) -> tuple[int, str]:
    """(count, the bucket bound under which the q-quantile of cold loads with this rule label lies)."""
    prefix = "genserve_model_load_seconds_bucket{"
    buckets = sorted(
        (float("inf") if le == "+Inf" else float(le), v)
        for name, v in values.items()
        if name.startswith(prefix) and f'rule="{rule}"' in name
        for le in [name.split('le="', 1)[1].split('"', 1)[0]]
    )
    total = int(buckets[-1][1]) if buckets else 0
    if not total:
        return 0, "-"
    bound = next(le for le, v in buckets if v >= q * total)
    return total, f"<= {bound * 1000:g} ms" if bound != float("inf") else "> 30 s"


class MemoryWatch:
    """The largest genserve_models_loaded_bytes seen while it runs."""

    def __init__(self, port: int) -> None:
        self.port, self.peak, self.stop = port, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            with contextlib.suppress(httpx.HTTPError):
                self.peak = max(self.peak, scrape(self.port).get("genserve_models_loaded_bytes", 0.0))

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak


PROFILE_HZ = 200
PROFILE_PARTS = (  # (label, frames that mark it), first match wins
    ("model loads", ("ModelCache._load", "safetensors", "torch/nn/init.py")),
    ("forward passes and encoding", ("LoadedModel.run_batch", "torch/", "models/", "app/serving/encoding.py")),
    ("socket writes", ("_SelectorSocketTransport.write",)),
)
REST = "the rest: HTTP, routing, the event loop"


def py_spy() -> str:
    """The py-spy executable: on PATH or beside this interpreter (a virtualenv's bin)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("--py-spy needs py-spy: pip install py-spy")
    return found


@contextlib.contextmanager
def profiled(pid: int, out: Path | None, seconds: int) -> Iterator[None]:
    """Sample process `pid` with py-spy into `out` (raw collapsed stacks) while the block runs; nothing if no out."""
    if out is None:
        yield
        return
    # --nonblocking: py-spy reads the stacks without pausing the process. Pausing it (the default) gave whole stacks
    # but cost a fifth of the throughput and counted the paused time as the process's; without, some stacks come
    # cut short, which PROFILE_PARTS's markers (any torch or models frame is a forward pass) still place.
    cmd = [py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", str(PROFILE_HZ), "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)  # py-spy attaches
        yield
    finally:
        spy.wait(timeout=seconds + 30)


def cpu_per_request(raw: Path, requests: float) -> dict[str, float]:
    """Microseconds of the server's CPU per request by part, from py-spy's raw stacks (idle threads excluded)."""
    parts = dict.fromkeys([label for label, _ in PROFILE_PARTS] + [REST], 0.0)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        label = next((lb for lb, marks in PROFILE_PARTS if any(m in stack for m in marks)), REST)
        parts[label] += int(count)
    return {label: n / PROFILE_HZ / requests * 1e6 for label, n in parts.items()}


def print_profiles(profiles: dict[str, dict[str, float]]) -> None:
    labels = list(next(iter(profiles.values())))
    print("\n## The server's CPU per request (py-spy, microseconds)\n")
    print("| run | " + " | ".join(labels) + " | total |")
    print("|---" * (len(labels) + 2) + "|")
    for run, parts in profiles.items():
        print(f"| {run} | " + " | ".join(f"{parts[lb]:.0f}" for lb in labels) + f" | {sum(parts.values()):.0f} |")


def first_requests(port: int, ids: list[str]) -> list[float]:
    """Milliseconds of each model's first request, one at a time."""
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for i, model in enumerate(ids):
            start = time.perf_counter()
            r = client.post(f"/v1/models/{model}/samples", json=json.loads(BODY % i))
            times.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"first request of {model}: {r.status_code} {r.text[:200]}")
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured run")
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--cache-share", type=float, default=0.25, help="GENSERVE_MODEL_CACHE_MB / the models' total")
    parser.add_argument("--cold", type=int, default=50, help="models kept out of the Zipf run, for first requests")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--event-loop", default="asyncio", choices=("auto", "asyncio", "uvloop"), help="GENSERVE_EVENT_LOOP"
    )
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the server into this directory (py-spy)")
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="GENSERVE_MAX_BATCH_SIZE (1: every pass serves one request)"
    )
    args = parser.parse_args()
    if args.py_spy:
        py_spy()
        args.py_spy.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="genserve-many-"))
    store = tmp / "store"
    started = time.perf_counter()
    ids, sizes = store_models(store, args.models + args.cold)
    served, cold_ids = ids[: args.models], ids[args.models :]
    total_mb = sum(sizes[: args.models]) / 2**20
    cache_mb = max(1, math.ceil(total_mb * args.cache_share))
    print(
        f"# bench/many_models.py — {cpu_model()}, {platform.machine()}; API on cores {args.server_cores}, wrk on "
        f"{args.client_cores}; {args.models} models ({total_mb:.0f} MB of weights) stored in "
        f"{time.perf_counter() - started:.0f} s; GENSERVE_MODEL_CACHE_MB={cache_mb}; {args.clients} clients, "
        f"{args.duration} s per run",
        flush=True,
    )
    paths = tmp / "paths.txt"
    paths.write_text("".join(f"/v1/models/{m}/samples\n" for m in served))
    batching = {"GENSERVE_MAX_BATCH_SIZE": str(args.max_batch_size)} if args.max_batch_size else {}
    env = service_env(
        store,
        args.device,
        args.event_loop,
        GENSERVE_MODEL_CACHE_MB=str(cache_mb),
        GENSERVE_MAX_QUEUE_SAMPLES="100000",
        **batching,
    )
    port = 19000 + os.getpid() % 1000
    cmd = ["taskset", "-c", args.server_cores, sys.executable, "-m", "genserve", "serve", "--port", str(port)]
    results: dict[str, Any] = {"models": args.models, "cache_mb": cache_mb, "total_mb": total_mb}

    # A store without padding rules: the first model of each kind calibrates (a client's first request, idle).
    server = Server(cmd, env, port, tmp / "service.log")
    try:
        first = first_requests(port, served[: len(KINDS)])
        results["first_calibrating_ms"] = dict(zip([k[0] for k in KINDS], first, strict=True))
        print("\n## First request of a cold model, idle server, rule calibrated (a store that has none)")
        print("| kind | ms |\n|---|---|")
        for (label, *_), ms in zip(KINDS, first, strict=True):
            print(f"| {label} | {ms:.1f} |")

        print(f"\n## {args.clients} clients, single-sample requests\n| run | requests/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|", flush=True)
        single = {}
        profiles: dict[str, dict[str, float]] = {}
        for k, (label, *_) in enumerate(KINDS):
            url = f"http://127.0.0.1:{port}/v1/models/{served[k]}/samples"
            wrk(url, BODY, True, args.clients, 2, args.client_cores)
            raw = args.py_spy / f"single-{k}.raw" if args.py_spy else None
            with profiled(server.proc.pid, raw, args.duration):
                r = wrk(url, BODY, True, args.clients, args.duration, args.client_cores)
            if raw is not None:
                profiles[f"single {label}"] = cpu_per_request(raw, r["rps"] * args.duration)
            single[label] = r
            print(f"| single {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
        shares = zipf_shares(args.models, args.zipf_s)
        kind_share = [sum(shares[k :: len(KINDS)]) for k in range(len(KINDS))]
        expected = 1.0 / sum(s / single[label]["rps"] for s, (label, *_) in zip(kind_share, KINDS, strict=True))
        first_touch = wrk_zipf(port, paths, args.zipf_s, args.clients, args.duration, args.client_cores)
        print(
            f"| zipf s={args.zipf_s} over {args.models}, first touches (models loading) | {first_touch['rps']:.0f} | "
            f"{first_touch['p50_ms']:.2f} | {first_touch['p99_ms']:.2f} | {first_touch['errors']} |"
        )
        # With a budget that holds every model, the steady state has them all loaded: a Zipf run of seconds still
        # meets hundreds of its tail for the first time, whose loads (and the collector's scans of their new
        # objects) would be counted as serving. Cold loads are measured on their own below.
        warmed = cache_mb >= total_mb
        if warmed:
            first_requests(port, served)
        before = scrape(port)
        watch = MemoryWatch(port)
        raw = args.py_spy / "zipf.raw" if args.py_spy else None
        with profiled(server.proc.pid, raw, args.duration):
            z = wrk_zipf(port, paths, args.zipf_s, args.clients, args.duration, args.client_cores)
        peak = watch.done()
        if raw is not None:
            profiles[f"zipf over {args.models}"] = cpu_per_request(raw, z["rps"] * args.duration)
        after = scrape(port)
        print(
            f"| zipf s={args.zipf_s} over {args.models}, measured{' (every model loaded)' if warmed else ''} | "
            f"{z['rps']:.0f} | {z['p50_ms']:.2f} | "
            f"{z['p99_ms']:.2f} | {z['errors']} |"
        )
        ratio = z["rps"] / expected
        loads = {
            rule: (
                after.get(f'genserve_model_load_seconds_count{{rule="{rule}"}}', 0)
                - before.get(f'genserve_model_load_seconds_count{{rule="{rule}"}}', 0)
            )
            for rule in ("known", "calibrated")
        }
        evictions = after.get("genserve_model_evictions_total", 0) - before.get("genserve_model_evictions_total", 0)
        print(
            f"\nSingle-model prediction for the Zipf mix (kind shares "
            f"{', '.join(f'{100 * s:.0f}%' for s in kind_share)}): {expected:.0f} requests/s; Zipf / prediction = "
            f"{ratio:.3f} (target >= 0.70). Errors {z['errors']}. Cold loads during the Zipf run: "
            f"{loads['known']:.0f} with a known rule, {loads['calibrated']:.0f} calibrated; evictions {evictions:.0f}; "
            f"largest weights in memory {peak / 2**20:.1f} MB of the {cache_mb} MB budget."
        )
        for rule in ("known", "calibrated"):
            n, p50 = histogram_quantile(after, rule, 0.5)
            _, p99 = histogram_quantile(after, rule, 0.99)
            print(f"Cold loads since start, rule {rule}: {n}, p50 {p50}, p99 {p99} (server histogram buckets)")
        if profiles:
            print_profiles(profiles)
        cold = first_requests(port, cold_ids)
        print(
            f"\nFirst request of {len(cold)} cold models (rule known), idle server, one at a time: p50 "
            f"{statistics.median(cold):.1f} ms, p99 {pct(cold, 0.99):.1f} ms, max {max(cold):.1f} ms (target: a cold "
            f"load of a small model <= 50 ms)"
        )
        results.update(
            profiles=profiles,
            single=single,
            first_touch=first_touch,
            warmed=warmed,
            zipf=z,
            expected_rps=expected,
            ratio=ratio,
            loads=loads,
            evictions=evictions,
            peak_bytes=peak,
            cold_first_ms=cold,
        )
    finally:
        server.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
