"""Every Redis key and channel genserve uses, in one place. Each is ephemeral: the store holds what must survive."""

from __future__ import annotations

PREFIX = "genserve"
MODELS_CHANNEL = f"{PREFIX}:models"  # pub/sub: {"event": "created" | "deleted", "id": model_id}
WATCHDOG_LOCK = f"{PREFIX}:watchdog:lock"  # held for one round by the process that acts in it
WEBHOOKS_DUE = f"{PREFIX}:webhooks:due"  # sorted set: delivery id -> when its next attempt is due (unix time)


def _training(training_id: str, part: str) -> str:
    return f"{PREFIX}:training:{training_id}:{part}"


def events(training_id: str) -> str:
    """A training's event stream (progress and status events)."""
    return _training(training_id, "events")


def cancel(training_id: str) -> str:
    """Set when a training was asked to stop."""
    return _training(training_id, "cancel")


def lease(training_id: str) -> str:
    """The liveness lease of the work horse running a training."""
    return _training(training_id, "lease")


def seen(training_id: str) -> str:
    """The lease's last renewal, kept after it expires (where and when the training was last seen)."""
    return _training(training_id, "seen")


def unattended(training_id: str) -> str:
    """When the watchdog first saw a training that nobody works on (its grace period starts there)."""
    return _training(training_id, "unattended")


def idempotency(route: str, digest: str) -> str:
    """An Idempotency-Key's claim and answer on one creating route (`digest`: of the API key and the header)."""
    return f"{PREFIX}:idempotency:{route}:{digest}"


def quota_lock(owner: str) -> str:
    """Held while a training of this API key (its name) is created: its active-trainings count cannot race."""
    return f"{PREFIX}:quota:{owner}:lock"


def webhook(delivery_id: str) -> str:
    """One webhook delivery: its training, event, URL, frozen body and attempts."""
    return f"{PREFIX}:webhook:{delivery_id}"


def deliveries(training_id: str) -> str:
    """A training's webhook delivery log (one entry per attempt)."""
    return _training(training_id, "deliveries")


def rate_limit(key_digest: str) -> str:
    """An API key's shared token bucket (app/rate_limits.py), named by the key's digest, never its token."""
    return f"{PREFIX}:ratelimit:{key_digest}"
