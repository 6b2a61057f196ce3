"""The `grid` format's picture options (`scale`, `show_data`), checked against the model and the size limit; and a
points model's frame, read from its training data once per loaded model (so every scatter plot of one model has
the same axes)."""

from __future__ import annotations

import logging

from fastapi.concurrency import run_in_threadpool

from app.schemas import Format
from app.serving.encoding import DEFAULT_VIEW, View
from app.serving.model_cache import LoadedModel
from app.settings import Settings
from models.data.catalog import Catalog
from models.errors import Invalid, NotFound, Unavailable
from models.plots import PointsFrame, grid_side_px

log = logging.getLogger("genserve.api")


def wants_picture(fmt: Format, scale: int, show_data: bool) -> bool:
    """Whether the request needs `view` (the hot path's json and png requests with defaults do not)."""
    return fmt is Format.grid or scale != 1 or show_data


async def view(
    fmt: Format,
    scale: int,
    show_data: bool,
    n: int,
    loaded: LoadedModel,
    catalog: Catalog,
    settings: Settings,
    columns: int | None = None,
) -> View:
    """How the grid picture of n samples is drawn; 422 naming the option that does not apply or is too large."""
    if fmt is not Format.grid:
        if scale != 1:
            raise Invalid(
                f"scale applies to format grid only (this request's format is {fmt.value})", field=("body", "scale")
            )
        if show_data:
            raise Invalid(f"show_data applies to format grid only (format is {fmt.value})", field=("body", "show_data"))
        return DEFAULT_VIEW
    manifest = loaded.manifest
    if show_data and manifest.kind != "points":
        raise Invalid("show_data is for point models (their grid is a scatter plot)", field=("body", "show_data"))
    side, limit = grid_side_px(n, manifest.sample_shape, columns, scale), settings.max_grid_side_px
    if side > limit:
        raise Invalid(
            f"the picture would be {side} px on its longer side; the limit is {limit} "
            f"({settings.env_name('max_grid_side_px')}): ask for a smaller scale or fewer samples",
            field=("body", "scale"),
            limit=limit,
        )
    frame = await points_frame(loaded, catalog) if manifest.kind == "points" else None
    if show_data and frame is None:
        raise Invalid(
            f"the model's training data (dataset {manifest.dataset}) is no longer stored, so it cannot be drawn",
            field=("body", "show_data"),
        )
    return View(scale=scale, columns=columns, frame=frame, show_data=show_data)


async def points_frame(loaded: LoadedModel, catalog: Catalog) -> PointsFrame | None:
    """The model's training data's frame (None when its dataset was deleted: plots are then framed by the samples).
    Read once per loaded model; two first requests at once may both read it, to the same result."""
    if not loaded.frame_read:
        try:
            splits = await run_in_threadpool(catalog.load, loaded.manifest.dataset)
            loaded.frame = await run_in_threadpool(PointsFrame.of, splits.train.x)
        except (NotFound, Unavailable):
            log.info(
                "model %s: dataset %s not available; plots framed by the samples", loaded.id, loaded.manifest.dataset
            )
        loaded.frame_read = True
    return loaded.frame
