"""Per-key quotas: how many trainings a key may have queued or running, how many datasets it may have uploaded, and
how many bytes those take. Without keys configured the service has one owner, so the quotas bound all clients
together.

Counts come from the artifact store (the source of truth), read when a training or an upload is about to be
accepted. Trainings are created one at a time per key, under a Redis lock shared by every API replica, so their
quota is exact; two uploads of one key that arrive at the same instant may both pass, so a key can exceed its
dataset quotas by the number of its uploads in flight, never more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from app.settings import Settings
from models.data.catalog import Catalog
from models.errors import QuotaExceeded, StorageExceeded, TooLarge
from worker.state.records import TrainingRecords


@dataclass
class Quotas:
    records: TrainingRecords
    catalog: Catalog
    settings: Settings

    def check_training(self, owner: str, retry_after: Callable[[], int] | None = None) -> None:
        """Room for one more queued or running training of `owner` (429 when there is none, with `retry_after()`
        as Retry-After). The caller holds the key's creation lock (app/trainings.py), so the count is exact across
        API replicas."""
        limit = self.settings.max_active_trainings
        active = sum(1 for r in self.records.list() if r.owner == owner and not r.is_terminal())
        if active >= limit:
            raise QuotaExceeded(
                f"this key has {active} trainings queued or running; the limit is {limit} "
                f"({self.settings.env_name('max_active_trainings')}): wait for one to end, or cancel one",
                limit=limit,
                retry_after_s=retry_after() if retry_after is not None else None,
            )

    def check_upload(self, owner: str, stored_bytes: int) -> None:
        """Room for one more dataset of `stored_bytes` of `owner` (413 for an upload too large by itself, 429 for
        too many datasets, 507 for too many bytes)."""
        s = self.settings
        if stored_bytes > s.max_stored_upload_bytes:
            raise TooLarge(
                f"the dataset takes {stored_bytes} bytes once decoded; the limit is {s.max_stored_upload_bytes} "
                f"({s.env_name('max_stored_upload_bytes')})",
                field=("file",),
                limit=s.max_stored_upload_bytes,
            )
        owned = [d for d in self.catalog.uploads() if d.owner == owner]
        if len(owned) >= s.max_datasets:
            raise QuotaExceeded(
                f"this key has {len(owned)} datasets; the limit is {s.max_datasets} ({s.env_name('max_datasets')}): "
                "delete one first",
                limit=s.max_datasets,
            )
        used = sum(d.stored_bytes or 0 for d in owned)
        if used + stored_bytes > s.max_stored_bytes:
            raise StorageExceeded(
                f"this key's datasets take {used} bytes and this one {stored_bytes}; the limit is "
                f"{s.max_stored_bytes} ({s.env_name('max_stored_bytes')}): delete some first",
                limit=s.max_stored_bytes,
            )


class StreamSlots:
    """Open event streams (SSE) of this process, bounded in all and per key: each holds a Redis connection for as
    long as its client listens."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self.open: Counter[str] = Counter()

    def take(self, owner: str) -> None:
        """One more stream for `owner` (429 when this process or this key has as many as it may)."""
        if sum(self.open.values()) >= self.total:
            raise QuotaExceeded(
                f"this server has {self.total} event streams open (GENSERVE_MAX_STREAMS); poll "
                "GET /v1/trainings/{id} instead, or retry later",
                limit=self.total,
            )
        if self.open[owner] >= self.per_key:
            raise QuotaExceeded(
                f"this key has {self.per_key} event streams open (GENSERVE_MAX_STREAMS_PER_KEY); close one first",
                limit=self.per_key,
            )
        self.open[owner] += 1

    def give_back(self, owner: str) -> None:
        self.open[owner] -= 1
        if self.open[owner] <= 0:
            del self.open[owner]
