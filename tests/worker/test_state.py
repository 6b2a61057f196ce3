"""The training state shared by the API and the workers, driven directly on the shared test Redis: the verdicts
(`reconcile`), the watchdog's decisions, and the fence that keeps stale jobs from writing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from app.settings import Settings
from models.store import ArtifactStore, new_id, utcnow
from worker.jobs import Fence
from worker.state import events
from worker.state.lease import LeaseKeeper
from worker.state.status import Liveness, TrainingStatus, reconcile
from worker.state.watchdog import Watchdog

DETECTION_BOUND_S = 60.0  # the bound on noticing a killed worker


@pytest.mark.parametrize(
    ("recorded", "rq_status", "leased", "status", "liveness"),
    [
        ("succeeded", None, False, "succeeded", Liveness.ended),
        ("running", "started", True, "running", Liveness.alive),
        ("queued", "started", True, "running", Liveness.alive),  # taken, the horse has not written yet
        ("running", None, True, "running", Liveness.alive),  # a horse that outlived a Redis restart
        ("queued", "queued", False, "queued", Liveness.waiting),
        ("running", "started", False, "running", Liveness.lost),  # killed: no lease
        ("running", "failed", False, "running", Liveness.lost),  # horse died; not reported failed: it is retried
        ("queued", None, False, "queued", Liveness.missing),  # Redis restarted empty
        ("running", None, False, "running", Liveness.missing),
    ],
)
def test_reconcile(recorded: str, rq_status: str | None, leased: bool, status: str, liveness: Liveness) -> None:
    verdict = reconcile(recorded, rq_status, leased)
    assert (verdict.status, verdict.liveness) == (TrainingStatus(status), liveness)


@pytest.mark.parametrize(
    ("recorded", "rq_status", "leased", "status", "liveness"),
    [
        ("running", "started", True, "canceling", Liveness.alive),  # the horse stops at its next step
        ("running", "started", False, "canceling", Liveness.lost),  # the watchdog still acts on a lost one
        ("queued", "queued", False, "canceling", Liveness.waiting),
        ("canceled", None, False, "canceled", Liveness.ended),  # ended: the record speaks
        ("succeeded", None, False, "succeeded", Liveness.ended),  # finished before the flag was seen
    ],
)
def test_a_cancel_asked_for_is_reported_until_the_training_ends(
    recorded: str, rq_status: str | None, leased: bool, status: str, liveness: Liveness
) -> None:
    verdict = reconcile(recorded, rq_status, leased, cancel_requested=True)
    assert (verdict.status, verdict.liveness) == (TrainingStatus(status), liveness)
    assert not TrainingStatus.canceling.is_terminal()


def test_the_defaults_notice_a_killed_worker_within_60s() -> None:
    """Worst case: the lease runs out, a round first sees it unattended, the grace period passes, the next round
    acts (the end-to-end tests measure it with shorter settings)."""
    s = Settings()
    grace = Watchdog.grace_for(s)
    assert s.lease_ttl_s + s.watchdog_interval_s + grace + s.watchdog_interval_s <= DETECTION_BOUND_S
    assert s.checkpoint_interval_s <= 30  # at most ~30 s of work lost


def put_record(store: ArtifactStore, status: str = "running", **extra: Any) -> dict[str, Any]:
    tid = new_id("tr")
    record = {
        "id": tid,
        "status": status,
        "request": {"dataset": "ring2d"},
        "config": {"family": "gan"},
        "progress": {"step": 0, "total_steps": 10},
        "metrics": {},
        "model_id": None,
        "error": None,
        "attempts": 1,
        "job_id": f"{tid}-1",
        "enqueues": 1,
        "lost_workers": 0,
        "created_at": utcnow(),
        "started_at": None,
        "finished_at": None,
        **extra,
    }
    store.put_training(record)
    return record


@pytest.fixture
def watchdog(settings: Settings, redis: Redis) -> Watchdog:
    fast = settings.model_copy(update={"lease_ttl_s": 1.5, "watchdog_interval_s": 0.05, "max_attempts": 3})
    return Watchdog(ArtifactStore(fast.store_dir), redis, Queue(fast.queue_name, connection=redis), fast)


def rounds(watchdog: Watchdog, seconds: float) -> list[tuple[str, str]]:
    actions: list[tuple[str, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        actions += watchdog.run_once()
        time.sleep(0.11)  # past the round's lock
    return actions


def test_watchdog_requeues_a_lost_training_after_the_grace_period(watchdog: Watchdog, redis: Redis) -> None:
    record = put_record(watchdog.store)
    assert watchdog.run_once() == []  # first sighting: the grace period starts
    actions = rounds(watchdog, watchdog.grace_s + 0.5)
    assert [a[0] for a in actions] == [record["id"]]
    after = watchdog.store.get_training(record["id"])
    assert after["status"] == "queued" and after["job_id"] == f"{record['id']}-2" and after["lost_workers"] == 1
    assert Job.fetch(after["job_id"], connection=redis).get_status().value == "queued"
    assert rounds(watchdog, 0.5) == []  # waiting in the queue now: nothing more to do


def test_watchdog_fails_a_training_after_max_attempts(watchdog: Watchdog, redis: Redis) -> None:
    record = put_record(watchdog.store, lost_workers=2, progress={"step": 0, "total_steps": 10})
    events.publish(redis, record["id"], "progress", {"step": 7, "total_steps": 10})
    rounds(watchdog, watchdog.grace_s + 0.5)
    after = watchdog.store.get_training(record["id"])
    assert after["status"] == "failed" and after["lost_workers"] == 3 and after["finished_at"]
    assert after["error"].startswith("worker lost 3 times") and "at step 7 of 10" in after["error"], after["error"]
    assert len(redis.lrange(watchdog.queue.key, 0, -1)) == 0


def test_watchdog_leaves_a_leased_training_alone_even_across_a_redis_flush(watchdog: Watchdog, redis: Redis) -> None:
    record = put_record(watchdog.store)
    keeper = LeaseKeeper(redis, record["id"], record["job_id"], "test", watchdog.settings.lease_ttl_s)
    keeper.acquire()
    try:
        assert rounds(watchdog, 0.5) == []
        redis.flushdb()  # as a Redis restarted without persistence: the lease and the RQ job are gone
        assert rounds(watchdog, watchdog.grace_s + 1.0) == []  # the horse renews its lease within the grace period
    finally:
        keeper.release()
    assert watchdog.store.get_training(record["id"])["job_id"] == record["job_id"]


def test_watchdog_cancels_an_unattended_training_that_was_asked_to(watchdog: Watchdog, redis: Redis) -> None:
    record = put_record(watchdog.store)
    events.request_cancel(redis, record["id"])
    rounds(watchdog, watchdog.grace_s + 0.5)
    assert watchdog.store.get_training(record["id"])["status"] == "canceled"


def test_the_fence_keeps_a_stale_job_from_writing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    record = put_record(store, job_id="x")
    tid = record["id"]
    assert Fence(store, tid, "x").update(progress={"step": 1}) is not None
    store.update_training(tid, job_id="y")  # re-queued meanwhile
    stale = Fence(store, tid, "x")
    assert not stale.holds() and stale.update(status="succeeded") is None
    assert store.get_training(tid)["status"] == "running"
