"""Live training state in Redis: the contract between workers (who write) and API replicas (who read).

Each training has an event stream (progress and status events, replayable, read with blocking XREAD by the SSE
endpoint) and a cancel flag. Both are ephemeral: the final state lives in the artifact store. Model announcements
go over a pub/sub channel, so that every API replica loads new models and drops deleted ones.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from models.progress import Progress
from worker.state import keys
from worker.state.status import TrainingStatus

STREAM_MAXLEN = 2000  # events kept per training (approximate trim)
EVENTS_TTL_S = 7 * 24 * 3600  # streams of ended trainings expire after a week
CANCEL_TTL_S = 7 * 24 * 3600
PROGRESS = "progress"
STATUS = "status"
PREVIEW = "preview"  # {"step", "url"}: a preview picture was stored


def publish(redis: Redis, training_id: str, event: str, data: dict[str, Any]) -> None:
    """Append one event to the training's stream (kept for a week after the last one)."""
    key = keys.events(training_id)
    pipe = redis.pipeline(transaction=False)
    pipe.xadd(key, {"event": event, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True)
    pipe.expire(key, EVENTS_TTL_S)
    pipe.execute()


def publish_progress(redis: Redis, training_id: str, progress: Progress) -> None:
    publish(redis, training_id, PROGRESS, progress.model_dump(mode="json"))


def publish_status(redis: Redis, training_id: str, status: TrainingStatus, **data: Any) -> None:
    """A status event: the new status and what goes with it (model_id, error, metrics, reason, attempt...)."""
    publish(redis, training_id, STATUS, {"status": status.value, **data})


def latest_progress(redis: Redis, training_id: str) -> Progress | None:
    """The newest progress event, or None when there is none yet."""
    entries: list[tuple[Any, dict[Any, Any]]] = redis.xrevrange(keys.events(training_id), count=20)  # type: ignore[assignment]
    for _id, fields in entries:
        name, data = decode_event(fields)
        if name == PROGRESS:
            return Progress.model_validate(data)
    return None


def latest_progress_of(redis: Redis, training_ids: list[str]) -> dict[str, Progress | None]:
    """`latest_progress` of many trainings in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for training_id in training_ids:
        pipe.xrevrange(keys.events(training_id), count=20)
    out: dict[str, Progress | None] = {}
    for training_id, entries in zip(training_ids, pipe.execute(), strict=True):
        out[training_id] = None
        for _id, fields in entries:
            name, data = decode_event(fields)
            if name == PROGRESS:
                out[training_id] = Progress.model_validate(data)
                break
    return out


def request_cancel(redis: Redis, training_id: str) -> None:
    redis.set(keys.cancel(training_id), b"1", ex=CANCEL_TTL_S)


def cancel_requested(redis: Redis, training_id: str) -> bool:
    return bool(redis.exists(keys.cancel(training_id)))


def decode_event(fields: dict[Any, Any]) -> tuple[str, dict[str, Any]]:
    """(event name, data) of one stream entry, whatever the client's decode_responses setting."""
    event = fields.get(b"event") or fields.get("event") or b"message"
    raw = fields.get(b"data") or fields.get("data") or b"{}"
    name = event.decode() if isinstance(event, bytes) else event
    return name, json.loads(raw)


def publish_name_event(redis: Redis, name: str) -> None:
    """Tell every API replica that a model name's aliases changed (they re-read it)."""
    redis.publish(keys.MODELS_CHANNEL, json.dumps({"event": "name", "name": name}))


def publish_model_event(redis: Redis, event: str, model_id: str) -> None:
    """Tell every API replica that a model appeared ("created") or went away ("deleted")."""
    redis.publish(keys.MODELS_CHANNEL, json.dumps({"event": event, "id": model_id}))
