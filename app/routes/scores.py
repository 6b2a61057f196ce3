"""Scores: a per-input lower bound on log p(x) under a VAE, for outlier scoring."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app import sampling
from app.deps import ServicesDep
from app.model_cache import LoadedModel
from app.routes.models import PROBLEM, read_vae_input, vae_input_body
from models.errors import Invalid
from models.sampling import latents

router = APIRouter(prefix="/v1/models", tags=["models"])

SCORE_SEED = 0  # the importance samples' noise: fixed, so the same input always gets the same score
DEFAULT_SCORE_K = 100  # importance samples per input, when the request does not say
MAX_SCORE_K = 5000  # the most a request may ask for (the k of the published MNIST log-likelihoods)
SCORE_CHUNK_DECODES = 65_536  # inputs x k decoded per pass on the inference thread; sampling runs between passes


class ScoreResponse(BaseModel):
    """Per-input scores, in input order."""

    model_config = {"json_schema_extra": {"examples": [{"scores": [1.83, -412.5], "k": 100, "unit": "nats"}]}}

    scores: list[float] = Field(
        ...,
        description="log p(x) lower bound per input (the IWAE bound with k samples), "
        "nats; higher = more likely, so low scores flag outliers.",
    )
    k: int = Field(..., description="Importance samples per input.")
    unit: Literal["nats"] = "nats"


def _score(loaded: LoadedModel, x: np.ndarray, labels: torch.Tensor | None, eps: torch.Tensor) -> list[float]:
    with torch.inference_mode():
        device = loaded.forward.device
        out = loaded.model.log_likelihood_bound(  # type: ignore[operator]
            torch.from_numpy(x).to(device),
            None if labels is None else labels.to(device),
            eps.shape[0],
            eps=eps.to(device),
        )
        return [float(v) for v in out.double().cpu()]


@router.post(
    "/{model_id}/scores",
    response_model=ScoreResponse,
    responses={404: PROBLEM, 415: PROBLEM, 422: PROBLEM},
    openapi_extra={"requestBody": vae_input_body(with_format=False)},
)
async def create_scores(
    model_id: str,
    request: Request,
    services: ServicesDep,
    k: Annotated[int, Query(ge=1, le=MAX_SCORE_K, description="Importance samples per input.")] = DEFAULT_SCORE_K,
) -> ScoreResponse:
    """VAE only: a lower bound on log p(x) per input, in nats (higher = more likely), for outlier scoring.

    Inputs as for reconstructions: JSON `{"points": [[...], ...], "labels"?}` for point models, a multipart `file`
    (an image, a .zip or .npz of images) with optional `labels` for image models; labels are required for
    conditional models. The score is the importance-weighted bound of Burda et al. (2015) with `k` samples (the
    ELBO at k = 1; tighter, and slower, as k grows); the samples' noise is fixed, so the same input always gets
    the same score. Points: a log density in the data's units; images: the log-probability of the pixels under
    the decoder (gray values as Bernoulli targets), summed over pixels.
    """
    loaded = await services.models.get(model_id)
    manifest = loaded.manifest
    if manifest["family"] != "vae":
        raise Invalid(f"scores need a VAE; model {model_id} is a GAN", field=("path", "model_id"))
    x, labels_list, fmt = await read_vae_input(request, loaded, services)
    if fmt is not None:
        raise Invalid("scores come as JSON; format does not apply", field=("body", "format"))
    limit = services.settings.max_samples_per_request
    if len(x) > limit:
        raise Invalid(
            f"{len(x)} inputs; the limit is {limit} (GENSERVE_MAX_SAMPLES_PER_REQUEST)", field=("body",), limit=limit
        )
    if manifest["conditional"] and labels_list is None:
        raise Invalid("labels (one per input) are required for a conditional model", field=("body", "labels"))
    labels = sampling.labels_tensor(labels_list, len(x), manifest, ("body", "labels"))
    eps = latents(SCORE_SEED, k, manifest["latent_dim"])  # (k, L), shared by every input
    loop = asyncio.get_running_loop()
    rows = max(1, SCORE_CHUNK_DECODES // k)
    scores: list[float] = []
    for i in range(0, len(x), rows):  # one pass per chunk, so sample requests are served in between
        part = None if labels is None else labels[i : i + rows]
        scores += await loop.run_in_executor(services.models.executor, _score, loaded, x[i : i + rows], part, eps)
    return ScoreResponse(scores=scores, k=k)
