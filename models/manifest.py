"""`ModelManifest`: what the artifact store keeps beside a model's weights, written once when a training publishes it.

The spec is stored once; what follows from it (family, kind, sample shape, latent size, conditional) is derived, so
it cannot disagree. Manifests of earlier versions also stored those derived fields; they are ignored on reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from models.config import Family, Kind
from models.nets import ModelSpec


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, arbitrary_types_allowed=True)

    id: str
    dataset: str = Field(description="The dataset the model was trained on.")
    classes: list[str] | None = Field(None, description="Class names of a conditional model, by label index.")
    training_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: str
    spec: ModelSpec
    config: dict[str, Any] | None = Field(None, description="The resolved training config (TrainConfig.to_dict).")
    parent_model_id: str | None = Field(None, description="The model its training started from, if any.")
    name: str | None = Field(None, description="Its model name (models/registry.py), if its training gave one.")
    version: int | None = Field(None, description="Its version under `name`.")
    tags: dict[str, str] = Field(default_factory=dict, description="Key/value labels from its training request.")
    imported_from: str | None = Field(None, description="The id it had in the deployment its bundle came from.")

    @field_validator("spec", mode="before")
    @classmethod
    def _spec_from_dict(cls, value: Any) -> ModelSpec:
        return ModelSpec.from_dict(value) if isinstance(value, Mapping) else value

    @field_serializer("spec")
    def _spec_to_dict(self, spec: ModelSpec) -> dict[str, Any]:
        return spec.to_dict()

    @property
    def family(self) -> Family:
        return self.spec.family

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def sample_shape(self) -> list[int]:
        return list(self.spec.sample_shape)

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    @property
    def conditional(self) -> bool:
        return self.spec.num_classes > 0

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()
