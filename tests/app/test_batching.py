"""The batcher on its own: asyncio only, no model, no server; driven by events rather than sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.serving.batching import Batcher, BatchStats, DeadlineExceeded, QueueFull


class Recorder:
    """A run_batch that records each call; after `hold()`, each call waits for a permit from `allow()`."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.permits: threading.Semaphore | None = None
        self.entered = threading.Event()
        self.fail_on: set[int] = set()

    def hold(self) -> None:
        self.permits = threading.Semaphore(0)

    def allow(self, n: int = 1) -> None:
        assert self.permits is not None
        self.permits.release(n)

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        self.entered.set()
        if self.permits is not None:
            assert self.permits.acquire(timeout=10)
        if self.fail_on & set(items):
            raise ValueError("boom")
        return [i * 10 for i in items]


async def wait_entered(rec: Recorder) -> None:
    await asyncio.get_running_loop().run_in_executor(None, rec.entered.wait, 10)
    rec.entered.clear()


def make(rec: Recorder, **kw: object) -> Batcher[int, int]:
    return Batcher(rec, executor=ThreadPoolExecutor(1), **kw)  # type: ignore[arg-type]


async def test_idle_request_runs_at_once_without_waiting() -> None:
    rec = Recorder()
    b = make(rec, max_wait_ms=5000)
    start = time.monotonic()
    assert await b.submit(7) == 70
    assert time.monotonic() - start < 1.0  # far below the 5 s max wait: no waiting when idle
    assert rec.calls == [[7]]
    await b.close()


