"""The default recipes, per dataset and family, and `resolve_config`, which fills a request's gaps from them.

A request names only what it wants to change; `resolve_config` fills the rest from the dataset's recipe (built-ins
by id, uploads by kind) and from the data shape, so that the stored config is complete and a training can be rerun
or resumed from it alone. The recipes' figures, and how each choice was measured, are in BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from models.config import Family, Kind, TrainConfig, check_data, conv_supports
from models.errors import Invalid
from models.previews import auto_interval
from models.seeds import draw_seed

UPLOAD_POINTS_MAX_LATENT = 16  # dims: latent size of point uploads is min(D, this), at least 2


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
# onto the learned decoder variance early on; the GAN packs 4 samples per discriminator input (PacGAN), which covers
# separated modes that pack 1 misses, and averages its weights.
_POINTS_VAE = Recipe(steps=3000, batch_size=256, lr=1e-3, latent_dim=2, mlp_width=256, conv_width=0,
                     options=_opts(free_bits=0.5))
_UPLOAD_POINTS_VAE = dataclasses.replace(_POINTS_VAE, latent_dim=None)  # min(D, 16), at least 2
_POINTS_GAN = Recipe(steps=4000, batch_size=256, lr=1e-3, latent_dim=8, mlp_width=256, conv_width=0,
                     options=_opts(pack=4, ema_decay=0.999))
# PacGAN's ring and grid (bench/quality.py ring|grid; BENCHMARKS.md has the figures, docs/benchmarks-history.md how
# each choice was measured). Both: long trainings with a linear lr decay over the last fifth, a batch of 512, the
# hinge loss (it evens out the modes), and a latent whose first coordinate enters the generator only as one of K
# equiprobable bins (`latent_categories`, one per mode), so that the generator jumps between separated modes instead
# of stretching a connected latent space across the gaps ("bridges"). The other two coordinates skip the net as
# output noise with a learned width per bin (`latent_bin_noise`): each bin's samples are a Gaussian around a point,
# spread like the data's modes (issue 24) where a net fed continuous latents drew a few dozen points per mode. An
# MMD term at a mode's width (`g_mmd_weight`) sets those widths; without it they stay narrow. The grid's 25 modes
# need a sharper discriminator (twice the lr, two steps per generator step): with the ring's, whole bins stayed
# stranded between modes; and a bound on the noise widths (`g_bin_width_bound`): a bin stranded between two modes
# otherwise widened its noise to reach both instead of moving to one.
_RING_GAN = Recipe(steps=25_000, batch_size=512, lr=1e-3, latent_dim=3, mlp_width=256, conv_width=0,
                   options=_opts(pack=4, ema_decay=0.999, lr_decay="linear", lr_decay_start=0.8, gan_loss="hinge",
                                 latent_categories=8, latent_binned_dims=1, latent_bin_noise=True, g_mmd_weight=10.0))
_GRID_GAN = dataclasses.replace(_RING_GAN, options=_opts(**{**_RING_GAN.options, "latent_categories": 25},
                                                          d_lr=2e-3, d_steps=2, g_bin_width_bound=10.0))
# 8x8 digits (1797 samples): a two-stage conv net is plenty.
_DIGITS_VAE = Recipe(steps=2000, batch_size=64, lr=1e-3, latent_dim=16, mlp_width=256, conv_width=32)
# Conditional: with the label in hand the latents carried almost nothing (each class came out as a few images); free
# bits force 1.25 nats into each of 8 latents, and 20,000 steps keep the label accuracy (bench/quality.py variety); a
# linear lr decay over the last fifth brought the worst class's spread up to the target in every seed measured.
_DIGITS_CVAE = dataclasses.replace(_DIGITS_VAE, steps=20_000, latent_dim=8,
                                   options=_opts(free_bits=1.25, lr_decay="linear", lr_decay_start=0.8))
_DIGITS_GAN = Recipe(steps=3000, batch_size=64, lr=2e-4, latent_dim=32, mlp_width=256, conv_width=32,
                     options=_opts(ema_decay=0.999))
# Conditional: MSGAN's mode-seeking term, or each class is drawn as a few images (bench/quality.py variety); at a
# weight of 0.1, since more buys variety at the cost of label accuracy.
_DIGITS_CGAN = dataclasses.replace(_DIGITS_GAN, options=_opts(**_DIGITS_GAN.options, g_mode_seeking=0.1))
# 28x28 MNIST and image uploads.
_IMAGES_VAE = Recipe(steps=5000, batch_size=128, lr=1e-3, latent_dim=32, mlp_width=512, conv_width=32)
# MNIST VAE, the benchmark recipe (bench/quality.py mnist-vae, BENCHMARKS.md): the IWAE paper's setting (Burda et al.
# 2015: 50 latents, Bernoulli decoder, dynamically binarized data) with wider MLPs (2 x 512), a cosine decay of the
# learning rate and a VampPrior of 100 pseudo-inputs (Tomczak & Welling 2018), which a standard normal prior's holes
# between the posteriors showed in the samples (Frechet distance) and the likelihood; 86,000 steps, the benchmark's
# hour on one core; an MLP decoder keeps the k = 5000 evaluation cheap.
_MNIST_VAE_NETS = Recipe(steps=86_000, batch_size=128, lr=1e-3, latent_dim=50, mlp_width=512, conv_width=32,
                         options=_opts(architecture="mlp", depth=2, binarize=True, lr_decay="cosine"))
_MNIST_VAE = dataclasses.replace(_MNIST_VAE_NETS, options=_opts(**_MNIST_VAE_NETS.options, vamp_components=100))
# Conditional MNIST VAE: with the label in hand, 50 latents let the latent rather than the label decide the digit;
# fewer latents (8) and fewer steps leave the digit to the label (bench/quality.py cond-mnist, BENCHMARKS.md); a
# VampPrior of 10 pseudo-inputs per class drew the digits more varied and more often as requested, and serving each
# sample's most likely binary image (`decoder_output`), not its blurred mean, puts the samples among real digits in
# the classifier's features (bench/quality.py variety: a class's recall 0.32 -> 0.78).
_MNIST_CVAE = dataclasses.replace(_MNIST_VAE, steps=30_000, latent_dim=8,
                                  options=_opts(**_MNIST_VAE_NETS.options, vamp_components=10,
                                                decoder_output="mode"))
# Conv GAN for MNIST and image uploads: base width 32 (a quarter of the cost of 64); 8000 steps, where a conditional
# MNIST GAN's samples are classified as their class about as often as real digits are (BENCHMARKS.md). Unconditional
# trainings of labeled data draw their labels from the latent (`latent_labels`): with a discriminator that never
# sees the labels, MNIST samples sat far from real digits in the classifier's features and colored shapes came out
# as blobs (bench/quality.py mnist-gan, shapes; BENCHMARKS.md). `resolve_config` drops the option where the data
# has no labels or the training is conditional.
_IMAGES_GAN = Recipe(steps=8000, batch_size=64, lr=2e-4, latent_dim=64, mlp_width=512, conv_width=32,
                     options=_opts(ema_decay=0.999, latent_labels=True))
# Unconditional MNIST: a base width of 48 and 20,000 steps with a linear decay of the learning rate over the last
# fifth draw fewer malformed digits than width 32 at 8,000 or 17,000 steps (precision and recall in the classifier's
# features; bench/quality.py mnist-gan, BENCHMARKS.md), at about 2.5x their time. Uploads keep the image recipe.
_MNIST_GAN = dataclasses.replace(
    _IMAGES_GAN,
    steps=20_000,
    conv_width=48,
    options=_opts(**_IMAGES_GAN.options, lr_decay="linear", lr_decay_start=0.8),
)
# Conditional: the mode-seeking term, as for digits (measured on MNIST; bench/quality.py variety); the labels come
# from each request.
_IMAGES_CGAN = dataclasses.replace(
    _IMAGES_GAN, options=_opts(**{**_IMAGES_GAN.options, "latent_labels": False}, g_mode_seeking=0.1)
)
# Conditional, colored shapes and color uploads of 32+ px: MNIST's 8000 steps drew malformed crosses (shape as
# requested 85%); 14,000 steps with a linear decay of the learning rate over the last fifth draw every shape
# (BENCHMARKS.md, colored shapes).
_SHAPES_CGAN = dataclasses.replace(
    _IMAGES_CGAN, steps=14_000, options=_opts(**_IMAGES_CGAN.options, lr_decay="linear", lr_decay_start=0.8)
)
# Conditional VAE, colored shapes and color uploads of 32+ px: the image recipe's 32 latents let the latent decide
# the shape (73% as requested); 8 latents and a VampPrior of 10 pseudo-inputs per class keep it to the label, at
# half the learning rate (1e-3 blew the KL up mid-training) over 15,000 steps with a linear decay over the last fifth
# (bench/quality.py shapes, BENCHMARKS.md). Its means, not `decoder_output` "mode": thresholding the antialiased
# edges drew the shapes worse.
_SHAPES_CVAE = dataclasses.replace(
    _IMAGES_VAE,
    steps=15_000,
    lr=5e-4,
    latent_dim=8,
    options=_opts(vamp_components=10, lr_decay="linear", lr_decay_start=0.8),
)

# Recipes by dataset id and family; uploads (any other id) take those `recipe_key` picks for them.
RECIPES: Mapping[str, Mapping[Family, Recipe]] = MappingProxyType({
    "ring2d": {"vae": _POINTS_VAE, "gan": _RING_GAN},
    "grid2d": {"vae": _POINTS_VAE, "gan": _GRID_GAN},
    "moons2d": {"vae": _POINTS_VAE, "gan": _POINTS_GAN},
    "digits": {"vae": _DIGITS_VAE, "gan": _DIGITS_GAN},
    "mnist": {"vae": _MNIST_VAE, "gan": _MNIST_GAN},
    "points": {"vae": _UPLOAD_POINTS_VAE, "gan": _POINTS_GAN},
    "shapes": {"vae": _IMAGES_VAE, "gan": _IMAGES_GAN},
    "images": {"vae": _IMAGES_VAE, "gan": _IMAGES_GAN},
})
# fmt: on


# Conditional trainings whose defaults differ from the unconditional recipe of their dataset and family.
CONDITIONAL_RECIPES: Mapping[str, Mapping[Family, Recipe]] = MappingProxyType(
    {
        "mnist": {"vae": _MNIST_CVAE, "gan": _IMAGES_CGAN},
        "images": {"gan": _IMAGES_CGAN},
        "digits": {"vae": _DIGITS_CVAE, "gan": _DIGITS_CGAN},
        "shapes": {"vae": _SHAPES_CVAE, "gan": _SHAPES_CGAN},
    }
)


COLOR_MIN_SIDE = 32  # px: color uploads at least this large take the recipes measured on `shapes`


def recipe_key(dataset_id: str, kind: Kind, sample_shape: tuple[int, ...]) -> str:
    """Which recipes a dataset takes: a built-in its own; an upload those measured on data like it.

    Color images (3 channels) with both sides >= COLOR_MIN_SIDE px take `shapes`' recipes (32x32 RGB, measured in
    BENCHMARKS.md); other images (grayscale, or smaller color images such as Stacked MNIST's 28x28) the "images"
    recipes, measured on MNIST; points the "points" recipes.
    """
    if dataset_id in RECIPES:
        return dataset_id
    if kind == "images" and len(sample_shape) == 3 and sample_shape[2] == 3 and min(sample_shape[:2]) >= COLOR_MIN_SIDE:
        return "shapes"
    return kind


def recipe_for(
    dataset_id: str, kind: Kind, family: Family, conditional: bool = False, sample_shape: tuple[int, ...] = ()
) -> Recipe:
    key = recipe_key(dataset_id, kind, sample_shape)
    special = CONDITIONAL_RECIPES.get(key, {}).get(family) if conditional else None
    return special or RECIPES[key][family]


# A recipe's latent layout (bins on the first coordinates only, the rest as output noise) fits its own latent_dim,
# bins and data, and its `decoder_output` its decoder: a request that changes those drops the parts that no longer
# fit, as it does a recipe's `latent_labels` or `vamp_components`, instead of failing at an option it never named.
YIELDING_OPTIONS = ("latent_binned_dims", "latent_bin_noise", "g_bin_width_bound", "decoder_output")


def _give_way(
    values: dict[str, Any], given: Mapping[str, Any], kind: Kind, sample_shape: tuple[int, ...], num_classes: int
) -> None:
    """Reset each recipe-given `YIELDING_OPTIONS` entry that the config's rules reject (the first rule broken names
    it), until none is; a rule broken elsewhere is left for the caller's checks to report."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    dropped = True
    while dropped:
        dropped = False
        for name in YIELDING_OPTIONS:
            if name in given or not values.get(name):
                continue
            try:
                draft = TrainConfig(**TrainConfig.known(values))
                check_data(draft, kind, sample_shape, num_classes, None)
                draft.check_rules()
            except Invalid as exc:
                if exc.field == (name,):
                    values[name], dropped = defaults[name], True


