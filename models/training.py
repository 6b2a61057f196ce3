"""The training loop: one model-agnostic loop around a family-specific step.

The loop owns what every training needs: seeded minibatches from data held on the device, progress reports and
cancellation polls on a clock, checkpoints that resume a run exactly, and recovery from non-finite losses (roll back
to the last good state with half the learning rate). A "task" (`_VAETask`, `_GANTask`) owns the nets, their
optimizers, and one optimization step. No Redis, no HTTP: callers report and cancel through the callbacks.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from models import densities, losses, previews
from models.classifier import ClassifierCache
from models.config import PRESENTATION_OPTIONS, TrainConfig, check_data
from models.data.arrays import DatasetSplits
from models.errors import TrainingDiverged
from models.evaluation import MetricsProgress, compute_metrics
from models.history import History
from models.nets import VAE, GenerativeModel, Generator, ModelSpec, build_discriminator, build_model, spec_for
from models.progress import Progress

log = logging.getLogger(__name__)

STOP_POLL_INTERVAL_S = 0.2  # should_stop() may do network I/O: poll it at most this often
SYNC_EVERY_STEPS = 20  # steps between reads of the losses to the host (each read waits for the device)
SNAPSHOT_EVERY_STEPS = 100  # steps between in-memory copies of the last good state (divergence recovery)
MAX_RECOVERIES = 2  # roll-backs with a halved learning rate before a training counts as diverged
FINAL_LOSS_WINDOW_STEPS = 100  # the final training losses are means over about this many last steps
VAE_ADAM_BETAS = (0.9, 0.999)
GAN_ADAM_BETAS = (0.5, 0.999)  # Radford et al. 2016 (DCGAN)
WGAN_ADAM_BETAS = (0.0, 0.9)  # Gulrajani et al. 2017, Algorithm 1
EMA_WARMUP_STEPS = 10  # EMA decay ramps as (1 + step) / (10 + step) up to ema_decay, so early weights fade fast
MIN_DATA_SCALE = 1e-6  # point dimensions with a smaller std are not rescaled
CHECKPOINT_FORMAT = 1


class Checkpointer(Protocol):
    interval_s: float

    def load(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None: ...

    def save(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    model: GenerativeModel  # eval mode, on CPU
    spec: ModelSpec
    metrics: dict[str, float]  # finite floats only
    steps: int  # steps completed
    canceled: bool
    history: dict[str, Any] = field(default_factory=dict)  # History.series: losses and lr per report, final metrics


# --- data ----------------------------------------------------------------------------------------------------------
@dataclass
class _Data:
    """Training data in net space on the device; minibatches drawn (with replacement) from a seeded generator."""

    x: Tensor  # (N, *net_shape)
    y: Tensor | None  # (N,) int64 when conditional
    gen: torch.Generator
    binarize: tuple[float, float] | None = None  # (loc, scale) of images in net space: binarize each batch

    def batch(self, n: int) -> tuple[Tensor, Tensor | None]:
        idx = torch.randint(0, self.x.shape[0], (n,), generator=self.gen, device=self.x.device)
        x = self.x[idx]
        if self.binarize is not None:  # dynamic binarization: pixel ~ Bernoulli(gray value), fresh every batch
            loc, scale = self.binarize
            x = (torch.bernoulli((x * scale + loc).clamp(0, 1), generator=self.gen) - loc) / scale
        return x, None if self.y is None else self.y[idx]

    def labels(self, n: int) -> Tensor | None:
        """Labels for generated samples, drawn from the data so that classes come in their data proportions."""
        if self.y is None:
            return None
        idx = torch.randint(0, self.y.shape[0], (n,), generator=self.gen, device=self.y.device)
        return self.y[idx]

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.gen, device=self.x.device)


# --- tasks -----------------------------------------------------------------------------------------------------------
class _Task(Protocol):
    modules: dict[str, nn.Module]  # everything with state, by checkpoint name
    optimizers: dict[str, torch.optim.Optimizer]
    base_lrs: dict[str, float]
    loss_names: tuple[str, ...]

    def step(self, step: int, data: _Data) -> Tensor: ...  # one step; the detached losses, (len(loss_names),)

    def served(self) -> GenerativeModel: ...


class _VAETask:
    def __init__(self, config: TrainConfig, model: VAE) -> None:
        self.c = config
        self.model = model
        self.modules: dict[str, nn.Module] = {"model": model}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "model": torch.optim.Adam(model.parameters(), lr=config.lr, betas=VAE_ADAM_BETAS)
        }
        self.base_lrs = {"model": config.lr}
        self.loss_names: tuple[str, ...] = ("loss",) if config.iwae_k > 1 else ("loss", "recon", "kl")

    def kl_weight(self, step: int) -> float:
        """beta, ramped up linearly over the warm-up steps (Bowman et al. 2016)."""
        if self.c.kl_warmup_steps <= 0:
            return self.c.beta
        return self.c.beta * min(1.0, (step + 1) / self.c.kl_warmup_steps)

    def step(self, step: int, data: _Data) -> Tensor:
        x, y = data.batch(self.c.batch_size)
        if self.c.iwae_k > 1:
            loss = losses.iwae_loss(self.model.log_weights(x, y, self.c.iwae_k, data.gen))
            parts = [loss]
        else:
            mu, logvar = self.model.encode_net(x, y)  # (n, L) each
            z = mu + (0.5 * logvar).exp() * data.randn(*mu.shape)  # reparameterization
            log_px = self.model.log_px(self.model.decode_raw(z, y), x)  # (n,)
            if self.model.pseudo_inputs is not None:  # no closed form: the one-sample estimate log q(z|x) - log p(z)
                log_q = densities.diag_gaussian_log_density(z, mu, logvar)  # (n,)
                kl = (log_q - self.model.log_prior(z, y)).unsqueeze(1)  # (n, 1)
            else:
                kl = losses.gaussian_kl(mu, logvar)  # (n, L)
            loss = losses.neg_elbo(log_px, kl, kl_weight=self.kl_weight(step), free_bits=self.c.free_bits)
            parts = [loss, -log_px.mean(), kl.sum(1).mean()]
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return torch.stack(parts).detach()

    def served(self) -> GenerativeModel:
        return self.model


class _GANTask:
    def __init__(self, config: TrainConfig, generator: Generator, spec: ModelSpec) -> None:
        self.c = config
        self.g = generator
        self.d = build_discriminator(spec, config)
        self.ema: Generator | None = None
        self.modules: dict[str, nn.Module] = {"g": self.g, "d": self.d}
        if config.ema_decay > 0:
            self.ema = copy.deepcopy(generator).requires_grad_(False)
            self.modules["ema"] = self.ema
        betas = WGAN_ADAM_BETAS if config.gan_loss == "wgan-gp" else GAN_ADAM_BETAS
        self.base_lrs = {"g": config.lr, "d": config.d_lr or config.lr}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "g": torch.optim.Adam(self.g.parameters(), lr=self.base_lrs["g"], betas=betas),
            "d": torch.optim.Adam(self.d.parameters(), lr=self.base_lrs["d"], betas=betas),
        }
        self.loss_names: tuple[str, ...] = ("loss_d", "loss_g")

    def step(self, step: int, data: _Data) -> Tensor:
        c, n = self.c, self.c.batch_size
        self.d.requires_grad_(True)
        for _ in range(c.d_steps):
            x, y = data.batch(n)
            z = data.randn(n, c.latent_dim)
            y_fake = self.g.latent_label(z) if c.latent_labels else y  # conditional: the real batch's labels
            with torch.no_grad():
                fake = self.g.forward_net(z, y_fake)

            def critic(t: Tensor, y: Tensor | None = y) -> Tensor:
                return self.d(t, y)

            loss_d = losses.d_loss(critic(x), critic(fake, y_fake), c.gan_loss)
            if c.gan_loss == "wgan-gp" and c.gp_weight > 0:
                loss_d = loss_d + c.gp_weight * losses.gradient_penalty(critic, x, fake, data.gen)
            if c.r1_gamma > 0:
                loss_d = loss_d + c.r1_gamma * losses.r1_penalty(critic, x)
            self.optimizers["d"].zero_grad(set_to_none=True)
            loss_d.backward()
            self.optimizers["d"].step()

        self.d.requires_grad_(False)  # no D gradients in the G step
        y = data.labels(n) if c.conditional else None
        if c.g_mode_seeking > 0 and y is not None:  # pairs (i, i + n/2) share a label: the term compares them
            y = torch.cat([y[: n // 2], y[: n - n // 2]])
        z = data.randn(n, c.latent_dim)
        if c.latent_labels:
            y = self.g.latent_label(z)
        fake = self.g.forward_net(z, y)
        loss_g = losses.g_loss(self.d(fake, y), c.gan_loss)
        if c.g_mmd_weight > 0:
            loss_g = loss_g + c.g_mmd_weight * losses.mmd2(fake, data.batch(n)[0], c.g_mmd_bandwidth)
        if c.g_bin_width_bound > 0 and (excess := self.g.bin_width_excess()) is not None:
            loss_g = loss_g + c.g_bin_width_bound * excess
        if c.g_mode_seeking > 0:
            loss_g = loss_g + c.g_mode_seeking * losses.mode_seeking(fake, z)
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["g"].step()
        if self.ema is not None:
            self._update_ema(step)
        return torch.stack([loss_d, loss_g]).detach()

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        """Exponential moving average of the generator weights (Yazici et al. 2019; Karras et al. 2018)."""
        assert self.ema is not None
        decay = min(self.c.ema_decay, (1 + step) / (EMA_WARMUP_STEPS + step))
        for pe, p in zip(self.ema.parameters(), self.g.parameters(), strict=True):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(self.ema.buffers(), self.g.buffers(), strict=True):
            be.copy_(b)

    def served(self) -> GenerativeModel:
        return self.ema if self.ema is not None else self.g


# --- state: snapshots and checkpoints ----------------------------------------------------------------------------
def _capture(task: _Task, gen: torch.Generator, step: int, to_cpu: bool) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Everything needed to continue the run, as flat tensors plus JSON-serializable meta. Tensors are copies
    (never views of live weights), so safetensors can store them and later steps cannot change them."""

    def own(t: Tensor) -> Tensor:
        return t.detach().to("cpu", copy=True) if to_cpu else t.detach().clone()

    tensors: dict[str, Tensor] = {"rng": gen.get_state().clone()}
    for name, module in task.modules.items():
        for k, v in module.state_dict().items():
            tensors[f"module.{name}.{k}"] = own(v)
    optim_meta: dict[str, Any] = {}
    for name, opt in task.optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, state in sd["state"].items():
            for k, v in state.items():
                if isinstance(v, Tensor):
                    tensors[f"optim.{name}.{idx}.{k}"] = own(v)
                else:
                    scalars.setdefault(str(idx), {})[k] = v
        optim_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, {"format": CHECKPOINT_FORMAT, "step": step, "optim": optim_meta}


