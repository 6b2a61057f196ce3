"""Request and response bodies of the public API (the contract: docs/api.md); examples make Swagger's "Try it out"
work when clicked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.settings import Settings
from models.config import (
    GAN_OPTIONS,
    MAX_LATENT_BIN_COLUMNS,
    VAE_OPTIONS,
    Activation,
    ArchitectureChoice,
    Bandwidth,
    Beta,
    Count,
    Decoder,
    DecoderOutput,
    Depth,
    DSteps,
    EvalIwK,
    Family,
    FourierFeatures,
    FourierScale,
    FreeBits,
    GanLoss,
    IwaeK,
    Kind,
    LatentCategories,
    LearningRate,
    LrDecay,
    NonNegativeCount,
    Pack,
    PenaltyWeight,
    UnitFraction,
    VampComponents,
    Width,
    applicable_options,
)
from models.integers import WHOLE, Integer
from models.progress import Progress
from models.seeds import Seed
from worker.state.status import TrainingStatus

# A latent vector's length is bounded by GENSERVE_MAX_LATENT_DIM when the body is validated (`RequestLimits`) and
# checked against the model's own latent_dim when the request is served.
LatentVector = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1)]


@dataclass(frozen=True)
class RequestLimits:
    """The sizes a request body's lists may have, from the settings. Validation gets them as its context
    (`{"limits": ...}`), so that a list too long is refused as a whole, before its items are validated one by one (a
    million bad items would otherwise cost a million errors); without a context, the settings' defaults apply."""

    max_items: int  # samples, labels, points of one request (GENSERVE_MAX_SAMPLES_PER_REQUEST)
    max_latent_dim: int  # numbers in one latent vector (GENSERVE_MAX_LATENT_DIM)
    max_point_dims: int  # coordinates of one point (GENSERVE_MAX_POINT_DIMS)

    @classmethod
    def of(cls, settings: Settings) -> RequestLimits:
        return cls(settings.max_samples_per_request, settings.max_latent_dim, settings.max_point_dims)

    def context(self) -> dict[str, Any]:
        return {"limits": self}


DEFAULT_LIMITS = RequestLimits.of(Settings.model_construct())
MAX_UNKNOWN_FIELDS = 20  # beyond this many, unknown fields are reported as one error
_SETTING_OF = {
    "max_items": "GENSERVE_MAX_SAMPLES_PER_REQUEST",
    "max_latent_dim": "GENSERVE_MAX_LATENT_DIM",
    "max_point_dims": "GENSERVE_MAX_POINT_DIMS",
}


def _limits(info: ValidationInfo) -> RequestLimits:
    context = info.context
    limits = context.get("limits") if isinstance(context, dict) else None
    return limits if isinstance(limits, RequestLimits) else DEFAULT_LIMITS


def _at_most(value: Any, info: ValidationInfo, outer: str | None, inner: str | None) -> Any:
    """Refuse a list (or its inner lists) longer than the limits allow, before its items are validated."""
    if not isinstance(value, list):
        return value
    limits = _limits(info)
    if outer is not None and len(value) > getattr(limits, outer):
        _too_long(getattr(limits, outer), _SETTING_OF[outer])
    if inner is not None:
        for row in value:
            if isinstance(row, list) and len(row) > getattr(limits, inner):
                _too_long(getattr(limits, inner), _SETTING_OF[inner], " per row")
    return value


def _too_long(limit: int, setting: str, where: str = "") -> None:
    raise PydanticCustomError(
        "too_long",
        "List should have at most {max_length} items{where} ({setting})",
        {"max_length": limit, "where": where, "setting": setting},
    )


MAX_GRID_SCALE = 16


Priority = Literal["high", "normal", "low"]
MAX_TAGS = 20
TagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
TagValue = Annotated[str, Field(max_length=256)]
WebhookEvent = Literal["started", "progress", "preview", "completed"]
MAX_URL_LENGTH = 2048
WEBHOOK_EVENT_ORDER = ["started", "progress", "preview", "completed"]


