"""`Progress`: how far a training is. One shape everywhere: the training loop reports it, the worker publishes it as
an event and keeps the last one in the training record, and the API shows it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field, field_serializer

LOSS_DECIMALS = 6  # losses as published and stored
ETA_DECIMALS = 1  # seconds


class Progress(BaseModel):
    """A training's progress at its latest report."""

    step: int = Field(0, description="Steps completed.")
    total_steps: int = Field(0, description="Steps the training runs.")
    eta_seconds: float | None = Field(None, description="Estimated seconds of training left; null before it is known.")
    losses: dict[str, float] = Field(default_factory=dict, description="Mean training losses since the last report.")
    phase: Literal["train", "metrics"] = Field(
        "train", description="'train', then 'metrics' while the end-of-training quality metrics are computed."
    )
    detail: str | None = Field(None, description="During 'metrics': the metric being computed.")
    elapsed_s: float = Field(0.0, description="Seconds of training so far, runs before a resume included.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fraction(self) -> float:
        """Share of the steps completed, 0..1."""
        return self.step / self.total_steps if self.total_steps else 0.0

    @field_serializer("losses")
    def _round_losses(self, losses: dict[str, float]) -> dict[str, float]:
        return {k: round(v, LOSS_DECIMALS) for k, v in losses.items()}

    @field_serializer("eta_seconds")
    def _round_eta(self, eta: float | None) -> float | None:
        return None if eta is None else round(eta, ETA_DECIMALS)
