"""Live training state in Redis: the contract between workers (who write) and API replicas (who read).

Each training has an event stream (progress and status events, replayable, read with blocking XREAD by the SSE
endpoint) and a cancel flag. Both are ephemeral: the final state lives in the artifact store.
Imports only redis, so the API can use it without loading training code.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

KEY_PREFIX = "genserve"
STREAM_MAXLEN = 2000  # events kept per training (approximate trim)
EVENTS_TTL_S = 7 * 24 * 3600  # streams of ended trainings expire after a week
CANCEL_TTL_S = 7 * 24 * 3600


def events_key(training_id: str) -> str:
    return f"{KEY_PREFIX}:training:{training_id}:events"


def cancel_key(training_id: str) -> str:
    return f"{KEY_PREFIX}:training:{training_id}:cancel"


def publish(redis: Redis, training_id: str, event: str, data: dict[str, Any]) -> None:
    """Append one event to the training's stream (kept for a week after the last one)."""
    key = events_key(training_id)
    pipe = redis.pipeline(transaction=False)
    pipe.xadd(key, {"event": event, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(key, EVENTS_TTL_S)
    pipe.execute()


def latest_progress(redis: Redis, training_id: str) -> dict[str, Any] | None:
    """The newest progress event's data, or None when there is none yet."""
    entries: list[tuple[Any, dict[Any, Any]]] = redis.xrevrange(events_key(training_id), count=20)  # type: ignore[assignment]
    for _id, fields in entries:
        name, data = decode_event(fields)
        if name == "progress":
            return data
    return None


def request_cancel(redis: Redis, training_id: str) -> None:
    redis.set(cancel_key(training_id), b"1", ex=CANCEL_TTL_S)


def cancel_requested(redis: Redis, training_id: str) -> bool:
    return bool(redis.exists(cancel_key(training_id)))


def decode_event(fields: dict[Any, Any]) -> tuple[str, dict[str, Any]]:
    """(event name, data) of one stream entry, whatever the client's decode_responses setting."""
    event = fields.get(b"event") or fields.get("event") or b"message"
    raw = fields.get(b"data") or fields.get("data") or b"{}"
    name = event.decode() if isinstance(event, bytes) else event
    return name, json.loads(raw)


MODELS_CHANNEL = f"{KEY_PREFIX}:models"  # pub/sub: {"event": "created" | "deleted", "id": model_id}


def publish_model_event(redis: Redis, event: str, model_id: str) -> None:
    """Tell every API replica that a model appeared or went away (they preload or evict it)."""
    redis.publish(MODELS_CHANNEL, json.dumps({"event": event, "id": model_id}))