GridScale = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_GRID_SCALE,
        description="format grid only: each pixel of an image grid drawn as a scale x scale block (nearest "
        "neighbour), or a scatter plot drawn scale times larger; the picture's longer side is bounded by "
        "GENSERVE_MAX_GRID_SIDE_PX.",
    ),
    WHOLE,
]
ShowData = Annotated[
    bool, Field(description="format grid of a points model only: draw the training data faintly behind the samples.")
]


# The rules between fields that the validators and the routes enforce, said in the JSON Schema as well, so that
# generated clients and schema-driven fuzzers know them (a rule that depends on the model, such as the latent size or
# the number of classes, cannot be said in a static schema; docs/api.md says those).
_GRID: dict[str, Any] = {"required": ["format"], "properties": {"format": {"const": "grid"}}}
GRID_ONLY_RULES: list[Any] = [  # scale other than 1 and show_data need format grid
    {"if": {"required": ["scale"], "properties": {"scale": {"not": {"const": 1}}}}, "then": _GRID},
    {"if": {"required": ["show_data"], "properties": {"show_data": {"const": True}}}, "then": _GRID},
]
ENDS_RULES: list[Any] = [  # each end of an interpolation: a seed or a latent vector, not both
    {
        "oneOf": [
            {"required": [f"seed_{end}"], "properties": {f"seed_{end}": {"type": "integer"}}},
            {"required": [f"z_{end}"], "properties": {f"z_{end}": {"type": "array"}}},
        ]
    }
    for end in ("a", "b")
]
FAMILY_RULES: list[Any] = [  # an option of the other family may only be null
    {
        "if": {"properties": {"family": {"const": family}}},
        "then": {"properties": {option: {"type": "null"} for option in others}},
    }
    for family, others in (("vae", GAN_OPTIONS), ("gan", VAE_OPTIONS))
] + [
    {
        "if": {"required": ["webhook_events"], "properties": {"webhook_events": {"type": "array"}}},
        "then": {"required": ["webhook"], "properties": {"webhook": {"type": "string"}}},
    }
]


class Format(StrEnum):
    png = "png"
    grid = "grid"
    npy = "npy"
    json = "json"
    zip = "zip"  # image models: a .zip of PNG files
    jsonl = "jsonl"  # point models: JSON lines, one sample per line


