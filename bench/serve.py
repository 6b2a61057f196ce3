"""Sampling throughput and latency: genserve beside its own baselines, on the same machine, same client, same model.

The server is pinned to one core and the load generator (wrk, from Debian's packages) to another. For each
concurrency it prints requests/s, samples/s, p50/p99 latency and errors of:
  (a)  raw: the model's forward pass + PNG encoding in-process, one thread, at each batch size (the best is `a`);
  (b)  floor: a trivial endpoint returning a response of the same size — genserve's (/_bench/floor of
       bench/floor_app.py, behind all of genserve's middleware) and a plain FastAPI app's (b0);
  (c)  genserve with batching off (GENSERVE_MAX_BATCH_SIZE=1);
  (d)  genserve with batching on (GENSERVE_MAX_BATCH_SIZE=64);
  (e)  a hand-written unbatched FastAPI endpoint (forward + encode inline).
For one core, the physical limit of single-sample requests is L = 1 / (1/a + 1/b).
`--rounds N` then measures a, b and (d) again in N interleaved rounds (each round's ratio from measurements taken a
minute apart, for machines whose speed drifts), and in each round also runs the raw loop and the floor at once on
the server's core: how much of their isolated rates they keep when they share it (e) says what interleaving the
two kinds of work costs by itself, before any of genserve's own overhead.

    python -m bench.serve [--mnist ../shared/data/mnist] [--duration 10] [--concurrency 1,8,64] [--out FILE]
    python -m bench.serve --store S --model M --only raw --concurrency 64 --rounds 8   # a, b, (d) interleaved
    python -m bench.serve --device cuda --server-cores 0-7 --client-cores 8-15   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from genserve import child_pythonpath

ROOT = Path(__file__).resolve().parents[1]

WRK_SCRIPT = ROOT / "bench" / "wrk_post.lua"
FLOOR_PATH = "/_bench/floor"  # bench/floor_app.PATH (importing that module would load the whole product here)
RAW_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RAW_BATCH_SIZES_GPU = tuple(2**k for k in range(13))  # 1 ... 4096: a GPU pass costs about the same far further
RAW_SECONDS_PER_SIZE = 2.0
WARMUP_S = 2
FLOOR_BODY = '{"n": 1, "seed": 1}'  # the floor ignores it; it is read like a sampling request's


# --- model ----------------------------------------------------------------------------------------------------------
SERVING_NET_WIDTH = 32


def prepare_model(store_dir: Path, mnist: Path | None, steps: int) -> str:
    """An MNIST-sized conv GAN generator (the product's default MNIST recipe at base width 32), briefly trained so its
    samples (and therefore PNG sizes) look like digits, stored the way the worker stores models."""
    import torch

    from models.data.arrays import ArrayDataset, DatasetSplits
    from models.data.builtin import load_builtin
    from models.recipes import resolve_config
    from models.store import ArtifactStore, new_id, utcnow
    from models.training import train
    from worker.jobs import store_model
    from worker.state.records import TrainingRecord
    from worker.state.status import TrainingStatus

    if mnist is not None and mnist.exists():
        data_dir = store_dir.parent / "data"
        shutil.copytree(mnist, data_dir / "mnist", dirs_exist_ok=True)
        full = load_builtin("mnist", data_dir)
        # Without labels: the model is unconditional either way, and its end-of-training metrics then skip training
        # an MNIST classifier for the Fréchet distance (minutes on a CPU; nothing here reads those metrics).
        splits = DatasetSplits(ArrayDataset(full.train.x, None, "images"), ArrayDataset(full.test.x, None, "images"))
    else:
        import numpy as np

        x = (np.random.default_rng(0).random((512, 28, 28)) * 255).astype(np.uint8)
        splits = DatasetSplits(ArrayDataset(x, None, "images"), ArrayDataset(x[:64], None, "images"))
        print("MNIST not found: training on noise images (throughput is what is measured)", file=sys.stderr)
    config = resolve_config(
        # Base width 32, the MNIST recipe's until the nineteenth session (48 since): every serving figure in
        # BENCHMARKS.md and its history was measured on this net, so it stays, comparable across sessions.
        {"family": "gan", "steps": steps, "seed": 0, "width": SERVING_NET_WIDTH},
        dataset_id="mnist",
        kind="images",
        sample_shape=(28, 28),
        num_classes=0,
    )
    result = train(config, splits, device=torch.device("cpu"))
    record = TrainingRecord(
        id=new_id("tr"),
        status=TrainingStatus.running,
        request={"dataset": "mnist"},
        config=config.to_dict(),
        created_at=utcnow(),
    )
    return store_model(ArtifactStore(store_dir), record, result)


def raw_limit(
    store_dir: Path,
    model_id: str,
    device: str,
    sizes: tuple[int, ...] = RAW_BATCH_SIZES,
    also_forward_only: bool = True,
    seconds: float = RAW_SECONDS_PER_SIZE,
    ready: Path | None = None,
) -> dict[str, Any]:
    """(a): forward + PNG encoding in this process, one thread, at each batch size (`seconds` each). With `ready`,
    that file is created once the model is loaded and warm, just before the measured loops start."""
    import torch

    from app.serving.encoding import png_base64_list

    manifest, model = load_stored(store_dir, model_id, device)  # the same layout the service runs
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    # Steady state first, as the service reaches it by calibrating each model at load time: one pass at the largest
    # batch raises glibc's dynamic mmap and trim thresholds, after which freed activations stay in the heap instead
    # of going back to the OS and faulting in again on the next pass (without it, batch 64 ran 16% slower).
    with torch.inference_mode():
        model.generate(torch.randn(max(sizes), manifest.latent_dim, generator=gen).to(dev), None)
    if ready is not None:
        ready.touch()
    out: dict[str, Any] = {"samples_per_s": {}, "forward_only_per_s": {}}
    for bs in sizes:
        for with_encode in (True, False) if also_forward_only else (True,):
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                z = torch.randn(bs, manifest.latent_dim, generator=gen)
                with torch.inference_mode():
                    images = model.generate(z.to(dev), None).float().cpu().numpy()
                if with_encode:
                    png_base64_list(images)
                done += bs
            rate = done / (time.perf_counter() - start)
            out["samples_per_s" if with_encode else "forward_only_per_s"][bs] = rate
    z = torch.randn(1, manifest.latent_dim, generator=gen)
    with torch.inference_mode():
        one = png_base64_list(model.generate(z.to(dev), None).float().cpu().numpy())
    out["png_response_bytes"] = len(json.dumps({"images": one, "seed": 1234567890}))
    return out


def gpu_name(device: str) -> str:
    if not device.startswith("cuda"):
        return ""
    import torch

    return f" ({torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__})"


# --- servers and load ------------------------------------------------------------------------------------------------
class Server:
    def __init__(self, cmd: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        import httpx

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.post(f"http://127.0.0.1:{port}/_ping", timeout=1).status_code in (200, 404, 405):
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def service_env(store: Path, device: str, event_loop: str, **extra: str) -> dict[str, str]:
    """The environment a benchmark starts genserve with: none of the caller's GENSERVE_ settings but its Redis, the
    store and device given, one thread, warnings only, and `extra` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": child_pythonpath(),
            "GENSERVE_STORE_DIR": str(store),
            "GENSERVE_DEVICE": device,
            "GENSERVE_LOG_LEVEL": "warning",
            "GENSERVE_EVENT_LOOP": event_loop,
            **extra,
        }
    )
    if os.environ.get("GENSERVE_REDIS_URL"):
        env["GENSERVE_REDIS_URL"] = os.environ["GENSERVE_REDIS_URL"]
    return env


