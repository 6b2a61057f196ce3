"""The service's records as typed, immutable values, read from its JSON.

Each keeps the JSON it came from in `.record`: the server may add fields (docs/api.md allows it), and a caller should
not need a new client release to read them. Readers are lenient about missing fields for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from .errors import TrainingCanceled, TrainingFailed

T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
"""A training in one of these has ended for good (`canceling` is not one: it ends `canceled`)."""


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp of the server ("...Z"), or None."""
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _ints(value: object) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, list | tuple) else ()


def _strs(value: object) -> tuple[str, ...] | None:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else None


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _opt_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Dataset:
    """A dataset: a built-in or an upload."""

    id: str
    name: str
    kind: str  # "points" or "images"
    shape: tuple[int, ...]  # of one sample
    size: int
    classes: tuple[str, ...] | None
    builtin: bool
    created_at: datetime | None  # None for built-ins
    description: str | None
    available: bool  # False for a built-in whose files are missing (MNIST offline)
    note: str | None  # upload answers only: the content was stored before under another name
    record: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Dataset:
        return cls(
            id=str(r["id"]),
            name=str(r.get("name", "")),
            kind=str(r.get("kind", "")),
            shape=_ints(r.get("shape")),
            size=int(r.get("size") or 0),
            classes=_strs(r.get("classes")),
            builtin=bool(r.get("builtin", False)),
            created_at=parse_time(r.get("created_at")),
            description=_opt_str(r.get("description")),
            available=bool(r.get("available", True)),
            note=_opt_str(r.get("note")),
            record=dict(r),
        )


@dataclass(frozen=True)
class Progress:
    """Where a training is: from a `progress` event or the training's `progress` field."""

    step: int
    total_steps: int
    fraction: float
    eta_seconds: float | None
    elapsed_s: float | None
    phase: str | None  # "train", then "metrics" while the end-of-training metrics are computed
    detail: str | None
    losses: Mapping[str, float]

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Progress:
        return cls(
            step=int(r.get("step") or 0),
            total_steps=int(r.get("total_steps") or 0),
            fraction=float(r.get("fraction") or 0.0),
            eta_seconds=_opt_float(r.get("eta_seconds")),
            elapsed_s=_opt_float(r.get("elapsed_s")),
            phase=_opt_str(r.get("phase")),
            detail=_opt_str(r.get("detail")),
            losses={str(k): float(v) for k, v in _dict(r.get("losses")).items() if isinstance(v, int | float)},
        )


@dataclass(frozen=True)
class Model:
    """A trained (or imported) model. Any model route takes its `id`, `name:version` or `name@alias`."""

    id: str
    family: str  # "vae" or "gan"
    dataset: str
    kind: str  # "points" or "images"
    sample_shape: tuple[int, ...]
    latent_dim: int
    conditional: bool
    classes: tuple[str, ...] | None
    training_id: str | None
    metrics: Mapping[str, float]
    created_at: datetime | None
    config: Mapping[str, Any]
    parent_model_id: str | None
    name: str | None
    version: int | None
    tags: Mapping[str, str]
    imported_from: str | None
    record: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Model:
        return cls(
            id=str(r["id"]),
            family=str(r.get("family", "")),
            dataset=str(r.get("dataset", "")),
            kind=str(r.get("kind", "")),
            sample_shape=_ints(r.get("sample_shape")),
            latent_dim=int(r.get("latent_dim") or 0),
            conditional=bool(r.get("conditional", False)),
            classes=_strs(r.get("classes")),
            training_id=_opt_str(r.get("training_id")),
            metrics=_dict(r.get("metrics")),
            created_at=parse_time(r.get("created_at")),
            config=_dict(r.get("config")),
            parent_model_id=_opt_str(r.get("parent_model_id")),
            name=_opt_str(r.get("name")),
            version=_opt_int(r.get("version")),
            tags={str(k): str(v) for k, v in _dict(r.get("tags")).items()},
            imported_from=_opt_str(r.get("imported_from")),
            record=dict(r),
        )


@dataclass(frozen=True)
class ModelVersion:
    version: int
    model_id: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ModelName:
    """A name in the model registry: its versions (oldest first) and aliases (alias -> version)."""

    name: str
    created_at: datetime | None
    versions: tuple[ModelVersion, ...]
    aliases: Mapping[str, int]
    record: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ModelName:
        versions = r.get("versions")
        return cls(
            name=str(r["name"]),
            created_at=parse_time(r.get("created_at")),
            versions=tuple(
                ModelVersion(int(v["version"]), str(v["model_id"]), _strs(v.get("aliases")) or ())
                for v in (versions if isinstance(versions, list) else [])
            ),
            aliases={str(k): int(v) for k, v in _dict(r.get("aliases")).items()},
            record=dict(r),
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event of a training: `progress`, `status` or `preview` (`event`), its JSON `data`, and its
    `id` (`<number>-<number>`; None on the one event of a stream opened after the training ended)."""

    id: str | None
    event: str
    data: Any

    @property
    def status(self) -> str | None:
        """The training's status, on `status` events."""
        if self.event == "status" and isinstance(self.data, Mapping):
            return _opt_str(self.data.get("status"))
        return None

    @property
    def is_terminal(self) -> bool:
        """The last event of a stream: the training has ended."""
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> Progress | None:
        """The progress this event reports (a `progress` event, or the final `status` event's)."""
        if not isinstance(self.data, Mapping):
            return None
        if self.event == "progress":
            return Progress.from_record(self.data)
        if self.event == "status" and isinstance(self.data.get("progress"), Mapping):
            return Progress.from_record(self.data["progress"])
        return None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the `next` link (None on the last page)."""

    items: Sequence[T]
    next: str | None


class TrainingState:
    """What the sync and async training handles share: the last record seen, read as attributes, and kept current
    by the events a handle follows. The handles (`Training`, `AsyncTraining`) add the I/O."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record: dict[str, Any] = dict(record)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, status={self.status!r}, model_id={self.model_id!r})"

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def status(self) -> str:
        return str(self.record.get("status", ""))

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> Progress | None:
        p = self.record.get("progress")
        return Progress.from_record(p) if isinstance(p, Mapping) else None

    @property
    def model_id(self) -> str | None:
        return _opt_str(self.record.get("model_id"))

    @property
    def error(self) -> str | None:
        return _opt_str(self.record.get("error"))

    @property
    def metrics(self) -> Mapping[str, Any]:
        return _dict(self.record.get("metrics"))

    @property
    def request(self) -> Mapping[str, Any]:
        return _dict(self.record.get("request"))

    @property
    def created_at(self) -> datetime | None:
        return parse_time(self.record.get("created_at"))

    @property
    def finished_at(self) -> datetime | None:
        return parse_time(self.record.get("finished_at"))

    def _replace(self, record: dict[str, Any]) -> None:
        self.record = dict(record)

    def _observe(self, event: Event) -> None:
        """Fold an event into the record, so `status` and `progress` follow the stream."""
        if not isinstance(event.data, Mapping):
            return
        if event.event == "progress":
            self.record["progress"] = dict(event.data)
        elif event.event == "status":
            self.record.update(event.data)

    def _outcome(self) -> str:
        """The model id of a succeeded training; the typed error of one that failed or was canceled."""
        if self.status == "succeeded" and self.model_id:
            return self.model_id
        if self.status == "canceled":
            raise TrainingCanceled(self, f"training {self.id} was canceled")
        raise TrainingFailed(self, f"training {self.id} ended {self.status}: {self.error or 'no reason given'}")
