"""Trainings: asynchronous jobs on the RQ queue, with progress as JSON and as server-sent events."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from app import idempotency, pages, webhooks
from app.auth import CheckedRoute, owner_of, requires
from app.deps import ServicesDep
from app.idempotency import IDEMPOTENCY_KEY_HEADER
from app.problems import PROBLEM_SCHEMA
from app.schemas import (
    Delivery,
    DeliveryList,
    Preview,
    PreviewList,
    Training,
    TrainingHistory,
    TrainingList,
    TrainingRequest,
)
from models.errors import Invalid
from models.plots import history_png
from worker.state import events, keys
from worker.state.records import TrainingRecord
from worker.state.status import TrainingStatus

router = APIRouter(prefix="/v1/trainings", tags=["trainings"], route_class=CheckedRoute)
READ = [requires("sample")]
CHANGE = [requires("train")]
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
SSE_BLOCK_MS = 15_000  # a keep-alive comment goes out when nothing happened for this long
SSE_REDIS_RETRY_S = 1.0  # while Redis is down, the stream checks the store this often
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Training,
    responses={422: PROBLEM, 503: PROBLEM},
    dependencies=CHANGE,
)
def create_training(
    body: TrainingRequest,
    services: ServicesDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY_HEADER] = None,
) -> Training:
    """Start a training: validated, recorded, and queued for a worker. With an `Idempotency-Key`, a retry of the
    same request answers the training of the first (`Idempotent-Replayed: true`), never a second one."""
    owner = owner_of(request)
    if idempotency_key is None:
        training = services.trainings.create(body, owner)
    else:
        held = idempotency.claim(
            services.redis, owner, "trainings", idempotency_key, idempotency.fingerprint(body.model_dump(mode="json"))
        )
        if isinstance(held, idempotency.Replay):
            training = services.trainings.get(held.resource_id)
            response.headers[idempotency.REPLAYED] = "true"
        else:
            try:
                training = services.trainings.create(body, owner)
            except BaseException:
                held.abandon()
                raise
            held.finish(training.id, status.HTTP_202_ACCEPTED)
    response.headers["Location"] = f"/v1/trainings/{training.id}"
    return _public(training)


@router.get("", response_model=TrainingList, dependencies=READ)
def list_trainings(
    services: ServicesDep,
    request: Request,
    status: Annotated[
        TrainingStatus | None,
        Query(description="Only trainings in this status; `queued` lists the queue in the order workers take it."),
    ] = None,
    dataset: Annotated[str | None, Query(max_length=100, description="Only trainings on this dataset id.")] = None,
    family: Annotated[Literal["vae", "gan"] | None, Query(description="Only VAEs or only GANs.")] = None,
    model_name: Annotated[str | None, Query(max_length=63, description="Only trainings with this model_name.")] = None,
    limit: Annotated[int, Query(ge=1, le=pages.MAX_LIMIT, description="Items per page.")] = pages.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="From a page's `next` link.")] = None,
) -> TrainingList:
    """All trainings, newest first (or the queue, in order: `?status=queued`), a page at a time."""
    items = services.trainings.list(
        status,
        lambda r: (
            (dataset is None or r.dataset == dataset)
            and (family is None or r.family == family)
            and (model_name is None or r.request.get("model_name") == model_name)
        ),
    )
    if status is TrainingStatus.queued:
        key: Any = lambda r: [r.queue_position or 0, r.created_at, r.id]  # noqa: E731
        shown, after = pages.page(items, key, limit, cursor, newest_first=False)
    else:
        shown, after = pages.page(items, lambda r: [r.created_at, r.id], limit, cursor, newest_first=True)
    return TrainingList(items=[_public(t) for t in shown], next=pages.next_link(request, after))


@router.get("/{training_id}", response_model=Training, responses={404: PROBLEM}, dependencies=READ)
def get_training(training_id: str, services: ServicesDep) -> Training:
    """One training with its live progress."""
    return _public(services.trainings.get(training_id))


@router.post(
    "/{training_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Training,
    responses={404: PROBLEM, 409: PROBLEM},
    dependencies=CHANGE,
)
def cancel_training(training_id: str, services: ServicesDep) -> Training:
    """Cancel a queued or running training; it ends as `canceled` within a few seconds."""
    return _public(services.trainings.cancel(training_id))


@router.get(
    "/{training_id}/history",
    response_model=TrainingHistory,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON, or with `format=png` the loss curves as one picture.",
        },
        404: PROBLEM,
    },
    dependencies=READ,
)
def training_history(
    training_id: str,
    services: ServicesDep,
    format: Annotated[Literal["json", "png"], Query(description="json, or png: the loss curves drawn")] = "json",
) -> Any:
    """The losses and learning rate of the training over its steps, saved with each checkpoint and at the end (so
    they outlive Redis and a worker's death); the end-of-training metrics come with the last point."""
    record = services.trainings.get(training_id)
    history = services.store.get_history(training_id) or {
        "total_steps": record.progress.total_steps,
        "steps": [],
        "elapsed_s": [],
        "series": {},
        "metrics": None,
    }
    if format == "png":
        title = f"{training_id}: {record.family.upper()} on {record.dataset}, {record.status.value}"
        return Response(history_png(history, title), media_type="image/png")
    return TrainingHistory.model_validate(history)


@router.get("/{training_id}/previews", response_model=PreviewList, responses={404: PROBLEM}, dependencies=READ)
def list_previews(training_id: str, services: ServicesDep) -> PreviewList:
    """The preview pictures written so far: a fixed-seed sample grid (images) or scatter plot over the data (points)
    every `preview_every` steps, kept for the training's whole life."""
    steps = services.store.list_previews(training_id)
    return PreviewList(items=[Preview(step=s, url=f"/v1/trainings/{training_id}/previews/{s}") for s in steps])


@router.get(
    "/{training_id}/previews/{step}",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}, 404: PROBLEM},
    dependencies=READ,
)
def get_preview(training_id: str, step: Annotated[int, Path(ge=0)], services: ServicesDep) -> Response:
    """One preview picture (PNG)."""
    return Response(services.store.get_preview(training_id, step), media_type="image/png")