def wrk(url: str, body: str, seeded: bool, concurrency: int, duration: int, cores: str) -> dict[str, Any]:
    return run_wrk(WRK_SCRIPT, url, concurrency, duration, cores, BENCH_BODY=body, BENCH_SEEDED="1" if seeded else "0")


def run_wrk(script: Path, url: str, concurrency: int, duration: int, cores: str, **env: str) -> dict[str, Any]:
    """One wrk run of a script that ends by printing a WRKJSON line (bench/wrk_*.lua), `env` its settings."""
    cmd = ["taskset", "-c", cores, "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s"]
    cmd += ["-s", str(script), url]
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    result["errors"] = sum(v for k, v in result.items() if k.startswith("errors_"))
    return result


def load_stored(store_dir: Path, model_id: str, device: str) -> tuple[Any, Any]:
    """(manifest, the model on `device` in the layout the service runs), from a store, with one torch thread."""
    import torch

    from models.nets import build_model
    from models.sampling import prepare_for_inference
    from models.store import ArtifactStore

    torch.set_num_threads(1)
    store = ArtifactStore(store_dir)
    manifest = store.get_model(model_id)
    model = build_model(manifest.spec)
    model.load_state_dict(store.load_model_tensors(model_id))
    return manifest, prepare_for_inference(model, torch.device(device))


