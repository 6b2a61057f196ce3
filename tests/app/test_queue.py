"""Where a queued training stands: its position and the estimate of when a worker takes it."""

from __future__ import annotations

from app.trainings import QueueSnapshot


def test_the_queue_goes_to_workers_as_they_come_free() -> None:
    # Two workers: one busy for 30 s more, one for 100 s; waiting trainings last 60 s each (the recent median).
    snap = QueueSnapshot.of(["a", "b", "c"], [100.0, 30.0], workers=2, typical_s=60.0)
    assert snap.positions == {"a": 1, "b": 2, "c": 3}
    assert snap.starts == {"a": 30.0, "b": 90.0, "c": 100.0}


def test_an_idle_worker_takes_the_first_at_once_and_unknowns_say_so() -> None:
    assert QueueSnapshot.of(["a", "b"], [], workers=1, typical_s=None).starts == {"a": 0.0, "b": None}
    assert QueueSnapshot.of(["a"], [None], workers=1, typical_s=None).starts == {"a": None}  # ETA not known yet
    assert QueueSnapshot.of(["a"], [None], workers=1, typical_s=40.0).starts == {"a": 40.0}
    assert QueueSnapshot.of(["a"], [], workers=0, typical_s=40.0).starts == {"a": None}  # no worker at all
