"""The training loop on tiny synthetic data: learning, conditioning, progress, cancel, checkpoints, divergence,
determinism, metrics, and config resolution. Every run is seeded; nothing here depends on timing but the polls."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from models import losses, training
from models.config import GAN_OPTIONS, VAE_OPTIONS, Family, TrainConfig, applicable_options
from models.data.arrays import ArrayDataset, DatasetSplits
from models.errors import Invalid, TrainingDiverged
from models.metrics import energy_distance
from models.nets import GenerativeModel, build_model
from models.progress import Progress
from models.recipes import RECIPES, recipe_for, resolve_config
from models.training import TrainResult, train
from tests.helpers import DEVICE

DEV = torch.device(DEVICE)  # the CPU unless GENSERVE_TEST_DEVICE says otherwise


# --- data ---------------------------------------------------------------------------------------------------------
def blobs(n: int, seed: int = 0, k: int = 4) -> ArrayDataset:
    """k tight blobs on a circle of radius 2 around (3, -1), labeled by blob."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    a = 2 * np.pi * y / k
    x = np.stack([3 + 2 * np.cos(a), -1 + 2 * np.sin(a)], 1) + 0.1 * rng.standard_normal((n, 2))
    return ArrayDataset(x.astype(np.float32), y.astype(np.int64), "points", [f"b{i}" for i in range(k)])