def _restore(task: _Task, gen: torch.Generator, tensors: dict[str, Tensor], meta: dict[str, Any]) -> int:
    """The inverse of `_capture`; returns the step to continue from."""
    for name, module in task.modules.items():
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in task.optimizers.items():
        prefix = f"optim.{name}."
        state: dict[int, dict[str, Any]] = collections.defaultdict(dict)
        for key, v in tensors.items():
            if key.startswith(prefix):
                idx, k = key[len(prefix) :].split(".", 1)
                state[int(idx)][k] = v.clone()  # the optimizer adopts (and then updates) what it is given
        for idx, values in meta["optim"][name]["scalars"].items():
            state[int(idx)].update(values)
        groups = copy.deepcopy(meta["optim"][name]["param_groups"])
        opt.load_state_dict({"state": dict(state), "param_groups": groups})
    gen.set_state(tensors["rng"].cpu())
    return int(meta["step"])


def _pseudo_input_rows(k: int, labels: Tensor | None, classes: int, n: int, seed: int) -> Tensor:
    """The training rows a VampPrior's pseudo-inputs start at, seeded: K of the n (K per class, class by class, for
    a conditional model), each row once while its class has enough (a class with no training rows takes any)."""
    gen = torch.Generator().manual_seed(seed)
    everything = torch.arange(n)
    groups = [everything] if labels is None else [torch.nonzero(labels == c).flatten() for c in range(classes)]
    picks = []
    for rows in groups:
        rows = rows if len(rows) else everything
        order = rows[torch.randperm(len(rows), generator=gen)]
        picks.append(order[torch.arange(k) % len(order)])
    return torch.cat(picks)


