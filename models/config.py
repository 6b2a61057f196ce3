"""`TrainConfig`: everything a training needs besides the data, with the one definition of every option's choices
and range.

The option types below are the single source of those facts: `TrainConfig` is validated against them when it is
built, and the API's training request (`app.schemas.TrainingRequest`) declares its fields with the same types, so
the two cannot drift. `VAE_OPTIONS` and `GAN_OPTIONS` say which options belong to one family only. Whether a config
suits a dataset (labels, image shape, value range) is `check_data`'s question, asked when a config is resolved and
again when a training starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from models.errors import Invalid
from models.integers import WHOLE
from models.seeds import Seed

Family = Literal["vae", "gan"]
Kind = Literal["points", "images"]
Architecture = Literal["mlp", "conv"]
ArchitectureChoice = Literal["auto", "mlp", "conv"]  # what a request may ask for; "auto" picks by the data shape
Activation = Literal["default", "elu", "silu", "gated"]
LrDecay = Literal["none", "linear", "cosine"]
Decoder = Literal["bernoulli", "gaussian"]
DecoderOutput = Literal["mean", "mode"]
GanLoss = Literal["ns", "hinge", "wgan-gp"]

MAX_LATENT_CATEGORIES = 1024  # K of the discrete latent part: bins per latent coordinate ...
MAX_LATENT_BIN_COLUMNS = 16_384  # ... and at most this many one-hot input columns in all (latent_dim * K)
MAX_VAMP_COMPONENTS = 2000  # pseudo-inputs of a VampPrior: each is one more encoder row per training step
CONV_MIN_SIDE = 8  # px: the conv nets halve the image at least twice, so both sides must be >= 8 ...
CONV_SIDE_MULTIPLE = 4  # ... and divisible by 4

# The range of each numeric option.
Count = Annotated[int, Field(ge=1), WHOLE]  # steps, batch_size, latent_dim (their upper bounds are service settings)
NonNegativeCount = Annotated[int, Field(ge=0), WHOLE]
LearningRate = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Width = Annotated[int, Field(ge=8, le=2048), WHOLE]
Depth = Annotated[int, Field(ge=1, le=8), WHOLE]
UnitFraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]  # [0, 1)
Beta = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
FreeBits = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
IwaeK = Annotated[int, Field(ge=1, le=64), WHOLE]
VampComponents = Annotated[int, Field(ge=0, le=MAX_VAMP_COMPONENTS), WHOLE]
EvalIwK = Annotated[int, Field(ge=1, le=5000), WHOLE]
PenaltyWeight = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
Pack = Annotated[int, Field(ge=1, le=8), WHOLE]
DSteps = Annotated[int, Field(ge=1, le=10), WHOLE]
LatentCategories = Annotated[int, Field(ge=0, le=MAX_LATENT_CATEGORIES), WHOLE]
FourierFeatures = Annotated[int, Field(ge=0, le=256), WHOLE]
FourierScale = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
Bandwidth = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]

VAE_OPTIONS = (
    "beta",
    "decoder",
    "decoder_output",
    "kl_warmup_steps",
    "free_bits",
    "iwae_k",
    "vamp_components",
    "eval_iw_k",
)
GAN_OPTIONS = (
    "gan_loss",
    "gp_weight",
    "r1_gamma",
    "spectral_norm",
    "pack",
    "ema_decay",
    "d_steps",
    "d_lr",
    "latent_categories",
    "latent_bin_positions",
    "latent_binned_dims",
    "latent_bin_scales",
    "latent_bin_noise",
    "d_fourier_features",
    "d_fourier_scale",
    "g_mmd_weight",
    "g_mmd_bandwidth",
    "g_bin_width_bound",
    "g_mode_seeking",
    "latent_labels",
)


# Options that change what a training shows, not what it learns: a checkpoint resumes whatever their values.
PRESENTATION_OPTIONS = ("preview_every",)


@dataclass
class TrainConfig:
    """Everything a training needs besides the data. Complete after `resolve_config`: no None but `d_lr`.

    `from_dict`, the one way a config comes in from outside (a request, a stored record), validates every option
    against its type and the rules that tie options together, and raises `Invalid` naming the first option at
    fault. Code may build a config directly, unchecked (the tests drive the training loop with out-of-range values
    that way).
    """

    family: Family
    conditional: bool = False
    steps: Count = 2000  # optimizer steps (GAN: generator steps)
    batch_size: Count = 128  # samples per step
    lr: LearningRate = 1e-3  # Adam step size
    latent_dim: Count = 16
    seed: Seed = 0
    architecture: Architecture = "mlp"
    width: Width = 256  # MLP hidden units, or base channel count of the conv nets
    depth: Depth = 3  # hidden layers of the MLPs (encoder, decoder, generator, discriminator)
    activation: Activation = "default"  # of the MLP hidden layers: "default" (ReLU / LeakyReLU), elu, silu, gated
    # VAE options
    beta: Beta = 1.0  # KL weight (Higgins et al. 2017); 1 = the ELBO
    decoder: Decoder = "gaussian"
    decoder_output: DecoderOutput = "mean"  # what the model serves at z: E[x|z], or its most likely x (Bernoulli)
    kl_warmup_steps: NonNegativeCount = 0  # steps of linear KL weight 0 -> beta
    free_bits: FreeBits = 0.0  # nats per latent dimension (Kingma et al. 2016), 0 = off
    iwae_k: IwaeK = 1  # > 1: train on the IWAE bound (Burda et al. 2015)
    vamp_components: VampComponents = 0  # K > 0: a VampPrior of K learned pseudo-inputs (per class if conditional)
    # GAN options
    gan_loss: GanLoss = "ns"
    gp_weight: PenaltyWeight = 10.0  # WGAN-GP penalty weight (Gulrajani et al. 2017)
    r1_gamma: PenaltyWeight = 0.0  # R1 penalty weight (Mescheder et al. 2018), 0 = off
    spectral_norm: bool = False  # on the discriminator (Miyato et al. 2018)
    pack: Pack = 1  # PacGAN packing m (Lin et al. 2018)
    ema_decay: UnitFraction = 0.0  # EMA of generator weights, 0 = off; the served weights are the EMA ones when on
    d_steps: DSteps = 1  # discriminator steps per generator step
    d_lr: LearningRate | None = None  # discriminator step size, None = lr
    latent_categories: LatentCategories = 0  # K > 0: each latent coordinate also enters the generator as one of K bins
    latent_bin_positions: bool = False  # with K > 0: ... and as its position inside that bin (see `Generator`)
    latent_binned_dims: NonNegativeCount = 0  # with K > 0: only the first B latent coordinates have bins; 0 = all
    latent_bin_scales: bool = False  # with 0 < B < L: each bin of the first coordinate scales and shifts the rest
    latent_bin_noise: bool = False  # with B = L - D: the rest is noise added to the output, with a width per first bin
    d_fourier_features: FourierFeatures = 0  # MLP discriminators: m random Fourier features of the input (2m columns)
    d_fourier_scale: FourierScale = 10.0  # ... with frequencies ~ N(0, scale^2) cycles per unit of standardized data
    g_mmd_weight: PenaltyWeight = 0.0  # > 0: the generator also minimizes the MMD to a real batch (`losses.mmd2`)
    g_mmd_bandwidth: Bandwidth = 0.02  # ... with an RBF kernel of this width, in units of standardized data
    g_bin_width_bound: PenaltyWeight = 0.0  # > 0, with latent_bin_noise: penalty on bin widths above their start
    g_mode_seeking: PenaltyWeight = 0.0  # > 0: MSGAN's term against latents drawn apart landing together (`losses`)
    latent_labels: bool = False  # unconditional GANs of labeled data: labels drawn from the latent (see `Generator`)
    eval_iw_k: EvalIwK = 100  # importance samples of the VAE log-likelihood bound in the end-of-training metrics
    # Schedule and data options
    lr_decay: LrDecay = "none"  # decay of every learning rate after lr_decay_start: "linear" or "cosine" to 0
    lr_decay_start: UnitFraction = 0.0  # fraction of the steps after which the decay begins
    binarize: bool = False  # images: train on a fresh Bernoulli binarization of every minibatch (dynamic)
    # Presentation (PRESENTATION_OPTIONS: they do not change the weights)
    preview_every: NonNegativeCount = 0  # steps between preview pictures (models/previews.py); 0 = none

    def check_rules(self) -> None:
        """The rules that tie options together (ranges are checked by `from_dict`)."""
        binned = self.latent_binned_dims or self.latent_dim
        if binned * self.latent_categories > MAX_LATENT_BIN_COLUMNS:
            raise Invalid(
                f"latent_dim (or latent_binned_dims) * latent_categories must be <= {MAX_LATENT_BIN_COLUMNS} (one-hot "
                f"input columns of the generator), not {binned * self.latent_categories}",
                field=("latent_categories",),
                limit=MAX_LATENT_BIN_COLUMNS,
            )
        if self.latent_binned_dims > self.latent_dim:
            raise Invalid(
                f"latent_binned_dims must be <= latent_dim ({self.latent_dim}), not {self.latent_binned_dims}",
                field=("latent_binned_dims",),
                limit=self.latent_dim,
            )
        if self.latent_binned_dims and not self.latent_categories:
            raise Invalid(
                "latent_binned_dims needs latent_categories > 0 (the bins it limits)", field=("latent_binned_dims",)
            )
        if self.latent_bin_scales and not (self.latent_categories and 0 < self.latent_binned_dims < self.latent_dim):
            raise Invalid(
                "latent_bin_scales needs latent_categories > 0 and 0 < latent_binned_dims < latent_dim (bins on some "
                "coordinates, continuous ones to scale)",
                field=("latent_bin_scales",),
            )
        if self.latent_bin_noise and not (self.latent_categories and 0 < self.latent_binned_dims < self.latent_dim):
            raise Invalid(
                "latent_bin_noise needs latent_categories > 0 and 0 < latent_binned_dims < latent_dim (bins on some "
                "coordinates, the rest the noise: as many as the data has coordinates)",
                field=("latent_bin_noise",),
            )
        if self.g_bin_width_bound and not self.latent_bin_noise:
            raise Invalid(
                "g_bin_width_bound needs latent_bin_noise (the bins' noise widths it bounds)",
                field=("g_bin_width_bound",),
            )
        if self.latent_bin_positions and not self.latent_categories:
            raise Invalid(
                "latent_bin_positions needs latent_categories > 0 (the bins whose positions it feeds)",
                field=("latent_bin_positions",),
            )
        if self.d_fourier_features and self.architecture == "conv":
            raise Invalid(
                "d_fourier_features is for MLP discriminators (point data), not conv nets",
                field=("d_fourier_features",),
            )
        if self.g_mmd_weight and self.architecture == "conv":
            raise Invalid(
                "g_mmd_weight is for MLP models of point data (an MMD on pixels says little), not conv nets",
                field=("g_mmd_weight",),
            )
        if self.vamp_components and (why := self.vamp_conflict()):
            raise Invalid(why, field=("vamp_components",))
        if self.decoder_output == "mode" and self.decoder != "bernoulli":
            raise Invalid(
                "decoder_output 'mode' needs decoder 'bernoulli' (a Gaussian decoder's most likely value is its mean)",
                field=("decoder_output",),
            )
        if self.latent_labels and (why := self.latent_labels_conflict()):
            raise Invalid(why, field=("latent_labels",))
        if self.batch_size % self.pack:
            raise Invalid(f"batch_size {self.batch_size} must be a multiple of pack {self.pack}", field=("batch_size",))

    def vamp_conflict(self) -> str | None:
        """Why `vamp_components` cannot go with the other options, or None."""
        if self.free_bits:
            return (
                "vamp_components does not combine with free_bits (free bits need the KL of each latent dimension, "
                "which a mixture prior does not split into)"
            )
        if self.latent_dim < 2:
            return "vamp_components needs latent_dim >= 2 (sampling draws the component from the first two)"
        return None

    def latent_labels_conflict(self) -> str | None:
        """Why `latent_labels` cannot go with the other options, or None: the one list of what excludes it (a
        request asking for it gets a 422; a recipe's is dropped, `models.recipes.resolve_config`)."""
        if self.conditional:
            return "latent_labels is for unconditional GANs (a conditional GAN takes its labels from each request)"
        if self.latent_categories:
            return "latent_labels and latent_categories both read the first latent coordinate; use one of them"
        if self.gan_loss == "wgan-gp":
            return (
                "latent_labels does not combine with wgan-gp (its penalty mixes real and generated images, whose "
                "labels differ); use ns or hinge"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """The options that apply to this family (the other family's are left out: they mean nothing here, and
        `from_dict` gives them their defaults)."""
        return applicable_options(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`, validated; unknown keys (from newer or older versions) are ignored."""
        try:
            config = _adapter().validate_python(cls.known(d))
        except ValidationError as exc:
            raise invalid_option(exc) from None
        config.check_rules()
        return config

    @classmethod
    def known(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `d` that are options of a config."""
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in d.items() if k in names}


def applicable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A config's options without those of the other family (records written by earlier versions list them all)."""
    other = {"vae": GAN_OPTIONS, "gan": VAE_OPTIONS}.get(options.get("family"), ())  # type: ignore[arg-type]
    return {k: v for k, v in options.items() if k not in other}


@cache
def _adapter() -> TypeAdapter[TrainConfig]:
    return TypeAdapter(TrainConfig)


def invalid_option(exc: ValidationError) -> Invalid:
    """The first error of a config's validation as `Invalid`, naming the option (the HTTP layer adds "body")."""
    err = exc.errors()[0]
    loc = tuple(err["loc"]) or ("config",)
    name = str(loc[0])
    detail = err["msg"][0].lower() + err["msg"][1:] if err["msg"] else "invalid value"
    return Invalid(f"{name}: {detail}", field=(name,))


def conv_supports(sample_shape: tuple[int, ...]) -> bool:
    """Whether the conv nets handle this image shape: (H, W) or (H, W, C), sides divisible by 4 and >= 8."""
    if len(sample_shape) not in (2, 3):
        return False
    h, w = sample_shape[:2]
    return all(s >= CONV_MIN_SIDE and s % CONV_SIDE_MULTIPLE == 0 for s in (h, w))


def check_data(
    config: TrainConfig, kind: Kind, sample_shape: tuple[int, ...], num_classes: int, size: int | None
) -> None:
    """Whether a config suits data of this kind, shape, class count and size (None: not known yet); `Invalid`
    naming the option if not.

    The one place for these rules: `resolve_config` asks when an API request is resolved (from the dataset's
    description), `models.training.train` again with the data in hand (callers other than the API).
    """
    if size == 0:
        raise Invalid("the training set is empty", field=("dataset",))
    if config.conditional and num_classes == 0:
        raise Invalid("conditional training needs a labeled dataset; this one has no classes", field=("conditional",))
    if config.family == "gan" and config.latent_labels and num_classes == 0:
        raise Invalid("latent_labels needs a labeled dataset; this one has no classes", field=("latent_labels",))
    if config.architecture == "conv" and (kind != "images" or not conv_supports(sample_shape)):
        what = "points" if kind == "points" else f"images of shape {tuple(sample_shape)}"
        raise Invalid(
            f"the conv nets take images with both sides divisible by 4 and >= 8, not {what}; use 'mlp' or 'auto'",
            field=("architecture",),
        )
    if config.family == "vae" and config.conditional and config.vamp_components * num_classes > MAX_VAMP_COMPONENTS:
        raise Invalid(
            f"a conditional VAE has vamp_components pseudo-inputs per class: at most {MAX_VAMP_COMPONENTS} in all, not "
            f"{config.vamp_components} x {num_classes} classes",
            field=("vamp_components",),
            limit=MAX_VAMP_COMPONENTS // max(1, num_classes),
        )
    if config.family == "gan" and config.latent_bin_noise:
        noise, features = config.latent_dim - config.latent_binned_dims, math.prod(sample_shape)
        if kind != "points" or noise != features:
            raise Invalid(
                f"latent_bin_noise adds the {noise} unbinned latent coordinates to the samples' coordinates: it needs "
                f"points with as many coordinates, not {kind} of shape {tuple(sample_shape)}",
                field=("latent_bin_noise",),
            )
    if config.decoder == "bernoulli" and kind == "points":
        raise Invalid("the Bernoulli decoder models data in [0, 1]; use 'gaussian' for points", field=("decoder",))
    if config.binarize and kind != "images":
        raise Invalid("binarize applies to images (gray values in [0, 1]), not points", field=("binarize",))
