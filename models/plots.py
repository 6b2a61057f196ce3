"""Pictures for people: image samples tiled into a grid, point samples as a scatter plot with axes, a training's
loss curves.

A scatter plot is framed by the training data's extent (`PointsFrame`), not by the samples, so that pictures of one
model compare with each other and a model that misses modes looks like it; samples outside the frame are counted in
the title, not silently widened into view. The training data can be drawn faintly behind the samples. Plots use
matplotlib's object API (a Figure with its own Agg canvas, no pyplot state), so several threads may draw at once.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.png import PNG_COMPRESS_LEVEL, png_bytes, to_uint8

GRID_PADDING_PX = 2
SCATTER_INCHES = 5.12
SCATTER_DPI = 100  # 512 px at scale 1
FRAME_MARGIN = 0.05  # of the data's extent, on each side
BACKDROP_POINTS = 2000  # the training data drawn behind samples: a fixed subsample of this many points
BACKDROP_SEED = 0
SAMPLE_COLOR = "#1f77b4"
DATA_COLOR = "#7f7f7f"
LOG_SCALE_RATIO = 20  # loss curves spanning more than this factor get a log axis
METRICS_SHOWN = 6  # final metrics in a loss curve's caption


def grid_png(images: np.ndarray, columns: int | None = None, scale: int = 1) -> bytes:
    """All images of a batch tiled into one PNG, row by row, near-square unless `columns` is given; each pixel drawn
    as a `scale` x `scale` block (nearest neighbour, so digits stay crisp)."""
    n = images.shape[0]
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    h, w = images.shape[1], images.shape[2]
    pad = GRID_PADDING_PX
    shape = (rows * (h + pad) + pad, cols * (w + pad) + pad) + images.shape[3:]
    canvas = np.zeros(shape, dtype=np.uint8)
    data = to_uint8(images)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = data[i]
    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return png_bytes(canvas)


def grid_side_px(n: int, sample_shape: Sequence[int], columns: int | None = None, scale: int = 1) -> int:
    """The longer side, in pixels, of the `grid` picture of n samples (checked against a limit before drawing)."""
    if len(sample_shape) < 2:  # points: a scatter plot
        return scatter_side_px(scale)
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    h, w = sample_shape[0], sample_shape[1]
    return max(rows * (h + GRID_PADDING_PX), cols * (w + GRID_PADDING_PX)) * scale + GRID_PADDING_PX * scale


def scatter_side_px(scale: int = 1) -> int:
    return round(SCATTER_INCHES * SCATTER_DPI * scale)


def first_two(points: np.ndarray) -> np.ndarray:
    """The plotted coordinates: the first two (one-dimensional points are drawn on the x axis)."""
    if points.shape[1] >= 2:
        return points[:, :2]
    return np.concatenate([points, np.zeros_like(points)], axis=1)


@dataclass(frozen=True, eq=False)
class PointsFrame:
    """Where a model's data lives: the plot's limits (x0, x1, y0, y1) and a fixed subsample of the training data."""

    limits: tuple[float, float, float, float]
    data: np.ndarray  # (m, 2)

    @classmethod
    def of(cls, x: np.ndarray) -> PointsFrame:
        xy = first_two(np.asarray(x, dtype=np.float64))
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.maximum(hi - lo, 1e-6)
        lo, hi = lo - FRAME_MARGIN * span, hi + FRAME_MARGIN * span
        rng = np.random.default_rng(BACKDROP_SEED)
        keep = rng.choice(len(xy), size=min(len(xy), BACKDROP_POINTS), replace=False)
        return cls((float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])), xy[np.sort(keep)].astype(np.float32))

    def outside(self, xy: np.ndarray) -> int:
        x0, x1, y0, y1 = self.limits
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        return int((~inside).sum())


def scatter_png(
    points: np.ndarray, frame: PointsFrame | None = None, show_data: bool = False, scale: int = 1, title: str = ""
) -> bytes:
    """Points (n, D) as a scatter plot of their first two coordinates, with axes; framed by `frame` (else by the
    points themselves) and, with `show_data`, over the frame's training data in faint grey."""
    xy = first_two(np.asarray(points, dtype=np.float64))
    if frame is None:
        frame = PointsFrame.of(xy) if len(xy) else PointsFrame((-1.0, 1.0, -1.0, 1.0), np.zeros((0, 2), np.float32))
    fig = Figure(figsize=(SCATTER_INCHES, SCATTER_INCHES), dpi=SCATTER_DPI * scale)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if show_data:
        ax.scatter(frame.data[:, 0], frame.data[:, 1], s=3, c=DATA_COLOR, alpha=0.3, linewidths=0, label="data")
    ax.scatter(xy[:, 0], xy[:, 1], s=8, c=SAMPLE_COLOR, alpha=0.8, linewidths=0, label=f"{len(xy)} samples")
    x0, x1, y0, y1 = frame.limits
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]" if points.shape[1] >= 2 else "")
    ax.grid(True, alpha=0.25)
    if show_data:
        ax.legend(loc="upper right", fontsize="small", markerscale=2)
    outside = frame.outside(xy)
    notes = [title] if title else []
    if outside:
        notes.append(f"{outside} of {len(xy)} samples outside the data's frame")
    if notes:
        ax.set_title("; ".join(notes), fontsize="medium")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    return buf.getvalue()


def history_png(history: dict[str, Any], title: str = "") -> bytes:
    """A training's loss curves over its steps (`History.series` form), its learning rate below, and its final
    metrics (when it ended) in the caption: one picture of how the training went."""
    steps = np.asarray(history["steps"], dtype=np.float64)
    series: dict[str, list[float | None]] = history["series"]
    fig = Figure(figsize=(8, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    losses_ax, lr_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    positive = True
    for name, values in series.items():
        if name == "lr":
            continue
        y = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        positive = positive and bool(np.all(y[np.isfinite(y)] > 0))
        losses_ax.plot(steps, y, linewidth=1.2, label=name)
    finite = [v for name, vs in series.items() if name != "lr" for v in vs if v is not None]
    if positive and finite and max(finite) / max(min(finite), 1e-12) > LOG_SCALE_RATIO:
        losses_ax.set_yscale("log")
    losses_ax.set_ylabel("training loss (mean since the last report)")
    losses_ax.grid(True, alpha=0.3)
    if len(series) > 1:
        losses_ax.legend(loc="upper right", fontsize="small")
    lr_ax.plot(steps, series.get("lr", []), color="#555555", linewidth=1.2)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel(f"step (of {history.get('total_steps', '?')})")
    lr_ax.grid(True, alpha=0.3)
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        losses_ax.set_title(title, fontsize="medium")
    metrics = history.get("metrics") or {}
    if metrics:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:METRICS_SHOWN])
        fig.text(0.01, 0.005, f"at the end: {shown}", fontsize="small", color="#333333")
    fig.tight_layout(rect=(0, 0.03 if metrics else 0, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    return buf.getvalue()