def blob(n: int, seed: int = 0) -> ArrayDataset:
    """One correlated Gaussian blob (unlabeled): a target that a few GAN steps reliably move toward."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)) @ np.array([[1.0, 0.0], [0.9, 0.3]]).T * 0.5 + [3.0, -1.0]
    return ArrayDataset(x.astype(np.float32), None, "points")


def bars(n: int, seed: int = 0, classes: int = 2, shape: tuple[int, ...] = (8, 8)) -> ArrayDataset:
    """Images with the top half bright (class 0) or the bottom half (class 1), plus noise; uint8 like real data.
    With classes=1 every image is "top": a single mode."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    h = shape[0]
    x = np.full((n, *shape), 0.05, np.float32)
    x[y == 0, : h // 2] = 0.95
    x[y == 1, h // 2 :] = 0.95
    x = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    names = ["top", "bottom"][:classes]
    return ArrayDataset((x * 255).round().astype(np.uint8), y.astype(np.int64), "images", names)


def splits(ds: ArrayDataset) -> DatasetSplits:
    return ds.split(0.2, seed=0)


def config(family: str, kind: str, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "family": family,
        "steps": 40,
        "batch_size": 32,
        "lr": 1e-3,
        "latent_dim": 4,
        "architecture": "mlp" if kind == "points" else "conv",
        "width": 32 if kind == "points" else 8,
        "decoder": "gaussian" if kind == "points" else "bernoulli",
        "eval_iw_k": 8,
        "seed": 0,
    }
    return TrainConfig(**{**base, **kw})


def run(cfg: TrainConfig, data: DatasetSplits, **kw: Any) -> tuple[TrainResult, list[Progress]]:
    """Train with a report at every step; returns the training-phase reports (not the metrics phase's)."""
    seen: list[Progress] = []
    result = train(cfg, data, device=DEV, on_progress=seen.append, progress_interval_s=0.0, **kw)
    return result, [p for p in seen if p.phase == "train"]


def assert_finite(model: torch.nn.Module) -> None:
    for k, t in model.state_dict().items():
        assert torch.isfinite(t).all(), k


def untrained(result: TrainResult) -> GenerativeModel:
    """The net a run started from (same seed), with the trained net's data transform."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(result.spec)
    model.set_data_transform(result.model.data_loc, result.model.data_scale)
    model.eval()
    return model


def samples(model: GenerativeModel, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    z = torch.randn(n, model.spec.latent_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model.generate(z, labels).flatten(1)


# --- learning -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("kind", ["points", "images"])
def test_vae_reconstruction_loss_falls(kind: str, conditional: bool) -> None:
    data = splits(blobs(512) if kind == "points" else bars(256))
    result, seen = run(config("vae", kind, conditional=conditional, steps=60), data)
    recon = [p.losses["recon"] for p in seen]
    assert np.mean(recon[-5:]) < np.mean(recon[:5]) - 0.5  # nats
    assert result.steps == 60 and not result.canceled
    assert not result.model.training  # and on the CPU, wherever it trained (TrainResult), ready to be stored
    assert next(result.model.parameters()).device == torch.device("cpu")
    assert_finite(result.model)
    assert {"test_neg_elbo", "test_nll_iw", "loss", "recon", "kl"} <= result.metrics.keys()
    assert ("energy_distance" in result.metrics) == (kind == "points")


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("kind", ["points", "images"])
def test_gan_samples_move_toward_the_data(kind: str, conditional: bool) -> None:
    """Energy distance to the training data at least halves against the untrained generator. Unconditional runs
    learn a single mode (a few GAN steps cannot be relied on to split modes); conditional ones learn several."""
    if kind == "points":
        ds = blobs(512) if conditional else blob(512)
        cfg = config("gan", kind, conditional=conditional, steps=100)
    else:
        ds = bars(256, classes=2 if conditional else 1)
        cfg = config("gan", kind, conditional=conditional, steps=100, width=16)
    result, seen = run(cfg, splits(ds))
    labels = torch.from_numpy(ds.y) if conditional else None
    x = torch.from_numpy(ds.float_x()).flatten(1)
    before = energy_distance(samples(untrained(result), len(x), labels), x)
    after = energy_distance(samples(result.model, len(x), labels), x)
    assert after < 0.5 * before
    assert {"loss_d", "loss_g"} <= seen[-1].losses.keys()
    assert_finite(result.model)


def test_conditional_vae_follows_its_labels() -> None:
    data = splits(bars(256))
    result, _ = run(config("vae", "images", conditional=True, steps=150), data)
    z = torch.zeros(2, 4)
    with torch.no_grad():
        top, bottom = result.model.generate(z, torch.tensor([0, 1]))
    assert top[:4].mean() > 0.7 > 0.3 > top[4:].mean()
    assert bottom[4:].mean() > 0.7 > 0.3 > bottom[:4].mean()


@pytest.mark.parametrize(
    "options",
    [
        {"gan_loss": "hinge", "spectral_norm": True, "pack": 2, "d_steps": 2, "latent_categories": 4},
        {"gan_loss": "wgan-gp", "r1_gamma": 1.0, "ema_decay": 0.9, "d_lr": 2e-3},
        {"g_mode_seeking": 1.0, "pack": 2},
    ],
)
def test_gan_options_train(options: dict[str, Any]) -> None:
    result, seen = run(config("gan", "images", conditional=True, steps=10, **options), splits(bars(64)))
    assert result.steps == 10 and len(seen) == 10
    assert_finite(result.model)


def test_point_gan_options_train() -> None:
    """The point-model options (bins with positions, Fourier features, the MMD term) train together and resume."""
    options = {"latent_categories": 4, "latent_bin_positions": True, "d_fourier_features": 8, "g_mmd_weight": 1.0}
    result, seen = run(config("gan", "points", steps=10, pack=2, **options), splits(blobs(128)))
    assert result.steps == 10 and len(seen) == 10
    assert_finite(result.model)


def test_bin_noise_widths_are_trained() -> None:
    """latent_bin_noise: the per-bin widths are learned (they leave their start) and stay finite."""
    options = {"latent_dim": 3, "latent_categories": 4, "latent_binned_dims": 1, "latent_bin_noise": True}
    result, _ = run(config("gan", "points", steps=10, pack=2, g_mmd_weight=1.0, **options), splits(blobs(128)))
    width = result.model.state_dict()["bin_log_width"]
    assert width.shape == (4, 2) and torch.isfinite(width).all()
    assert not torch.allclose(width, torch.full_like(width, -math.log(4) / 2))
    assert_finite(result.model)
    bounded, seen = run(config("gan", "points", steps=10, pack=2, g_bin_width_bound=10.0, **options), splits(blobs(64)))
    assert len(seen) == 10 and torch.isfinite(bounded.model.state_dict()["bin_log_width"]).all()


@pytest.mark.parametrize(
    "options",
    [
        {"iwae_k": 4},
        {"kl_warmup_steps": 10, "free_bits": 0.5, "beta": 2.0},
        {"decoder": "gaussian"},
        {"vamp_components": 8},
        {"vamp_components": 8, "iwae_k": 3},
        {"vamp_components": 3, "conditional": True},
        {"decoder_output": "mode", "conditional": True},
    ],
)
def test_vae_options_train(options: dict[str, Any]) -> None:
    result, seen = run(config("vae", "images", steps=10, **options), splits(bars(64)))
    assert result.steps == 10 and "test_nll_iw" in result.metrics
    assert_finite(result.model)


def test_ema_weights_are_served() -> None:
    cfg = config("gan", "points", steps=20, ema_decay=0.9)
    result, _ = run(cfg, splits(blob(128)))
    plain, _ = run(replace(cfg, ema_decay=0.0), splits(blob(128)))
    assert not torch.equal(result.model.state_dict()["body.out.weight"], plain.model.state_dict()["body.out.weight"])
    save(result.model.state_dict())  # no storage shared with the live generator


# --- determinism, progress, cancel ------------------------------------------------------------------------------------
def test_same_seed_same_model() -> None:
    cfg = config("gan", "points", conditional=True, steps=15, ema_decay=0.9)
    a, _ = run(cfg, splits(blobs(128)))
    b, _ = run(cfg, splits(blobs(128)))
    c, _ = run(replace(cfg, seed=1), splits(blobs(128)))
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert a.metrics == b.metrics
    assert not torch.equal(a.model.state_dict()["body.out.weight"], c.model.state_dict()["body.out.weight"])


def test_progress_steps_increase_and_end_at_total() -> None:
    seen: list[Progress] = []
    train(
        config("vae", "points", steps=30),
        splits(blobs(128)),
        device=DEV,
        on_progress=seen.append,
        progress_interval_s=3600.0,
    )
    assert [p.step for p in seen] == [1, 30]  # first and last always, nothing between at this interval
    _, seen = run(config("vae", "points", steps=30), splits(blobs(128)))
    steps = [p.step for p in seen]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 30
    assert all(p.total_steps == 30 and p.elapsed_s >= 0 for p in seen)
    assert seen[-1].eta_seconds == 0.0
    assert set(seen[0].losses) == {"loss", "recon", "kl"}


def test_metrics_phase_is_reported_after_the_last_step() -> None:
    seen: list[Progress] = []
    train(
        config("vae", "points", steps=20),
        splits(blobs(128)),
        device=DEV,
        on_progress=seen.append,
        progress_interval_s=0.0,
    )
    phases = [p.phase for p in seen]
    first_metrics = phases.index("metrics")
    assert set(phases[:first_metrics]) == {"train"} and set(phases[first_metrics:]) == {"metrics"}
    metric_reports = seen[first_metrics:]
    assert all(p.step == 20 == p.total_steps for p in metric_reports)
    assert {"test_neg_elbo", "test_nll_iw"} <= {p.detail for p in metric_reports}
    assert metric_reports[-1].detail == "done"


def test_should_stop_cancels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "STOP_POLL_INTERVAL_S", 0.0)
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 5

    result, seen = run(config("gan", "points", steps=1000), splits(blob(128)), should_stop=should_stop)
    assert result.canceled and result.steps == 5
    assert seen[-1].step <= 5
    assert_finite(result.model)
    assert all(np.isfinite(v) for v in result.metrics.values())


def test_stop_before_the_first_step() -> None:
    result, seen = run(config("vae", "images", steps=50), splits(bars(64)), should_stop=lambda: True)
    assert result.canceled and result.steps == 0 and seen == []
    assert_finite(result.model)


# --- checkpoints ----------------------------------------------------------------------------------------------------
class Crash(BaseException):
    """Stands in for a worker killed mid-run."""


class MemoryCheckpointer:
    """Keeps the last checkpoint as safetensors bytes + JSON, the way the store would; can crash after a save."""

    def __init__(self, interval_s: float = 0.0, crash_at_step: int | None = None) -> None:
        self.interval_s = interval_s
        self.crash_at_step = crash_at_step
        self.blob: tuple[bytes, str] | None = None
        self.saved_steps: list[int] = []

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        return None if self.blob is None else (load(self.blob[0]), json.loads(self.blob[1]))

    def save(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.blob = (save(tensors), json.dumps(meta))
        self.saved_steps.append(meta["step"])
        if self.crash_at_step is not None and meta["step"] >= self.crash_at_step:
            self.crash_at_step = None
            raise Crash


@pytest.mark.parametrize(
    ("family", "kind", "options"),
    [
        ("vae", "images", {"conditional": True}),
        (
            "gan",
            "points",
            {
                "ema_decay": 0.9,
                "spectral_norm": True,
                "pack": 2,
                "d_steps": 2,
                "gan_loss": "wgan-gp",
                "latent_categories": 3,
            },
        ),
    ],
)
def test_resume_after_a_crash_equals_an_uninterrupted_run(family: str, kind: str, options: dict[str, Any]) -> None:
    cfg = config(family, kind, steps=40, **options)
    data = splits(blobs(128) if kind == "points" else bars(64))
    whole, _ = run(cfg, data)

    ckpt = MemoryCheckpointer(crash_at_step=17)
    with pytest.raises(Crash):
        run(cfg, data, checkpointer=ckpt)
    resumed, seen = run(cfg, data, checkpointer=ckpt)
    assert seen[0].step == 18  # continues from the saved step
    assert resumed.steps == 40
    for k, v in whole.model.state_dict().items():
        if DEV.type == "cpu":  # bitwise on the CPU (train's promise); CUDA's conv and embedding backward use atomics
            assert torch.equal(v, resumed.model.state_dict()[k]), k
        else:
            torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0.05, atol=0.05, msg=k)


def test_a_restored_snapshot_stays_intact() -> None:
    """Roll-backs may return to one snapshot twice: restoring must not hand its tensors to the live optimizer."""
    cfg = config("vae", "points")
    data = splits(blobs(64)).train
    torch.manual_seed(0)
    model = build_model(training.spec_for(cfg, "points", (2,), 0))
    task = training._VAETask(cfg, model)  # type: ignore[arg-type]
    batches = training._Data(model.to_net(torch.from_numpy(data.x)), None, torch.Generator().manual_seed(0))
    task.step(0, batches)
    snapshot = training._capture(task, batches.gen, 1, to_cpu=False)
    frozen = {k: v.clone() for k, v in snapshot[0].items()}
    training._restore(task, batches.gen, *snapshot)
    for step in range(1, 4):
        task.step(step, batches)
    assert all(torch.equal(v, frozen[k]) for k, v in snapshot[0].items())


def test_checkpoints_follow_their_interval() -> None:
    ckpt = MemoryCheckpointer(interval_s=3600.0)
    run(config("vae", "points", steps=20), splits(blobs(64)), checkpointer=ckpt)
    assert ckpt.saved_steps == []  # none within the interval, and none at the end


def test_cancel_keeps_a_checkpoint_to_resume_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "STOP_POLL_INTERVAL_S", 0.0)
    ckpt = MemoryCheckpointer(interval_s=3600.0)
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 8

    cfg = config("vae", "points", steps=30)
    result, _ = run(cfg, splits(blobs(64)), checkpointer=ckpt, should_stop=should_stop)
    assert result.canceled and ckpt.saved_steps == [8]
    resumed, seen = run(cfg, splits(blobs(64)), checkpointer=ckpt)
    assert seen[0].step == 9 and resumed.steps == 30


def test_checkpoint_of_another_config_is_ignored() -> None:
    ckpt = MemoryCheckpointer(interval_s=0.0)
    run(config("vae", "points", steps=10), splits(blobs(64)), checkpointer=ckpt)
    ckpt.interval_s = 3600.0
    _, seen = run(config("vae", "points", steps=10, lr=5e-4), splits(blobs(64)), checkpointer=ckpt)
    assert seen[0].step == 1


# --- divergence -----------------------------------------------------------------------------------------------------
def test_nan_data_diverges_with_a_clear_error() -> None:
    ds = blobs(64)
    x = ds.x.copy()
    x[::2] = np.nan
    bad = ArrayDataset(x, ds.y, "points", ds.classes)
    with pytest.raises(TrainingDiverged, match=r"loss 'loss' became non-finite by step \d+"):
        train(config("vae", "points", steps=50), DatasetSplits(bad, bad), device=DEV)


def test_huge_lr_never_returns_nonfinite_weights() -> None:
    for family in ("vae", "gan"):
        try:
            result = train(config(family, "points", steps=60, lr=1e6), splits(blobs(64)), device=DEV)
        except TrainingDiverged:
            continue
        assert_finite(result.model)


def test_a_transient_nan_is_recovered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = losses.neg_elbo

    def flaky(*args: Any, **kw: Any) -> torch.Tensor:
        calls.append(1)
        loss = real(*args, **kw)
        return loss * float("nan") if len(calls) == 7 else loss

    monkeypatch.setattr(losses, "neg_elbo", flaky)
    result, seen = run(config("vae", "points", steps=30), splits(blobs(64)))
    assert result.steps == 30 and result.metrics["recoveries"] == 1.0
    assert all(np.isfinite(list(p.losses.values())).all() for p in seen)
    assert_finite(result.model)


# --- metrics ----------------------------------------------------------------------------------------------------------
def test_energy_distance() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    assert energy_distance(a, a) == 0.0
    assert energy_distance(a, b) < 0.05 < energy_distance(a, b + 1.0)


# --- config resolution --------------------------------------------------------------------------------------------
def test_resolve_fills_defaults_from_the_recipe() -> None:
    c = resolve_config(
        {"family": "gan", "dataset": "ring2d", "lr": None},
        dataset_id="ring2d",
        kind="points",
        sample_shape=(2,),
        num_classes=8,
    )
    recipe = RECIPES["ring2d"]["gan"]
    assert (c.steps, c.batch_size, c.lr, c.latent_dim, c.width) == (
        recipe.steps,
        recipe.batch_size,
        recipe.lr,
        recipe.latent_dim,
        recipe.mlp_width,
    )
    assert c.architecture == "mlp" and c.decoder == "gaussian" and not c.conditional
    assert c.latent_categories == recipe.options["latent_categories"] > 0  # the recipe's options are applied too
    assert 0 <= c.seed < 2**31
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())) | {"unknown": 1}) == c
    c2 = resolve_config(
        {"family": "vae", "steps": 7, "seed": 3, "free_bits": 0.0},
        dataset_id="ds_abc",
        kind="points",
        sample_shape=(5,),
        num_classes=0,
    )
    assert (c2.steps, c2.seed, c2.latent_dim, c2.free_bits) == (7, 3, 5, 0.0)


def test_a_config_lists_only_its_familys_options() -> None:
    """A GAN's stored recipe says nothing of `beta` or `free_bits`, a VAE's nothing of `gan_loss`; reading one back
    gives the same config, and an older record listing every option is shown without the other family's."""
    shape: dict[str, Any] = {"dataset_id": "ds_x", "kind": "points", "sample_shape": (2,), "num_classes": 0}
    for family, other in (("gan", VAE_OPTIONS), ("vae", GAN_OPTIONS)):
        c = resolve_config({"family": family}, **shape)
        stored = c.to_dict()
        assert not set(other) & stored.keys(), family
        assert TrainConfig.from_dict(stored) == c
        old = dataclasses.asdict(c)  # what earlier versions stored
        assert set(other) <= old.keys() and applicable_options(old) == stored


@pytest.mark.parametrize(
    ("shape", "arch"), [((8, 8), "conv"), ((28, 28), "conv"), ((16, 16, 3), "conv"), ((10, 10), "mlp"), ((4, 4), "mlp")]
)
def test_resolve_picks_the_architecture_from_the_shape(shape: tuple[int, ...], arch: str) -> None:
    for given in ({}, {"architecture": "auto"}):
        c = resolve_config(
            {"family": "vae", **given}, dataset_id="ds_x", kind="images", sample_shape=shape, num_classes=0
        )
        assert c.architecture == arch and c.decoder == "bernoulli"
    c = resolve_config({"family": "gan"}, dataset_id="digits", kind="images", sample_shape=(8, 8), num_classes=10)
    assert c.width == RECIPES["digits"]["gan"].conv_width


@pytest.mark.parametrize(
    ("overrides", "kind", "shape", "classes", "field"),
    [
        ({"family": "vae", "conditional": True}, "points", (2,), 0, "conditional"),
        ({"family": "gan", "architecture": "conv"}, "points", (2,), 0, "architecture"),
        ({"family": "gan", "architecture": "conv"}, "images", (10, 10), 0, "architecture"),
        ({"family": "vae", "decoder": "bernoulli"}, "points", (2,), 0, "decoder"),
        ({"family": "gan", "pack": 3, "batch_size": 64}, "points", (2,), 0, "batch_size"),
        ({"family": "gan", "ema_decay": 1.0}, "points", (2,), 0, "ema_decay"),
        ({"family": "flow"}, "points", (2,), 0, "family"),
    ],
)
def test_resolve_rejects(
    overrides: dict[str, Any], kind: str, shape: tuple[int, ...], classes: int, field: str
) -> None:
    with pytest.raises(Invalid) as err:
        resolve_config(overrides, dataset_id="ds_x", kind=kind, sample_shape=shape, num_classes=classes)  # type: ignore[arg-type]
    assert err.value.field == (field,)


def test_resolve_rounds_the_recipe_batch_to_the_pack() -> None:
    c = resolve_config(
        {"family": "gan", "pack": 3}, dataset_id="ring2d", kind="points", sample_shape=(2,), num_classes=0
    )
    assert c.batch_size % 3 == 0


# --- schedules, binarization, architectures (issue 3) ----------------------------------------------------------------
def test_lr_decays_to_zero_by_the_last_step() -> None:
    ckpt = MemoryCheckpointer(interval_s=0.0)
    cfg = config("gan", "points", steps=40, lr_decay="linear", lr_decay_start=0.5)
    run(cfg, splits(blob(64)), checkpointer=ckpt)
    meta = json.loads(ckpt.blob[1])  # type: ignore[index]
    lrs = [meta["optim"][name]["param_groups"][0]["lr"] for name in ("g", "d")]
    assert meta["step"] == 40 and all(0 < lr <= 1e-3 * 0.05 * (1 + 1e-6) for lr in lrs)  # last step: 1/20 of lr


def test_dynamic_binarization_draws_fresh_binary_batches() -> None:
    x = torch.full((100, 1, 4, 4), 0.3)
    data = training._Data(x, None, torch.Generator().manual_seed(0), binarize=(0.0, 1.0))
    a, _ = data.batch(100)
    b, _ = data.batch(100)
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)
    assert abs(float(torch.cat([a, b]).mean()) - 0.3) < 0.05
    gan = training._Data(x * 2 - 1, None, torch.Generator().manual_seed(0), binarize=(0.5, 0.5))  # GAN net space
    assert set(gan.batch(50)[0].unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(
    "options",
    [{"activation": "gated", "depth": 2}, {"activation": "silu", "depth": 1}, {"binarize": True, "lr_decay": "cosine"}],
)
def test_architecture_and_data_options_train(options: dict[str, Any]) -> None:
    kind = "images" if "binarize" in options else "points"
    cfg = config("vae", kind, steps=10, **({"architecture": "mlp", "width": 16} | options))
    result, _ = run(cfg, splits(bars(64) if kind == "images" else blobs(64)))
    assert result.steps == 10 and "test_nll_iw" in result.metrics
    assert result.spec.mlp_depth == cfg.depth and result.spec.activation == cfg.activation
    assert_finite(result.model)


@pytest.mark.parametrize(
    ("request_options", "binned", "noise"),
    [
        ({}, 1, True),  # the recipe's layout: one binned coordinate, two of noise
        ({"latent_dim": 2}, 1, False),  # one coordinate left for noise, the data has two: the noise gives way
        ({"latent_categories": 0}, 0, False),  # no bins: neither binned coordinates nor noise around them
        ({"latent_binned_dims": 2, "latent_dim": 4}, 2, True),  # asked for, and it still fits
    ],
)
def test_a_recipes_latent_layout_gives_way_to_the_request(
    request_options: dict[str, Any], binned: int, noise: bool
) -> None:
    c = resolve_config(
        {"family": "gan", **request_options}, dataset_id="ring2d", kind="points", sample_shape=(2,), num_classes=0
    )
    assert (c.latent_binned_dims, c.latent_bin_noise) == (binned, noise)
    grid = resolve_config(
        {"family": "gan", **request_options}, dataset_id="grid2d", kind="points", sample_shape=(2,), num_classes=0
    )
    assert (grid.latent_binned_dims, grid.latent_bin_noise) == (binned, noise)
    assert grid.g_bin_width_bound == (10.0 if noise else 0.0)  # the bound goes with the noise it bounds


def test_a_latent_layout_the_request_names_is_never_dropped() -> None:
    for options in ({"latent_bin_noise": True, "latent_dim": 2}, {"latent_binned_dims": 1, "latent_categories": 0}):
        with pytest.raises(Invalid) as err:
            resolve_config(
                {"family": "gan", **options}, dataset_id="ring2d", kind="points", sample_shape=(2,), num_classes=0
            )
        assert err.value.field in (("latent_bin_noise",), ("latent_binned_dims",))
        assert err.value.field[0] in options


def test_benchmark_recipes_resolve() -> None:
    ring = resolve_config({"family": "gan"}, dataset_id="ring2d", kind="points", sample_shape=(2,), num_classes=0)
    grid = resolve_config({"family": "gan"}, dataset_id="grid2d", kind="points", sample_shape=(2,), num_classes=0)
    for c in (ring, grid):
        assert c.steps <= 25_000 and c.pack > 1 and c.lr_decay == "linear" and c.batch_size % c.pack == 0
    for c, bins in ((ring, 8), (grid, 25)):  # the measured latents: one bin per mode, the rest output noise
        assert (c.latent_dim, c.latent_categories, c.latent_binned_dims) == (3, bins, 1)
        assert c.latent_bin_noise and c.g_mmd_weight == 10.0 and c.ema_decay == 0.999
    assert (grid.d_lr, grid.d_steps, ring.d_lr, ring.d_steps) == (2e-3, 2, None, 1)
    assert (grid.g_bin_width_bound, ring.g_bin_width_bound) == (10.0, 0.0)
    vae = resolve_config({"family": "vae"}, dataset_id="mnist", kind="images", sample_shape=(28, 28), num_classes=10)
    assert (vae.architecture, vae.binarize, vae.decoder, vae.latent_dim) == ("mlp", True, "bernoulli", 50)
    conv = resolve_config(
        {"family": "vae", "architecture": "conv"},
        dataset_id="mnist",
        kind="images",
        sample_shape=(28, 28),
        num_classes=10,
    )
    assert conv.architecture == "conv" and conv.width == RECIPES["mnist"]["vae"].conv_width
    cvae = resolve_config(
        {"family": "vae", "conditional": True}, dataset_id="mnist", kind="images", sample_shape=(28, 28), num_classes=10
    )
    assert (cvae.latent_dim, cvae.steps, cvae.binarize) == (8, 30_000, True)  # the conditional MNIST VAE recipe
    for dataset_id in ("mnist", "ds_upload"):  # conditional image GANs (MNIST and uploads): the mode-seeking term
        cgan = resolve_config(
            {"family": "gan", "conditional": True},
            dataset_id=dataset_id,
            kind="images",
            sample_shape=(28, 28),
            num_classes=10,
        )
        assert cgan.latent_dim == RECIPES["mnist"]["gan"].latent_dim and cgan.g_mode_seeking == 0.1
        assert (cgan.steps, cgan.lr_decay) == (8000, "none")
    gans = {  # the unconditional MNIST GAN trains longer, with a decay; 28x28 uploads keep the image recipe
        dataset_id: resolve_config(
            {"family": "gan"}, dataset_id=dataset_id, kind="images", sample_shape=(28, 28), num_classes=10
        )
        for dataset_id in ("mnist", "ds_upload")
    }
    assert (gans["mnist"].steps, gans["mnist"].lr_decay, gans["mnist"].lr_decay_start) == (20_000, "linear", 0.8)
    assert (gans["ds_upload"].steps, gans["ds_upload"].lr_decay) == (8000, "none")
    assert (gans["mnist"].width, gans["ds_upload"].width) == (48, 32)  # a wider net for MNIST only
    assert gans["mnist"].latent_labels and gans["ds_upload"].latent_labels
    seeking = [
        resolve_config(
            {"family": "gan", "conditional": c}, dataset_id="digits", kind="images", sample_shape=(8, 8), num_classes=10
        ).g_mode_seeking
        for c in (True, False)
    ]
    assert seeking == [0.1, 0.0]  # the conditional digits GAN's own recipe: variety inside a class, measured
    cvae = resolve_config(
        {"family": "vae", "conditional": True}, dataset_id="digits", kind="images", sample_shape=(8, 8), num_classes=10
    )
    assert (cvae.latent_dim, cvae.free_bits, cvae.steps) == (8, 1.25, 20_000)
    assert (cvae.lr_decay, cvae.lr_decay_start) == ("linear", 0.8)
    shapes_cgan = resolve_config(
        {"family": "gan", "conditional": True},
        dataset_id="shapes",
        kind="images",
        sample_shape=(32, 32, 3),
        num_classes=4,
    )
    assert (shapes_cgan.steps, shapes_cgan.lr_decay, shapes_cgan.g_mode_seeking) == (14_000, "linear", 0.1)
    shapes_cvae = resolve_config(
        {"family": "vae", "conditional": True},
        dataset_id="ds_upload",
        kind="images",
        sample_shape=(32, 48, 3),
        num_classes=4,
    )  # a color upload of 32+ px takes the shapes recipe
    assert (shapes_cvae.steps, shapes_cvae.lr, shapes_cvae.latent_dim, shapes_cvae.vamp_components) == (
        15_000,
        5e-4,
        8,
        10,
    )
    assert (shapes_cvae.lr_decay, shapes_cvae.decoder_output) == ("linear", "mean")


@pytest.mark.parametrize(
    ("shape", "like"),
    [((32, 32, 3), "shapes"), ((64, 48, 3), "shapes"), ((28, 28, 3), "images"), ((32, 32), "images")],
)
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("family", ["vae", "gan"])
def test_image_uploads_take_the_recipe_measured_on_data_like_theirs(
    shape: tuple[int, ...], like: str, conditional: bool, family: Family
) -> None:
    """Color uploads of 32+ px: shapes' recipes; grayscale and smaller color images: MNIST's (the "images" ones)."""
    assert recipe_for("ds_upload", "images", family, conditional, shape) is recipe_for(
        like, "images", family, conditional, shape
    )
    config = resolve_config(
        {"family": family, "conditional": conditional, "seed": 1},
        dataset_id="ds_upload",
        kind="images",
        sample_shape=shape,
        num_classes=4,
    )
    builtin = resolve_config(
        {"family": family, "conditional": conditional, "seed": 1},
        dataset_id=like if like == "shapes" else "ds_other",
        kind="images",
        sample_shape=shape,
        num_classes=4,
    )
    assert config == builtin


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"binarize": True}, "binarize"),
        ({"activation": "tanh"}, "activation"),
        ({"lr_decay": "step"}, "lr_decay"),
        ({"lr_decay_start": 1.0}, "lr_decay_start"),
        ({"depth": 0}, "depth"),
    ],
)
def test_resolve_rejects_bad_new_options(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as err:
        resolve_config(
            {"family": "vae", **overrides}, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=0
        )
    assert err.value.field == (field,)


def test_a_training_can_start_from_a_stored_models_weights() -> None:
    """`init`: the net starts where another left off (its standardization included): a training with a vanishing
    learning rate ends where it began, and it is not where a fresh start would be."""
    data = splits(blobs(128))
    first, _ = run(config("vae", "points", steps=30), data)
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    cfg = replace(config("vae", "points", steps=3, seed=99), lr=1e-9)
    continued, _ = run(cfg, data, init=weights)
    fresh, _ = run(cfg, data)
    for k, v in continued.model.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=1e-5, atol=1e-5, msg=k)
    assert any(not torch.allclose(v, weights[k]) for k, v in fresh.model.state_dict().items())


