"""The blocking client. Its methods only run `calls` through a `Transport`; `aio.py` is the same over asyncio."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import calls
from .calls import Call, Ref
from .errors import RateLimited, WaitTimeout
from .events import DROPPED, STREAM_READ_TIMEOUT_S, Resume, SSEDecoder
from .payloads import FileInput
from .samples import Samples
from .transport import Settings, Transport
from .types import Dataset, Event, Model, ModelName, Page, TrainingState

T = TypeVar("T")

POLL_INTERVAL_S = 1.0  # wait() polls the training at this pace when the server has no event stream to spare


class Client:
    """A genserve service. `url` defaults to $GENSERVE_URL, else http://127.0.0.1:8000; `api_key` to
    $GENSERVE_API_KEY (none: no Authorization header). `timeout` is per request, in seconds (None: no limit).
    `http_client` is an httpx.Client of your own (proxies, certificates, event hooks); it is not closed by `close`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        *,
        http_client: httpx.Client | None = None,
    ) -> None:
        settings = Settings.resolve(url, api_key, timeout, max_retries, max_retry_wait)
        self._transport = Transport(settings, http_client)
        self.datasets = Datasets(self._transport)
        self.trainings = Trainings(self._transport)
        self.models = Models(self._transport)
        self.model_names = ModelNames(self._transport)

    @property
    def url(self) -> str:
        return self._transport.settings.url

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"


def _every(transport: Transport, call: Call[Page[T]]) -> Iterator[T]:
    """Every item of a list, a page at a time as the iteration reaches it."""
    page_call: Call[Page[T]] | None = call
    while page_call is not None:
        page = transport.call(page_call)
        yield from page.items
        page_call = calls.next_page(page_call, page)


class Datasets:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self, kind: str | None = None, page_size: int = 100) -> Iterator[Dataset]:
        return _every(self._transport, calls.list_datasets(kind, page_size))

    def get(self, id: Ref) -> Dataset:
        return self._transport.call(calls.get_dataset(id))

    def upload(
        self,
        file: FileInput | Any,
        name: str,
        filename: str | None = None,
        idempotency_key: str | None = None,
        *,
        labels: Any = None,
    ) -> Dataset:
        """Upload a .csv, .npz or .zip (a path, or its bytes), or an array: points (N, D), or images (N, H, W) /
        (N, H, W, C) as uint8 or floats in [0, 1], with `labels` (N integers) if it has any. The same content
        uploaded again answers the stored dataset (see its `note`)."""
        return self._transport.call(calls.upload_dataset(file, name, filename, idempotency_key, labels))

    def delete(self, id: Ref) -> None:
        self._transport.call(calls.delete_dataset(id))


class Trainings:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(self, dataset: Ref, family: str, *, idempotency_key: str | None = None, **options: Any) -> Training:
        """Queue a training of `family` ("vae" or "gan") on `dataset`; `options` are the TrainingRequest's other
        fields (steps, batch_size, conditional, model_name, tags, webhook, ...). Left out: the dataset's recipe."""
        record = self._transport.call(calls.create_training(dataset, family, idempotency_key, options))
        return Training(self._transport, record)

    def list(
        self,
        status: str | None = None,
        dataset: Ref | None = None,
        family: str | None = None,
        model_name: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Training]:
        call = calls.list_trainings(status, dataset, family, model_name, page_size)
        return (Training(self._transport, record) for record in _every(self._transport, call))

    def get(self, id: str) -> Training:
        return Training(self._transport, self._transport.call(calls.get_training(id)))

    def cancel(self, id: str) -> Training:
        return Training(self._transport, self._transport.call(calls.cancel_training(id)))


