"""A training's history and previews, in the training loop itself: bounded and evenly spread, continued exactly by
a resume, cut back by a roll-back; previews at the steps the rule names, the same bytes for the same seed."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from models import previews
from models.history import History
from models.nets import GenerativeModel, build_model, spec_for
from models.plots import history_png
from tests.models.test_training import DEV, Crash, MemoryCheckpointer, bars, blobs, config, run, splits


def test_the_history_stays_bounded_and_even_and_keeps_the_latest_point() -> None:
    h = History(max_points=100)
    for step in range(1, 1001):
        h.add(step, step * 0.01, 1e-3, {"loss": 1.0 / step})
        shown = [p["step"] for p in h.shown()]
        assert len(shown) <= 101 and shown[0] == 1 and shown[-1] == step
    gaps = np.diff([p["step"] for p in h.points])
    assert gaps.min() == gaps.max() == h.stride  # evenly spread
    back = History.from_dict(h.to_dict(), max_points=100)
    assert back.shown() == h.shown()
    back.truncate(500)
    assert max(p["step"] for p in back.shown()) <= 500


@pytest.mark.parametrize("crash_at", [17, 20])  # 20: a preview's step, where the checkpoint must follow the preview
@pytest.mark.parametrize("family", ["gan", "vae"])
def test_a_resumed_run_has_the_history_and_previews_of_an_uninterrupted_one(family: str, crash_at: int) -> None:
    cfg = replace(config(family, "points", steps=40), preview_every=10)
    data = splits(blobs(128))
    shots: list[tuple[int, bytes]] = []

    def shoot(step: int, model: GenerativeModel) -> None:
        shots.append((step, previews.preview_png(model, step)))

    whole, _ = run(cfg, data, on_preview=shoot)
    whole_shots, shots[:] = list(shots), []
    assert [s for s, _ in whole_shots] == [10, 20, 30, 40]
    series = whole.history
    assert series["steps"] == list(range(1, 41))  # a report at every step in this test
    assert "lr" in series["series"] and len(series["series"]) > 1  # the losses by name, and the learning rate
    assert series["metrics"] == whole.metrics and len(series["series"]["lr"]) == 40

    ckpt = MemoryCheckpointer(crash_at_step=crash_at)
    with pytest.raises(Crash):
        run(cfg, data, checkpointer=ckpt, on_preview=shoot)
    resumed, _ = run(cfg, data, checkpointer=ckpt, on_preview=shoot)
    assert resumed.history["steps"] == series["steps"]  # no gap, no step twice
    if DEV.type == "cpu":
        assert resumed.history["series"] == series["series"]
        assert dict(shots) == dict(whole_shots)  # the same pictures, written again where the crash lost them


def test_an_image_preview_is_a_grid_of_the_same_latents_every_time() -> None:
    cfg = replace(config("vae", "images", conditional=True), preview_every=10)
    data = splits(bars(64))
    model = build_model(spec_for(cfg, "images", data.train.sample_shape, data.train.num_classes))
    png = previews.preview_png(model, 10)
    picture = Image.open(io.BytesIO(png))
    assert picture.size == (2 * (8 * (8 + 2) + 2),) * 2  # 8 x 8 samples of 8 x 8 px, drawn twice as large
    assert previews.preview_png(model, 20) == png and model.training  # same latents; the mode is given back


def test_preview_steps_are_bounded_and_include_the_last() -> None:
    cfg = replace(config("gan", "points", steps=100_000), preview_every=10)
    every = previews.interval(cfg)
    assert every == 1280 and 100_000 // every <= previews.MAX_PREVIEWS
    assert previews.due(cfg, 1280 * 3) and previews.due(cfg, 100_000) and not previews.due(cfg, 10)
    assert previews.interval(replace(cfg, preview_every=0)) == 0
    assert previews.auto_interval(25_000) == 500 and previews.auto_interval(300) == 100
    assert previews.auto_interval(8000) == 100 and previews.auto_interval(100_000) == 2000


def test_a_loss_curve_is_a_picture_with_its_metrics() -> None:
    history: dict[str, Any] = {
        "total_steps": 300,
        "steps": list(range(1, 301)),
        "elapsed_s": [s * 0.1 for s in range(1, 301)],
        "series": {"loss_d": [1.4 - s / 1000 for s in range(300)], "loss_g": [0.7] * 299 + [None], "lr": [1e-3] * 300},
        "metrics": {"energy_distance": 0.01},
    }
    png = history_png(history, "tr_x: GAN on ring2d, succeeded")
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert history_png({**history, "metrics": None, "steps": [], "elapsed_s": [], "series": {}}).startswith(b"\x89PNG")
