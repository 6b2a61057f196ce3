"""The inputs of the routes that run a VAE on data (reconstructions, scores): JSON points for point models, a
multipart upload of images for image models, parsed here by hand rather than by FastAPI's body handling, since which
of the two a request may carry depends on the model it names."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.problems import located_in
from app.schemas import Format, PointsReconstructionRequest
from app.serving.edge import read_upload
from app.serving.model_cache import LoadedModel
from app.settings import Settings
from models.errors import Invalid, UnsupportedFormat
from models.uploads import parse_images

MAX_FORM_FIELDS = 8


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its `$defs` written in place: in an OpenAPI document a `#/$defs/...` reference
    resolves against the document's root, where nothing is defined, so generated clients and validators fail on it."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk({**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


def request_body(*, with_format: bool) -> dict[str, Any]:
    """The OpenAPI request body of these routes: JSON points, or a multipart upload of images."""
    form: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "a PNG/JPEG image, or a .zip / .npz of images"},
        "labels": {"type": "string", "description": "class per image, comma-separated"},
    }
    if with_format:
        form["format"] = {"type": "string", "enum": [f.value for f in Format]}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": inline_defs(PointsReconstructionRequest.model_json_schema())},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": form, "additionalProperties": False}
            },
        },
    }


def _validation_error(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])


async def read(
    request: Request, loaded: LoadedModel, settings: Settings
) -> tuple[np.ndarray, list[int] | None, Format | None]:
    """(inputs, labels, format) from JSON points or a multipart image upload, by the model's kind."""
    manifest = loaded.manifest
    content_type = request.headers.get("content-type", "")
    if manifest.kind == "points":
        if not content_type.startswith("application/json"):
            raise UnsupportedFormat(
                'point models take JSON: {"points": [[...], ...]}', field=("header", "content-type")
            )
        context = getattr(request.app.state, "validation_context", None)
        try:
            body = PointsReconstructionRequest.model_validate_json(await request.body(), context=context)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        dims = manifest.sample_shape[0]
        for i, point in enumerate(body.points):
            if len(point) != dims:
                raise Invalid(
                    f"point {i} has {len(point)} coordinates; this model's points have {dims}",
                    field=("body", "points", i),
                    limit=dims,
                )
        with np.errstate(over="ignore"):
            x = np.asarray(body.points, dtype=np.float32)
        if not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise Invalid(f"point {i} holds a value beyond float32's range", field=("body", "points", i))
        return x, body.labels, body.format
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedFormat(
            "image models take a multipart upload with a `file` field", field=("header", "content-type")
        )
    form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid("a `file` field with an image, a .zip or a .npz of images is required", field=("body", "file"))
    limits = settings.upload_limits(max_images_setting="max_samples_per_request")
    content = await read_upload(upload, limits)
    with located_in("body"):
        x = await run_in_threadpool(parse_images, upload.filename or "", content, limits)
    if list(x.shape[1:]) != manifest.sample_shape:
        raise Invalid(
            f"images are {list(x.shape[1:])}; this model takes {manifest.sample_shape}",
            field=("body", "file"),
            limit=manifest.sample_shape,
        )
    labels_raw, fmt_raw = form.get("labels"), form.get("format")
    try:
        labels = [int(v) for v in str(labels_raw).replace(",", " ").split()] if labels_raw else None
    except ValueError:
        raise Invalid("labels must be integers separated by commas", field=("body", "labels")) from None
    try:
        fmt = Format(str(fmt_raw)) if fmt_raw else None
    except ValueError:
        raise Invalid(f"format must be one of {[f.value for f in Format]}", field=("body", "format")) from None
    return x, labels, fmt
