"""What watching a training costs: the time the history and the previews the worker writes (a fixed-seed sample
grid every `preview_every` steps, rendered and stored as the worker does) take inside one training run, as a share
of its loop; and, with `--rounds`, whole runs with and without them in alternating rounds (blurred by the machine's
drift, which on these machines is larger than the cost).

    python -m bench.watch_cost [--dataset mnist] [--family gan] [--attributed-steps 1000] [--rounds 0] [--threads 1]

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
from models.nets import GenerativeModel
from models.progress import Progress
from models.recipes import resolve_config
from models.store import ArtifactStore, new_id
from models.training import train

DUE_CHECKS = 100_000


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


def attributed(config, data, steps: int, store: ArtifactStore, training_id: str) -> None:  # type: ignore[no-untyped-def]
    """One watched run, timing what watching adds inside it (so the machine's drift cannot blur it): the preview
    callbacks, the history points, and the per-step check for a due preview."""
    spent = {"preview": [], "history": []}  # type: ignore[var-annotated]
    add = History.add

    def timed_add(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        add(self, *args, **kwargs)
        spent["history"].append(time.perf_counter() - t)

    reports: list[Progress] = []

    def preview(step: int, model: GenerativeModel) -> None:
        t = time.perf_counter()
        store.put_preview(training_id, step, previews.preview_png(model, step))
        spent["preview"].append(time.perf_counter() - t)

    start = time.perf_counter()
    with mock.patch.object(History, "add", timed_add):
        train(
            config,
            data,
            device=torch.device("cpu"),
            on_progress=reports.append,
            progress_interval_s=0.5,
            should_stop=lambda: bool(reports) and reports[-1].step >= steps,
            on_preview=preview,
        )
    loop_s = reports[-1].elapsed_s
    t = time.perf_counter()
    for step in range(DUE_CHECKS):
        previews.due(config, step)
    due_s = (time.perf_counter() - t) / DUE_CHECKS * reports[-1].step
    watching = sum(spent["preview"]) + sum(spent["history"]) + due_s
    p = [x * 1000 for x in spent["preview"]]
    print(
        f"attributed, one run of {reports[-1].step} steps ({loop_s:.1f} s, {loop_s / reports[-1].step * 1000:.1f} "
        f"ms/step; {time.perf_counter() - start:.0f} s with set-up): {len(p)} previews, first {p[0]:.0f} ms, median "
        f"{statistics.median(p):.0f} ms, {sum(p) / 1000:.2f} s in all; {len(spent['history'])} history points, "
        f"{sum(spent['history']) * 1000:.1f} ms in all; due checks {due_s * 1000:.1f} ms: watching took "
        f"{watching / loop_s * 100:.2f}% of the training loop"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--family", default="gan")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=0, help="interleaved whole runs without and with watching")
    parser.add_argument("--attributed-steps", type=int, default=1000)
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
        ratios = []
        for r in range(args.rounds):
            plain = run(config, data, args.steps, False, store, training_id)
            watched = run(config, data, args.steps, True, store, training_id)
            ratios.append(watched / plain)
            print(f"| {r + 1} | {plain:.2f} | {watched:.2f} | {watched / plain:.3f} |", flush=True)
        if ratios:
            print(f"median ratio: {statistics.median(ratios):.3f}")
        attributed(config, data, args.attributed_steps, store, training_id)


if __name__ == "__main__":
    main()
