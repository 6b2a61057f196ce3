"""Request and response bodies of the public API (see shared/docs/API.md); examples make Swagger's "Try it out"
work when clicked."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.recipes import MAX_LATENT_BIN_COLUMNS, MAX_LATENT_CATEGORIES

SEED_MAX = 2**31 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="Random seed in [0, 2^31).")]
LatentVector = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1, max_length=512)]


class Format(StrEnum):
    png = "png"
    grid = "grid"
    npy = "npy"
    json = "json"


class Strict(BaseModel):
    """Unknown fields are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid")


# --- datasets -------------------------------------------------------------------------------------------------------
class Dataset(BaseModel):
    id: str
    name: str
    kind: Literal["points", "images"]
    shape: list[int]
    size: int
    classes: list[str] | None
    builtin: bool
    created_at: str | None
    description: str | None = None
    available: bool = Field(True, description="False for built-ins whose files are missing (MNIST offline).")


class DatasetList(BaseModel):
    items: list[Dataset]


# --- trainings ------------------------------------------------------------------------------------------------------
class TrainingStatusName(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


class TrainingRequest(Strict):
    """What to train. Every option left out (or null) takes the dataset's default recipe."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"dataset": "ring2d", "family": "gan", "steps": 2000},
                {"dataset": "digits", "family": "vae", "conditional": True, "steps": 1500},
            ]
        },
    )

    dataset: str = Field(..., min_length=1, max_length=64, description="Dataset id (built-in or uploaded).")
    family: Literal["vae", "gan"]
    conditional: bool = Field(False, description="Condition on the dataset's labels (labeled datasets only).")
    steps: int | None = Field(
        None, ge=1, description="Optimizer steps (generator steps for GANs); at most GENSERVE_MAX_TRAIN_STEPS."
    )
    batch_size: int | None = Field(None, ge=1, description="Minibatch size; at most GENSERVE_MAX_TRAIN_BATCH_SIZE.")
    lr: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description="Adam learning rate, (0, 1].")
    latent_dim: int | None = Field(None, ge=1, description="Latent dimension; at most GENSERVE_MAX_LATENT_DIM.")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Seed; null draws one and records it.")
    architecture: Literal["auto", "mlp", "conv"] | None = Field(
        None, description="auto: conv for images with sides divisible by 4, else MLP."
    )
    width: int | None = Field(None, ge=8, le=2048, description="Hidden width (MLP) or base channels (conv).")
    depth: int | None = Field(None, ge=1, le=8, description="Hidden layers of the MLPs.")
    activation: Literal["default", "elu", "silu", "gated"] | None = Field(
        None, description="MLP hidden activation: default (ReLU / LeakyReLU), elu, silu, or gated linear units."
    )
    lr_decay: Literal["none", "linear", "cosine"] | None = Field(
        None, description="Decay of the learning rates to 0 at the last step, from lr_decay_start on."
    )
    lr_decay_start: float | None = Field(
        None, ge=0, lt=1, allow_inf_nan=False, description="Fraction of the steps after which lr_decay begins."
    )
    binarize: bool | None = Field(
        None,
        description="Images: dynamic binarization (a fresh Bernoulli draw of "
        "every pixel for every minibatch), as in the MNIST likelihood literature.",
    )
    # VAE options
    beta: float | None = Field(None, gt=0, le=100, allow_inf_nan=False, description="VAE: KL weight β.")
    decoder: Literal["bernoulli", "gaussian"] | None = Field(None, description="VAE: decoder likelihood.")
    kl_warmup_steps: int | None = Field(None, ge=0, description="VAE: steps of linear KL warm-up.")
    free_bits: float | None = Field(
        None, ge=0, le=10, allow_inf_nan=False, description="VAE: free bits, nats per latent dimension."
    )
    iwae_k: int | None = Field(None, ge=1, le=64, description="VAE: importance samples for IWAE training.")
    eval_iw_k: int | None = Field(
        None, ge=1, le=5000, description="VAE: importance samples for the log-likelihood metric."
    )
    # GAN options
    gan_loss: Literal["ns", "hinge", "wgan-gp"] | None = Field(
        None, description="GAN: non-saturating, hinge, or Wasserstein with gradient penalty."
    )
    gp_weight: float | None = Field(None, ge=0, le=1000, allow_inf_nan=False, description="GAN: WGAN-GP weight.")
    r1_gamma: float | None = Field(None, ge=0, le=1000, allow_inf_nan=False, description="GAN: R1 penalty γ.")
    spectral_norm: bool | None = Field(None, description="GAN: spectral norm in the discriminator.")
    pack: int | None = Field(None, ge=1, le=8, description="GAN: PacGAN packing m.")
    ema_decay: float | None = Field(
        None, ge=0, lt=1, allow_inf_nan=False, description="GAN: EMA decay of generator weights; 0 = off."
    )
    d_steps: int | None = Field(None, ge=1, le=10, description="GAN: discriminator steps per generator step.")
    d_lr: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description="GAN: discriminator lr.")
    latent_categories: int | None = Field(
        None,
        ge=0,
        le=MAX_LATENT_CATEGORIES,
        description="GAN: K > 0 gives the latent a discrete part: each "
        "coordinate also enters the generator as one of K equiprobable bins, so that it can jump between separated "
        f"modes; 0 = off. latent_dim * K is at most {MAX_LATENT_BIN_COLUMNS}.",
    )

    @model_validator(mode="after")
    def _family_options(self) -> TrainingRequest:
        vae_only = ("beta", "decoder", "kl_warmup_steps", "free_bits", "iwae_k", "eval_iw_k")
        gan_only = (
            "gan_loss",
            "gp_weight",
            "r1_gamma",
            "spectral_norm",
            "pack",
            "ema_decay",
            "d_steps",
            "d_lr",
            "latent_categories",
        )
        wrong = gan_only if self.family == "vae" else vae_only
        for name in wrong:
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name} is a {'GAN' if self.family == 'vae' else 'VAE'} option; "
                    f"this training is a {self.family.upper()}"
                )
        return self


class Progress(BaseModel):
    step: int = 0
    total_steps: int = 0
    fraction: float = 0.0
    eta_seconds: float | None = None
    losses: dict[str, float] = Field(default_factory=dict)
    phase: Literal["train", "metrics"] = Field(
        "train", description="'train', then 'metrics' while the end-of-training quality metrics are computed."
    )
    detail: str | None = Field(None, description="During 'metrics': the metric being computed.")


class Training(BaseModel):
    id: str
    status: TrainingStatusName
    request: dict[str, Any]
    config: dict[str, Any] | None = Field(None, description="The resolved recipe the worker runs.")
    progress: Progress
    metrics: dict[str, float]
    model_id: str | None
    error: str | None
    attempts: int = Field(0, description="Times a worker started this training.")
    lost_workers: int = Field(0, description="Workers that died while running it (it was re-queued each time).")
    preemptions: int = Field(0, description="Times a stopping worker checkpointed it and put it back on the queue.")
    resumed_from_step: int | None = Field(None, description="The checkpoint step the latest run resumed from.")
    job_id: str | None = Field(None, description="The RQ job of the current attempt.")
    created_at: str
    started_at: str | None
    finished_at: str | None


class TrainingList(BaseModel):
    items: list[Training]


# --- models and sampling ---------------------------------------------------------------------------------------------
class Model(BaseModel):
    id: str
    family: Literal["vae", "gan"]
    dataset: str
    kind: Literal["points", "images"]
    sample_shape: list[int]
    latent_dim: int
    conditional: bool
    classes: list[str] | None
    training_id: str | None
    metrics: dict[str, float]
    created_at: str
    config: dict[str, Any] | None = None


class ModelList(BaseModel):
    items: list[Model]


class SampleRequest(Strict):
    """How many samples, from which seed, of which classes, in which format."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"n": 16, "seed": 42, "format": "grid"}, {"n": 4, "seed": 7}]},
    )

    n: int = Field(1, ge=1, description="Number of samples; at most GENSERVE_MAX_SAMPLES_PER_REQUEST.")
    seed: Seed | None = Field(None, description="Seed; null draws one and returns it.")
    labels: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="Class index per sample (length n), conditional models only; "
        "null on a conditional model cycles through the classes.",
    )
    z: list[LatentVector] | None = Field(None, description="n latent vectors to decode instead of seeded ones.")
    format: Format | None = Field(
        None, description="png (default for images), grid, npy, or json (default for points)."
    )
    timeout_ms: int | None = Field(None, ge=1, le=600_000, description="Give up (504) when not served in time.")


class InterpolationRequest(Strict):
    """A path through latent space between two seeds (or two latent vectors)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"seed_a": 1, "seed_b": 2, "steps": 8, "format": "grid"}]},
    )

    seed_a: Seed | None = None
    seed_b: Seed | None = None
    z_a: LatentVector | None = None
    z_b: LatentVector | None = None
    steps: int = Field(8, ge=2, description="Samples along the path, ends included.")
    label: int | None = Field(None, ge=0, description="Class index; required for conditional models.")
    format: Format | None = None

    @model_validator(mode="after")
    def _ends(self) -> InterpolationRequest:
        for end in ("a", "b"):
            seed, z = getattr(self, f"seed_{end}"), getattr(self, f"z_{end}")
            if (seed is None) == (z is None):
                raise ValueError(f"give exactly one of seed_{end} and z_{end}")
        return self


class PointsReconstructionRequest(Strict):
    """Points to encode and decode (VAE point models)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"points": [[1.0, 0.0], [0.0, 1.0]], "format": "json"}]}
    )

    points: list[list[Annotated[float, Field(allow_inf_nan=False)]]] = Field(..., min_length=1)
    labels: list[Annotated[int, Field(ge=0)]] | None = None
    format: Format | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]
