"""Baselines for bench/serve.py, served by the same uvicorn: a plain FastAPI app with
- POST /floor: the same trivial endpoint as genserve's /_bench/floor, without genserve's middleware;
- POST /samples: a hand-written, unbatched sampling endpoint (forward pass and PNG encoding inline, per request).

    BENCH_STORE=... BENCH_MODEL=mdl_... uvicorn bench.plain_app:app
"""

from __future__ import annotations

import json
import os

import torch
from fastapi import FastAPI, Request, Response

from app.serving.encoding import png_base64_list
from models.nets import build_model
from models.store import ArtifactStore

app = FastAPI()
store = ArtifactStore(os.environ["BENCH_STORE"])
manifest = store.get_model(os.environ["BENCH_MODEL"])
model = build_model(manifest.spec)
model.load_state_dict(store.load_model_tensors(manifest.id))
model.eval()


@app.post("/floor")
async def floor(request: Request, size: int = 512) -> Response:
    await request.body()
    return Response(b'{"pad":"' + b"x" * (size - 10) + b'"}', media_type="application/json")


@app.post("/samples")
async def samples(request: Request) -> Response:
    body = await request.json()
    n, seed = int(body.get("n", 1)), int(body["seed"])
    z = torch.randn(n, manifest.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        images = model.generate(z, None).numpy()
    return Response(json.dumps({"images": png_base64_list(images), "seed": seed}), media_type="application/json")