def test_latent_labels_train_an_unconditional_gan_on_labeled_data() -> None:
    """latent_labels: the generator learns each class at its slice of the first latent coordinate, the slices sized
    by the data's class shares; the model is unconditional (no labels served) and resumes like any other."""
    ds = bars(256, classes=2)
    ds.y[: int(0.75 * len(ds))] = 0  # shares 0.75 / 0.25 (overwritten labels: only the shares matter here)
    ds.x[ds.y == 0] = bars(1, classes=1).x[0]  # every class-0 image "top"
    ds.x[ds.y == 1] = np.flip(bars(1, classes=1).x[0], 0)  # every class-1 image "bottom"
    data = splits(ds)
    result, seen = run(config("gan", "images", steps=150, width=16, latent_labels=True), data)
    spec, model = result.spec, result.model
    assert spec.num_classes == 0 and spec.latent_labels == 2 and spec.label_classes == 2
    shares = torch.bincount(torch.from_numpy(data.train.y), minlength=2).double()
    assert model.label_cdf is not None
    torch.testing.assert_close(model.label_cdf.double(), shares.cumsum(0) / shares.sum(), atol=1e-6, rtol=0)
    assert "label_cdf" in model.state_dict() and {"loss_d", "loss_g"} <= seen[-1].losses.keys()
    z = torch.randn(2000, 4, generator=torch.Generator().manual_seed(3))
    label = model.latent_label(z)
    assert abs(float((label == 0).double().mean()) - float(shares[0] / shares.sum())) < 0.03
    with torch.no_grad():
        x = model.generate(z, None)  # unconditional: z alone
    top, bottom = x[:, :4].mean((1, 2)), x[:, 4:].mean((1, 2))
    assert float(((top > bottom) == (label == 0)).double().mean()) > 0.9  # the drawn label decides the image
    with pytest.raises(Invalid, match="labeled dataset"):
        train(config("gan", "images", latent_labels=True), splits(ArrayDataset(bars(64).x, None, "images")), device=DEV)


