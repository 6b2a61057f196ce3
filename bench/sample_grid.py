"""A picture of a saved generator's samples, as the API draws them: `n` samples from the latents of one seed
(`models.sampling.latents`), tiled 10 to a row. For the README's sample grids, from a generator that
`python -m bench.quality ... --save DIR` kept (DIR/NAME.json, its spec, and DIR/NAME.safetensors, its weights).

    python -m bench.sample_grid DIR/NAME OUT.png [--seed 1] [--n 100] [--scale 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.nets import build_model
from models.nets.layers import ModelSpec
from models.plots import grid_png
from models.sampling import latents, to_numpy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stem", type=Path, help="the saved generator, without .json / .safetensors")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--scale", type=int, default=2, help="pixels per image pixel")
    args = parser.parse_args()
    spec = ModelSpec.from_dict(json.loads(args.stem.with_suffix(".json").read_text()))
    model = build_model(spec)
    model.load_state_dict(load_file(f"{args.stem}.safetensors"))
    model.eval()
    labels = torch.arange(args.n) % spec.num_classes if spec.num_classes else None
    with torch.inference_mode():
        samples = to_numpy(model.generate(latents(args.seed, args.n, spec.latent_dim), labels))
    args.out.write_bytes(grid_png(samples, columns=args.columns, scale=args.scale))
    print(f"{args.out}: {args.n} samples of {args.stem.name}, seed {args.seed}")


if __name__ == "__main__":
    main()
