"""What watching a training costs: time per training step with the history and the previews the worker writes (a
fixed-seed sample grid every `preview_every` steps, rendered and stored as the worker does) against the same
training with neither, in alternating rounds (the machine's speed drifts). Prints a markdown table.

    python -m bench.watch_cost [--dataset mnist] [--family gan] [--steps 300] [--rounds 3] [--threads 1]

The default recipe's `preview_every` is the one the API gives it (models/previews.py `auto_interval`). The runs stop
after `--steps` steps (a cancel, so the end-of-training metrics, which neither variant changes, are skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch

from models import previews
from models.data.builtin import load_builtin
from models.history import History
from models.nets import GenerativeModel, build_model, spec_for
from models.progress import Progress
from models.recipes import resolve_config
from models.store import ArtifactStore, new_id
from models.training import train

COMPONENT_REPEATS = 20
HISTORY_POINTS = 10_000


def run(config, data, steps: int, watched: bool, store: ArtifactStore, training_id: str) -> float:  # type: ignore[no-untyped-def]
    """Milliseconds per step over the run's steps after the first report."""
    reports: list[Progress] = []

    def preview(step: int, model: GenerativeModel) -> None:
        store.put_preview(training_id, step, previews.preview_png(model, step))

    def stop() -> bool:
        return bool(reports) and reports[-1].step >= steps

    cfg = replace(config, preview_every=config.preview_every if watched else 0)  # the recipe's steps: its interval
    with contextlib.nullcontext() if watched else mock.patch.object(History, "add"):
        train(
            cfg,
            data,
            device=torch.device("cpu"),
            on_progress=reports.append,
            progress_interval_s=0.5,
            should_stop=stop,
            on_preview=preview if watched else None,
        )
    first, last = reports[0], reports[-1]
    return (last.elapsed_s - first.elapsed_s) / max(1, last.step - first.step) * 1000


def components(config, data, store: ArtifactStore, training_id: str, step_ms: float) -> None:  # type: ignore[no-untyped-def]
    """The same cost from its parts, which the machine's drift does not blur: one preview (drawn and stored) per
    `interval` steps, one history point per progress report (every 0.5 s)."""
    model = build_model(spec_for(config, data.train.kind, data.train.sample_shape, data.train.num_classes))
    times = []
    for step in range(COMPONENT_REPEATS):
        t = time.perf_counter()
        store.put_preview(training_id, step, previews.preview_png(model, step))
        times.append(time.perf_counter() - t)
    preview_ms = statistics.median(times) * 1000
    history = History()
    t = time.perf_counter()
    for step in range(HISTORY_POINTS):
        history.add(step, step * 0.5, 1e-4, {"loss_d": 1.0, "loss_g": 0.5})
    add_ms = (time.perf_counter() - t) / HISTORY_POINTS * 1000
    every = previews.interval(config)
    steps_per_report = max(1.0, 500 / step_ms)
    share = (preview_ms / every + add_ms / steps_per_report) / step_ms
    print(
        f"components: a preview {preview_ms:.1f} ms every {every} steps, a history point {add_ms * 1000:.1f} µs "
        f"every {steps_per_report:.1f} steps, a step {step_ms:.1f} ms: {share * 100:.2f}% of the training time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--family", default="gan")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        if args.mnist.exists():
            shutil.copytree(args.mnist, data_dir / "mnist")
        data = load_builtin(args.dataset, data_dir)
        t = data.train
        config = resolve_config(
            {"family": args.family, "seed": 0},
            dataset_id=args.dataset,
            kind=t.kind,
            sample_shape=t.sample_shape,
            num_classes=t.num_classes,
        )
        store = ArtifactStore(Path(tmp) / "store")
        training_id = new_id("tr")
        store.put_training({"id": training_id, "status": "running", "created_at": "now"})
        print(
            f"{args.dataset} {args.family}, default recipe ({config.steps} steps, preview every "
            f"{previews.interval(config)}), {args.steps} steps per run, {args.threads} thread(s)"
        )
        print("| round | neither (ms/step) | history + previews (ms/step) | ratio |")
        print("|---|---|---|---|")
        ratios, plains = [], []
        for r in range(args.rounds):
            plain = run(config, data, args.steps, False, store, training_id)
            watched = run(config, data, args.steps, True, store, training_id)
            ratios.append(watched / plain)
            plains.append(plain)
            print(f"| {r + 1} | {plain:.2f} | {watched:.2f} | {watched / plain:.3f} |", flush=True)
        print(f"median ratio: {statistics.median(ratios):.3f}")
        components(config, data, store, training_id, statistics.median([*plains]))


if __name__ == "__main__":
    main()