def lr_schedule(config: TrainConfig, step: int) -> float:
    """The factor on every learning rate at this step (0-based): 1 until `lr_decay_start` of the steps, then a
    linear or cosine (Loshchilov & Hutter 2017) decay that reaches 0 after the last step."""
    if config.lr_decay == "none":
        return 1.0
    start = config.lr_decay_start * config.steps
    if step < start:
        return 1.0
    t = min(1.0, (step - start) / max(1.0, config.steps - start))
    if config.lr_decay == "linear":
        return 1.0 - t
    return 0.5 * (1.0 + math.cos(math.pi * t))


def _set_lr(task: _Task, scale: float) -> None:
    for name, opt in task.optimizers.items():
        for group in opt.param_groups:
            group["lr"] = task.base_lrs[name] * scale


def _first_nonfinite_tensor(tensors: Iterable[tuple[str, Tensor]]) -> str | None:
    items = [(k, t) for k, t in tensors if t.is_floating_point()]
    if not items:
        return None
    ok = torch.stack([t.isfinite().all() for _, t in items]).tolist()
    return next((k for (k, _), good in zip(items, ok, strict=True) if not good), None)


def _json_normal(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# --- the loop ----------------------------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    data: DatasetSplits,
    *,
    device: torch.device,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.5,
    should_stop: Callable[[], bool] | None = None,
    checkpointer: Checkpointer | None = None,
    classifier_cache: ClassifierCache | None = None,
    on_preview: Callable[[int, GenerativeModel], None] | None = None,
    init: Mapping[str, Tensor] | None = None,
) -> TrainResult:
    """Train `config` on `data.train` and measure the result on `data.test` (`compute_metrics`).

    `classifier_cache` keeps the feature classifiers of labeled image datasets (the worker passes the artifact
    store); when it is None, a process-wide in-memory cache does. Progress reports continue while the metrics are
    computed, with phase "metrics" (and the step at its total). Every report also goes into the run's `History`
    (returned, and carried in checkpoints); `on_preview(step, model)` is called at the steps `models.previews.due`
    names, with the model as it would be served (switch it to eval mode and back to sample from it). `init`, the
    weights of a stored model of the same spec, is where the net starts (its data standardization included); the
    optimizers and, for a GAN, the discriminator start fresh.

    Seeded: the same config, data and seed give the same model on CPU, whether or not the run was interrupted and
    resumed from a checkpoint. Raises `TrainingDiverged` when losses or weights stay non-finite after
    MAX_RECOVERIES roll-backs with a halved learning rate.
    """
    train_set = data.train
    check_data(config, train_set.kind, train_set.sample_shape, train_set.num_classes, len(train_set))
    spec = spec_for(config, train_set.kind, train_set.sample_shape, train_set.num_classes)

    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the caller's global RNG alone
        torch.manual_seed(config.seed)
        model = build_model(spec)
        x = torch.from_numpy(train_set.float_x()).to(device)
        if init is not None:
            model.load_state_dict(init)
        elif spec.kind == "points":  # standardize each dimension; the model keeps the map for serving
            scale = x.std(0) if len(x) > 1 else torch.ones_like(x[0])
            model.set_data_transform(x.mean(0).cpu(), torch.where(scale > MIN_DATA_SCALE, scale, 1.0).cpu())
        if isinstance(model, Generator) and spec.latent_labels and train_set.y is not None:  # the data's, always
            model.set_label_shares(torch.bincount(torch.tensor(train_set.y), minlength=spec.latent_labels))
        task: _Task
        if isinstance(model, VAE):
            task = _VAETask(config, model)
        else:
            assert isinstance(model, Generator)
            task = _GANTask(config, model, spec)
    for m in task.modules.values():
        m.to(device).train()
    with torch.no_grad():
        x_net = model.to_net(x)
    y = None
    if (config.conditional or spec.latent_labels) and train_set.y is not None:
        y = torch.tensor(train_set.y, dtype=torch.long).to(device)
    del x
    if isinstance(model, VAE) and model.pseudo_inputs is not None and init is None:
        labels = y.cpu() if spec.num_classes and y is not None else None
        rows = _pseudo_input_rows(spec.vamp_components, labels, spec.num_classes, len(x_net), config.seed)
        model.set_pseudo_inputs(x_net[rows.to(x_net.device)])
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed)
    binarize = (float(model.data_loc[0]), float(model.data_scale[0])) if config.binarize else None
    run = _Run(
        config,
        task,
        _Data(x_net, y, gen, binarize),
        on_progress,
        progress_interval_s,
        should_stop,
        checkpointer,
        on_preview,
    )
    canceled = run.loop()

    served = task.served().eval()
    metrics: dict[str, float] = {}
    if not canceled:
        try:
            metrics.update(
                compute_metrics(
                    served,
                    data.test,
                    config,
                    train_set=data.train,
                    mixture=data.mixture,
                    classifier_cache=classifier_cache,
                    on_progress=run.metrics_reporter(),
                )
            )
        except _Stopped:  # asked to stop while measuring: the model is not finished, so nothing is returned as one
            canceled = True
            metrics.clear()
    served.to("cpu")
    metrics.update(run.final_losses())
    if run.recoveries:
        metrics["recoveries"] = float(run.recoveries)
    metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    history = run.history.series(config.steps, None if canceled else metrics)
    return TrainResult(model=served, spec=spec, metrics=metrics, steps=run.step, canceled=canceled, history=history)