def test_a_vamp_prior_starts_at_training_inputs_and_learns() -> None:
    """vamp_components: the pseudo-inputs start as K distinct training inputs (repeated only where the data has
    fewer), move in training, and the served model's stored components are their posteriors; a fine-tuning from a
    stored model keeps its pseudo-inputs."""
    data = splits(bars(64))
    cfg = config("vae", "images", steps=30, vamp_components=6)
    seed_only, _ = run(replace(cfg, steps=1, lr=1e-12), data)  # as good as untrained
    assert seed_only.model.pseudo_inputs is not None
    start = seed_only.model.pseudo_inputs.detach()
    train_x = torch.from_numpy(data.train.float_x())[:, None]
    assert all(any(torch.allclose(p, x, atol=1e-6) for x in train_x) for p in start)
    assert len({p.numpy().tobytes() for p in start}) == 6
    result, seen = run(cfg, data)
    model = result.model
    assert model.pseudo_inputs is not None and not torch.allclose(model.pseudo_inputs, start)
    assert seen[-1].losses.keys() == {"loss", "recon", "kl"}
    mu, logvar = model.prior_components()
    assert model.prior_mu is not None and model.prior_logvar is not None
    torch.testing.assert_close(model.prior_mu, mu)
    torch.testing.assert_close(model.prior_logvar, logvar)
    conditional, _ = run(replace(cfg, steps=1, lr=1e-12, conditional=True, vamp_components=3), data)
    pseudo = conditional.model.pseudo_inputs
    assert pseudo is not None and len(pseudo) == 6
    for p, c in zip(pseudo.detach(), [0, 0, 0, 1, 1, 1], strict=True):  # each class's from its own images
        assert any(torch.allclose(p, x, atol=1e-6) for x in train_x[torch.from_numpy(data.train.y) == c])
    small = splits(bars(40))
    few, _ = run(replace(cfg, steps=1, lr=1e-12, vamp_components=70), small)
    assert few.model.pseudo_inputs is not None
    assert len({p.detach().numpy().round(4).tobytes() for p in few.model.pseudo_inputs}) == len(small.train)


