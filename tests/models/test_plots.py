"""Scatter plots of point samples: axes, a frame that comes from the data (so pictures of one model compare), the
data drawn faintly behind on request, samples outside the frame counted rather than hidden."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from models.plots import BACKDROP_POINTS, PointsFrame, scatter_png


def ring(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * rng.integers(0, 8, n) / 8
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) + rng.normal(0, 0.01, (n, 2))


def picture(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_the_frame_comes_from_the_data_not_the_samples() -> None:
    data = ring(5000)
    frame = PointsFrame.of(data)
    x0, x1, y0, y1 = frame.limits
    assert x0 < -1.0 < 1.0 < x1 and y0 < -1.0 < 1.0 < y1
    assert len(frame.data) == BACKDROP_POINTS and frame.outside(data) == 0
    six_modes = data[np.arctan2(data[:, 1], data[:, 0]) > -np.pi / 2 - 0.3]  # two of the eight modes missing
    # The same frame whatever the samples: a picture of six modes has the ring's axes, not the six modes' own.
    assert PointsFrame.of(six_modes).limits != frame.limits
    a, b = picture(scatter_png(data[:300], frame)), picture(scatter_png(six_modes[:300], frame))
    assert a.shape == b.shape == (512, 512, 3)


def test_axes_the_data_behind_and_the_scale() -> None:
    data = ring(5000)
    frame = PointsFrame.of(data)
    samples = ring(200, seed=1)
    plain = picture(scatter_png(samples, frame))
    behind = picture(scatter_png(samples, frame, show_data=True))
    grey = lambda img: int(((abs(img[..., 0] - img[..., 1]) < 8) & (img[..., 0] > 100) & (img[..., 0] < 235)).sum())  # noqa: E731
    assert grey(behind) > grey(plain)  # the faint grey data points (and a legend)
    dark = (plain.sum(axis=2) < 200).sum(axis=0)
    assert dark.max() > 300  # axis lines and tick labels: long dark columns that bare points would not give
    assert picture(scatter_png(samples, frame, scale=2)).shape == (1024, 1024, 3)


def test_samples_outside_the_frame_are_counted() -> None:
    frame = PointsFrame.of(ring(1000))
    samples = np.concatenate([ring(50, seed=2), np.full((3, 2), 10.0)])
    assert frame.outside(samples) == 3
    assert scatter_png(samples, frame) != scatter_png(samples[:50], frame)  # the title says "3 of 53 ... outside"


def test_one_dimensional_points_and_no_points() -> None:
    line = np.linspace(-1, 1, 20)[:, None]
    assert picture(scatter_png(line)).shape == (512, 512, 3)
    assert picture(scatter_png(np.zeros((0, 2)))).shape == (512, 512, 3)
