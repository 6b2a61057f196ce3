"""Python client of the genserve HTTP API (docs/api.md): sync `Client` and asyncio `AsyncClient`."""

__version__ = "0.1.0"  # before the imports below: transport.py sends it as the User-Agent

from .aio import AsyncClient, AsyncTraining
from .client import Client, Training
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    GenserveError,
    InsufficientStorage,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TrainingCanceled,
    TrainingEnded,
    TrainingFailed,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
    WaitTimeout,
)
from .samples import Samples
from .types import Dataset, Event, Model, ModelName, ModelVersion, Page, Progress

__all__ = [
    "AsyncClient",
    "AsyncTraining",
    "BadRequest",
    "Client",
    "Conflict",
    "Dataset",
    "Event",
    "Forbidden",
    "GatewayTimeout",
    "GenserveError",
    "InsufficientStorage",
    "Model",
    "ModelName",
    "ModelVersion",
    "NetworkError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "ProblemError",
    "Progress",
    "RateLimited",
    "Samples",
    "ServerError",
    "ServiceUnavailable",
    "Training",
    "TrainingCanceled",
    "TrainingEnded",
    "TrainingFailed",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationError",
    "WaitTimeout",
    "__version__",
]
