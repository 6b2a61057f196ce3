"""Time per training step of each model family on this machine (default recipes, the training function the worker
runs). Prints a markdown table.

    python -m bench.train_steps [--steps 200] [--mnist ../shared/data/mnist] [--threads N] [--only DATASET ...]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from models.config import TrainConfig
from models.data.builtin import load_builtin
from models.progress import Progress
from models.recipes import resolve_config
from models.training import train

CASES = [  # (dataset, family, conditional)
    ("ring2d", "vae", False),
    ("ring2d", "gan", False),
    ("grid2d", "gan", False),
    ("moons2d", "vae", True),
    ("moons2d", "gan", True),
    ("digits", "vae", False),
    ("digits", "gan", True),
    ("mnist", "vae", False),
    ("mnist", "vae", True),
    ("mnist", "gan", False),
    ("mnist", "gan", True),
    ("shapes", "vae", True),
    ("shapes", "gan", False),
    ("shapes", "gan", True),
]


def time_steps(dataset: str, family: str, conditional: bool, steps: int, data_dir: Path) -> tuple[TrainConfig, float]:
    """The resolved default config of a case and its milliseconds per training step."""
    splits = load_builtin(dataset, data_dir)
    train_set = splits.train
    config = resolve_config(
        {"family": family, "conditional": conditional, "steps": steps, "seed": 0},
        dataset_id=dataset,
        kind=train_set.kind,
        sample_shape=train_set.sample_shape,
        num_classes=train_set.num_classes,
    )
    reports: list[Progress] = []
    train(config, splits, device=torch.device("cpu"), on_progress=reports.append, progress_interval_s=0.0)
    # steps after the first report (warm-up excluded), timed by the training's own clock
    reports = [p for p in reports if p.phase == "train"]  # not the end-of-training metrics
    first, last = reports[min(5, len(reports) - 2)], reports[-1]
    per_step = (last.elapsed_s - first.elapsed_s) / max(1, last.step - first.step)
    return config, per_step * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", nargs="+", metavar="DATASET", help="time only these datasets' cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        if args.mnist.exists():
            shutil.copytree(args.mnist, data_dir / "mnist")
        print(
            f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{args.threads} threads, {args.steps} steps each"
        )
        print("| dataset | family | conditional | arch | batch | width | latent | ms/step | steps/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for dataset, family, conditional in CASES:
            if dataset == "mnist" and not (data_dir / "mnist").exists() or args.only and dataset not in args.only:
                continue
            c, ms = time_steps(dataset, family, conditional, args.steps, data_dir)
            print(
                f"| {dataset} | {family} | {conditional} | {c.architecture} | {c.batch_size} | {c.width} | "
                f"{c.latent_dim} | {ms:.2f} | {1000 / ms:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