async def test_requests_arriving_during_a_pass_share_the_next_pass_in_order() -> None:
    rec = Recorder()
    b = make(rec, max_batch_size=64, max_wait_ms=0)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    rest = [asyncio.create_task(b.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    rec.allow(100)
    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40, 50, 60]
    assert rec.calls == [[1], [2, 3, 4, 5, 6]]
    await b.close()


async def test_batches_never_exceed_max_rows_and_big_requests_run_alone() -> None:
    rec = Recorder()
    stats: list[BatchStats] = []
    b = make(rec, max_batch_size=4, max_wait_ms=0, on_batch=stats.append)
    rec.hold()
    first = asyncio.create_task(b.submit(0))
    await wait_entered(rec)
    tasks = [asyncio.create_task(b.submit(i, rows=2)) for i in range(1, 6)]
    big = asyncio.create_task(b.submit(99, rows=9))
    await asyncio.sleep(0)
    rec.allow(100)
    await asyncio.gather(first, big, *tasks)
    assert rec.calls == [[0], [1, 2], [3, 4], [5], [99]]
    assert [s.rows for s in stats] == [1, 4, 4, 2, 9]
    await b.close()


async def test_an_error_reaches_every_caller_of_its_batch_only() -> None:
    rec = Recorder()
    b = make(rec, max_wait_ms=0)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    rec.fail_on = {3}
    failing = [asyncio.create_task(b.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    rec.allow(100)
    assert await first == 10  # the first pass was not the failing one
    await wait_entered(rec)
    for t in failing:
        with pytest.raises(ValueError, match="boom"):
            await t
    assert await b.submit(4) == 40  # the batcher keeps serving
    await b.close()


async def test_cancelled_callers_are_skipped() -> None:
    rec = Recorder()
    b = make(rec, max_wait_ms=0)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    gone = asyncio.create_task(b.submit(2))
    kept = asyncio.create_task(b.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    rec.allow(100)
    assert await first == 10 and await kept == 30
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert rec.calls == [[1], [3]]
    await b.close()


async def test_deadline_passes_while_queued() -> None:
    rec = Recorder()
    b = make(rec, max_wait_ms=0)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    with pytest.raises(DeadlineExceeded):
        await b.submit(2, deadline=time.monotonic() + 0.05)  # the pass ahead is held: it cannot be served
    rec.allow(100)
    assert await first == 10
    assert await b.submit(3) == 30
    assert [2] not in rec.calls
    await b.close()


async def test_full_queue_rejects_instead_of_growing() -> None:
    rec = Recorder()
    b = make(rec, max_batch_size=2, max_queue_rows=3, max_wait_ms=0)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    queued = [asyncio.create_task(b.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await b.submit(5)
    rec.allow(100)
    assert await first == 10
    assert [await t for t in queued] == [20, 30, 40]
    await b.close()


async def test_busy_batcher_waits_briefly_for_more_rows() -> None:
    rec = Recorder()
    b = make(rec, max_batch_size=8, max_wait_ms=1000)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    second = [asyncio.create_task(b.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    rec.allow()
    await first
    await wait_entered(rec)  # the [2, 3] pass runs: two requests, so the batcher counts as busy
    late = [asyncio.create_task(b.submit(i)) for i in (4, 5)]
    await asyncio.sleep(0)
    rec.allow()
    await asyncio.gather(*second)
    await asyncio.sleep(0.02)
    late.append(asyncio.create_task(b.submit(6)))  # arrives within max_wait of the [4, 5] rows queueing
    rec.allow(10)
    await asyncio.gather(*late)
    assert rec.calls == [[1], [2, 3], [4, 5, 6]]
    await b.close()


async def test_idle_after_a_busy_spell_runs_at_once() -> None:
    rec = Recorder()
    b = make(rec, max_batch_size=8, max_wait_ms=5000)
    rec.hold()
    first = asyncio.create_task(b.submit(1))
    await wait_entered(rec)
    rest = [asyncio.create_task(b.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    rec.allow(10)
    await asyncio.gather(first, *rest)
    await asyncio.sleep(0.2)  # longer than the busy spell lasts
    start = time.monotonic()
    assert await b.submit(4) == 40
    assert time.monotonic() - start < 1.0  # no 5 s wait
    await b.close()


async def test_close_drains_queued_work() -> None:
    rec = Recorder()
    b = make(rec, max_wait_ms=0)
    rec.hold()
    tasks = [asyncio.create_task(b.submit(i)) for i in (1, 2)]
    await wait_entered(rec)
    closing = asyncio.create_task(b.close())
    await asyncio.sleep(0)
    rec.allow(100)
    await closing
    assert [await t for t in tasks] == [10, 20]
    with pytest.raises(RuntimeError):
        await b.submit(3)


async def test_inline_passes_run_on_the_loops_thread_and_give_each_caller_its_own_result() -> None:
    threads: list[int] = []

    def run(items: list[int]) -> list[int]:
        threads.append(threading.get_ident())
        return [i * 10 for i in items]

    b: Batcher[int, int] = Batcher(run, max_batch_size=64, max_wait_ms=0, inline=True)
    results = await asyncio.gather(*(b.submit(i) for i in range(300)))
    assert results == [i * 10 for i in range(300)]
    assert set(threads) == {threading.get_ident()}
    assert len(threads) <= 300 // 64 + 2  # merged, not one pass per caller
    await b.close()


async def test_a_busy_inline_batcher_takes_in_requests_still_arriving_before_its_pass() -> None:
    """Arrivals spread over loop rounds, as requests read from sockets are: a pass that blocks the loop waits for
    them (without that, each would run in a pass of its own here, since max_wait_ms is 0)."""
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        return items

    b: Batcher[int, int] = Batcher(run, max_batch_size=64, max_wait_ms=0, inline=True)
    assert await asyncio.gather(*(b.submit(i) for i in range(3))) == [0, 1, 2]  # one pass of 3: now busy
    futures = []
    for i in range(3, 23):  # one arrival per loop round
        futures.append(b.enqueue(i))
        await asyncio.sleep(0)
    assert [await f for f in futures] == list(range(3, 23))
    assert calls == [[0, 1, 2], list(range(3, 23))]
    await b.close()


async def test_an_inline_backlog_lets_each_pass_answer_its_callers_before_the_next_pass() -> None:
    """A queue that holds several full passes must not run them back to back without yielding to the loop: the
    callers of each pass get their results (and send their responses) before the next one starts."""
    events: list[tuple[str, int]] = []

    def run(items: list[int]) -> list[int]:
        events.extend(("pass", i) for i in items)
        return items

    b: Batcher[int, int] = Batcher(run, max_batch_size=2, max_wait_ms=0, inline=True)

    async def call(i: int) -> None:
        await b.submit(i, rows=2)
        events.append(("answered", i))

    await asyncio.gather(*(call(i) for i in range(5)))
    for i in range(4):
        assert events.index(("answered", i)) < events.index(("pass", i + 1))
    await b.close()


@pytest.mark.parametrize("kw", [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_batch_size": 8, "max_queue_rows": 4}])
def test_settings_are_validated(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Batcher(lambda items: items, **kw)  # type: ignore[arg-type]