def measure(url: str, body: str, seeded: bool, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    wrk(url, body, seeded, concurrency, WARMUP_S, args.client_cores)
    return wrk(url, body, seeded, concurrency, args.duration, args.client_cores)


# --- main -----------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured point")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument(
        "--event-loop", default="asyncio", choices=("auto", "asyncio", "uvloop"), help="GENSERVE_EVENT_LOOP"
    )
    parser.add_argument("--server-cores", default="0")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-wait-ms", default=None, help="GENSERVE_MAX_WAIT_MS for (d) (default: the setting's)")
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="GENSERVE_COMPILE for (c) and (d): torch.compile / CUDA graphs (auto: on with CUDA)",
    )
    parser.add_argument("--only", default="", help="comma-separated subset: raw,floor,c,d,e,n64,npy")
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="then this many interleaved rounds of a, b and (d) at the top concurrency, each round's "
        "L and (d)/L computed from measurements a minute apart (the ratio under drift)",
    )
    parser.add_argument("--raw-json", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw-sizes", default="", help=argparse.SUPPRESS)
    parser.add_argument("--raw-seconds", type=float, default=RAW_SECONDS_PER_SIZE, help="(a): seconds per batch size")
    parser.add_argument("--raw-ready", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="with --model: serve this stored model instead of training one (saves minutes)",
    )
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    if args.raw_json:  # the pinned child process of (a)
        default_sizes = RAW_BATCH_SIZES_GPU if args.device.startswith("cuda") else RAW_BATCH_SIZES
        sizes = tuple(int(v) for v in args.raw_sizes.split(",")) if args.raw_sizes else default_sizes
        args.raw_json.write_text(
            json.dumps(
                raw_limit(
                    args.store,
                    args.model,
                    args.device,
                    sizes,
                    also_forward_only=not args.raw_sizes,
                    seconds=args.raw_seconds,
                    ready=args.raw_ready,
                )
            )
        )
        return

    only = set(filter(None, args.only.split(","))) or {"raw", "floor", "c", "d", "e", "n64", "npy"}
    levels = [int(c) for c in args.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="genserve-bench-"))
    store = args.store or tmp / "store"
    print(
        f"# bench/serve.py — {platform.machine()}, {os.cpu_count()} cores; server on cores {args.server_cores}, "
        f"wrk on {args.client_cores}; {args.duration}s per point; device {args.device}{gpu_name(args.device)}, "
        f"compile {args.compile}",
        flush=True,
    )
    model_id = args.model or prepare_model(store, args.mnist, args.train_steps)
    results: dict[str, Any] = {"model": model_id, "points": []}

    def raw_start(sizes: str = "", *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
        raw_file = tmp / "raw.json"
        raw_file.unlink(missing_ok=True)
        cmd = [
            "taskset",
            "-c",
            args.server_cores,
            sys.executable,
            "-m",
            "bench.serve",
            "--raw-json",
            str(raw_file),
            "--store",
            str(store),
            "--model",
            model_id,
            "--device",
            args.device,
            "--raw-sizes",
            sizes,
            "--raw-seconds",
            str(args.raw_seconds),
            *extra,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": child_pythonpath()}
        return subprocess.Popen(cmd, env=env, cwd=ROOT), raw_file

    def raw_result(proc: subprocess.Popen[bytes], raw_file: Path) -> dict[str, Any]:
        if proc.wait() != 0:
            raise RuntimeError("the raw-limit process failed")
        result: dict[str, Any] = json.loads(raw_file.read_text())
        return result

    def raw_run(sizes: str = "") -> dict[str, Any]:
        return raw_result(*raw_start(sizes))

    # Without "raw" in --only, a one-size probe still gives the response size the floor must match.
    measure_raw = "raw" in only or bool(args.rounds)
    raw = raw_run() if measure_raw else raw_result(*raw_start("1", "--raw-seconds", "0.2"))
    results["raw"] = raw
    a = max(raw["samples_per_s"].values())
    best_bs = max(raw["samples_per_s"], key=lambda k: raw["samples_per_s"][k])
    size = raw["png_response_bytes"]
    if measure_raw:
        print("\n## (a) raw limit: forward + PNG encode, in-process, one thread")
        print("| batch | samples/s (forward + PNG) | samples/s (forward only) |\n|---|---|---|")
        for bs in raw["samples_per_s"]:
            print(f"| {bs} | {raw['samples_per_s'][bs]:.0f} | {raw['forward_only_per_s'][bs]:.0f} |")
        print(f"a = {a:.0f} samples/s at batch {best_bs}; a single-sample png response is {size} bytes", flush=True)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
    base_env.update(
        {
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": child_pythonpath(),
            "GENSERVE_STORE_DIR": str(store),
            "GENSERVE_DEVICE": args.device,
            "GENSERVE_LOG_LEVEL": "warning",
            "GENSERVE_PRELOAD_MODELS": model_id,
            "GENSERVE_MAX_QUEUE_SAMPLES": "100000",
            "GENSERVE_EVENT_LOOP": args.event_loop,
            "BENCH_STORE": str(store),
            "BENCH_MODEL": model_id,
        }
    )
    if os.environ.get("GENSERVE_REDIS_URL"):
        base_env["GENSERVE_REDIS_URL"] = os.environ["GENSERVE_REDIS_URL"]
    port = 18000 + os.getpid() % 1000
    sample_path = f"/v1/models/{model_id}/samples"
    floor_path = f"{FLOOR_PATH}?size={size}"
    png1 = '{"n": 1, "seed": %d, "format": "png"}'
    png64 = '{"n": 64, "seed": %d, "format": "png"}'
    npy1 = '{"n": 1, "seed": %d, "format": "npy"}'
    npy64 = '{"n": 64, "seed": %d, "format": "npy"}'

    def service(max_batch: int) -> Server:
        env = {**base_env, "GENSERVE_MAX_BATCH_SIZE": str(max_batch), "GENSERVE_COMPILE": args.compile}
        if args.max_wait_ms is not None:
            env["GENSERVE_MAX_WAIT_MS"] = args.max_wait_ms
        cmd = ["taskset", "-c", args.server_cores, sys.executable, "-m", "bench.floor_app", "--port", str(port)]
        return Server(cmd, env, port, tmp / f"service-{max_batch}.log")

    def plain() -> Server:
        cmd = [
            "taskset",
            "-c",
            args.server_cores,
            sys.executable,
            "-m",
            "uvicorn",
            "bench.plain_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return Server(cmd, base_env, port, tmp / "plain.log")

    def run(name: str, server: Server, path: str, body: str, seeded: bool, conc: list[int], n: int) -> None:
        for c in conc:
            r = measure(f"http://127.0.0.1:{server.port}{path}", body, seeded, c, args)
            r.update(name=name, concurrency=c, n=n, samples_per_s=r["rps"] * n)
            results["points"].append(r)
            print(
                f"| {name} | {c} | {r['rps']:.0f} | {r['samples_per_s']:.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['errors']} |",
                flush=True,
            )

    print("\n## HTTP\n| config | clients | requests/s | samples/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    if only & {"floor", "e"}:
        srv = plain()
        try:
            if "floor" in only:
                run("(b0) plain FastAPI floor", srv, f"/floor?size={size}", FLOOR_BODY, False, levels, 1)
            if "e" in only:
                run("(e) plain FastAPI, unbatched", srv, "/samples", png1, True, levels, 1)
        finally:
            srv.stop()
    for max_batch, label in ((1, "(c) genserve, batching off"), (64, "(d) genserve, batching on")):
        key = "c" if max_batch == 1 else "d"
        if key not in only and not (key == "d" and "floor" in only):
            continue  # n=64 and npy run on the services that --only names
        srv = service(max_batch)
        try:
            if max_batch == 64 and "floor" in only:
                run("(b) genserve floor", srv, floor_path, FLOOR_BODY, False, levels, 1)
            if key in only:
                run(label, srv, sample_path, png1, True, levels, 1)
            if "n64" in only:
                run(f"{label}, n=64", srv, sample_path, png64, True, [1, 64], 64)
            if "npy" in only:
                run(f"{label}, npy", srv, sample_path, npy1, True, [1, 64], 1)
                run(f"{label}, npy n=64", srv, sample_path, npy64, True, [64], 64)
        finally:
            srv.stop()

    if args.rounds:
        top = max(levels)
        round_sizes = ",".join(str(v) for v in sorted({max(1, int(best_bs) // 2), int(best_bs), int(best_bs) * 2}))
        print(
            f"\n## Interleaved rounds at {top} clients: a (batch {round_sizes}, best), b, (d), one after another;\n"
            f"then the raw loop (batch {best_bs}) and the floor at once on the server's core: a_mix, b_mix, their\n"
            "share of the isolated rates e = a_mix/a + b_mix/b (1 = no interference), and L_mix = e * L\n\n"
            "| round | a (samples/s) | b (req/s) | L | (d) req/s | (d) errors | (d) / L | a_mix | b_mix | e | "
            "L_mix | (d) / L_mix |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
            flush=True,
        )
        rounds = []
        srv = service(64)
        floor_url = f"http://127.0.0.1:{srv.port}{floor_path}"
        try:
            for r in range(1, args.rounds + 1):
                ra = max(raw_run(round_sizes)["samples_per_s"].values())
                rb = measure(floor_url, FLOOR_BODY, False, top, args)
                rd = measure(f"http://127.0.0.1:{srv.port}{sample_path}", png1, True, top, args)
                lim = 1 / (1 / ra + 1 / rb["rps"])
                ready = tmp / "raw.ready"
                ready.unlink(missing_ok=True)
                proc, raw_file = raw_start(
                    str(best_bs), "--raw-seconds", str(WARMUP_S + args.duration), "--raw-ready", str(ready)
                )
                while not ready.exists() and proc.poll() is None:
                    time.sleep(0.05)
                rbm = measure(floor_url, FLOOR_BODY, False, top, args)
                ram = max(raw_result(proc, raw_file)["samples_per_s"].values())
                eff = ram / ra + rbm["rps"] / rb["rps"]
                rounds.append(
                    {
                        "a": ra,
                        "b": rb["rps"],
                        "L": lim,
                        "d": rd["rps"],
                        "errors": rd["errors"],
                        "ratio": rd["rps"] / lim,
                        "a_mix": ram,
                        "b_mix": rbm["rps"],
                        "e": eff,
                        "ratio_mix": rd["rps"] / (eff * lim),
                    }
                )
                print(
                    f"| {r} | {ra:.0f} | {rb['rps']:.0f} | {lim:.0f} | {rd['rps']:.0f} | {rd['errors']} | "
                    f"{100 * rd['rps'] / lim:.1f}% | {ram:.0f} | {rbm['rps']:.0f} | {eff:.3f} | {eff * lim:.0f} | "
                    f"{100 * rd['rps'] / (eff * lim):.1f}% |",
                    flush=True,
                )
        finally:
            srv.stop()
        ratios = sorted(x["ratio"] for x in rounds)
        print(
            f"\n(d) / L over {len(rounds)} rounds: median {100 * statistics.median(ratios):.1f}%, "
            f"range {100 * ratios[0]:.1f}-{100 * ratios[-1]:.1f}%; (d) errors {sum(x['errors'] for x in rounds)}"
        )
        mixed = sorted(x["ratio_mix"] for x in rounds)
        print(
            f"(d) / L_mix: median {100 * statistics.median(mixed):.1f}%, range {100 * mixed[0]:.1f}-"
            f"{100 * mixed[-1]:.1f}%; e: median {statistics.median(x['e'] for x in rounds):.3f}"
        )
        results["rounds"] = rounds

    def point(name: str, c: int) -> dict[str, Any] | None:
        return next((p for p in results["points"] if p["name"] == name and p["concurrency"] == c), None)

    b = point("(b) genserve floor", max(levels))
    d = point("(d) genserve, batching on", max(levels))
    if b and d and measure_raw:
        limit = 1 / (1 / a + 1 / b["rps"])
        results["L"] = limit
        print(
            f"\nL = 1/(1/a + 1/b) = 1/(1/{a:.0f} + 1/{b['rps']:.0f}) = {limit:.0f} requests/s; "
            f"(d) at {max(levels)} clients = {d['rps']:.0f} = {100 * d['rps'] / limit:.1f}% of L "
            f"(errors: {d['errors']})"
        )
    b0 = point("(b0) plain FastAPI floor", max(levels))
    if b and b0:
        print(
            f"genserve floor / plain FastAPI floor at {max(levels)} clients: {b['rps']:.0f} / {b0['rps']:.0f} "
            f"= {100 * b['rps'] / b0['rps']:.1f}%"
        )
    c1, d1 = point("(c) genserve, batching off", 1), point("(d) genserve, batching on", 1)
    if c1 and d1:
        print(
            f"1 client p50: batching on {d1['p50_ms']:.3f} ms vs off {c1['p50_ms']:.3f} ms "
            f"({100 * (d1['p50_ms'] / c1['p50_ms'] - 1):+.1f}%)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
