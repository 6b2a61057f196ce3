"""The API's settings: the worker-side ones (`worker.state.settings.WorkerSettings`) plus those of HTTP, sampling,
uploads and access. `Settings` is the one place every GENSERVE_* variable of the API is defined.

This module imports neither RQ nor torch, so settings can be read without loading the training stack.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from models.uploads import UploadLimits
from worker.state.settings import WorkerSettings

UPLOAD_LIMIT_SETTINGS = {  # UploadLimits field -> the setting that configures it
    "max_bytes": "max_upload_bytes",
    "max_images": "max_images",
    "max_image_side": "max_image_side",
    "max_points": "max_points",
    "max_point_dims": "max_point_dims",
    "max_zip_entries": "max_zip_entries",
    "max_zip_ratio": "max_zip_ratio",
    "max_uncompressed_bytes": "max_uncompressed_bytes",
}


class Settings(WorkerSettings):
    """Service configuration; every field maps to an environment variable `GENSERVE_<NAME>`."""

    # --- HTTP ---------------------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `genserve serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `genserve serve` binds.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection whose request headers are not complete within this is closed."
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="A request body not complete within this is answered 408 (slow uploads included)."
    )
    max_connections: int = Field(
        1000, ge=1, description="Concurrent connections (and requests) per API process; beyond it new ones get 503."
    )

    # --- training requests --------------------------------------------------------------------------------------
    max_train_steps: int = Field(200_000, ge=1, description="Largest `steps` a training may ask for.")
    max_train_batch_size: int = Field(4096, ge=1, description="Largest training `batch_size`.")
    max_latent_dim: int = Field(512, ge=1, description="Largest `latent_dim`.")

    # --- sampling -----------------------------------------------------------------------------------------------
    max_samples_per_request: int = Field(
        10_000, ge=1, description="Largest `n` in one sample request (and inputs in one VAE request)."
    )
    max_batch_size: int = Field(
        64, ge=1, description="Most samples merged into one forward pass (1 turns batching off)."
    )
    max_wait_ms: float = Field(
        2.0, ge=0, description="Longest extra wait for more requests to join a batch (milliseconds)."
    )
    max_queue_samples: int = Field(
        4096, ge=1, description="Most samples queued per model; beyond it sample requests get 503 + Retry-After."
    )
    sample_timeout_ms: int = Field(
        30_000, ge=1, description="Default deadline of a sample request (504 when not served in time)."
    )
    model_cache_mb: int = Field(1024, ge=1, description="Memory budget of loaded models (LRU eviction beyond).")
    preload_models: str = Field(
        "", description="Models to load at start: comma-separated ids, or `all` (then new models load when announced)."
    )
    encode_threads: int | None = Field(
        None, ge=1, description="Threads that encode responses in parallel; unset: the CPUs this process may use."
    )
    pin_memory: Literal["auto", "on", "off"] = Field(
        "auto", description="Pinned host buffers + non-blocking copies for GPU inference (auto: on with CUDA)."
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile the generators (CUDA graphs on GPU); auto: on with CUDA, off on CPU."
    )
    inline_inference: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run forward passes on the event loop's thread instead of an inference thread (auto: on "
        "when the device is the CPU and this process may use one core, where a second thread only adds hand-offs).",
    )
    access_log: bool = Field(False, description="Log every HTTP request (uvicorn's access log).")
    # uvloop is ~4% faster at 64 clients, but while one client reads a big streamed body fast, every other
    # connection stalls for up to a second at a time under uvloop (not under asyncio): BENCHMARKS.md, issue 25.
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "asyncio",
        description="The API's event loop (uvicorn's `loop`; auto takes uvloop when installed). asyncio by default: "
        "uvloop is a little faster but stalls other connections while one streams a big answer.",
    )
    metrics_dir: Path | None = Field(
        None,
        description="A directory the API processes of one `genserve serve --workers N` share, so that /metrics "
        "answers their totals (set by `serve`; leave unset for one process).",
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        le=3600,
        description="Seconds an idle keep-alive connection stays open. Longer than clients' own idle expiry (httpx "
        "and requests 5 s, browsers 60 s), so a client never reuses a connection the server is closing "
        "(that race loses requests with uvicorn's default of 5 s).",
    )
    max_interpolation_steps: int = Field(256, ge=2, description="Largest `steps` of an interpolation.")
    max_grid_side_px: int = Field(
        4096, ge=64, description="Longest side, in pixels, of a `grid` picture (samples x scale): bounds its memory."
    )
    max_score_decodes: int = Field(
        1 << 20, ge=1, description="Largest k x inputs of one scores request (the decoder passes it costs)."
    )

    # --- uploads and request limits ---------------------------------------------------------------------------
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest dataset upload (bytes).")
    max_request_bytes: int = Field(
        4 * 1024 * 1024, ge=1, description="Largest JSON request body (bytes); uploads use max_upload_bytes."
    )
    max_images: int = Field(100_000, ge=1, description="Most images in one upload.")
    max_image_side: int = Field(128, ge=4, description="Largest image height or width (pixels).")
    max_points: int = Field(1_000_000, ge=1, description="Most rows in a points upload.")
    max_point_dims: int = Field(64, ge=1, description="Most columns in a points upload.")
    max_zip_entries: int = Field(100_000, ge=1, description="Most entries in an uploaded zip.")
    max_zip_ratio: float = Field(
        200.0, gt=1, description="Largest uncompressed/compressed size ratio of a zip entry (zip bombs)."
    )
    max_uncompressed_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Largest total uncompressed size of an upload's contents."
    )

    # --- access -------------------------------------------------------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""), description="API keys as comma-separated `<token>:<scope>[+<scope>]` (scopes: sample, train)."
    )
    api_keys_file: Path | None = Field(None, description="A file of API keys, one `<token>:<scopes>` per line.")
    rate_limit_per_s: float = Field(
        50.0,
        ge=0,
        description="Requests per second per API key, shared by every API process through Redis (each process on "
        "its own while Redis is down; 0: no limit; keys only).",
    )
    rate_limit_burst: int = Field(200, ge=1, description="Requests a key may send at once before the rate applies.")
    auth_failures_per_s: float = Field(
        1.0, ge=0, description="Failed API key attempts per second per client address, after a burst of 20 (0: off)."
    )
    public_docs: bool = Field(
        True,
        description="With API keys: serve /docs, /redoc and /openapi.json without a key (off: they need a `sample` key;"
        " a browser cannot send one to open /docs).",
    )

    # --- webhooks (app/webhooks.py) --------------------------------------------------------------------------------
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Signs webhook deliveries (Standard Webhooks: `whsec_` and base64 of 24-64 random bytes); "
        "trainings with a `webhook` are refused while it is unset.",
    )
    webhook_allow: str = Field(
        "",
        description="Comma-separated hosts or networks (CIDR) webhooks may reach besides public addresses, e.g. "
        "`127.0.0.1,10.0.0.0/8,hooks.internal`.",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=120, description="Seconds one delivery attempt may take.")
    webhook_retry_base_s: float = Field(
        5.0, gt=0, le=600, description="Retries wait this x 1, 6, 24, 60, 120 after failed attempts (6 tries)."
    )

    @property
    def webhook_allowed(self) -> list[str]:
        return [part.strip() for part in self.webhook_allow.split(",") if part.strip()]

    # --- quotas (per API key; with no keys configured, for all clients together) -------------------------------
    max_active_trainings: int = Field(20, ge=1, description="Queued or running trainings per API key (429 beyond).")
    max_datasets: int = Field(100, ge=1, description="Uploaded datasets per API key (429 beyond).")
    max_stored_bytes: int = Field(
        4 * 1024**3, ge=1, description="Bytes of uploaded datasets stored per API key (507 beyond)."
    )
    max_streams: int = Field(256, ge=1, description="Open event streams (SSE) per API process (429 beyond).")
    max_streams_per_key: int = Field(16, ge=1, description="Open event streams per API key and process (429 beyond).")
    max_stored_upload_bytes: int = Field(
        256 * 1024**2, ge=1, description="Largest stored size of one upload, as decoded arrays (413 beyond)."
    )

    def upload_limits(self, *, max_images_setting: str = "max_images") -> UploadLimits:
        """The limits of an upload, each named by its setting. `max_images_setting` picks the setting that bounds
        the image count (inputs to a VAE are bounded by `max_samples_per_request`, not by `max_images`)."""
        fields = {**UPLOAD_LIMIT_SETTINGS, "max_images": max_images_setting}
        return UploadLimits(
            **{bound: getattr(self, setting) for bound, setting in fields.items()},
            names={bound: self.env_name(setting) for bound, setting in fields.items()},
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
