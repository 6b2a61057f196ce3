"""The asyncio client: `client.py`'s methods, awaited; lists and event streams are async iterators.

Only the I/O differs from the blocking client: requests, parsing and retry decisions are the shared `calls`,
`events` and `transport.Settings`.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import calls
from .calls import Call, Ref
from .errors import RateLimited, WaitTimeout
from .events import DROPPED, STREAM_READ_TIMEOUT_S, Resume, SSEDecoder
from .payloads import FileInput
from .samples import Samples
from .transport import AsyncTransport, Settings
from .types import Dataset, Event, Model, ModelName, Page, TrainingState

T = TypeVar("T")

POLL_INTERVAL_S = 1.0


class AsyncClient:
    """`Client` for asyncio: the same arguments (`http_client` an httpx.AsyncClient), `async with`, `await aclose()`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        *,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        settings = Settings.resolve(url, api_key, timeout, max_retries, max_retry_wait)
        self._transport = AsyncTransport(settings, http_client)
        self.datasets = AsyncDatasets(self._transport)
        self.trainings = AsyncTrainings(self._transport)
        self.models = AsyncModels(self._transport)
        self.model_names = AsyncModelNames(self._transport)

    @property
    def url(self) -> str:
        return self._transport.settings.url

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r})"


async def _every(transport: AsyncTransport, call: Call[Page[T]]) -> AsyncIterator[T]:
    page_call: Call[Page[T]] | None = call
    while page_call is not None:
        page = await transport.call(page_call)
        for item in page.items:
            yield item
        page_call = calls.next_page(page_call, page)


class AsyncDatasets:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    def list(self, kind: str | None = None, page_size: int = 100) -> AsyncIterator[Dataset]:
        return _every(self._transport, calls.list_datasets(kind, page_size))

    async def get(self, id: Ref) -> Dataset:
        return await self._transport.call(calls.get_dataset(id))

    async def upload(
        self,
        file: FileInput | Any,
        name: str,
        filename: str | None = None,
        idempotency_key: str | None = None,
        *,
        labels: Any = None,
    ) -> Dataset:
        """As `Client.datasets.upload`."""
        return await self._transport.call(calls.upload_dataset(file, name, filename, idempotency_key, labels))

    async def delete(self, id: Ref) -> None:
        await self._transport.call(calls.delete_dataset(id))


class AsyncTrainings:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self, dataset: Ref, family: str, *, idempotency_key: str | None = None, **options: Any
    ) -> AsyncTraining:
        """As `Client.trainings.create`."""
        record = await self._transport.call(calls.create_training(dataset, family, idempotency_key, options))
        return AsyncTraining(self._transport, record)

    async def list(
        self,
        status: str | None = None,
        dataset: Ref | None = None,
        family: str | None = None,
        model_name: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AsyncTraining]:
        async for record in _every(
            self._transport, calls.list_trainings(status, dataset, family, model_name, page_size)
        ):
            yield AsyncTraining(self._transport, record)

    async def get(self, id: str) -> AsyncTraining:
        return AsyncTraining(self._transport, await self._transport.call(calls.get_training(id)))

    async def cancel(self, id: str) -> AsyncTraining:
        return AsyncTraining(self._transport, await self._transport.call(calls.cancel_training(id)))


class AsyncTraining(TrainingState):
    """`Training` for asyncio: `await refresh()`, `await cancel()`, `await wait()`, `async for e in events()`."""

    def __init__(self, transport: AsyncTransport, record: dict[str, Any]) -> None:
        super().__init__(record)
        self._transport = transport

    async def refresh(self) -> AsyncTraining:
        self._replace(await self._transport.call(calls.get_training(self.id)))
        return self

    async def cancel(self) -> AsyncTraining:
        self._replace(await self._transport.call(calls.cancel_training(self.id)))
        return self

    async def events(self, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """As `Training.events`. Leaving the loop early: wrap it in `contextlib.aclosing` to close the stream at
        once rather than when the iterator is collected."""
        resume = Resume(last_event_id)
        while True:
            cause: BaseException | None = None
            try:
                call = calls.training_events(self.id, resume.headers(), STREAM_READ_TIMEOUT_S)
                async with self._transport.stream(call) as answer:
                    decoder = SSEDecoder()
                    async for line in answer.aiter_lines():
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
            await asyncio.sleep(resume.reconnect_delay(cause))

    async def wait(
        self, progress: Callable[[AsyncTraining | Event], None] | None = None, timeout: float | None = None
    ) -> Model:
        """As `Training.wait`."""
        try:
            async with asyncio.timeout(timeout):
                await self._follow_to_end(progress)
        except TimeoutError:
            raise WaitTimeout("the training had not ended when the wait's timeout ran out") from None
        await self.refresh()  # the whole final record (the last event carries only its status, progress and outcome)
        return await self._transport.call(calls.get_model(self._outcome()))

    async def _follow_to_end(self, progress: Callable[[AsyncTraining | Event], None] | None) -> None:
        try:
            async for event in self.events():
                if progress is not None:
                    progress(event)
        except RateLimited as exc:
            if exc.retry_after is not None:
                raise
            while not self.done:  # no event stream to spare: poll
                await asyncio.sleep(POLL_INTERVAL_S)
                await self.refresh()
                if progress is not None:
                    progress(self)


class AsyncModels:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    def list(
        self,
        dataset: Ref | None = None,
        family: str | None = None,
        model_name: str | None = None,
        tag: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Model]:
        return _every(self._transport, calls.list_models(dataset, family, model_name, tag, page_size))

    async def get(self, ref: Ref) -> Model:
        return await self._transport.call(calls.get_model(ref))

    async def delete(self, ref: Ref) -> None:
        await self._transport.call(calls.delete_model(ref))

    async def sample(
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
        """As `Client.models.sample`."""
        return await self._transport.call(calls.sample(ref, n, seed, labels, z, format, options))

    async def interpolate(
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
        ends = {"seed_a": seed_a, "seed_b": seed_b, "z_a": z_a, "z_b": z_b}
        return await self._transport.call(calls.interpolate(ref, ends, steps, label, format, options))

    async def reconstruct(
        self, ref: Ref, inputs: Any, format: str | None = "npy", *, labels: Sequence[int] | None = None
    ) -> Samples:
        return await self._transport.call(calls.reconstruct(ref, inputs, labels, format))

    async def score(
        self,
        ref: Ref,
        inputs: Any,
        k: int | None = None,
        *,
        labels: Sequence[int] | None = None,
        timeout_ms: int | None = None,
    ) -> builtins.list[float]:
        return await self._transport.call(calls.score(ref, inputs, labels, k, timeout_ms))


class AsyncModelNames:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def list(self, page_size: int = 100) -> builtins.list[ModelName]:
        """Every model name, by name (all pages)."""
        return [name async for name in _every(self._transport, calls.list_model_names(page_size))]

    async def get(self, name: str) -> ModelName:
        return await self._transport.call(calls.get_model_name(name))

    async def set_alias(self, name: str, alias: str, version: int) -> ModelName:
        return await self._transport.call(calls.set_alias(name, alias, version))

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._transport.call(calls.delete_alias(name, alias))
