"""A worker told to stop ends its RQ command listener at once, whichever of the two threads reads Redis's reply to
UNSUBSCRIBE first (a real Redis, a real RQ worker object; no job runs)."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq import Queue

from tests.conftest import wait_until
from worker.main import GenserveWorker

STOP_BOUND_S = 1.5  # the listener's join is bounded at one second; RQ's poll time, the hang's length, is 60 s


@pytest.mark.parametrize("listener_reads_first", [False, True])
def test_a_stopping_worker_ends_its_command_listener_at_once(
    redis: Redis, monkeypatch: pytest.MonkeyPatch, listener_reads_first: bool
) -> None:
    worker = GenserveWorker([Queue("stopping", connection=redis)], connection=redis)
    worker.subscribe()
    pubsub, thread = worker.pubsub, worker.pubsub_thread
    assert pubsub is not None and thread is not None
    wait_until(lambda: pubsub.subscribed, 5, message="the subscription")
    if listener_reads_first:  # what a busy machine does: the sender loses the CPU right after sending
        send = pubsub.unsubscribe

        def send_then_pause(*args: object) -> None:
            send(*args)
            time.sleep(0.2)

        monkeypatch.setattr(pubsub, "unsubscribe", send_then_pause)
    began = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - began < STOP_BOUND_S
    assert not thread.is_alive()
    assert worker.pubsub is None and worker.pubsub_thread is None
    worker.unsubscribe()  # a second call (teardown, then the outage path) is a no-op
    assert redis.pubsub_numsub(worker.pubsub_channel_name) == [(worker.pubsub_channel_name.encode(), 0)]