class Strict(BaseModel):
    """Unknown fields are errors, so a typo never silently falls back to a default; and types are strict, so that
    `"n": "5"` or `"conditional": "yes"` is an error rather than a guess (a number may still stand for a float)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: Any) -> Any:
        """Many unknown fields are one error, not one each (a body of 200,000 of them would otherwise be 200,000)."""
        fields = cls.__pydantic_fields__  # (the dict itself: `model_fields` is a slower descriptor on the class)
        if isinstance(data, dict) and len(data) > len(fields) + MAX_UNKNOWN_FIELDS:
            unknown = [str(k)[:40] for k in data if k not in fields]
            raise PydanticCustomError(
                "extra_forbidden",
                "{count} unknown fields (e.g. {examples}); unknown fields are not permitted",
                {"count": len(unknown), "examples": ", ".join(unknown[:5])},
            )
        return data


# --- datasets -------------------------------------------------------------------------------------------------------
DATASET_NAME_MAX = 100


class Dataset(BaseModel):
    id: str
    name: str
    kind: Kind
    shape: list[int]
    size: int
    classes: list[str] | None
    builtin: bool
    created_at: str | None
    description: str | None = None
    available: bool = Field(True, description="False for built-ins whose files are missing (MNIST offline).")
    note: str | None = Field(
        None,
        description="Upload answers only: set when this content was stored before under another name (the stored "
        "dataset, its id and its first name, is returned; the new name is not applied).",
    )


class DatasetList(BaseModel):
    items: list[Dataset]
    next: str | None = Field(None, description="The next page's URL (null on the last page).")


# --- trainings ------------------------------------------------------------------------------------------------------
class TrainingRequest(Strict):
    """What to train. Every option left out (or null) takes the dataset's default recipe.

    The options' choices and ranges are `models.config`'s types (the ones `TrainConfig` is validated with), and
    which options belong to one family only is `models.config.VAE_OPTIONS` / `GAN_OPTIONS`.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"dataset": "ring2d", "family": "gan", "steps": 2000},
                {"dataset": "digits", "family": "vae", "conditional": True, "steps": 1500},
                {"dataset": "ring2d", "family": "gan", "steps": 2000, "priority": "high", "preview_every": 200},
            ],
            "allOf": FAMILY_RULES,
        },
    )

    dataset: str = Field(
        ...,
        min_length=1,
        max_length=DATASET_NAME_MAX,
        description="Dataset id (built-in or uploaded), or an uploaded dataset's name when exactly one dataset has it "
        "(the training records the id).",
    )
    family: Family
    conditional: bool = Field(False, description="Condition on the dataset's labels (labeled datasets only).")
    steps: Count | None = Field(
        None, description="Optimizer steps (generator steps for GANs); at most GENSERVE_MAX_TRAIN_STEPS."
    )
    batch_size: Count | None = Field(None, description="Minibatch size; at most GENSERVE_MAX_TRAIN_BATCH_SIZE.")
    lr: LearningRate | None = Field(None, description="Adam learning rate, (0, 1].")
    latent_dim: Count | None = Field(None, description="Latent dimension; at most GENSERVE_MAX_LATENT_DIM.")
    seed: Seed | None = Field(None, description="Seed; null draws one and records it.")
    architecture: ArchitectureChoice | None = Field(
        None, description="auto: conv for images with sides divisible by 4, else MLP."
    )
    width: Width | None = Field(None, description="Hidden width (MLP) or base channels (conv).")
    depth: Depth | None = Field(None, description="Hidden layers of the MLPs.")
    activation: Activation | None = Field(
        None, description="MLP hidden activation: default (ReLU / LeakyReLU), elu, silu, or gated linear units."
    )
    lr_decay: LrDecay | None = Field(
        None, description="Decay of the learning rates to 0 at the last step, from lr_decay_start on."
    )
    lr_decay_start: UnitFraction | None = Field(None, description="Fraction of the steps after which lr_decay begins.")
    binarize: bool | None = Field(
        None,
        description="Images: dynamic binarization (a fresh Bernoulli draw of every pixel for every minibatch), as "
        "in the MNIST likelihood literature.",
    )
    model_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="Publish the model as the next version of this name (1-63 characters: lowercase letters, digits, "
        "'.', '_', '-'); then `name:version` and `name@alias` name it on every model route.",
    )
    tags: (
        Annotated[
            dict[TagKey, TagValue],
            # a key that does not match TagKey's pattern is an error, which the schema says with this
            Field(max_length=MAX_TAGS, json_schema_extra={"additionalProperties": False}),
        ]
        | None
    ) = Field(None, description=f"Up to {MAX_TAGS} key/value labels the model carries.")
    init_from: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A stored model's id to start from: its weights, and its recipe for the options left out (e.g. "
        "only `steps` for more training, or another `dataset` of the same shape and classes). The net must come out "
        "the same (422 otherwise); the new model records it as `parent_model_id`.",
    )
    priority: Priority = Field(
        "normal",
        description="Workers take high before normal before low (first come, first served within one); a running "
        "training is never interrupted for a higher one.",
    )
    webhook: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="An http(s) URL to POST this training's events to, signed per the Standard Webhooks spec "
        "(GENSERVE_WEBHOOK_SECRET); public addresses only unless the operator allows more (GENSERVE_WEBHOOK_ALLOW).",
    )
    webhook_events: list[WebhookEvent] | None = Field(
        None,
        min_length=1,
        max_length=4,
        description="Which events go to `webhook`: started, progress (at most one per 5 s), preview, completed "
        "(succeeded, failed or canceled). Default: completed.",
    )
    preview_every: NonNegativeCount | None = Field(
        None,
        description="Steps between preview pictures (a fixed-seed sample grid, or a scatter plot over the data) during "
        "the training; 0 = none; null: about 50 over the training. At most 100 are kept: the interval doubles "
        "until they fit. GET /v1/trainings/{id}/previews lists them.",
    )
    # VAE options (models.config.VAE_OPTIONS)
    beta: Beta | None = Field(None, description="VAE: KL weight β.")
    decoder: Decoder | None = Field(None, description="VAE: decoder likelihood.")
    decoder_output: DecoderOutput | None = Field(
        None,
        description="VAE: what the model serves for a latent (samples, reconstructions, interpolations): 'mean', "
        "the decoder's mean (gray probabilities for images), or 'mode', the most likely image (each pixel channel "
        "1 where its probability exceeds 1/2, else 0: a binary image, like binarized training data). 'mode' needs "
        "decoder 'bernoulli', else 422.",
    )
    kl_warmup_steps: NonNegativeCount | None = Field(None, description="VAE: steps of linear KL warm-up.")
    free_bits: FreeBits | None = Field(None, description="VAE: free bits, nats per latent dimension.")
    iwae_k: IwaeK | None = Field(None, description="VAE: importance samples for IWAE training.")
    vamp_components: VampComponents | None = Field(
        None,
        description="VAE: K > 0 gives the model a VampPrior (Tomczak & Welling 2018), the mixture of the posteriors "
        "of K learned pseudo-inputs, which start as K training inputs; 0 = the standard normal prior. Samples are "
        "still drawn from standard normal latents, mapped onto the prior. Conditional models have K per class "
        "(at most 2000 in all). Not with free_bits; latent_dim >= 2; else 422.",
    )
    eval_iw_k: EvalIwK | None = Field(None, description="VAE: importance samples for the log-likelihood metric.")
    # GAN options (models.config.GAN_OPTIONS)
    gan_loss: GanLoss | None = Field(
        None, description="GAN: non-saturating, hinge, or Wasserstein with gradient penalty."
    )
    gp_weight: PenaltyWeight | None = Field(None, description="GAN: WGAN-GP weight.")
    r1_gamma: PenaltyWeight | None = Field(None, description="GAN: R1 penalty γ.")
    spectral_norm: bool | None = Field(None, description="GAN: spectral norm in the discriminator.")
    pack: Pack | None = Field(None, description="GAN: PacGAN packing m.")
    ema_decay: UnitFraction | None = Field(None, description="GAN: EMA decay of generator weights; 0 = off.")
    d_steps: DSteps | None = Field(None, description="GAN: discriminator steps per generator step.")
    d_lr: LearningRate | None = Field(None, description="GAN: discriminator lr.")
    latent_categories: LatentCategories | None = Field(
        None,
        description="GAN: K > 0 gives the latent a discrete part: each coordinate also enters the generator as one "
        "of K equiprobable bins, so that it can jump between separated modes; 0 = off. latent_dim * K is at most "
        f"{MAX_LATENT_BIN_COLUMNS}.",
    )
    d_fourier_features: FourierFeatures | None = Field(
        None,
        description="GAN, MLP (point) models: the discriminator also sees m random Fourier features of each sample, "
        "so that it resolves detail much finer than the data's spread (the inside of a mode); 0 = off.",
    )
    d_fourier_scale: FourierScale | None = Field(
        None, description="GAN: the Fourier features' frequency scale, in cycles per unit of standardized data."
    )
    latent_bin_positions: bool | None = Field(
        None,
        description="GAN, with latent_categories > 0: each latent coordinate also enters the generator as its "
        "position inside its bin, so that samples can spread inside a mode instead of sitting on one point per bin.",
    )
    latent_binned_dims: NonNegativeCount | None = Field(
        None,
        description="GAN, with latent_categories > 0: only the first this many latent coordinates have bins; the "
        "others enter the generator as plain continuous inputs (at most latent_dim); 0 = all.",
    )
    latent_bin_scales: bool | None = Field(
        None,
        description="GAN, with latent_categories > 0 and 0 < latent_binned_dims < latent_dim: each bin of the first "
        "latent coordinate has its own scale and shift of the continuous coordinates (DeLiGAN), so that a bin can "
        "narrow the noise that would carry its samples out of its mode.",
    )
    latent_bin_noise: bool | None = Field(
        None,
        description="GAN, point data: the latent coordinates after the first latent_binned_dims (as many as the "
        "data's coordinates) skip the net and are added to its output as noise, scaled by a learned width per bin "
        "of the first coordinate, so that no continuous input can carry a bin's samples across the gap between two "
        "modes while the noise spreads them inside one.",
    )
    g_mmd_weight: PenaltyWeight | None = Field(
        None,
        description="GAN, MLP (point) models: the generator also minimizes this weight times the squared MMD between "
        "its batch and a real batch (RBF kernel of width g_mmd_bandwidth), which pushes apart samples that sit "
        "closer than the data's; 0 = off.",
    )
    g_mmd_bandwidth: Bandwidth | None = Field(
        None, description="GAN: the MMD kernel's width, in units of standardized data (one mode's width, say)."
    )
    g_bin_width_bound: PenaltyWeight | None = Field(
        None,
        description="GAN, with latent_bin_noise: the generator also minimizes this weight times the sum of squared "
        "excesses of each bin's log noise width over its starting width K^(-1/D), so that a bin stranded between two "
        "modes cannot widen its noise to cover both instead of moving to one; 0 = off.",
    )
    g_mode_seeking: PenaltyWeight | None = Field(
        None,
        description="GAN: weight of MSGAN's mode-seeking term (Mao et al. 2019), which penalizes latents drawn apart "
        "that give nearly the same sample (for conditional models: the same class), against a class drawn as a few "
        "images; 0 = off.",
    )
    latent_labels: bool | None = Field(
        None,
        description="GAN, unconditional, on a labeled dataset: the generator draws each sample's label from its "
        "first latent coordinate, at the classes' shares of the data, and the discriminator judges (sample, label) "
        "pairs as for a conditional GAN; the model is served unconditional (z alone). Not with conditional, "
        "latent_categories or wgan-gp.",
    )

    @field_validator("webhook_events")
    @classmethod
    def _webhook_events(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        if info.data.get("webhook") is None:
            raise ValueError("webhook_events needs a webhook URL")
        return sorted(set(value), key=WEBHOOK_EVENT_ORDER.index)

    @field_validator(*VAE_OPTIONS, *GAN_OPTIONS)
    @classmethod
    def _family_options(cls, value: Any, info: ValidationInfo) -> Any:
        """An option of the other family is an error located at the option (`family` is validated before it)."""
        family = info.data.get("family")
        owner = "vae" if info.field_name in VAE_OPTIONS else "gan"
        if value is not None and family is not None and family != owner:
            raise ValueError(f"{info.field_name} is a {owner.upper()} option; this training is a {family.upper()}")
        return value


def _applicable(config: dict[str, Any] | None) -> dict[str, Any] | None:
    return applicable_options(config) if config else config


AppliedConfig = Annotated[dict[str, Any] | None, AfterValidator(_applicable)]  # records of earlier versions list all


class Training(BaseModel):
    id: str
    status: TrainingStatus
    # Titled apart from TrainingRequest: generated clients name inline objects after their title, and two models
    # called TrainingRequest break them (openapi-python-client drops Training altogether).
    request: dict[str, Any] = Field(
        ...,
        title="AcceptedRequest",
        description="The request as accepted: the options given, `dataset` as the id, the seed as drawn.",
    )
    config: AppliedConfig = Field(None, description="The resolved recipe the worker runs (this family's options).")
    progress: Progress
    metrics: dict[str, float]
    model_id: str | None
    error: str | None
    attempts: int = Field(0, description="Times a worker started this training.")
    lost_workers: int = Field(0, description="Workers that died while running it (it was re-queued each time).")
    preemptions: int = Field(0, description="Times a stopping worker checkpointed it and put it back on the queue.")
    resumed_from_step: int | None = Field(None, description="The checkpoint step the latest run resumed from.")
    job_id: str | None = Field(None, description="The RQ job of the current attempt.")
    queue_position: int | None = Field(
        None, description="Queued trainings: 1 = the next one a worker takes, over every priority; else null."
    )
    start_eta_seconds: float | None = Field(
        None,
        description="Queued trainings: an estimate of the seconds until a worker takes it (from the running "
        "trainings' ETAs and the median duration of recent trainings, over the workers there are); null when "
        "there is nothing to estimate from.",
    )
    created_at: str
    started_at: str | None
    finished_at: str | None


class TrainingList(BaseModel):
    items: list[Training]
    next: str | None = Field(None, description="The next page's URL (null on the last page).")


class TrainingHistory(BaseModel):
    """A training's curves: one entry per progress report kept (at most 2,000, spread evenly over the run), as stored
    at its last checkpoint or at its end."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "total_steps": 2000,
                    "steps": [1, 120, 240],
                    "elapsed_s": [0.1, 2.0, 4.1],
                    "series": {"loss_d": [1.38, 1.2, 1.31], "loss_g": [0.69, 0.9, 0.8], "lr": [0.001, 0.001, 0.001]},
                    "metrics": None,
                }
            ]
        }
    }

    total_steps: int
    steps: list[int] = Field(..., description="The step of each point, increasing.")
    elapsed_s: list[float] = Field(..., description="Seconds of training at each point (resumes included).")
    series: dict[str, list[float | None]] = Field(
        ..., description="Mean training losses since the previous report, by name, and `lr`: one value per step."
    )
    metrics: dict[str, float] | None = Field(
        None, description="The end-of-training metrics, measured at the last step (null until the training succeeds)."
    )


class Delivery(BaseModel):
    """One attempt to deliver a webhook event."""

    delivery_id: str = Field(..., description="The `webhook-id` header: the same on every attempt of one event.")
    event: str
    attempt: int = Field(..., description="1 for the first try.")
    at: str
    status_code: int | None = Field(None, description="The receiver's answer; null when there was none.")
    error: str | None = Field(None, description="Why the attempt failed (no answer, refused address, gave up).")
    next_attempt_at: str | None = Field(None, description="When the next try is due; null when none will follow.")


class DeliveryList(BaseModel):
    items: list[Delivery] = Field(..., description="Oldest first.")


class Preview(BaseModel):
    step: int
    url: str = Field(..., description="The PNG.")


class PreviewList(BaseModel):
    items: list[Preview] = Field(..., description="By step, oldest first.")


# --- models and sampling ---------------------------------------------------------------------------------------------
class Model(BaseModel):
    id: str
    family: Family
    dataset: str
    kind: Kind
    sample_shape: list[int]
    latent_dim: int
    conditional: bool
    classes: list[str] | None
    training_id: str | None
    metrics: dict[str, float]
    created_at: str
    config: AppliedConfig = Field(None, description="The training's resolved recipe (this family's options).")
    parent_model_id: str | None = Field(None, description="The model its training started from (`init_from`).")
    name: str | None = Field(None, description="Its model name, when its training gave one.")
    version: int | None = Field(None, description="Its version under `name` (never reused).")
    tags: dict[str, str] = Field(default_factory=dict)
    imported_from: str | None = Field(None, description="Imported from a bundle: the id it had where it came from.")


class AliasRequest(Strict):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"version": 1}]})

    version: Integer = Field(..., ge=1, description="The version the alias points at.")


class ModelVersion(BaseModel):
    version: int
    model_id: str
    aliases: list[str]


class ModelName(BaseModel):
    name: str
    created_at: str
    versions: list[ModelVersion] = Field(..., description="Oldest first; a deleted version is gone for good.")
    aliases: dict[str, int] = Field(..., description="Alias -> version.")


class ModelNameList(BaseModel):
    items: list[ModelName]
    next: str | None = Field(None, description="The next page's URL (null on the last page).")


class ModelList(BaseModel):
    items: list[Model]
    next: str | None = Field(None, description="The next page's URL (null on the last page).")


class SampleRequest(Strict):
    """How many samples, from which seed, of which classes, in which format."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"n": 16, "seed": 42, "format": "grid"}, {"n": 4, "seed": 7}],
            "allOf": GRID_ONLY_RULES,
        },
    )

    n: Integer = Field(1, ge=1, description="Number of samples; at most GENSERVE_MAX_SAMPLES_PER_REQUEST.")
    seed: Seed | None = Field(None, description="Seed; null draws one and returns it.")
    labels: list[Annotated[int, Field(ge=0), WHOLE]] | None = Field(
        None,
        description="Class index per sample (length n), conditional models only; "
        "null on a conditional model cycles through the classes.",
    )
    z: list[LatentVector] | None = Field(
        None, min_length=1, description="n latent vectors to decode instead of seeded ones."
    )
    format: Format | None = Field(
        None, strict=False, description="png (default for images), grid, npy, or json (default for points)."
    )
    timeout_ms: Annotated[int, Field(ge=1, le=600_000), WHOLE] | None = Field(
        None, description="Give up (504) when not served in time."
    )
    scale: GridScale = 1
    show_data: ShowData = False

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        return _at_most(value, info, "max_items", None)

    @field_validator("z", mode="before")
    @classmethod
    def _z_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        return _at_most(value, info, "max_items", "max_latent_dim")


