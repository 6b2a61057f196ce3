"""Model bundles: a model that travels between deployments as one zip, `manifest.json` + `weights.safetensors` +
a model card (`README.md`, with `samples.png`).

Importing treats the bundle as hostile input: the zip is opened with the upload checks (entry count, names, links,
compression ratio, sizes: models/uploads/zips.py), the manifest is validated against its schema, the net it
describes is built and the weights must match it exactly (every tensor present, no extra one, each of its shape and
dtype) and be finite. Any failure is an `Invalid` naming the part at fault; nothing is stored until all passed.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load, save

from models.errors import Invalid
from models.manifest import ModelManifest
from models.nets import GenerativeModel, build_model
from models.previews import preview_png
from models.uploads.limits import UploadLimits
from models.uploads.zips import open_zip, read_entry

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
CARD = "README.md"
SAMPLES = "samples.png"
FILE = ("file",)
ORIGIN_FIELDS = ("id", "name", "version", "training_id", "parent_model_id")  # what the importing store assigns anew


def export(manifest: ModelManifest, tensors: dict[str, torch.Tensor], model: GenerativeModel) -> bytes:
    """The bundle of a stored model (its card's picture drawn from `model`, the same weights)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest.to_json())
        zf.writestr(WEIGHTS, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
        zf.writestr(SAMPLES, preview_png(model, 0))
        zf.writestr(CARD, card(manifest))
    return buf.getvalue()


def card(manifest: ModelManifest) -> str:
    """The model card: what it is, what it was trained on and how, what it measured."""
    spec = manifest.spec
    title = f"{manifest.name}:{manifest.version}" if manifest.name else manifest.id
    lines = [
        f"# {title}",
        "",
        f"A {spec.family.upper()} of {spec.kind} {tuple(spec.sample_shape)}, latent dimension {spec.latent_dim}"
        + (f", conditional on {spec.num_classes} classes" if spec.num_classes else "")
        + f", exported from genserve (model {manifest.id}, created {manifest.created_at}).",
        "",
        f"- dataset: `{manifest.dataset}`" + (f" (classes: {', '.join(manifest.classes)})" if manifest.classes else ""),
        f"- training: `{manifest.training_id}`" if manifest.training_id else "- training: not recorded",
    ]
    if manifest.tags:
        lines.append("- tags: " + ", ".join(f"`{k}={v}`" for k, v in sorted(manifest.tags.items())))
    lines += ["", "## Recipe", "", "```json", json.dumps(manifest.config or {}, indent=2, sort_keys=True), "```", ""]
    lines += ["## Metrics (held-out data, at the end of training)", ""]
    if manifest.metrics:
        lines += [
            "| metric | value |",
            "|---|---|",
            *(f"| {k} | {v:.6g} |" for k, v in sorted(manifest.metrics.items())),
        ]
    else:
        lines.append("none recorded")
    lines += ["", "## Samples", "", f"![fixed-seed samples]({SAMPLES})", ""]
    lines += [
        "## Files",
        "",
        f"`{MANIFEST}` (the spec that rebuilds the net, genserve's `ModelManifest`), `{WEIGHTS}` (the weights, "
        "safetensors). `POST /v1/models` imports this bundle into another genserve deployment.",
        "",
    ]
    return "\n".join(lines)


def read(content: bytes, limits: UploadLimits) -> tuple[ModelManifest, dict[str, torch.Tensor]]:
    """A bundle's manifest and weights, checked against each other (see the module's docstring)."""
    zf, infos = open_zip(content, limits)
    with zf:
        entries = {info.filename: info for info in infos}
        for needed in (MANIFEST, WEIGHTS):
            if needed not in entries:
                raise Invalid(f"the bundle has no {needed}", field=(*FILE, needed))
        raw_manifest = read_entry(zf, entries[MANIFEST])
        raw_weights = read_entry(zf, entries[WEIGHTS])
    manifest = _manifest(raw_manifest)
    tensors = _weights(raw_weights)
    _match(manifest, tensors)
    return manifest, tensors


def _manifest(raw: bytes) -> ModelManifest:
    try:
        data: Any = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return ModelManifest.model_validate(data)
    except (ValueError, ValidationError, TypeError, KeyError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else str(exc)
        raise Invalid(
            f"{MANIFEST} is not a genserve model manifest ({str(detail)[:200]})", field=(*FILE, MANIFEST)
        ) from None


def _weights(raw: bytes) -> dict[str, torch.Tensor]:
    try:
        return load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise Invalid(
            f"{WEIGHTS} is not a readable safetensors file ({str(exc)[:200]})", field=(*FILE, WEIGHTS)
        ) from None


def _match(manifest: ModelManifest, tensors: dict[str, torch.Tensor]) -> None:
    """The weights are exactly those of the net the manifest describes, and finite."""
    try:
        expected = build_model(manifest.spec).state_dict()
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise Invalid(
            f"{MANIFEST} describes a net genserve cannot build ({str(exc)[:200]})", field=(*FILE, MANIFEST)
        ) from None
    missing = sorted(expected.keys() - tensors.keys())
    extra = sorted(tensors.keys() - expected.keys())
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:5])}"] if extra else []
        )
        raise Invalid(f"{WEIGHTS} does not match the manifest's net: {'; '.join(parts)}", field=(*FILE, WEIGHTS))
    for name, want in expected.items():
        got = tensors[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise Invalid(
                f"tensor {name} is {tuple(got.shape)} {got.dtype}; the manifest's net has {tuple(want.shape)} "
                f"{want.dtype}",
                field=(*FILE, WEIGHTS, name),
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise Invalid(f"tensor {name} holds NaN or infinite values", field=(*FILE, WEIGHTS, name))