def test_decoder_output_rules() -> None:
    """decoder_output "mode" needs the Bernoulli decoder (a request's own gets a 422 at the field); a recipe's gives
    way to a request's Gaussian decoder; "mean" goes with either."""
    TrainConfig.from_dict({"family": "vae", "decoder": "bernoulli", "decoder_output": "mode"})
    TrainConfig.from_dict({"family": "vae", "decoder": "gaussian", "decoder_output": "mean"})
    with pytest.raises(Invalid) as err:
        TrainConfig.from_dict({"family": "vae", "decoder": "gaussian", "decoder_output": "mode"})
    assert err.value.field == ("decoder_output",)
    with pytest.raises(Invalid) as err:
        TrainConfig.from_dict({"family": "vae", "decoder_output": "median"})
    assert err.value.field == ("decoder_output",)

    def cvae(**request: Any) -> TrainConfig:
        return resolve_config(
            {"family": "vae", "conditional": True, **request},
            dataset_id="mnist",
            kind="images",
            sample_shape=(28, 28),
            num_classes=10,
        )

    assert cvae().decoder_output == "mode"  # the conditional MNIST VAE's recipe
    assert cvae(decoder="gaussian").decoder_output == "mean"
    assert cvae(decoder_output="mean").decoder_output == "mean"
    with pytest.raises(Invalid) as err:
        cvae(decoder="gaussian", decoder_output="mode")
    assert err.value.field == ("decoder_output",)


