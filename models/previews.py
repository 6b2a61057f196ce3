"""Preview pictures during a training: the model being trained, sampled from the same fixed latents every time (a
grid of images, or a scatter plot over the training data), so that a person sees it evolve.

Which steps get one: every `preview_every` steps, the interval doubled until the training's previews number at most
MAX_PREVIEWS (so a long training keeps them evenly over its whole life), and the last step. The rule depends only on
the config, so a resumed training writes the same steps (and, on CPU, the same bytes) as an uninterrupted one.
"""

from __future__ import annotations

import torch

from models.config import TrainConfig
from models.nets.layers import GenerativeModel
from models.plots import PointsFrame, grid_png, scatter_png
from models.sampling import latents

MAX_PREVIEWS = 100
PREVIEW_SEED = 0
PREVIEW_IMAGES = 64  # an 8 x 8 grid
PREVIEW_POINTS = 1000
AUTO_PREVIEWS = 50  # the default interval gives about this many previews
MIN_AUTO_INTERVAL = 100


def auto_interval(steps: int) -> int:
    """The default `preview_every`: about AUTO_PREVIEWS previews, at a round number of steps, never below 100."""
    raw = max(MIN_AUTO_INTERVAL, steps // AUTO_PREVIEWS)
    magnitude = 10 ** (len(str(raw)) - 1)
    return max(MIN_AUTO_INTERVAL, raw // magnitude * magnitude)


def interval(config: TrainConfig) -> int:
    """Steps between two previews (0: none)."""
    every = config.preview_every
    if every <= 0:
        return 0
    while -(-config.steps // every) > MAX_PREVIEWS:  # the multiples of `every`, and the last step
        every *= 2
    return every


def due(config: TrainConfig, step: int) -> bool:
    every = interval(config)
    return every > 0 and (step % every == 0 or step == config.steps)


def preview_png(model: GenerativeModel, step: int, frame: PointsFrame | None = None) -> bytes:
    """The preview of `model` at `step`: fixed latents (and classes in turn for a conditional model)."""
    spec = model.spec
    n = PREVIEW_IMAGES if spec.kind == "images" else PREVIEW_POINTS
    device = next(model.parameters()).device
    z = latents(PREVIEW_SEED, n, spec.latent_dim).to(device)
    labels = torch.arange(n, device=device) % spec.num_classes if spec.num_classes else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(z, labels).float().cpu().numpy()
    finally:
        model.train(was_training)
    if spec.kind == "images":
        return grid_png(out, columns=8, scale=2 if max(spec.sample_shape[:2]) < 32 else 1)
    return scatter_png(out, frame, show_data=frame is not None, title=f"step {step}")
