"""Adaptive dynamic batching: concurrent requests for one model share one forward pass.

Framework-free (asyncio only). One task serves the queue: it waits for the first item (an event, not a polling
tick), takes everything already queued up to `max_batch_size` rows, and runs the batch in an executor so the event
loop stays free. An idle batcher therefore runs a lone request at once; while a pass runs, new requests accumulate
and go together in the next one. When the batcher is busy (the last pass, ended moments ago, served more than one
request) it may wait up to `max_wait_ms` for more rows before starting a pass that is not full.

With `inline`, passes run on the event loop's own thread instead of an executor. That is for one CPU core and a CPU
model: there the pass would take the whole core anyway, and running it in another thread only adds GIL hand-offs and
context switches between the two (bench/serve.py measures both; BENCHMARKS.md).
Between passes an inline batcher yields to the loop until a round of it brings no new rows, so that the last pass's
callers send their responses and every request that has already arrived joins the pass that then blocks the loop;
requests that arrive during the pass wait for the next.

Callers get their own result or their own exception: `run_batch` may return an exception in a caller's slot, which
reaches that caller only; an exception raised by `run_batch` itself reaches every caller of that batch. Cancelled
callers are skipped; callers whose deadline passed before their pass started get `DeadlineExceeded`. A bounded queue
rejects new work with `QueueFull` instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

BUSY_SPELL_S = 0.05  # a pass that served several requests and ended this recently means "under load"
INLINE_QUIET_ROUNDS = 2

T = TypeVar("T")
R = TypeVar("R")


class Closed(RuntimeError):
    """The batcher was closed (its model evicted) before this request was queued."""


class QueueFull(Exception):
    """The batcher holds as many queued rows as it may; the caller should retry later."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before a forward pass could take it."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded("deadline passed before the result was ready"))


@dataclass
class BatchStats:
    """What a finished pass looked like, for metrics."""

    rows: int
    requests: int
    queue_wait_s: list[float]
    run_s: float


@dataclass
class _Pending(Generic[T, R]):
    item: T
    rows: int
    future: asyncio.Future[R]
    enqueued_at: float
    deadline: float | None = None


@dataclass
class Batcher(Generic[T, R]):
    """Merges concurrent `submit` calls into calls of `run_batch(items) -> results` (same order, same length; a
    result that is an exception is raised to its caller alone)."""

    run_batch: Callable[[list[T]], Sequence[R | BaseException]]
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue_rows: int = 4096
    executor: Executor | None = None
    on_batch: Callable[[BatchStats], None] | None = None
    inline: bool = False
    _queue: deque[_Pending[T, R]] = field(default_factory=deque, init=False)
    _queued_rows: int = field(default=0, init=False)
    _wakeup: asyncio.Event | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _busy: bool = field(default=False, init=False)
    _last_pass_end: float = field(default=0.0, init=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.max_queue_rows < self.max_batch_size:
            raise ValueError("max_queue_rows must be >= max_batch_size")

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def enqueue(self, item: T, rows: int = 1, deadline: float | None = None) -> asyncio.Future[R]:
        """Queue one request of `rows` rows; its future resolves with the result.

        `deadline` is a `time.monotonic()` instant: a request not served by then fails with DeadlineExceeded (a timer,
        not a task, watches it). Cancelling the future withdraws a queued request. A request larger than
        max_batch_size runs in a pass of its own.
        """
        if self._closed:
            raise Closed("batcher is closed")
        if self._queued_rows + rows > self.max_queue_rows and self._queue:
            raise QueueFull(f"{self._queued_rows} rows queued; the limit is {self.max_queue_rows}")
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._serve())
        future: asyncio.Future[R] = loop.create_future()
        if deadline is not None:
            timer = loop.call_at(loop.time() + (deadline - time.monotonic()), _expire, future)
            future.add_done_callback(lambda _: timer.cancel())
        self._queue.append(_Pending(item, rows, future, time.monotonic(), deadline))
        self._queued_rows += rows
        self._idle.clear()
        assert self._wakeup is not None
        self._wakeup.set()
        return future

    async def submit(self, item: T, rows: int = 1, deadline: float | None = None) -> R:
        """Queue one request and wait for its result (see `enqueue`)."""
        future = self.enqueue(item, rows, deadline)
        try:
            return await future
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def close(self, drain: bool = True) -> None:
        """Stop taking requests; with `drain`, first serve everything already queued or running."""
        self._closed = True
        if drain and self._task is not None and not self._task.done():
            await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            p = self._queue.popleft()
            if not p.future.done():
                p.future.set_exception(RuntimeError("batcher closed"))
        self._queued_rows = 0

    def _take_batch(self) -> list[_Pending[T, R]]:
        """Pop live requests from the front of the queue while they fit in one pass."""
        batch: list[_Pending[T, R]] = []
        rows = 0
        now = time.monotonic()
        while self._queue:
            p = self._queue[0]
            if p.future.done():  # cancelled by its caller
                self._queue.popleft()
                self._queued_rows -= p.rows
                continue
            if p.deadline is not None and now > p.deadline:
                self._queue.popleft()
                self._queued_rows -= p.rows
                p.future.set_exception(DeadlineExceeded("deadline passed while queued"))
                continue
            if batch and rows + p.rows > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= p.rows
            batch.append(p)
            rows += p.rows
        return batch

    async def _wait_for_more(self) -> None:
        """While busy, give late requests up to max_wait_ms to join an under-full pass."""
        busy = self._busy and time.monotonic() - self._last_pass_end < BUSY_SPELL_S
        if not busy or self.max_wait_ms <= 0:
            return
        end = time.monotonic() + self.max_wait_ms / 1000.0
        assert self._wakeup is not None
        while self._queued_rows < self.max_batch_size:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _take_in_arrivals(self) -> None:
        """Inline mode, between passes: yield to the loop at least once, so that the last pass's callers send their
        responses and new requests are read (without it, a backlog of full passes would run back to back and hold
        every response until the queue drained); then keep yielding while rounds of the loop still bring new rows,
        so they join this pass rather than wait behind it. Two quiet rounds in a row end it: a request read in one
        round reaches the queue in the next."""
        quiet = 0
        while True:
            before = self._queued_rows
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._queued_rows == before else 0
            if quiet >= INLINE_QUIET_ROUNDS or self._queued_rows >= self.max_batch_size:
                return

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.inline and self._busy:
                await self._take_in_arrivals()
            await self._wait_for_more()
            batch = self._take_batch()
            if not batch:
                continue
            self._busy = len(batch) > 1 or bool(self._queue)
            started = time.monotonic()
            try:
                items = [p.item for p in batch]
                if self.inline:
                    results = self.run_batch(items)
                else:
                    results = await loop.run_in_executor(self.executor, self.run_batch, items)
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(RuntimeError("batcher closed"))
                raise
            except Exception as exc:  # reaches every caller of this batch
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                self._last_pass_end = time.monotonic()
                continue
            finished = self._last_pass_end = time.monotonic()
            for p, r in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(r, BaseException):
                    p.future.set_exception(r)
                else:
                    p.future.set_result(r)
            if self.on_batch is not None:
                self.on_batch(
                    BatchStats(
                        rows=sum(p.rows for p in batch),
                        requests=len(batch),
                        queue_wait_s=[started - p.enqueued_at for p in batch],
                        run_s=finished - started,
                    )
                )
