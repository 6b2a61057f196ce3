"""Training configs: the `TrainConfig` dataclass, the per-dataset default recipes, and their resolution.

A request names only what it wants to change; `resolve_config` fills the rest from the dataset's recipe (built-ins
by id, uploads by kind) and from the data shape, so that the stored config is complete and a training can be rerun
or resumed from it alone.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from models.errors import Invalid

Family = Literal["vae", "gan"]
Kind = Literal["points", "images"]
Architecture = Literal["mlp", "conv"]
LrDecay = Literal["none", "linear", "cosine"]
Activation = Literal["default", "elu", "silu", "gated"]
ACTIVATIONS = ("default", "elu", "silu", "gated")

SEED_BOUND = 2**31  # seeds drawn here are in [0, 2**31), like the API's
CONV_MIN_SIDE = 8  # px: the conv nets halve the image at least twice, so both sides must be >= 8 ...
CONV_SIDE_MULTIPLE = 4  # ... and divisible by 4
MAX_LATENT_CATEGORIES = 1024  # K of the discrete latent part: bins per latent coordinate ...
MAX_LATENT_BIN_COLUMNS = 16_384  # ... and at most this many one-hot input columns in all (latent_dim * K)
UPLOAD_POINTS_MAX_LATENT = 16  # dims: latent size of point uploads is min(D, this), at least 2


@dataclass
class TrainConfig:
    """Everything a training needs besides the data. Complete after `resolve_config`: no None but `d_lr`."""

    family: Family
    conditional: bool = False
    steps: int = 2000  # optimizer steps (GAN: generator steps)
    batch_size: int = 128  # samples per step
    lr: float = 1e-3  # Adam step size
    latent_dim: int = 16
    seed: int = 0
    architecture: Architecture = "mlp"
    width: int = 256  # MLP hidden units, or base channel count of the conv nets
    depth: int = 3  # hidden layers of the MLPs (encoder, decoder, generator, discriminator)
    activation: Activation = "default"  # of the MLP hidden layers: "default" (ReLU / LeakyReLU), elu, silu, gated
    # VAE options
    beta: float = 1.0  # KL weight (Higgins et al. 2017); 1 = the ELBO
    decoder: Literal["bernoulli", "gaussian"] = "gaussian"
    kl_warmup_steps: int = 0  # steps of linear KL weight 0 -> beta
    free_bits: float = 0.0  # nats per latent dimension (Kingma et al. 2016), 0 = off
    iwae_k: int = 1  # > 1: train on the IWAE bound (Burda et al. 2015)
    # GAN options
    gan_loss: Literal["ns", "hinge", "wgan-gp"] = "ns"
    gp_weight: float = 10.0  # WGAN-GP penalty weight (Gulrajani et al. 2017)
    r1_gamma: float = 0.0  # R1 penalty weight (Mescheder et al. 2018), 0 = off
    spectral_norm: bool = False  # on the discriminator (Miyato et al. 2018)
    pack: int = 1  # PacGAN packing m (Lin et al. 2018)
    ema_decay: float = 0.0  # EMA of generator weights, 0 = off; the served weights are the EMA ones when on
    d_steps: int = 1  # discriminator steps per generator step
    d_lr: float | None = None  # discriminator step size, None = lr
    latent_categories: int = 0  # K > 0: each latent coordinate also enters the generator as one of K equiprobable bins
    eval_iw_k: int = 100  # importance samples of the VAE log-likelihood bound in the end-of-training metrics
    # Schedule and data options
    lr_decay: LrDecay = "none"  # decay of every learning rate after lr_decay_start: "linear" or "cosine" to 0
    lr_decay_start: float = 0.0  # fraction of the steps after which the decay begins, in [0, 1)
    binarize: bool = False  # images: train on a fresh Bernoulli binarization of every minibatch (dynamic)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`; unknown keys (from newer or older versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Recipe:
    """A default recipe: the core sizes, plus any other `TrainConfig` fields in `options`."""

    steps: int  # optimizer steps
    batch_size: int  # samples per step
    lr: float  # Adam step size
    latent_dim: int | None  # None: derived from the data (point uploads)
    mlp_width: int  # hidden units when the architecture is MLP
    conv_width: int  # base channels when it is conv
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _opts(**kw: Any) -> Mapping[str, Any]:
    return MappingProxyType(kw)


# fmt: off
# 2D benchmarks: small MLPs learn them in a few thousand steps. The VAE's free bits keep its latents from collapsing
# onto the learned decoder variance early on; the GAN packs 4 samples per discriminator input (PacGAN), which in a
# quick check on an 8-mode ring (3000 steps) covered all 8 modes where pack 1 found 4, and averages its weights.
_POINTS_VAE = Recipe(steps=3000, batch_size=256, lr=1e-3, latent_dim=2, mlp_width=256, conv_width=0,
                     options=_opts(free_bits=0.5))
_UPLOAD_POINTS_VAE = dataclasses.replace(_POINTS_VAE, latent_dim=None)  # min(D, 16), at least 2
_POINTS_GAN = Recipe(steps=4000, batch_size=256, lr=1e-3, latent_dim=8, mlp_width=256, conv_width=0,
                     options=_opts(pack=4, ema_decay=0.999))
# PacGAN's ring and grid (bench/quality.py ring|grid, BENCHMARKS.md). Measured on seed 0 (hq = share of samples
# within 3 std of a mode): 20k steps with a linear lr decay over the last quarter lifted the ring's hq from 88%
# (8k steps) to 96%; the remaining misses are samples on "bridges" between modes, where the generator's map from
# the connected latent space must jump. Fewer latent dimensions than 8 shorten those bridges (ring: 1 -> 98.0%,
# 2 -> 97.9%), a batch of 512 and 25k steps gave 98.5%. The grid's 25 modes also need a sharper discriminator
# (twice the generator's lr): hq 65% -> 93% with a 2-D latent; and two discriminator steps per generator step:
# on seed 0, hq 87% -> 96% and reverse KL 0.075 -> 0.024 (top-k generator updates, a longer lr decay, a deeper net,
# three D steps or pack 8 did worse on seeds 0-1; BENCHMARKS.md lists them). The hinge loss then evened out the
# modes: over ten seeds the worst reverse KL fell from 0.073 to 0.009 and hq rose by 0.6 points on average (EMA off
# or 0.9999, R1 and spectral norm did worse; a shorter lr decay on top was within the seed-to-seed spread). On the
# ring the hinge loss raised the mean hq of ten seeds from 98.69% to 98.91% and the seeds at >= 98.5% from 8 to 9
# (EMA off, two D steps, width 512 and top-k updates did not help). What was left were the bridges, and on the ring
# a discrete latent part removes them: with its one latent coordinate in 8 equiprobable bins (`latent_categories`),
# the generator jumps from bin to bin instead of stretching a connected latent space across the gaps between modes;
# hq rose from 98.91% to 99.99% (mean of ten seeds, worst 99.96%). On the grid, a few bins per coordinate (5 to 50)
# made some seeds much better and others much worse (hq 99.7% or 71%; BENCHMARKS.md): with about one bin per mode, a
# bin that straddles two modes, or two bins on one mode, is not undone by training. Many fine bins are: one latent
# coordinate in 1000 bins gives each mode about 40, a bin between two modes is pushed into one of them, and a mode
# with a bin more or less than another barely shows in the reverse KL. Over ten seeds: hq 96.48% mean (was 95.44%),
# the target met in 7 (was 2); but not everywhere: the worst seed fell from 93.60% to 86.92% (reverse KL 0.040),
# its misses mostly modes drawn too wide rather than bridges. Half the generator's lr (5e-4) fixed seeds 5 and 1
# but broke four others the same way (5 of 10, mean hq 94.30%), so the lr stays. A slower average of the generator's
# weights does undo that late spread: EMA decay 0.9995 (about 2,000 steps instead of 1,000) met the target in 9 of
# 10 seeds, mean hq 98.02% and reverse KL 0.0077 (seed 1 missed: 93.72%); after the first layer became column picks
# (`BinnedInput`: the same function rounded differently, so new draws of each seed) in all 10: mean hq 98.67%,
# worst 97.56%, reverse KL at most 0.0095.
_RING_GAN = Recipe(steps=25_000, batch_size=512, lr=1e-3, latent_dim=1, mlp_width=256, conv_width=0,
                   options=_opts(pack=4, ema_decay=0.999, lr_decay="linear", lr_decay_start=0.8, gan_loss="hinge",
                                 latent_categories=8))
_GRID_GAN = Recipe(steps=25_000, batch_size=512, lr=1e-3, latent_dim=1, mlp_width=256, conv_width=0,
                   options=_opts(pack=4, ema_decay=0.9995, lr_decay="linear", lr_decay_start=0.8, d_lr=2e-3,
                                 d_steps=2, gan_loss="hinge", latent_categories=1000))
# 8x8 digits (1797 samples): a two-stage conv net is plenty.
_DIGITS_VAE = Recipe(steps=2000, batch_size=64, lr=1e-3, latent_dim=16, mlp_width=256, conv_width=32)
_DIGITS_GAN = Recipe(steps=3000, batch_size=64, lr=2e-4, latent_dim=32, mlp_width=256, conv_width=32,
                     options=_opts(ema_decay=0.999))
# 28x28 MNIST and image uploads.
_IMAGES_VAE = Recipe(steps=5000, batch_size=128, lr=1e-3, latent_dim=32, mlp_width=512, conv_width=32)
# MNIST VAE, the benchmark recipe (bench/quality.py mnist-vae, BENCHMARKS.md): the IWAE paper's setting (Burda et al.
# 2015: 50 latents, Bernoulli decoder, dynamically binarized data) with wider MLPs (2 x 512) and a cosine decay of
# the learning rate; an MLP decoder keeps the k = 5000 evaluation cheap. About 30 minutes on one CPU core.
_MNIST_VAE = Recipe(steps=100_000, batch_size=128, lr=1e-3, latent_dim=50, mlp_width=512, conv_width=32,
                    options=_opts(architecture="mlp", depth=2, binarize=True, lr_decay="cosine"))
# Conditional MNIST VAE: with the label in hand, 50 latents let the latent rather than the label decide the digit
# (97.9% of samples classified as the requested digit after 100k steps); 8 latents and 30k steps (9 minutes on one
# CPU core) gave 98.5%, 16 latents 96.5% (bench/quality.py cond-mnist, BENCHMARKS.md).
_MNIST_CVAE = dataclasses.replace(_MNIST_VAE, steps=30_000, latent_dim=8)
# Conv GAN for MNIST and image uploads: base width 32 costs a quarter of 64 (about 70 ms per step on one CPU core);
# a conditional MNIST GAN reached 95.6% of samples classified as their class after 3000 steps, 98.7% after 8000.
_IMAGES_GAN = Recipe(steps=8000, batch_size=64, lr=2e-4, latent_dim=64, mlp_width=512, conv_width=32,
                     options=_opts(ema_decay=0.999))

# Recipes by dataset id and family; uploads (any other id) fall back to their kind ("points" or "images").
RECIPES: Mapping[str, Mapping[Family, Recipe]] = MappingProxyType({
    "ring2d": {"vae": _POINTS_VAE, "gan": _RING_GAN},
    "grid2d": {"vae": _POINTS_VAE, "gan": _GRID_GAN},
    "moons2d": {"vae": _POINTS_VAE, "gan": _POINTS_GAN},
    "digits": {"vae": _DIGITS_VAE, "gan": _DIGITS_GAN},
    "mnist": {"vae": _MNIST_VAE, "gan": _IMAGES_GAN},
    "points": {"vae": _UPLOAD_POINTS_VAE, "gan": _POINTS_GAN},
    "images": {"vae": _IMAGES_VAE, "gan": _IMAGES_GAN},
})
# fmt: on


def conv_supports(sample_shape: tuple[int, ...]) -> bool:
    """Whether the conv nets handle this image shape: (H, W) or (H, W, C), sides divisible by 4 and >= 8."""
    if len(sample_shape) not in (2, 3):
        return False
    h, w = sample_shape[:2]
    return all(s >= CONV_MIN_SIDE and s % CONV_SIDE_MULTIPLE == 0 for s in (h, w))


# Conditional trainings whose defaults differ from the unconditional recipe of their dataset and family.
CONDITIONAL_RECIPES: Mapping[str, Mapping[Family, Recipe]] = MappingProxyType({"mnist": {"vae": _MNIST_CVAE}})


def recipe_for(dataset_id: str, kind: Kind, family: Family, conditional: bool = False) -> Recipe:
    special = CONDITIONAL_RECIPES.get(dataset_id, {}).get(family) if conditional else None
    return special or (RECIPES.get(dataset_id) or RECIPES[kind])[family]


def _invalid(name: str, detail: str, limit: Any = None) -> Invalid:
    return Invalid(detail, field=("body", name), limit=limit)


def resolve_config(
    overrides: Mapping[str, Any],
    *,
    dataset_id: str,
    kind: Kind,
    sample_shape: tuple[int, ...],
    num_classes: int,
) -> TrainConfig:
    """Fill every field the request left out (None or absent) from the per-dataset default recipe.

    The architecture is picked from the data shape when absent or "auto" (conv for images whose sides are both
    divisible by 4 and >= 8, else MLP; points always MLP). An explicit "conv" the data cannot take, conditional
    training without classes, or values out of range raise `Invalid` naming the field. A seed of None is replaced
    by a random one, so that it can be recorded. Unknown keys (e.g. "dataset") are ignored.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    family = given.get("family")
    if family not in ("vae", "gan"):
        raise _invalid("family", f"family must be 'vae' or 'gan', not {family!r}")
    recipe = recipe_for(dataset_id, kind, family, bool(given.get("conditional")))

    if given.get("conditional") and num_classes == 0:
        raise _invalid("conditional", "conditional training needs a labeled dataset; this one has no classes")

    arch = given.get("architecture", recipe.options.get("architecture", "auto"))
    if arch == "auto":
        arch = "conv" if kind == "images" and conv_supports(sample_shape) else "mlp"
    elif arch == "conv" and (kind != "images" or not conv_supports(sample_shape)):
        what = "points" if kind == "points" else f"images of shape {tuple(sample_shape)}"
        raise _invalid(
            "architecture",
            f"the conv nets take images with both sides divisible by 4 and >= 8, not {what}; use 'mlp' or 'auto'",
        )
    elif arch not in ("mlp", "conv"):
        raise _invalid("architecture", f"architecture must be 'auto', 'mlp' or 'conv', not {arch!r}")

    decoder = given.get("decoder", "bernoulli" if kind == "images" else "gaussian")
    if decoder == "bernoulli" and kind == "points":
        raise _invalid("decoder", "the Bernoulli decoder models data in [0, 1]; use 'gaussian' for points")

    if given.get("binarize") and kind == "points":
        raise _invalid("binarize", "binarize applies to images (gray values in [0, 1]), not points")

    latent_dim = recipe.latent_dim
    if latent_dim is None:
        latent_dim = min(UPLOAD_POINTS_MAX_LATENT, max(2, sample_shape[0]))
    defaults: dict[str, Any] = {
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "latent_dim": latent_dim,
        "width": recipe.mlp_width if arch == "mlp" else recipe.conv_width,
        **recipe.options,
    }
    values = {**defaults, **given, "architecture": arch, "decoder": decoder}
    if values.get("seed") is None:
        values["seed"] = secrets.randbelow(SEED_BOUND)
    pack = int(values.get("pack", 1))
    if "batch_size" not in given and pack > 1:
        values["batch_size"] = -(-values["batch_size"] // pack) * pack  # round the recipe's batch up to m
    config = TrainConfig.from_dict(values)
    _validate(config)
    return config


def _validate(c: TrainConfig) -> None:
    """Range checks that the request schema may not have made (callers other than the API)."""
    positive_ints = ("steps", "batch_size", "latent_dim", "width", "depth", "iwae_k", "pack", "d_steps", "eval_iw_k")
    for name in positive_ints:
        if int(getattr(c, name)) < 1:
            raise _invalid(name, f"{name} must be >= 1")
    for name in ("lr", "d_lr"):
        v = getattr(c, name)
        if v is not None and not 0 < v <= 1:
            raise _invalid(name, f"{name} must be in (0, 1]")
    for name in ("beta", "free_bits", "gp_weight", "r1_gamma", "kl_warmup_steps"):
        if not getattr(c, name) >= 0:
            raise _invalid(name, f"{name} must be >= 0")
    if not 0 <= c.ema_decay < 1:
        raise _invalid("ema_decay", "ema_decay must be in [0, 1)")
    if not 0 <= c.latent_categories <= MAX_LATENT_CATEGORIES:
        raise _invalid(
            "latent_categories", f"latent_categories must be in [0, {MAX_LATENT_CATEGORIES}]", MAX_LATENT_CATEGORIES
        )
    if c.latent_dim * c.latent_categories > MAX_LATENT_BIN_COLUMNS:
        raise _invalid(
            "latent_categories",
            f"latent_dim * latent_categories must be <= {MAX_LATENT_BIN_COLUMNS} "
            f"(one-hot input columns of the generator), not {c.latent_dim * c.latent_categories}",
            MAX_LATENT_BIN_COLUMNS,
        )
    if c.gan_loss not in ("ns", "hinge", "wgan-gp"):
        raise _invalid("gan_loss", f"unknown gan_loss {c.gan_loss!r}")
    if c.activation not in ACTIVATIONS:
        raise _invalid("activation", f"activation must be one of {', '.join(ACTIVATIONS)}, not {c.activation!r}")
    if c.lr_decay not in ("none", "linear", "cosine"):
        raise _invalid("lr_decay", f"lr_decay must be 'none', 'linear' or 'cosine', not {c.lr_decay!r}")
    if not 0 <= c.lr_decay_start < 1:
        raise _invalid("lr_decay_start", "lr_decay_start must be in [0, 1)")
    if c.decoder not in ("bernoulli", "gaussian"):
        raise _invalid("decoder", f"decoder must be 'bernoulli' or 'gaussian', not {c.decoder!r}")
    if c.batch_size % c.pack:
        raise _invalid("batch_size", f"batch_size {c.batch_size} must be a multiple of pack {c.pack}")
