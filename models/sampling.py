"""Seeded, batch-invariant generation.

A sample must not depend on which other requests shared its forward pass: the same model, seed, n and labels give
the same bytes whether a request ran alone or batched. Two things make that true:

1. Latents come from the request's own seeded CPU generator (`latents`), never from a shared RNG.
2. Matrix kernels may reduce in a different order for different batch sizes (on CPU, MKL takes other code paths
   for 1-3 rows than for 4 or more). `InvariantForward` calibrates, per model and device, a padding rule under
   which every row's output is independent of the batch around it, and pads every pass accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

SEED_BOUND = 2**31  # seeds are in [0, 2**31)
CALIBRATION_ROWS = (1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 256)
MAX_MIN_ROWS = 16  # pad single requests to at most this many rows; beyond it, run fixed-size chunks


def latents(seed: int, n: int, latent_dim: int) -> Tensor:
    """The n latent vectors of a request with this seed: standard normal, float32, on CPU."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return torch.randn(n, latent_dim, generator=gen)


def slerp(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Spherical interpolation between two latent vectors (White 2016): stays in the typical set of a Gaussian."""
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)[:, None]
    a64, b64 = a.double(), b.double()
    cos = torch.dot(a64 / a64.norm(), b64 / b64.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6:
        path = (1 - t) * a64 + t * b64
    else:
        path = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)
    return path.float()


@dataclass(frozen=True)
class PaddingRule:
    """How to shape a forward pass so rows do not depend on their neighbours.

    `min_rows`: pad passes with fewer rows up to this many. `chunk`: when set, every pass runs in chunks of exactly
    this many rows (the fallback when no small minimum works, as on GPUs whose kernels change with the batch size).
    """

    min_rows: int = 1
    chunk: int | None = None

    def describe(self) -> str:
        return f"chunk={self.chunk}" if self.chunk else f"min_rows={self.min_rows}"


class InvariantForward:
    """Runs `model.generate` on a batch so that each row's output equals running it alone."""

    def __init__(self, model: torch.nn.Module, device: torch.device, rule: PaddingRule | None = None) -> None:
        self.model = model
        self.device = device
        spec: Any = model.spec
        self.latent_dim: int = spec.latent_dim
        self.num_classes: int = spec.num_classes
        self.rule = rule or self.calibrate()

    def _raw(self, z: Tensor, labels: Tensor | None) -> Tensor:
        with torch.inference_mode():
            out = self.model.generate(  # type: ignore[operator]
                z.to(self.device, non_blocking=True),
                None if labels is None else labels.to(self.device, non_blocking=True),
            )
            return out.float().cpu()

    def _padded(self, z: Tensor, labels: Tensor | None, rows: int) -> Tensor:
        n = z.shape[0]
        if n >= rows:
            return self._raw(z, labels)
        pad = rows - n
        z = torch.cat([z, torch.zeros(pad, z.shape[1], dtype=z.dtype)])
        if labels is not None:
            labels = torch.cat([labels, torch.zeros(pad, dtype=labels.dtype)])
        return self._raw(z, labels)[:n]

    def __call__(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Samples for rows z (n, latent_dim) with labels (n,) or None, on CPU as float32."""
        if self.rule.chunk is None:
            return self._padded(z, labels, self.rule.min_rows)
        c = self.rule.chunk
        parts = [
            self._padded(z[i : i + c], None if labels is None else labels[i : i + c], c)
            for i in range(0, z.shape[0], c)
        ]
        return torch.cat(parts)

    def calibrate(self) -> PaddingRule:
        """Find the smallest padding under which rows agree across batch sizes, by running the model."""
        gen = torch.Generator().manual_seed(1234)
        big = max(CALIBRATION_ROWS)
        z = torch.randn(big, self.latent_dim, generator=gen)
        labels = (
            torch.randint(0, self.num_classes, (big,), generator=gen) if self.num_classes else None
        )

        def rows_agree(rule: PaddingRule) -> bool:
            self.rule = rule
            ref = self(z, labels)
            for m in CALIBRATION_ROWS:
                for start in (0, big - m):
                    part = self(z[start : start + m], None if labels is None else labels[start : start + m])
                    if not torch.equal(part, ref[start : start + m]):
                        return False
            return True

        for min_rows in range(1, MAX_MIN_ROWS + 1):
            if rows_agree(PaddingRule(min_rows=min_rows)):
                return PaddingRule(min_rows=min_rows)
        for chunk in (64, 128, 256):
            if rows_agree(PaddingRule(chunk=chunk)):
                return PaddingRule(chunk=chunk)
        # No rule found (should not happen on CPU): fall back to exact per-sample passes.
        return PaddingRule(chunk=1)


def to_numpy(samples: Tensor) -> np.ndarray:
    return samples.detach().cpu().numpy().astype(np.float32, copy=False)