class Training(TrainingState):
    """A training, as last seen (`record`, and attributes read from it). `refresh`, `cancel`, `events` and `wait`
    bring the record up to date."""

    def __init__(self, transport: Transport, record: dict[str, Any]) -> None:
        super().__init__(record)
        self._transport = transport

    def refresh(self) -> Training:
        self._replace(self._transport.call(calls.get_training(self.id)))
        return self

    def cancel(self) -> Training:
        """Ask the training to stop: `canceled` at once if it was queued, else `canceling` until it stops."""
        self._replace(self._transport.call(calls.cancel_training(self.id)))
        return self

    def events(self, last_event_id: str | None = None) -> Iterator[Event]:
        """The training's events from its first (or after `last_event_id`) until it ends: the last is the terminal
        `status` event. A dropped connection is opened again after the last event handed out, so none is lost or
        repeated, also when the training ended meanwhile (the server replays what was missed)."""
        return self._follow(Resume(last_event_id), None)

    def wait(self, progress: Callable[[Training | Event], None] | None = None, timeout: float | None = None) -> Model:
        """Follow the training until it ends, calling `progress` with each event; the model when it succeeded,
        else TrainingFailed or TrainingCanceled. WaitTimeout after `timeout` seconds (the training goes on).
        Should the server have no event stream to spare (a 429 quota), it polls, calling `progress` with self."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for event in self._follow(Resume(), deadline):
                if progress is not None:
                    progress(event)
                _remaining(deadline)
        except RateLimited as exc:
            if exc.retry_after is not None:
                raise
            while not self.done:
                time.sleep(min(POLL_INTERVAL_S, _remaining(deadline) or POLL_INTERVAL_S))
                self.refresh()
                if progress is not None:
                    progress(self)
                _remaining(deadline)
        self.refresh()  # the whole final record (the last event carries only its status, progress and outcome)
        return self._transport.call(calls.get_model(self._outcome()))

    def _follow(self, resume: Resume, deadline: float | None) -> Iterator[Event]:
        while True:
            cause: BaseException | None = None
            left = _remaining(deadline)
            read_timeout = STREAM_READ_TIMEOUT_S if left is None else min(STREAM_READ_TIMEOUT_S, left)
            try:
                with self._transport.stream(calls.training_events(self.id, resume.headers(), read_timeout)) as answer:
                    decoder = SSEDecoder()
                    for line in answer.iter_lines():
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        resume.seen(event)
                        self._observe(event)
                        yield event
                        if event.is_terminal:
                            return
            except DROPPED as exc:
                cause = exc
            _remaining(deadline)
            time.sleep(resume.reconnect_delay(cause))


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before `deadline` (None: no deadline); WaitTimeout once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeout("the training had not ended when the wait's timeout ran out")
    return left


class Models:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(
        self,
        dataset: Ref | None = None,
        family: str | None = None,
        model_name: str | None = None,
        tag: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Model]:
        return _every(self._transport, calls.list_models(dataset, family, model_name, tag, page_size))

    def get(self, ref: Ref) -> Model:
        """`ref`: a model id, `name:version` or `name@alias`."""
        return self._transport.call(calls.get_model(ref))

    def delete(self, ref: Ref) -> None:
        self._transport.call(calls.delete_model(ref))

    def sample(
        self,
        ref: Ref,
        n: int | None = None,
        *,
        seed: int | None = None,
        labels: Sequence[int] | None = None,
        z: Any = None,
        format: str | None = "npy",
        **options: Any,
    ) -> Samples:
        """`n` samples (the server's default 1, or one per vector of `z`); `format` None takes the server's default
        (png for images, json for points); `options`: timeout_ms, scale, show_data."""
        return self._transport.call(calls.sample(ref, n, seed, labels, z, format, options))

    def interpolate(
        self,
        ref: Ref,
        *,
        seed_a: int | None = None,
        seed_b: int | None = None,
        z_a: Any = None,
        z_b: Any = None,
        steps: int = 8,
        label: int | None = None,
        format: str | None = "npy",
        **options: Any,
    ) -> Samples:
        """`steps` samples on the path between two ends, each a seed or a latent vector."""
        ends = {"seed_a": seed_a, "seed_b": seed_b, "z_a": z_a, "z_b": z_b}
        return self._transport.call(calls.interpolate(ref, ends, steps, label, format, options))

    def reconstruct(
        self, ref: Ref, inputs: Any, format: str | None = "npy", *, labels: Sequence[int] | None = None
    ) -> Samples:
        """VAE only. `inputs`: points (a list of points or an (N, D) array) for point models; for image models an
        image, a .zip of images or an .npz (a path or bytes), or an (N, H, W[, C]) array. `labels`: one class per
        input, required by conditional models."""
        return self._transport.call(calls.reconstruct(ref, inputs, labels, format))

    def score(
        self,
        ref: Ref,
        inputs: Any,
        k: int | None = None,
        *,
        labels: Sequence[int] | None = None,
        timeout_ms: int | None = None,
    ) -> builtins.list[float]:
        """VAE only: per input (as for `reconstruct`), a lower bound on log p(x) in nats, with `k` importance
        samples (server default 100). Low scores flag outliers."""
        return self._transport.call(calls.score(ref, inputs, labels, k, timeout_ms))


class ModelNames:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self, page_size: int = 100) -> builtins.list[ModelName]:
        """Every model name, by name (all pages)."""
        return builtins.list(_every(self._transport, calls.list_model_names(page_size)))

    def get(self, name: str) -> ModelName:
        return self._transport.call(calls.get_model_name(name))

    def set_alias(self, name: str, alias: str, version: int) -> ModelName:
        """Point `name@alias` at `version` (created or moved)."""
        return self._transport.call(calls.set_alias(name, alias, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._transport.call(calls.delete_alias(name, alias))