def resolve_config(
    overrides: Mapping[str, Any],
    *,
    dataset_id: str,
    kind: Kind,
    sample_shape: tuple[int, ...],
    num_classes: int,
    size: int | None = None,
) -> TrainConfig:
    """Fill every field the request left out (None or absent) from the per-dataset default recipe.

    The architecture is picked from the data shape when absent or "auto" (conv for images whose sides are both
    divisible by 4 and >= 8, else MLP; points always MLP). Values out of range, and a config the data cannot take
    (`models.config.check_data`), raise `Invalid` naming the option; so does an explicit `batch_size` larger than
    the dataset's `size`, when the size is given. A seed of None is replaced by a random one, so that it can be
    recorded. Unknown keys (e.g. "dataset") are ignored.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    family = given.get("family")
    if family not in ("vae", "gan"):
        raise Invalid(f"family must be 'vae' or 'gan', not {family!r}", field=("family",))
    recipe = recipe_for(dataset_id, kind, family, bool(given.get("conditional")), sample_shape)

    arch = given.get("architecture", recipe.options.get("architecture", "auto"))
    if arch == "auto":
        arch = "conv" if kind == "images" and conv_supports(sample_shape) else "mlp"
    latent_dim = recipe.latent_dim
    if latent_dim is None:
        latent_dim = min(UPLOAD_POINTS_MAX_LATENT, max(2, sample_shape[0]))
    defaults: dict[str, Any] = {
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "latent_dim": latent_dim,
        "width": recipe.mlp_width if arch == "mlp" else recipe.conv_width,
        "decoder": "bernoulli" if kind == "images" else "gaussian",
        **recipe.options,
    }
    values = {**defaults, **given, "architecture": arch}
    if values.get("seed") is None:
        values["seed"] = draw_seed()
    if values.get("latent_labels") and "latent_labels" not in given:  # the recipe's, where data and request allow
        draft = TrainConfig(**TrainConfig.known(values))
        values["latent_labels"] = num_classes > 0 and draft.latent_labels_conflict() is None
    recipe_vamp = values.get("vamp_components") and "vamp_components" not in given
    if recipe_vamp and TrainConfig(**TrainConfig.known(values)).vamp_conflict() is not None:
        values["vamp_components"] = 0  # the recipe's, where the request allows
    if given.get("vamp_components") and "free_bits" not in given:
        values["free_bits"] = 0.0  # a recipe's free bits give way to a VampPrior asked for
    _give_way(values, given, kind, sample_shape, num_classes)
    if "preview_every" not in given:
        values["preview_every"] = auto_interval(values["steps"])
    if "batch_size" not in given and isinstance(values.get("pack"), int) and values["pack"] > 1:
        values["batch_size"] = -(-values["batch_size"] // values["pack"]) * values["pack"]  # the recipe's, up to m
    if size is not None and "batch_size" in given and given["batch_size"] > size:
        raise Invalid(
            f"batch_size {given['batch_size']} exceeds the dataset's {size} samples", field=("batch_size",), limit=size
        )
    # Whether the data fits is asked first, of the unchecked draft: "conv nets take images" is the clearer error
    # when a conv net was asked for points (whose recipes have no conv width to check).
    check_data(TrainConfig(**TrainConfig.known(values)), kind, sample_shape, num_classes, size)
    return TrainConfig.from_dict(values)
