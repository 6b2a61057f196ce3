"""Seeded, batch-invariant generation.

A sample must not depend on which other requests shared its forward pass: the same model, seed, n and labels give
the same bytes whether a request ran alone or batched. Two things make that true:

1. Latents come from the request's own seeded CPU generator (`latents`), never from a shared RNG.
2. Matrix kernels may reduce in a different order for different batch sizes (on CPU, MKL takes other code paths
   for 1-3 rows than for 4 or more). `InvariantForward` calibrates, per model and device, the cheapest padding rule
   under which every row's output is independent of the batch around it, and applies it to every pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("genserve.sampling")

# Batch sizes compared in calibration: every small size, then odd and power-of-two neighbours, where CPU matrix
# kernels switch code paths (an MLP decoder agreed at 1..16 and 64 yet differed at 43, 47, 49, ...).
CALIBRATION_ROWS = (*range(1, 18), 19, 23, 31, 32, 33, 43, 47, 53, 61, 64, 77, 97, 100, 127, 128, 129, 200, 255, 256)


SLERP_MIN_NORM = 1e-12  # an end shorter than this has no direction
SLERP_MIN_SIN = 1e-6  # ends closer than this to parallel or antiparallel: the straight line

_generators = threading.local()


def latents(seed: int, n: int, latent_dim: int) -> Tensor:
    """The n latent vectors of a request with this seed: standard normal, float32, on CPU.

    Re-seeding one generator per thread gives the same numbers as a fresh generator, without building one per
    request (a third of this function's cost for a single sample)."""
    gen = getattr(_generators, "gen", None)
    if gen is None:
        gen = _generators.gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return torch.randn(n, latent_dim, generator=gen)


def slerp(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Spherical interpolation between two latent vectors (White 2016): stays in the typical set of a Gaussian.

    Where the sphere gives no path (an end of zero norm, or two ends pointing the same way or exactly opposite
    ways, where the great circle is undefined or unstable), the path is the straight line, so it is finite always.
    """
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)[:, None]
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(), b64.norm()
    if na < SLERP_MIN_NORM or nb < SLERP_MIN_NORM:
        return ((1 - t) * a64 + t * b64).float()
    omega = torch.arccos(torch.dot(a64 / na, b64 / nb).clamp(-1.0, 1.0))
    if torch.sin(omega) < SLERP_MIN_SIN:
        return ((1 - t) * a64 + t * b64).float()
    path = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)
    return path.float()


@dataclass(frozen=True)
class PaddingRule:
    """How to shape a forward pass so rows do not depend on their neighbours.

    `linear_min_rows`: pad the input of every Linear layer with fewer rows up to this many (cheap: on CPU only the
    matrix multiplies take other code paths for tiny batches, and convolutions often do not). `min_rows`: pad the
    whole pass. `multiple`: pad the whole pass up to a multiple of this many rows (some CPU convolution kernels
    treat an odd batch's last row apart). `chunk`: run every pass in chunks of exactly this many rows (the
    fallback when nothing else works, as on GPUs whose kernels change with the batch size).
    """

    linear_min_rows: int = 1
    min_rows: int = 1
    multiple: int = 1
    chunk: int | None = None

    def rows_for(self, n: int) -> int:
        """The rows a pass of n rows runs with (n plus padding), outside chunking."""
        return max(self.min_rows, -(-n // self.multiple) * self.multiple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PaddingRule | None:
        """The rule a `to_dict` wrote, or None for anything else (a cache written by another version)."""
        try:
            rule = cls(**d)
        except TypeError:
            return None
        ints = (rule.linear_min_rows, rule.min_rows, rule.multiple)
        if not all(isinstance(v, int) and v >= 1 for v in ints) or not (
            rule.chunk is None or (isinstance(rule.chunk, int) and rule.chunk >= 1)
        ):
            return None
        return rule

    def describe(self) -> str:
        if self.chunk:
            return f"chunk={self.chunk}"
        parts = [
            f"{name}={getattr(self, name)}"
            for name in ("linear_min_rows", "min_rows", "multiple")
            if getattr(self, name) > 1
        ]
        return ", ".join(parts) or "none"


# Cheapest first: the first rule under which every row agrees across batch sizes is the one used.
CANDIDATE_RULES = (
    PaddingRule(),
    *(PaddingRule(linear_min_rows=k) for k in (2, 4, 8, 16)),
    *(PaddingRule(linear_min_rows=k, multiple=m) for m in (2, 4, 8) for k in (8, 16)),
    *(PaddingRule(min_rows=k) for k in (2, 3, 4, 5, 8, 16)),
    *(PaddingRule(chunk=c) for c in (64, 128, 256)),
    PaddingRule(chunk=1),  # always exact: every row alone
)


def calibration_key(spec: dict[str, Any], device: torch.device, *, compile: bool = False) -> str:
    """What a padding rule depends on, hashed: the net's layer shapes (its spec), the kernels that run them (torch's
    version, the device, the CPU's instruction set, the thread count) and compilation. Not the weights: two nets of
    one spec take the same code paths, so a rule found for one holds for the other, and a cold load can skip
    `InvariantForward.calibrate`, the bulk of its cost."""
    if device.type == "cuda":
        kernels = torch.cuda.get_device_name(device)
    else:
        kernels = f"{torch.backends.cpu.get_cpu_capability()} threads={torch.get_num_threads()}"
    parts = {"spec": spec, "torch": torch.__version__, "device": device.type, "kernels": kernels, "compile": compile}
    return "pad_" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class _LinearPadding:
    """Forward hooks that pad each Linear layer's input to at least `rows` rows and drop the padding after."""

    def __init__(self, model: torch.nn.Module, rows: int) -> None:
        self.rows = rows
        self._pending: list[int] = []
        self._handles = []
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                self._handles.append(module.register_forward_pre_hook(self._pad))
                self._handles.append(module.register_forward_hook(self._unpad))

    def _pad(self, module: torch.nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        x = args[0]
        n = x.shape[0]
        self._pending.append(n)
        if n >= self.rows:
            return None
        return (torch.cat([x, x.new_zeros(self.rows - n, *x.shape[1:])]), *args[1:])

    def _unpad(self, module: torch.nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
        return out[: self._pending.pop()]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class InvariantForward:
    """Runs `model.generate` on a batch so that each row's output equals running it alone."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        rule: PaddingRule | None = None,
        *,
        pin_memory: bool = False,
        compile: bool = False,
    ) -> None:
        self.model = model
        self.device = device
        spec: Any = model.spec
        self.latent_dim: int = spec.latent_dim
        self.num_classes: int = spec.num_classes
        # Pinned host buffers make host<->GPU copies asynchronous; on CPU they only cost.
        self.pin_memory = pin_memory and device.type == "cuda"
        self.compile = compile
        self._hooks: _LinearPadding | None = None
        self._generate: Callable[..., Tensor] = model.generate  # type: ignore[assignment]
        self.rule = PaddingRule()
        self.use(rule or self.calibrate())

    def use(self, rule: PaddingRule) -> None:
        """Switch to `rule` (installing or removing the Linear padding hooks)."""
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None
        if rule.linear_min_rows > 1:
            self._hooks = _LinearPadding(self.model, rule.linear_min_rows)
        self._generate = self.model.generate  # type: ignore[assignment]
        self.rule = rule
        if self.compile:
            self._compile()

    def _compile(self) -> None:
        """Compile for the rule's one pass shape (a fixed chunk); CUDA replays it as a CUDA graph. Any failure
        falls back to eager execution: compilation is an optimization, never a reason not to serve."""
        eager = self._generate
        mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        try:
            self._generate = torch.compile(eager, mode=mode, dynamic=False)
            rows = self.rule.chunk or 1
            self._raw(
                torch.zeros(rows, self.latent_dim), torch.zeros(rows, dtype=torch.int64) if self.num_classes else None
            )
        except Exception as exc:
            log.warning("torch.compile failed (%s: %s); serving this model eagerly", type(exc).__name__, exc)
            self.compile = False
            self._generate = eager

    def _raw(self, z: Tensor, labels: Tensor | None) -> Tensor:
        with torch.inference_mode():
            if self.pin_memory:
                z = z.pin_memory()
                labels = None if labels is None else labels.pin_memory()
            out = self._generate(
                z.to(self.device, non_blocking=True),
                None if labels is None else labels.to(self.device, non_blocking=True),
            ).float()
            if self.device.type == "cpu":
                return out
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=self.pin_memory)
            host.copy_(out, non_blocking=self.pin_memory)
            if self.pin_memory:
                torch.cuda.current_stream(self.device).synchronize()
            return host

    def _padded(self, z: Tensor, labels: Tensor | None, rows: int) -> Tensor:
        n = z.shape[0]
        if n == rows:
            return self._raw(z, labels)
        pad = rows - n
        z = torch.cat([z, z.new_zeros(pad, self.latent_dim)])
        if labels is not None:
            labels = torch.cat([labels, torch.zeros(pad, dtype=labels.dtype)])
        return self._raw(z, labels)[:n]

    def __call__(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Samples for rows z (n, latent_dim) with labels (n,) or None, on CPU as float32."""
        z = z.reshape(-1, self.latent_dim)  # an empty request may come as shape (0,)
        if self.rule.chunk is None:
            return self._padded(z, labels, self.rule.rows_for(z.shape[0]))
        c = self.rule.chunk
        parts = [  # an empty pass still runs one padded chunk, for the output's shape
            self._padded(z[i : i + c], None if labels is None else labels[i : i + c], c)
            for i in range(0, max(1, z.shape[0]), c)
        ]
        return torch.cat(parts)

    def calibrate(self) -> PaddingRule:
        """The cheapest rule under which rows agree across batch sizes, found by running the model."""
        gen = torch.Generator().manual_seed(1234)
        big = max(CALIBRATION_ROWS)
        z = torch.randn(big, self.latent_dim, generator=gen)
        labels = torch.randint(0, self.num_classes, (big,), generator=gen) if self.num_classes else None

        def rows_agree() -> bool:
            ref = self(z, labels)
            for m in CALIBRATION_ROWS:
                for start in (0, big - m):
                    part = self(z[start : start + m], None if labels is None else labels[start : start + m])
                    if not torch.equal(part, ref[start : start + m]):
                        return False
            return True

        # A compiled model gets one graph per shape: only fixed-size chunks keep that to one graph.
        candidates = [r for r in CANDIDATE_RULES if r.chunk] if self.compile else CANDIDATE_RULES
        for rule in candidates:
            self.use(rule)
            if rows_agree():
                return rule
        return CANDIDATE_RULES[-1]


M = TypeVar("M", bound=torch.nn.Module)


def prepare_for_inference(model: M, device: torch.device) -> M:
    """The model on `device`, in eval mode; conv models in channels-last layout, which the CPU (oneDNN) and GPU
    (cuDNN) convolution kernels run markedly faster for these small generators. Modifies the model in place."""
    model.to(device).eval()
    if any(isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def to_numpy(samples: Tensor) -> np.ndarray:
    return samples.detach().cpu().numpy().astype(np.float32, copy=False)
