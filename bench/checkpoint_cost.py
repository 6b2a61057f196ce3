"""What a checkpoint costs a training with the artifact store on S3 (moto's server on 127.0.0.1) against the local
directory: the checkpoint of the default MNIST GAN recipe (generator, discriminator, both Adam states: what the
worker writes), saved `--repeats` times to each store; the share of the training it costs is the save time over the
checkpoint interval (GENSERVE_CHECKPOINT_INTERVAL_S, 30 s by default), since the training loop waits for the save.
And the time to load that checkpoint back (as a worker resuming it on another machine does).

    python -m bench.checkpoint_cost [--repeats 5] [--mnist ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.s3 import moto_bucket
from bench.serve import ROOT
from models.data.builtin import load_builtin
from models.recipes import resolve_config
from models.store import open_store
from models.training import train
from worker.state.settings import WorkerSettings


class Capture:
    """A checkpointer that keeps the first checkpoint the training writes (then asks it to stop)."""

    interval_s = 0.0

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] | None = None
        self.meta: dict[str, Any] = {}

    @property
    def done(self) -> bool:
        return self.tensors is not None

    def load(self) -> None:
        return None

    def save(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if self.tensors is None:
            self.tensors, self.meta = {k: v.clone() for k, v in tensors.items()}, meta


def mnist_gan_checkpoint(mnist: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    splits = load_builtin("mnist", mnist.parent)
    config = resolve_config(
        {"family": "gan", "steps": 1000, "seed": 0},
        dataset_id="mnist",
        kind=splits.train.kind,
        sample_shape=splits.train.sample_shape,
        num_classes=splits.train.num_classes,
    )
    capture = Capture()
    try:  # stopped once the first checkpoint is in hand (a stop ends the run with an exception)
        train(config, splits, device=torch.device("cpu"), checkpointer=capture, should_stop=lambda: capture.done)
    except Exception:
        if capture.tensors is None:
            raise
    assert capture.tensors is not None
    return capture.tensors, capture.meta


def timed(fn: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    tensors, meta = mnist_gan_checkpoint(args.mnist)
    size_mb = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="genserve-bench-ckpt-"))
    interval = WorkerSettings.model_fields["checkpoint_interval_s"].default
    with moto_bucket("bench"):
        stores = {
            "local": open_store(None, tmp / "local"),
            "s3": open_store("s3://bench/genserve", tmp / "unused", tmp / "cache"),
        }
        print(f"checkpoint of the MNIST GAN recipe: {len(tensors)} tensors, {size_mb:.1f} MB; interval {interval:g} s")
        print(f"| store | save, median of {args.repeats} | share of the training at the interval | load, median |")
        print("|---|---|---|---|")
        for name, store in stores.items():
            saves = timed(lambda store=store: store.save_checkpoint("tr_0123456789abcdef", tensors, meta), args.repeats)
            reads = timed(lambda store=store: store.load_checkpoint("tr_0123456789abcdef"), args.repeats)
            save, read = statistics.median(saves), statistics.median(reads)
            print(f"| {name} | {save * 1000:.0f} ms | {save / interval * 100:.2f}% | {read * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
