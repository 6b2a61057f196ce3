"""Datasets: built-ins and uploads (.npz, .csv, .zip of images)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app import idempotency, pages
from app.auth import CheckedRoute, owner_of, requires
from app.deps import ServicesDep
from app.idempotency import IDEMPOTENCY_KEY_HEADER
from app.problems import PROBLEM_SCHEMA, located_in
from app.schemas import DATASET_NAME_MAX, Dataset, DatasetList
from app.serving.edge import accepts_uploads, read_upload
from models.data.builtin import BUILTINS
from models.errors import Conflict, Forbidden, Invalid
from models.store import stored_bytes
from models.uploads import parse_upload
from models.uploads.parse import DATASET_TYPES

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=CheckedRoute)
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}


@router.get("", response_model=DatasetList, dependencies=[requires("sample")])
async def list_datasets(
    services: ServicesDep,
    request: Request,
    kind: Annotated[Literal["points", "images"] | None, Query(description="Only datasets of this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=pages.MAX_LIMIT, description="Items per page.")] = pages.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="From a page's `next` link.")] = None,
) -> DatasetList:
    """All datasets: built-ins first, then uploads (oldest first), a page at a time."""
    items = await run_in_threadpool(services.catalog.list)
    if kind is not None:
        items = [d for d in items if d.kind == kind]
    order = {d.id: i for i, d in enumerate(items) if d.builtin}
    shown, after = pages.page(
        items,
        lambda d: [0, order[d.id], ""] if d.builtin else [1, d.created_at or "", d.id],
        limit,
        cursor,
        newest_first=False,
    )
    return DatasetList(
        items=[Dataset.model_validate(d, from_attributes=True) for d in shown], next=pages.next_link(request, after)
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Dataset,
    responses={
        200: {
            "model": Dataset,
            "description": "The same content was uploaded before; its dataset is returned (`note` says so when it was "
            "uploaded under another name).",
        },
        413: PROBLEM,
        415: PROBLEM,
        422: PROBLEM,
    },
    dependencies=[requires("train")],
)
@accepts_uploads
async def upload_dataset(
    services: ServicesDep,
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description=DATASET_TYPES)],
    name: Annotated[
        str,
        Form(
            min_length=1,
            max_length=DATASET_NAME_MAX,
            description="A name for people; a training's `dataset` may give it instead of the id while no other "
            "dataset has it.",
        ),
    ],
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY_HEADER] = None,
) -> Dataset:
    """Upload a dataset; it is validated, then stored content-addressed (equal content, equal id).

    Formats (the type comes from the content and must match the file name's extension):

    - **.csv**: a header row of column names, then one point per row; every column numeric except an optional
      column named `label` (any text or integers: its distinct values become the classes).
    - **.npz** (`numpy.savez`): array `x` of shape (N, D) points, or (N, H, W) / (N, H, W, C) images (uint8 0–255 or
      floats in [0, 1]); optional integer array `y` of N labels.
    - **.zip** of PNG/JPEG images, all of one size: either images at the top level (no labels), or one top-level
      folder per class (`cat/001.png`, `dog/002.png`: the folder names become the classes).

    Uploading content that is stored already answers 200 with the stored dataset; when it was stored under another
    name, `note` says so (the stored name is kept)."""
    limits = services.settings.upload_limits()
    content = await read_upload(file, limits)
    if not name.isprintable() or not name.strip():
        raise Invalid("name must be printable text", field=("body", "name"))
    with located_in("body"):
        data = await run_in_threadpool(parse_upload, file.filename or "", content, limits)
    owner = owner_of(request)
    claim: idempotency.Claim | None = None
    if idempotency_key is not None:
        held = await run_in_threadpool(
            idempotency.claim,
            services.redis,
            owner,
            "datasets",
            idempotency_key,
            idempotency.fingerprint(content, name.strip()),
        )
        if isinstance(held, idempotency.Replay):
            response.headers[idempotency.REPLAYED] = "true"
            response.headers["Location"] = f"/v1/datasets/{held.resource_id}"
            response.status_code = held.status_code
            info = await run_in_threadpool(services.catalog.info, held.resource_id)
            return Dataset.model_validate(info, from_attributes=True)
        claim = held
    try:
        manifest, created = await _store(services, name.strip(), data, owner)
    except BaseException:
        if claim is not None:
            await run_in_threadpool(claim.abandon)
        raise
    if claim is not None:
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        await run_in_threadpool(claim.finish, manifest["id"], code)
    return _answer(response, manifest, created, name.strip())


async def _store(services: ServicesDep, name: str, data: Any, owner: str) -> tuple[dict[str, Any], bool]:
    with located_in("body"):
        return await run_in_threadpool(
            services.store.put_dataset,
            name,
            data,
            owner,
            lambda: services.quotas.check_upload(owner, stored_bytes(data)),
        )


def _answer(response: Response, manifest: dict[str, Any], created: bool, name: str) -> Dataset:
    """201 with a new dataset; 200 with the stored one, and a `note` when it was stored under another name."""
    response.headers["Location"] = f"/v1/datasets/{manifest['id']}"
    if created:
        return Dataset.model_validate(manifest)
    response.status_code = status.HTTP_200_OK
    note = None
    if manifest["name"] != name:
        note = (
            f"this content was uploaded before as {manifest['name']!r} (id {manifest['id']}); that dataset is "
            f"returned and keeps its name, {name!r} was not applied"
        )
    return Dataset.model_validate({**manifest, "note": note})


@router.get("/{dataset_id}", response_model=Dataset, responses={404: PROBLEM}, dependencies=[requires("sample")])
async def get_dataset(dataset_id: str, services: ServicesDep) -> Dataset:
    """One dataset."""
    info = await run_in_threadpool(services.catalog.info, dataset_id)
    return Dataset.model_validate(info, from_attributes=True)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={403: PROBLEM, 404: PROBLEM, 409: PROBLEM},
    dependencies=[requires("train")],
)
def delete_dataset(dataset_id: str, services: ServicesDep) -> Response:
    """Delete an uploaded dataset (not while a training uses it; built-ins cannot be deleted)."""
    if dataset_id in BUILTINS:
        raise Forbidden(f"{dataset_id} is a built-in dataset and cannot be deleted", field=("path", "dataset_id"))
    with services.store.dataset_lock(dataset_id):  # a training starting on it at this instant waits, then fails
        services.store.get_dataset(dataset_id)
        if services.trainings.uses_dataset(dataset_id):
            raise Conflict(
                f"dataset {dataset_id} is used by a queued or running training", field=("path", "dataset_id")
            )
        services.store.delete_dataset(dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