class _Stopped(Exception):
    """`should_stop` said so while the end-of-training metrics were computed."""


class _Run:
    """The mutable state of one train() call: step counter, clocks, loss accumulators, snapshot."""

    def __init__(
        self,
        config: TrainConfig,
        task: _Task,
        data: _Data,
        on_progress: Callable[[Progress], None] | None,
        progress_interval_s: float,
        should_stop: Callable[[], bool] | None,
        checkpointer: Checkpointer | None,
        on_preview: Callable[[int, GenerativeModel], None] | None = None,
    ) -> None:
        self.c, self.task, self.data = config, task, data
        self.on_preview = on_preview
        self.history = History()
        self.on_progress, self.progress_interval_s = on_progress, progress_interval_s
        self.should_stop, self.checkpointer = should_stop, checkpointer
        self.step = 0
        self.lr_scale = 1.0
        self.recoveries = 0
        self.prior_elapsed_s = 0.0
        self.names = task.loss_names
        self.acc = torch.zeros(len(self.names), dtype=torch.float64, device=data.x.device)  # since the last sync
        self.acc_steps = 0
        self.report_sum = [0.0] * len(self.names)  # since the last report
        self.report_steps = 0
        self.tail: collections.deque[tuple[list[float], int]] = collections.deque()  # (sums, steps) per sync
        self.last_reported_step = -1
        self.snapshot: tuple[dict[str, Tensor], dict[str, Any]] | None = None

    # -- checkpoint I/O --
    def _meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            **meta,
            "lr_scale": self.lr_scale,
            "recoveries": self.recoveries,
            "elapsed_s": self.elapsed(),
            "config": self.c.to_dict(),
            "history": self.history.to_dict(),
        }

    def resume(self) -> None:
        loaded = self.checkpointer.load() if self.checkpointer is not None else None
        if loaded is None:
            return
        tensors, meta = loaded
        current = {k: v for k, v in _json_normal(self.c.to_dict()).items() if k not in PRESENTATION_OPTIONS}
        saved = meta.get("config") or {}
        # Compared on the options that apply (checkpoints of earlier versions also list the other family's).
        if meta.get("format") != CHECKPOINT_FORMAT or {k: saved.get(k) for k in current} != current:
            log.warning("ignoring a checkpoint of another format or config; starting from step 0")
            return
        self.step = _restore(self.task, self.data.gen, tensors, meta)  # load_state_dict moves to the device
        self.lr_scale = float(meta.get("lr_scale", 1.0))
        self.recoveries = int(meta.get("recoveries", 0))
        self.prior_elapsed_s = float(meta.get("elapsed_s", 0.0))
        self.history = History.from_dict(meta.get("history"))
        self.history.truncate(self.step)
        _set_lr(self.task, self.lr_scale * lr_schedule(self.c, self.step))
        log.info("resuming from the checkpoint at step %d", self.step)

    def save(self) -> None:
        assert self.checkpointer is not None
        tensors, meta = _capture(self.task, self.data.gen, self.step, to_cpu=True)
        self.checkpointer.save(tensors, _json_normal(self._meta(meta)))
        self.last_save = time.monotonic()

    def elapsed(self) -> float:
        return self.prior_elapsed_s + time.monotonic() - self.t0

    # -- the loop --
    def loop(self) -> bool:
        """Run to the last step; True when stopped by should_stop."""
        self.t0 = time.monotonic()
        self.resume()
        total = self.c.steps
        self.session_start_step = self.step
        self.snapshot = _capture(self.task, self.data.gen, self.step, to_cpu=False)
        self.last_save = self.last_report = time.monotonic()
        last_poll = -math.inf
        canceled = False
        while self.step < total:
            now = time.monotonic()
            if self.should_stop is not None and now - last_poll >= STOP_POLL_INTERVAL_S:
                last_poll = now
                if self.should_stop():
                    canceled = True
                    break
            if self.c.lr_decay != "none":
                _set_lr(self.task, self.lr_scale * lr_schedule(self.c, self.step))
            self.acc += self.task.step(self.step, self.data)
            self.acc_steps += 1
            self.step += 1
            now = time.monotonic()
            report_due = (
                self.step == self.session_start_step + 1
                or self.step == total
                or now - self.last_report >= self.progress_interval_s
            )
            save_due = self.checkpointer is not None and now - self.last_save >= self.checkpointer.interval_s
            if report_due or save_due or self.step % SYNC_EVERY_STEPS == 0:
                if not self.sync():
                    continue  # rolled back
                if self.step - int(self.snapshot[1]["step"]) >= SNAPSHOT_EVERY_STEPS:
                    self.snapshot = _capture(self.task, self.data.gen, self.step, to_cpu=False)
                if report_due:
                    self.report()
            # The preview before the checkpoint: a worker killed between the two resumes from the previous checkpoint
            # and draws this step's preview again, where the other order would leave the step without one.
            if self.on_preview is not None and previews.due(self.c, self.step):
                self.on_preview(self.step, self.task.served())
            if save_due:
                self.save()
        if canceled:
            if self.acc_steps and not self.sync(recover=False):
                log.warning("non-finite state at cancel time; returning the last good state")
            if self.checkpointer is not None and self.step > self.session_start_step:
                self.save()
        return canceled

    def sync(self, recover: bool = True) -> bool:
        """Read the accumulated losses; on non-finite losses or weights roll back (False), else record them."""
        vals = self.acc.tolist()
        steps = self.acc_steps
        self.acc.zero_()
        self.acc_steps = 0
        bad = next((f"loss {n!r}" for n, v in zip(self.names, vals, strict=True) if not math.isfinite(v)), None)
        if bad is None:
            tensors = ((f"{name}.{k}", t) for name, m in self.task.modules.items() for k, t in m.state_dict().items())
            where = _first_nonfinite_tensor(tensors)
            bad = None if where is None else f"weight {where!r}"
        if bad is None:
            self.report_sum = [a + b for a, b in zip(self.report_sum, vals, strict=True)]
            self.report_steps += steps
            self.tail.append((vals, steps))
            while len(self.tail) > 1 and sum(s for _, s in self.tail) - self.tail[0][1] >= FINAL_LOSS_WINDOW_STEPS:
                self.tail.popleft()
            return True
        assert self.snapshot is not None
        if recover and self.recoveries >= MAX_RECOVERIES:
            raise TrainingDiverged(
                f"training diverged: {bad} became non-finite by step {self.step} of {self.c.steps}, also after "
                f"halving the learning rate {MAX_RECOVERIES} times; try a smaller lr"
            )
        failed_at = self.step
        self.step = _restore(self.task, self.data.gen, *self.snapshot)
        self.history.truncate(self.step)
        if recover:
            self.recoveries += 1
            self.lr_scale *= 0.5
            _set_lr(self.task, self.lr_scale * lr_schedule(self.c, self.step))
            log.warning(
                "%s became non-finite by step %d; back to step %d with lr x%g", bad, failed_at, self.step, self.lr_scale
            )
        self.report_sum = [0.0] * len(self.names)
        self.report_steps = 0
        return False

    def report(self) -> None:
        if self.on_progress is None or self.step <= self.last_reported_step or self.report_steps == 0:
            return
        done = self.step - self.session_start_step
        session_s = time.monotonic() - self.t0
        eta = session_s / done * (self.c.steps - self.step) if done > 0 else None
        losses_now = {n: s / self.report_steps for n, s in zip(self.names, self.report_sum, strict=True)}
        self.history.add(self.step, self.elapsed(), self._lr(), losses_now)
        self.on_progress(
            Progress(
                step=self.step, total_steps=self.c.steps, losses=losses_now, elapsed_s=self.elapsed(), eta_seconds=eta
            )
        )
        self.last_reported_step = self.step
        self.last_report = time.monotonic()
        self.report_sum = [0.0] * len(self.names)
        self.report_steps = 0

    def _lr(self) -> float:
        """The generator's (or the VAE's) learning rate now."""
        opt = next(iter(self.task.optimizers.values()))
        return float(opt.param_groups[0]["lr"])

    def metrics_reporter(self) -> MetricsProgress | None:
        """A callback for `compute_metrics` that sends progress (phase "metrics") at most every interval, and asks
        `should_stop` as often as the training loop does, raising `_Stopped` when it says so."""
        if self.on_progress is None and self.should_stop is None:
            return None
        on_progress, should_stop = self.on_progress, self.should_stop
        last = [time.monotonic()]  # quick metrics report nothing; long ones every progress interval
        polled = [-math.inf]
        sent = [False]
        losses_now = self.final_losses()

        def report(detail: str, fraction: float) -> None:
            now = time.monotonic()
            if should_stop is not None and now - polled[0] >= STOP_POLL_INTERVAL_S:
                polled[0] = now
                if should_stop():
                    raise _Stopped
            if on_progress is None:
                return
            if now - last[0] < self.progress_interval_s and not (detail == "done" and sent[0]):
                return
            last[0] = now
            sent[0] = True
            on_progress(
                Progress(
                    step=self.step,
                    total_steps=self.c.steps,
                    losses=losses_now,
                    elapsed_s=self.elapsed(),
                    phase="metrics",
                    detail=detail,
                )
            )

        return report

    def final_losses(self) -> dict[str, float]:
        steps = sum(s for _, s in self.tail)
        if not steps:
            return {}
        return {n: sum(v[i] for v, _ in self.tail) / steps for i, n in enumerate(self.names)}