def test_vamp_prior_rules() -> None:
    base = {"family": "vae", "vamp_components": 4}
    TrainConfig.from_dict(base)
    for bad in ({"free_bits": 0.5}, {"latent_dim": 1}, {"vamp_components": 2001}):
        with pytest.raises(Invalid) as err:
            TrainConfig.from_dict({**base, **bad})
        assert err.value.field == ("vamp_components",)
    conditional = {**base, "conditional": True, "vamp_components": 200}  # per class
    resolve_config(conditional, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=10)
    with pytest.raises(Invalid) as err:
        resolve_config(conditional, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=11)
    assert err.value.field == ("vamp_components",) and err.value.limit == 181
    upload = {"family": "vae", "vamp_components": 4}  # the point uploads' VAE recipe has free bits; they give way
    points = resolve_config(upload, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=0)
    assert points.vamp_components == 4 and points.free_bits == 0
    assert resolve_config(
        {"family": "vae"}, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=0
    ).free_bits


def test_the_mnist_vae_recipes_have_a_vamp_prior_only_where_the_request_allows() -> None:
    """The MNIST VAEs take vamp_components from their recipes (the conditional one K per class); free bits or a
    one-dimensional latent in the request drop it instead of answering 422; a request's own value stays."""

    def resolved(**request: Any) -> TrainConfig:
        return resolve_config(
            {"family": "vae", **request}, dataset_id="mnist", kind="images", sample_shape=(28, 28), num_classes=10
        )

    assert resolved().vamp_components == 100
    assert resolved(conditional=True).vamp_components == 10  # per class
    assert resolved(vamp_components=7).vamp_components == 7
    for request in ({"free_bits": 0.5}, {"latent_dim": 1}, {"conditional": True, "free_bits": 0.5}):
        assert resolved(**request).vamp_components == 0, request
    with pytest.raises(Invalid) as err:
        resolved(vamp_components=7, free_bits=0.5)
    assert err.value.field == ("vamp_components",)


