"""Pictures of point samples for people: a scatter plot with axes (image grids are app/serving/encoding.py's).

A scatter plot is framed by the training data's extent (`PointsFrame`), not by the samples, so that pictures of one
model compare with each other and a model that misses modes looks like it; samples outside the frame are counted in
the title, not silently widened into view. The training data can be drawn faintly behind the samples. Plots use
matplotlib's object API (a Figure with its own Agg canvas, no pyplot state), so several threads may draw at once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SCATTER_INCHES = 5.12
SCATTER_DPI = 100  # 512 px at scale 1
FRAME_MARGIN = 0.05  # of the data's extent, on each side
BACKDROP_POINTS = 2000  # the training data drawn behind samples: a fixed subsample of this many points
BACKDROP_SEED = 0
PNG_COMPRESS_LEVEL = 1  # fast: these are pictures for people, not archives
SAMPLE_COLOR = "#1f77b4"
DATA_COLOR = "#7f7f7f"


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
