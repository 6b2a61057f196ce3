"""Datasets: built-ins and uploads (.npz, .csv, .zip of images)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.deps import ServicesDep
from app.problems import PROBLEM_SCHEMA, located_in
from app.schemas import Dataset, DatasetList
from models.datasets import BUILTINS
from models.errors import Conflict, Forbidden, Invalid, TooLarge
from models.uploads import UploadLimits, parse_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
NAME_MAX = 100


def _limits(services: ServicesDep) -> UploadLimits:
    s = services.settings
    return UploadLimits(
        max_bytes=s.max_upload_bytes,
        max_images=s.max_images,
        max_image_side=s.max_image_side,
        max_points=s.max_points,
        max_point_dims=s.max_point_dims,
        max_zip_entries=s.max_zip_entries,
        max_zip_ratio=s.max_zip_ratio,
        max_uncompressed_bytes=s.max_uncompressed_bytes,
    )


@router.get("", response_model=DatasetList)
async def list_datasets(services: ServicesDep) -> DatasetList:
    """All datasets: built-ins first, then uploads."""
    items = await run_in_threadpool(services.catalog.list)
    return DatasetList(items=[Dataset(**d) for d in items])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Dataset,
    responses={
        200: {"model": Dataset, "description": "The same content was uploaded before; its dataset is returned."},
        413: PROBLEM,
        415: PROBLEM,
        422: PROBLEM,
    },
)
async def upload_dataset(
    services: ServicesDep,
    response: Response,
    file: Annotated[UploadFile, File(description=".npz, .csv, or .zip of PNG/JPEG images (folder per class)")],
    name: Annotated[str, Form(min_length=1, max_length=NAME_MAX, description="A name for people")],
) -> Dataset:
    """Upload a dataset; it is validated, then stored content-addressed (equal content, equal id)."""
    limits = _limits(services)
    content = await file.read(limits.max_bytes + 1)
    if len(content) > limits.max_bytes:
        raise TooLarge(
            f"the file exceeds {limits.max_bytes} bytes (GENSERVE_MAX_UPLOAD_BYTES)",
            field=("body", "file"),
            limit=limits.max_bytes,
        )
    if not name.isprintable() or not name.strip():
        raise Invalid("name must be printable text", field=("body", "name"))
    with located_in("body"):
        data = await run_in_threadpool(parse_upload, file.filename or "", content, limits)
    manifest, created = await run_in_threadpool(services.store.put_dataset, name.strip(), data)
    response.headers["Location"] = f"/v1/datasets/{manifest['id']}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return Dataset(**manifest)


@router.get("/{dataset_id}", response_model=Dataset, responses={404: PROBLEM})
async def get_dataset(dataset_id: str, services: ServicesDep) -> Dataset:
    """One dataset."""
    return Dataset(**await run_in_threadpool(services.catalog.info, dataset_id))


@router.delete(
    "/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses={403: PROBLEM, 404: PROBLEM, 409: PROBLEM}
)
def delete_dataset(dataset_id: str, services: ServicesDep) -> Response:
    """Delete an uploaded dataset (not while a training uses it; built-ins cannot be deleted)."""
    if dataset_id in BUILTINS:
        raise Forbidden(f"{dataset_id} is a built-in dataset and cannot be deleted", field=("path", "dataset_id"))
    services.store.get_dataset(dataset_id)
    if services.trainings.uses_dataset(dataset_id):
        raise Conflict(f"dataset {dataset_id} is used by a queued or running training", field=("path", "dataset_id"))
    services.store.delete_dataset(dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