def test_latent_labels_rules() -> None:
    base = {"family": "gan", "latent_labels": True}
    TrainConfig.from_dict(base)
    for bad in ({"conditional": True}, {"latent_categories": 4}, {"gan_loss": "wgan-gp"}):
        with pytest.raises(Invalid) as err:
            TrainConfig.from_dict({**base, **bad})
        assert err.value.field == ("latent_labels",)
    with pytest.raises(Invalid) as err:
        resolve_config({**base}, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=0)
    assert err.value.field == ("latent_labels",)
    resolve_config({**base}, dataset_id="ds_x", kind="points", sample_shape=(2,), num_classes=3)


def test_the_shapes_gan_recipe_draws_labels_only_where_the_request_allows() -> None:
    """The unconditional image GANs (shapes, MNIST, uploads) take latent_labels from their recipe; unlabeled data,
    a conditional training, latent bins or wgan-gp in the request drop it instead of answering 422."""

    def resolved(num_classes: int, **request: Any) -> TrainConfig:
        return resolve_config(
            {"family": "gan", **request},
            dataset_id="ds_upload",
            kind="images",
            sample_shape=(32, 32, 3),
            num_classes=num_classes,
        )

    assert resolved(4).latent_labels and resolved(4).to_dict()["latent_labels"] is True
    assert not resolved(0).latent_labels
    assert not resolved(4, conditional=True).latent_labels
    assert not resolved(4, latent_categories=4).latent_labels
    assert not resolved(4, gan_loss="wgan-gp").latent_labels
    assert not resolved(4, latent_labels=False).latent_labels
    assert resolve_config(
        {"family": "gan"}, dataset_id="mnist", kind="images", sample_shape=(28, 28), num_classes=10
    ).latent_labels  # MNIST's and grayscale uploads' recipe too
    with pytest.raises(Invalid) as err:
        resolved(0, latent_labels=True)  # asked for by name: the request is refused
    assert err.value.field == ("latent_labels",)
