"""The settings the training-job system needs, on both of its sides: the workers and the API processes that
enqueue, watch and report trainings. The API's settings (`app.settings.Settings`) extend this class with its own.

Every field maps to an environment variable `GENSERVE_<NAME>` (pydantic-settings). This module imports neither
FastAPI nor RQ nor torch, so either side can read settings without loading the other's stack.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import torch

    from models.data.catalog import Catalog
    from models.store import ArtifactStore
    from worker.state.connection import RedisTarget

ENV_PREFIX = "GENSERVE_"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_HOME = Path("genserve-data")


class WorkerSettings(BaseSettings):
    """Wiring and training settings, shared by workers and API processes."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- wiring -------------------------------------------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        description="Redis URL. Unset: redis://127.0.0.1:6379/0 (and `genserve dev` starts an embedded Redis "
        "when nothing answers there). With redis_sentinels, only its db number (and a username or password in it) "
        "applies.",
    )
    redis_sentinels: str = Field(
        "",
        description="Redis Sentinel: the sentinels as comma-separated host:port. Set, the workers and the API use the "
        "master the sentinels name (and follow it through a failover) instead of the URL's server; the URL's db "
        "number still applies.",
    )
    redis_sentinel_master: str = Field(
        "mymaster", min_length=1, description="The master's name in Sentinel (its `sentinel monitor <name>` line)."
    )
    redis_password: SecretStr = Field(
        SecretStr(""),
        description="Password of the Redis server (with Sentinel: of the master and its replicas); a password in "
        "the URL wins.",
    )
    redis_sentinel_password: SecretStr = Field(
        SecretStr(""), description="Password of the sentinels themselves, when they require one."
    )
    store_dir: Path = Field(
        DEFAULT_HOME / "store",
        description="Artifact store: datasets, checkpoints, models (a local directory; a shared file system for "
        "several machines). Used when store_url is unset.",
    )
    store_url: str | None = Field(
        None,
        description="Artifact store in S3-compatible object storage: s3://bucket/prefix (no shared file system "
        "needed). Endpoint, region and credentials come from the standard AWS environment variables "
        "(AWS_ENDPOINT_URL, AWS_REGION or AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); the endpoint "
        "must support conditional writes (If-None-Match, If-Match: AWS S3, MinIO). Unset: store_dir.",
    )
    cache_dir: Path = Field(
        DEFAULT_HOME / "cache",
        description="Local read-through cache of model weights and dataset arrays when store_url is set (shared by "
        "the processes of a machine; never stale: those bytes never change under their id).",
    )
    cache_mb: int = Field(
        2048, ge=1, description="Size of the read-through cache in MiB; least recently used copies are evicted beyond."
    )
    data_dir: Path = Field(DEFAULT_HOME / "data", description="Where built-in data (MNIST IDX files) lives.")
    device: str = Field("auto", description="Torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:N.")
    queue_name: str = Field("genserve-training", description="RQ queue that carries training jobs.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    mnist_url: str = Field(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        description="Base URL MNIST's four IDX files are downloaded from when they are not in data_dir/mnist.",
    )
    download_timeout_s: float = Field(30.0, gt=0, description="Timeout for each MNIST file download.")

    # --- trainings ----------------------------------------------------------------------------------------------
    job_timeout_s: int = Field(24 * 3600, ge=10, description="RQ job timeout for one training.")
    progress_interval_s: float = Field(0.5, gt=0, description="How often a training reports progress.")
    checkpoint_interval_s: float = Field(30.0, gt=0, description="How often a training checkpoints.")
    max_attempts: int = Field(
        3, ge=1, description="Attempts of a training whose worker is lost (killed, crashed) before it fails."
    )
    lease_ttl_s: float = Field(
        15.0, ge=1, description="Liveness lease of a running training; its work horse renews it every third of this."
    )
    watchdog_interval_s: float = Field(
        5.0, gt=0, description="How often the watchdog (in every API and worker process) looks for lost trainings."
    )

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str | None) -> str | None:
        if value:
            from models.objects import parse_s3_url

            parse_s3_url(value)  # ValueError: not s3://bucket/prefix
        return value or None

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not value.startswith("cuda:"):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: str) -> str:
        from worker.state.connection import parse_sentinels

        parse_sentinels(value)  # a ValueError names the part that is not host:port
        return value

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of a setting, as errors and logs name it."""
        if field not in cls.model_fields:
            raise KeyError(f"no setting {field!r}")
        return f"{ENV_PREFIX}{field.upper()}"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def redis_target(self) -> RedisTarget:
        """Where Redis is, as `worker.state.connection` takes it: the URL's server, or the Sentinel master."""
        from worker.state.connection import RedisTarget, parse_sentinels

        return RedisTarget(
            self.effective_redis_url,
            sentinels=parse_sentinels(self.redis_sentinels),
            master=self.redis_sentinel_master,
            password=self.redis_password.get_secret_value() or None,
            sentinel_password=self.redis_sentinel_password.get_secret_value() or None,
        )

    def catalog(self, store: ArtifactStore) -> Catalog:
        """The datasets, built-in and uploaded, as these settings configure them."""
        from models.data.catalog import Catalog

        return Catalog(store, self.data_dir, self.mnist_url, self.download_timeout_s, self.env_name("mnist_url"))

    def artifact_store(self) -> ArtifactStore:
        """The artifact store these settings name (`models.store.open_store` chooses the backend)."""
        from models.store import open_store

        return open_store(self.store_url, self.store_dir, self.cache_dir, self.cache_mb)

    def torch_device(self) -> torch.device:
        """The device `device` names (in the worker: call it in the work horse, never before the fork)."""
        from models.devices import resolve_device

        return resolve_device(self.device, self.env_name("device"))


def safe_url(url: str) -> str:
    """A URL without its password, for logs."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


@lru_cache
def get_worker_settings() -> WorkerSettings:
    """The worker's settings, read once (a work horse inherits its parent's)."""
    return WorkerSettings()
