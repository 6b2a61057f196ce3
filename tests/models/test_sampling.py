"""Seeded, batch-invariant sampling: a request's rows do not depend on what shares their forward pass."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from models.nets import build_model, spec_for
from models.recipes import resolve_config
from models.sampling import InvariantForward, PaddingRule, latents, prepare_for_inference, slerp
from tests.helpers import DEVICE

CASES = [  # (dataset id, kind, sample shape, classes, family)
    ("mnist", "images", (28, 28), 0, "gan"),
    ("mnist", "images", (28, 28), 10, "vae"),
    ("digits", "images", (8, 8), 10, "gan"),
    ("ring2d", "points", (2,), 0, "vae"),
    ("ring2d", "points", (2,), 0, "gan"),
    ("moons2d", "points", (2,), 2, "gan"),
    ("upload", "images", (16, 16, 3), 0, "gan"),
    ("shapes", "images", (32, 32, 3), 4, "gan"),
    ("shapes", "images", (32, 32, 3), 4, "vae"),
]


def model_for(dataset: str, kind: str, shape: tuple[int, ...], classes: int, family: str) -> torch.nn.Module:
    config = resolve_config(
        {"family": family, "conditional": classes > 0, "seed": 0, "width": 16},
        dataset_id=dataset,
        kind=kind,
        sample_shape=shape,
        num_classes=classes,
    )  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = build_model(spec_for(config, kind, shape, classes))  # type: ignore[arg-type]
    return prepare_for_inference(model, torch.device(DEVICE))


def test_latents_depend_only_on_seed_and_n() -> None:
    assert torch.equal(latents(7, 5, 3), latents(7, 5, 3))
    assert not torch.equal(latents(7, 5, 3), latents(8, 5, 3))
    assert latents(7, 5, 3).dtype == torch.float32 and latents(7, 5, 3).shape == (5, 3)


def test_latents_equal_a_fresh_generators_whatever_ran_before_and_in_which_thread() -> None:
    def fresh(seed: int, n: int, d: int) -> torch.Tensor:
        gen = torch.Generator(device="cpu")
        gen.manual_seed(seed)
        return torch.randn(n, d, generator=gen)

    latents(3, 1000, 64)  # leaves the thread's generator far along its stream
    assert torch.equal(latents(9, 4, 16), fresh(9, 4, 16))
    with ThreadPoolExecutor(2) as pool:
        drawn = list(pool.map(lambda s: latents(s, 3, 8), range(50)))
    assert all(torch.equal(z, fresh(s, 3, 8)) for s, z in enumerate(drawn))


def test_slerp_starts_and_ends_at_the_ends() -> None:
    a, b = latents(1, 1, 8)[0], latents(2, 1, 8)[0]
    path = slerp(a, b, 5)
    assert path.shape == (5, 8)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[4]}-{c[3]}cls" for c in CASES])
def test_rows_are_identical_alone_and_in_any_batch(case: tuple) -> None:  # type: ignore[type-arg]
    model = model_for(*case)
    forward = InvariantForward(model, torch.device(DEVICE))
    classes = case[3]
    gen = torch.Generator().manual_seed(5)
    sizes = [1, 3, 1, 2, 7, 1, 17, 4, 1, 40]  # requests of different n, merged in one pass
    zs = [latents(100 + i, n, forward.latent_dim) for i, n in enumerate(sizes)]
    labels = [torch.randint(0, classes, (n,), generator=gen) if classes else None for n in sizes]
    merged = forward(torch.cat(zs), torch.cat(labels) if classes else None)  # type: ignore[arg-type]
    offset = 0
    for z, y in zip(zs, labels, strict=True):
        alone = forward(z, y)
        assert torch.equal(alone, merged[offset : offset + len(z)]), forward.rule
        offset += len(z)


def test_chunk_rule_runs_fixed_size_passes() -> None:
    model = model_for("ring2d", "points", (2,), 0, "gan")
    calls: list[int] = []
    first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    forward = InvariantForward(model, torch.device(DEVICE), PaddingRule(chunk=8))
    out = forward(latents(1, 19, forward.latent_dim), None)
    assert out.shape == (19, 2) and calls == [8, 8, 8]


def test_linear_padding_hooks_come_off_when_the_rule_changes() -> None:
    model = model_for("ring2d", "points", (2,), 0, "gan")
    forward = InvariantForward(model, torch.device(DEVICE), PaddingRule(linear_min_rows=4))
    seen: list[int] = []
    first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    forward(latents(1, 1, forward.latent_dim), None)
    forward.use(PaddingRule())
    forward(latents(1, 1, forward.latent_dim), None)
    assert seen == [4, 1]


@pytest.mark.slow
def test_compiled_forward_runs_fixed_chunks_and_stays_invariant() -> None:
    model = model_for("ring2d", "points", (2,), 0, "gan")
    forward = InvariantForward(model, torch.device(DEVICE), compile=True)
    assert forward.compile and forward.rule.chunk is not None  # one shape, one graph
    alone = forward(latents(1, 3, forward.latent_dim), None)
    merged = forward(torch.cat([latents(1, 3, forward.latent_dim), latents(2, 70, forward.latent_dim)]), None)
    assert torch.equal(alone, merged[:3])


def test_a_failing_compile_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = model_for("ring2d", "points", (2,), 0, "gan")
    forward = InvariantForward(model, torch.device(DEVICE), compile=True)
    assert not forward.compile
    assert forward(latents(1, 2, forward.latent_dim), None).shape == (2, 2)


def test_padding_rule_rounds_passes_up() -> None:
    rule = PaddingRule(linear_min_rows=16, multiple=2)
    assert [rule.rows_for(n) for n in (1, 2, 3, 64, 65)] == [2, 2, 4, 64, 66]
    assert PaddingRule(min_rows=4).rows_for(3) == 4 and PaddingRule(min_rows=4).rows_for(9) == 9
    assert rule.describe() == "linear_min_rows=16, multiple=2" and PaddingRule().describe() == "none"


def test_an_empty_chunked_pass_returns_no_rows() -> None:
    model = model_for("ring2d", "points", (2,), 0, "gan")
    forward = InvariantForward(model, torch.device(DEVICE), PaddingRule(chunk=8))
    assert forward(torch.zeros(0), None).shape == (0, 2)


def test_an_empty_pass_returns_no_rows() -> None:
    forward = InvariantForward(model_for("ring2d", "points", (2,), 0, "vae"), torch.device(DEVICE))
    assert forward(torch.zeros(0), None).shape[0] == 0
