"""A training's history: the losses and learning rate at each progress report, for loss curves.

Bounded: once it holds `max_points` points, every second one is dropped (the first kept) and from then on only
every second report is kept, and so on, so the points stay evenly spread over the whole run at any length; the
latest report is always shown as the last point. It travels in the checkpoint's meta, so a resumed run continues the
history of the step it resumes from (no duplicated steps, no gap), and a roll-back after non-finite losses drops the
points past the step it goes back to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 2000
ROUND = 6  # decimals of the stored numbers


@dataclass
class History:
    max_points: int = MAX_POINTS
    points: list[dict[str, Any]] = field(default_factory=list)  # {"step", "elapsed_s", "lr", "losses": {...}}
    stride: int = 1  # keep every stride-th report
    reports: int = 0  # reports seen
    latest: dict[str, Any] | None = None  # the newest report when the stride did not keep it

    def add(self, step: int, elapsed_s: float, lr: float, losses: dict[str, float]) -> None:
        point = {
            "step": step,
            "elapsed_s": round(elapsed_s, 3),
            "lr": float(f"{lr:.{ROUND}g}"),
            "losses": {k: round(v, ROUND) for k, v in losses.items()},
        }
        self.reports += 1
        if (self.reports - 1) % self.stride:  # reports 1, 1 + stride, ...: what halving the list leaves
            self.latest = point
            return
        self.points.append(point)
        self.latest = None
        if len(self.points) > self.max_points:
            self.points = self.points[::2]
            self.stride *= 2

    def truncate(self, step: int) -> None:
        """Forget the points after `step` (the run went back to it)."""
        self.points = [p for p in self.points if p["step"] <= step]
        if self.latest is not None and self.latest["step"] > step:
            self.latest = None

    def shown(self) -> list[dict[str, Any]]:
        return self.points + ([self.latest] if self.latest is not None else [])

    def to_dict(self) -> dict[str, Any]:
        """The state to resume from (checkpoint meta)."""
        return {"points": self.points, "stride": self.stride, "reports": self.reports, "latest": self.latest}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, max_points: int = MAX_POINTS) -> History:
        if not d:
            return cls(max_points)
        return cls(
            max_points, list(d.get("points", [])), int(d.get("stride", 1)), int(d.get("reports", 0)), d.get("latest")
        )

    def series(self, total_steps: int, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        """The stored and served form: steps and one list per series (null where a loss was not reported), plus
        the end-of-training metrics at the last step."""
        shown = self.shown()
        names = sorted({name for p in shown for name in p["losses"]})
        return {
            "total_steps": total_steps,
            "steps": [p["step"] for p in shown],
            "elapsed_s": [p["elapsed_s"] for p in shown],
            "series": {
                **{name: [p["losses"].get(name) for p in shown] for name in names},
                "lr": [p["lr"] for p in shown],
            },
            "metrics": metrics,
        }
