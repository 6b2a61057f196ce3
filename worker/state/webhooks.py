"""Webhook deliveries, the producing side: a training's events (`started`, `progress`, `preview`, `completed`) become
deliveries in Redis, due at once, for the API processes to send (app/webhooks.py), apart from the training: a slow or
dead receiver never holds up a worker.

A delivery is a JSON value under its own key (kept DELIVERY_TTL_S) plus its due time in one sorted set shared by
every API process. It carries the training record as it was at the event, so a retry sends the same body.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from redis import Redis

from models.store import utcnow
from worker.state import keys
from worker.state.records import TrainingRecord

EVENTS = ("started", "progress", "preview", "completed")
DEFAULT_EVENTS = ("completed",)
DELIVERY_TTL_S = 2 * 24 * 3600  # past every retry
PROGRESS_EVERY_S = 5.0  # at most one `progress` delivery per training this often


def wanted(record: TrainingRecord, event: str) -> bool:
    return bool(record.request.get("webhook")) and event in record.request.get("webhook_events", DEFAULT_EVENTS)


def enqueue(redis: Redis, record: TrainingRecord, event: str, extra: dict[str, Any] | None = None) -> str | None:
    """Schedule the delivery of `event` of this training (if its request asked for it); its id, or None."""
    if not wanted(record, event):
        return None
    delivery_id = f"msg_{secrets.token_hex(12)}"
    delivery = {
        "id": delivery_id,
        "training_id": record.id,
        "event": event,
        "url": record.request["webhook"],
        "record": record.to_json(),
        "extra": extra or {},
        "created_at": utcnow(),
        "attempts": 0,
    }
    pipe = redis.pipeline(transaction=True)
    pipe.set(keys.webhook(delivery_id), json.dumps(delivery), ex=DELIVERY_TTL_S)
    pipe.zadd(keys.WEBHOOKS_DUE, {delivery_id: time.time()})
    pipe.execute()
    return delivery_id