@router.get("/{training_id}/deliveries", response_model=DeliveryList, responses={404: PROBLEM}, dependencies=READ)
async def list_deliveries(training_id: str, services: ServicesDep) -> DeliveryList:
    """Every attempt to deliver this training's webhook events (the latest 200, kept a week): when, which event,
    the receiver's status code or the error, and when the next attempt is due."""
    await run_in_threadpool(services.trainings.get, training_id)  # 404 for an unknown training
    return DeliveryList(
        items=[Delivery.model_validate(e) for e in await webhooks.delivery_log(services.aredis, training_id)]
    )


def _sse(event: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.get(
    "/{training_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Progress and status events"}, 404: PROBLEM},
    dependencies=READ,
)
async def training_events(
    training_id: str,
    services: ServicesDep,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events (`progress`, `status`, `preview`) from the start of the training (or after `Last-Event-ID`)
    until it ends."""
    if last_event_id is not None and not EVENT_ID.fullmatch(last_event_id):
        raise Invalid(
            "Last-Event-ID must be an event id this stream sent (two numbers joined by '-')",
            field=("header", "last-event-id"),
        )
    first = await run_in_threadpool(services.trainings.get, training_id)
    key = keys.events(training_id)
    aredis = services.aredis
    owner = owner_of(request)
    services.streams.take(owner)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in events_of(first):
                yield chunk
        finally:
            services.streams.give_back(owner)

    async def events_of(first: TrainingRecord) -> AsyncIterator[bytes]:
        cursor = last_event_id or "0-0"
        if first.is_terminal():
            if last_event_id is not None:  # a resume: what was missed, then the end (the stream is kept a week)
                async for chunk in replayed(cursor, first):
                    yield chunk
            else:
                yield _sse("status", _final(first))
            return
        while not await request.is_disconnected():
            try:
                reply: Any = await aredis.xread({key: cursor}, block=SSE_BLOCK_MS, count=100)
            except RedisError:  # Redis down: follow the store (the final status lands there) until it answers
                reply = None
                await asyncio.sleep(SSE_REDIS_RETRY_S)
            if not reply:
                current = await run_in_threadpool(services.trainings.get, training_id)
                if current.is_terminal():  # e.g. a worker died without a word
                    yield _sse("status", _final(current))
                    return
                yield b": keep-alive\n\n"
                continue
            for entry_id, fields in reply[0][1]:
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                name, data = events.decode_event(fields)
                if name == events.STATUS and TrainingStatus(data["status"]).is_terminal():
                    current = await run_in_threadpool(services.trainings.get, training_id)
                    yield _sse("status", _final(current), cursor)
                    return
                yield _sse(name, data, cursor)

    async def replayed(cursor: str, ended: TrainingRecord) -> AsyncIterator[bytes]:
        """The events of an ended training after `cursor`, then its final status (alone, without an id, when the
        stream has expired or Redis is away): a client cut off while the training ended loses nothing."""
        try:
            entries: Any = await aredis.xrange(key, min=f"({cursor}", max="+")
        except RedisError:
            entries = []
        for entry_id, fields in entries:
            entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            name, data = events.decode_event(fields)
            if name == events.STATUS and TrainingStatus(data["status"]).is_terminal():
                yield _sse("status", _final(ended), entry)
                return
            yield _sse(name, data, entry)
        yield _sse("status", _final(ended))

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


def _public(record: TrainingRecord) -> Training:
    return Training.model_validate(record, from_attributes=True)


def _final(record: TrainingRecord) -> dict[str, Any]:
    """The data of the last event of a stream: how the training ended."""
    return _public(record).model_dump(mode="json", include={"status", "model_id", "error", "metrics", "progress"})