class InterpolationRequest(Strict):
    """A path through latent space between two seeds (or two latent vectors)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"seed_a": 1, "seed_b": 2, "steps": 8, "format": "grid"}],
            "allOf": [*ENDS_RULES, *GRID_ONLY_RULES],
        },
    )

    seed_a: Seed | None = None
    seed_b: Seed | None = None
    z_a: LatentVector | None = None
    z_b: LatentVector | None = None
    steps: Integer = Field(8, ge=2, description="Samples along the path, ends included.")
    label: Annotated[int, Field(ge=0), WHOLE] | None = Field(
        None,
        description="Class index (conditional models only). Left out on a conditional model: one path per class, "
        "class by class (steps x classes samples; a grid shows a row per class).",
    )
    format: Format | None = Field(None, strict=False)
    scale: GridScale = 1
    show_data: ShowData = False

    @field_validator("z_a", "z_b", mode="before")
    @classmethod
    def _z_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        return _at_most([value], info, None, "max_latent_dim")[0] if isinstance(value, list) else value

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
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"points": [[1.0, 0.0], [0.0, 1.0]], "format": "json"}]},
    )

    points: list[list[Annotated[float, Field(allow_inf_nan=False)]]] = Field(..., min_length=1)
    labels: list[Annotated[int, Field(ge=0), WHOLE]] | None = None
    format: Format | None = Field(None, strict=False)

    @field_validator("points", mode="before")
    @classmethod
    def _points_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        return _at_most(value, info, "max_items", "max_point_dims")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_bounded(cls, value: Any, info: ValidationInfo) -> Any:
        return _at_most(value, info, "max_items", None)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]
