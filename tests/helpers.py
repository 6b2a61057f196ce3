"""Small builders of real input files (PNGs in zips, CSVs, npz) and HTTP helpers for the tests."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zipfile
from typing import Any

import httpx
import numpy as np
from PIL import Image

TERMINAL = {"succeeded", "failed", "canceled"}
# The torch device the tests run models on: the CPU, unless GENSERVE_TEST_DEVICE names another. On a GPU machine
# `GENSERVE_TEST_DEVICE=cuda` runs the suite through the CUDA paths (pinned copies, CUDA graphs, the worker's fork).
DEVICE = os.environ.get("GENSERVE_TEST_DEVICE", "cpu")


def store_files(store_dir: Any) -> list[str]:
    """The files a request may have changed in a local store. Loading a model to check a request against it may keep
    its padding rule under calibrations/: a cache of what any load finds, not the request's doing."""
    from pathlib import Path

    root = Path(store_dir)
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "calibrations"
    )


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def bars(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size grayscale image with a bright horizontal or vertical bar at a random place."""
    img = (rng.random((size, size)) * 40).astype(np.uint8)
    k = int(rng.integers(1, size - 2))
    if kind == "h":
        img[k : k + 2, :] = 230
    else:
        img[:, k : k + 2] = 230
    return img


def bars_zip(n_per_class: int = 40, size: int = 8, seed: int = 0) -> bytes:
    """A .zip of PNGs with a folder per class ("horizontal", "vertical")."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for folder, kind in (("horizontal", "h"), ("vertical", "v")):
            for i in range(n_per_class):
                zf.writestr(f"{folder}/{i:03d}.png", png(bars(kind, size, rng)))
    return buf.getvalue()


def blobs_csv(n: int = 400, seed: int = 0) -> bytes:
    """Two labeled Gaussian blobs in 2D, as CSV with a label column."""
    rng = np.random.default_rng(seed)
    lines = ["x,y,label"]
    for i in range(n):
        c = i % 2
        x, y = rng.normal([-2.0 if c == 0 else 2.0, 0.0], 0.3)
        lines.append(f"{x:.5f},{y:.5f},{'left' if c == 0 else 'right'}")
    return ("\n".join(lines) + "\n").encode()


def decode_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def decode_b64_png(data: str) -> Image.Image:
    return decode_png(base64.b64decode(data))


def sse_events(client: httpx.Client, url: str, timeout_s: float = 120.0) -> list[tuple[str, dict[str, Any]]]:
    """Read a server-sent event stream to its end: (event, data) of each event."""
    return [(event, data) for _, event, data in sse_entries(client, url, timeout_s=timeout_s)]


def sse_entries(
    client: httpx.Client, url: str, headers: dict[str, str] | None = None, timeout_s: float = 120.0
) -> list[tuple[str | None, str, dict[str, Any]]]:
    """Read a server-sent event stream to its end: (id, event, data) of each event (id None when it has none)."""
    out: list[tuple[str | None, str, dict[str, Any]]] = []
    event, event_id = "message", None
    with client.stream("GET", url, headers=headers, timeout=timeout_s) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[len("id: ") :]
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                out.append((event_id, event, json.loads(line[len("data: ") :])))
                event, event_id = "message", None
    return out


def wait_for_training(client: httpx.Client, training_id: str, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"/v1/trainings/{training_id}").json()
        if body["status"] in TERMINAL:
            return body
        time.sleep(0.2)
    raise AssertionError(f"training {training_id} did not end within {timeout_s}s: {body}")


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """A problem+json response with this status that names `field` (a substring of an error's loc)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == status
    if field is not None:
        locs = [".".join(str(p) for p in e["loc"]) for e in body.get("errors", [])]
        assert any(field in loc for loc in locs), (field, locs, body)
    return body


def store_untrained_model(
    store_dir: Any,
    *,
    family: str = "gan",
    kind: str = "points",
    shape: tuple[int, ...] = (2,),
    classes: list[str] | None = None,
    width: int = 16,
    latent_dim: int = 4,
    dataset: str = "upload",
    init_seed: int = 0,
    latent_labels: bool = False,
    vamp_components: int = 0,
    decoder_output: str = "mean",
) -> str:
    """A freshly initialized (untrained) model stored as the worker stores models: fast, for serving tests. With
    `classes`, a conditional model, or with `latent_labels` an unconditional GAN that draws those labels itself.
    With `vamp_components`, a VAE whose VampPrior's pseudo-inputs are random, so that its components differ."""
    import torch

    from models.nets import VAE, build_model, spec_for
    from models.recipes import resolve_config
    from models.store import ArtifactStore
    from models.training import TrainResult
    from worker.jobs import store_model

    num_classes = len(classes or [])
    request = {"family": family, "conditional": num_classes > 0 and not latent_labels, "width": width}
    config = resolve_config(
        {
            **request,
            "latent_dim": latent_dim,
            "seed": 0,
            **({"latent_labels": True} if latent_labels else {}),
            **({"vamp_components": vamp_components} if vamp_components else {}),
            **({"decoder_output": decoder_output} if family == "vae" else {}),
        },
        dataset_id=dataset,
        kind=kind,
        sample_shape=shape,
        num_classes=num_classes,
    )  # type: ignore[arg-type]
    spec = spec_for(config, kind, shape, num_classes)  # type: ignore[arg-type]
    torch.manual_seed(init_seed)
    model = build_model(spec)
    if isinstance(model, VAE) and model.pseudo_inputs is not None:
        model.set_pseudo_inputs(torch.rand_like(model.pseudo_inputs))
    model.eval()
    record = training_record(dataset, config.to_dict(), classes)
    return store_model(ArtifactStore(store_dir), record, TrainResult(model, spec, {}, 0, False))


def training_record(dataset: str, config: dict[str, Any], classes: list[str] | None) -> Any:
    """The record a worker would hold for a training of `config` on `dataset` (to store models trained in-process
    the way the worker stores them)."""
    from models.store import new_id, utcnow
    from worker.state.records import TrainingRecord

    return TrainingRecord(
        id=new_id("tr"),
        status="running",
        request={"dataset": dataset},
        config=config,
        classes=classes,
        created_at=utcnow(),
    )
