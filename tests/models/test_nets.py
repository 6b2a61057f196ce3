"""The nets and losses on their own: shapes, data-space ranges, state-dict round trips, batch independence."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load, save

from models import losses
from models.config import TrainConfig, check_data
from models.errors import Invalid
from models.nets import VAE, Discriminator, Generator, ModelSpec, build_discriminator, build_model, spec_for
from models.nets.gan import BinnedInput
from models.nets.layers import conv_stages_for, up_body

SHAPES = [("points", (2,)), ("images", (8, 8)), ("images", (28, 28)), ("images", (16, 16, 3))]
NUM_CLASSES = 3


def make(family: str, kind: str, shape: tuple[int, ...], conditional: bool = False, **kw: object):
    options: dict[str, object] = {
        "latent_dim": 4,
        "architecture": "conv" if kind == "images" else "mlp",
        "width": 8,
        "decoder": "bernoulli" if kind == "images" else "gaussian",
    }
    config = TrainConfig(family=family, conditional=conditional, **(options | kw))  # type: ignore[arg-type]
    torch.manual_seed(0)
    labeled = conditional or bool(kw.get("latent_labels"))
    spec = spec_for(config, kind, shape, NUM_CLASSES if labeled else 0)  # type: ignore[arg-type]
    return config, spec, build_model(spec).eval()


def inputs(spec: ModelSpec, n: int = 5) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, spec.latent_dim, generator=g)
    labels = torch.arange(n) % spec.num_classes if spec.num_classes else None
    return z, labels


@pytest.mark.parametrize("family", ["vae", "gan"])
@pytest.mark.parametrize(("kind", "shape"), SHAPES)
@pytest.mark.parametrize("conditional", [False, True])
def test_generate_shapes_and_range(family: str, kind: str, shape: tuple[int, ...], conditional: bool) -> None:
    _, spec, model = make(family, kind, shape, conditional)
    z, labels = inputs(spec)
    out = model.generate(z, labels)
    assert out.shape == (5, *shape)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if kind == "images":
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("family", ["vae", "gan"])
@pytest.mark.parametrize(("kind", "shape"), [SHAPES[0], SHAPES[3]])
def test_state_dict_round_trip_through_safetensors(family: str, kind: str, shape: tuple[int, ...]) -> None:
    _, spec, model = make(family, kind, shape, conditional=True)
    if kind == "points":  # a data transform that is not the identity must travel with the weights
        model.set_data_transform(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]))
    blob = save(model.state_dict())  # refuses shared or non-contiguous storage
    m2 = build_model(ModelSpec.from_dict(spec.to_dict()))
    m2.load_state_dict(load(blob))
    m2.eval()
    z, labels = inputs(spec)
    assert torch.equal(m2.generate(z, labels), model.generate(z, labels))


def test_spec_to_dict_is_json() -> None:
    import json

    _, spec, _ = make("vae", "images", (16, 16, 3), conditional=True)
    d = json.loads(json.dumps(spec.to_dict()))
    assert ModelSpec.from_dict({**d, "unknown_future_field": 1}) == spec


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_samples_do_not_depend_on_their_batch(family: str) -> None:
    _, spec, model = make(family, "images", (8, 8))
    z, _ = inputs(spec, n=16)
    alone = torch.cat([model.generate(z[i : i + 1], None) for i in range(4)])
    assert torch.allclose(model.generate(z, None)[:4], alone, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "shape", "activation"),
    [("points", (2,), "default"), ("points", (2,), "gated"), ("images", (8, 8), "default")],
)
@pytest.mark.parametrize("conditional", [False, True])
def test_binned_input_is_the_one_hot_product(
    kind: str, shape: tuple[int, ...], activation: str, conditional: bool
) -> None:
    _, spec, model = make("gan", kind, shape, conditional=conditional, latent_categories=5, activation=activation)
    # The body holds the parameters a one-hot input layer would, under the same names (stored weights still load)
    plain = up_body(spec.latent_dim * (1 + 5) + spec.cond_dim, spec)
    assert {k: v.shape for k, v in model.body.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    layer = next(m for m in model.body.modules() if isinstance(m, BinnedInput | torch.nn.Linear))
    assert isinstance(layer, BinnedInput)  # the first layer met is the swapped one
    # ... and computes the product with the one-hot codes, with the same gradients
    z, labels = inputs(spec, n=64)
    dense = model.condition(z, labels).detach().requires_grad_()
    bins, _ = model.bins(z)
    out = layer(torch.cat([dense, bins.float()], dim=1))
    one_hot = torch.nn.functional.one_hot(bins, 5).float().flatten(1)
    ref = torch.nn.functional.linear(torch.cat([dense, one_hot], dim=1), layer.weight, layer.bias)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [dense, layer.weight, layer.bias], g)
    ref_grads = torch.autograd.grad(ref, [dense, layer.weight, layer.bias], g)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_latent_bins_are_equiprobable_and_steer_the_generator() -> None:
    _, spec, model = make("gan", "points", (2,), conditional=True, latent_categories=8)
    assert isinstance(model, Generator) and spec.latent_categories == 8
    z = torch.randn(80_000, spec.latent_dim, generator=torch.Generator().manual_seed(3))
    bins, position = model.bins(z)
    assert bins.shape == position.shape == z.shape
    for j in range(spec.latent_dim):  # every coordinate: 8 bins of 10,000 rows each, within ~5 std of a binomial
        counts = torch.bincount(bins[:, j], minlength=8)
        assert counts.numel() == 8 and (counts - 10_000).abs().max() < 500
    edges = torch.tensor([[-5.0, -1e-4, 1e-4, 5.0]]).T.expand(4, spec.latent_dim)
    assert model.bins(edges)[0].tolist() == [[0] * 4, [3] * 4, [4] * 4, [7] * 4]
    # The output jumps at a bin edge (here z_1 = 0) and moves continuously within a bin
    rows = torch.full((3, spec.latent_dim), 0.3)
    rows[:, 1] = torch.tensor([-1e-4, 1e-4, 3e-4])
    out = model.generate(rows, torch.zeros(3, dtype=torch.int64))
    assert (out[1] - out[0]).norm() > 100 * (out[2] - out[1]).norm()
    # ... a VAE ignores the option, and the spec round-trips (older specs without the field load with K = 0)
    assert make("vae", "points", (2,), latent_categories=8)[1].latent_categories == 0
    d = spec.to_dict()
    assert ModelSpec.from_dict(d) == spec
    del d["latent_categories"]
    assert ModelSpec.from_dict(d).latent_categories == 0


def test_bin_positions_are_uniform_and_spread_a_bin() -> None:
    _, spec, model = make("gan", "points", (2,), latent_categories=4, latent_bin_positions=True)
    assert isinstance(model, Generator) and spec.latent_bin_positions
    z = torch.randn(40_000, spec.latent_dim, generator=torch.Generator().manual_seed(5))
    bins, position = model.bins(z)
    # Inside every bin the position is uniform on [0, 1): mean 1/2, variance 1/12 (within ~5 std of their noise)
    for k in range(4):
        inside = position[bins == k]
        assert inside.min() >= 0 and inside.max() < 1
        assert abs(inside.mean() - 0.5) < 5 * (1 / 12 / inside.numel()) ** 0.5
        assert abs(inside.var() - 1 / 12) < 0.005
    # The position is an input of its own: one more dense column per latent coordinate, read by the first layer
    first, plain = (
        next(m for m in g.body.modules() if isinstance(m, BinnedInput))
        for g in (model, make("gan", "points", (2,), latent_categories=4)[2])
    )
    assert first.dense == 2 * spec.latent_dim == plain.dense + spec.latent_dim
    assert first.weight.shape[1] == plain.weight.shape[1] + spec.latent_dim
    # ... so that two latents in one bin that differ only slightly in z differ in the output as their positions do
    rows = torch.zeros(2, spec.latent_dim)
    rows[1, 0] = 0.05  # same bins (Phi(0.05) * 4 = 2.08), positions 0 and 0.08
    assert model.bins(rows)[0][0].tolist() == model.bins(rows)[0][1].tolist()
    assert not torch.equal(model.generate(rows, None)[0], model.generate(rows, None)[1])
    # The option needs bins, and older specs without the field load without it
    with pytest.raises(Invalid, match="latent_bin_positions"):
        TrainConfig.from_dict({"family": "gan", "latent_bin_positions": True})
    d = spec.to_dict()
    del d["latent_bin_positions"]
    assert not ModelSpec.from_dict(d).latent_bin_positions


def test_binned_dims_bin_the_first_coordinates_only() -> None:
    """latent_binned_dims = 1: the first coordinate has bins and a position, the second is a plain input; bins and
    positions come from the first coordinate alone."""
    _, spec, model = make(
        "gan", "points", (2,), latent_dim=3, latent_categories=8, latent_bin_positions=True, latent_binned_dims=1
    )
    assert isinstance(model, Generator) and spec.latent_binned_dims == 1
    first = next(m for m in model.body.modules() if isinstance(m, BinnedInput))
    assert first.dense == 3 + 1 and first.weight.shape[1] == 3 + 1 + 8  # z, one position, one coordinate's codes
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    bins, position = model.bins(z)
    assert bins.shape == position.shape == (64, 1)
    other = z.clone()
    other[:, 1:] = torch.randn(64, 2)  # the unbinned coordinates move; the bins stay
    assert torch.equal(model.bins(other)[0], bins)
    assert not torch.equal(model.generate(other, None), model.generate(z, None))  # ... and still reach the output
    for bad, field in (({"latent_binned_dims": 4}, "latent_binned_dims"), ({"latent_categories": 0}, "latent_binned")):
        options = {"family": "gan", "latent_dim": 3, "latent_categories": 8, "latent_binned_dims": 1} | bad
        with pytest.raises(Invalid, match=field):
            TrainConfig.from_dict(options)
    d = spec.to_dict()
    del d["latent_binned_dims"]
    assert ModelSpec.from_dict(d).latent_binned_dims == 0  # older specs: every coordinate binned


def test_bin_scales_scale_and_shift_the_continuous_coordinates_per_first_bin() -> None:
    """latent_bin_scales: the continuous coordinates enter as m_c + s_c * z, c the first coordinate's bin; at their
    initial values (s = 1, m = 0) the net is the one without them."""
    options = {"latent_dim": 3, "latent_categories": 4, "latent_binned_dims": 1}
    _, spec, model = make("gan", "points", (2,), latent_bin_scales=True, **options)
    assert isinstance(model, Generator) and spec.latent_bin_scales
    assert model.bin_scale is not None and model.bin_shift is not None and model.bin_scale.shape == (4, 2)
    torch.manual_seed(0)
    _, _, plain = make("gan", "points", (2,), **options)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("bin_")})
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.generate(z, None), plain.generate(z, None))
        model.bin_scale[2] = 0.0  # bin 2 ignores its continuous coordinates: only its first coordinate matters
        model.bin_shift[2] = 0.5
    bins = model.bins(z)[0][:, 0]
    moved = z.clone()
    moved[:, 1:] = torch.randn(64, 2)
    with torch.no_grad():
        same = model.generate(z, None) == model.generate(moved, None)
        expected = z.clone()
        expected[bins == 2, 1:] = 0.5
        assert torch.allclose(model.generate(z, None)[bins == 2], plain.generate(expected, None)[bins == 2])
    assert same[bins == 2].all() and not same[bins != 2].all()
    learned = {id(p) for p in model.parameters()}
    assert id(model.bin_shift) in learned and id(model.bin_scale) in learned  # the optimizer trains them
    for bad in (
        {"latent_binned_dims": 0},
        {"latent_binned_dims": 3},
        {"latent_categories": 0, "latent_binned_dims": 0},
    ):
        with pytest.raises(Invalid, match="latent_bin_scales"):
            TrainConfig.from_dict({"family": "gan", **options, "latent_bin_scales": True, **bad})
    d = spec.to_dict()
    del d["latent_bin_scales"]
    assert not ModelSpec.from_dict(d).latent_bin_scales  # older specs load without it


def test_bin_noise_adds_the_unbinned_coordinates_to_the_output_at_a_width_per_first_bin() -> None:
    """latent_bin_noise: the unbinned coordinates never reach the net; a sample is the net's point for its bins plus
    w_c * eps, so moving eps moves the sample by exactly that, and no eps can move it to another bin's point."""
    options = {"latent_dim": 3, "latent_categories": 4, "latent_binned_dims": 1}
    _, spec, model = make("gan", "points", (2,), latent_bin_noise=True, **options)
    assert isinstance(model, Generator) and spec.latent_bin_noise
    width = model.bin_log_width
    assert width is not None and width.shape == (4, 2)
    assert torch.allclose(width.exp(), torch.full((4, 2), 4 ** (-1 / 2)))  # K^(-1/D): K points' spacing
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    centre = z.clone()
    centre[:, 1:] = 0.0
    bins = model.bins(z)[0][:, 0]
    with torch.no_grad():
        width[2] = torch.tensor([0.0, 1.0]).log()  # bin 2: no noise in x, unit noise in y (net space)
        moved = (model.generate(z, None) - model.generate(centre, None)) / model.data_scale
        assert torch.allclose(moved, width[bins].exp() * z[:, 1:], atol=1e-5)
        assert (moved[bins == 2, 0] == 0).all()
        inside = centre.clone()  # each first coordinate moved within its bin: its raw value never enters the net
        u = torch.special.ndtr(z[:, 0]) * 4
        inside[:, 0] = torch.special.ndtri((u.floor() + 0.5) / 4)
        assert torch.equal(model.bins(inside)[0], model.bins(centre)[0])
        assert torch.allclose(model.generate(inside, None), model.generate(centre, None))
    assert id(width) in {id(p) for p in model.parameters()}  # the optimizer trains the widths
    for bad in (
        {"latent_binned_dims": 0},
        {"latent_binned_dims": 3},
        {"latent_categories": 0, "latent_binned_dims": 0},
    ):
        with pytest.raises(Invalid, match="latent_bin_noise"):
            TrainConfig.from_dict({"family": "gan", **options, "latent_bin_noise": True, **bad})
    config = TrainConfig.from_dict({"family": "gan", **options, "latent_bin_noise": True})
    for kind, shape in (("points", (3,)), ("images", (8, 8))):  # the noise must match the data's coordinates
        with pytest.raises(Invalid, match="latent_bin_noise"):
            check_data(config, kind, shape, 0, 100)  # type: ignore[arg-type]
    check_data(config, "points", (2,), 0, 100)
    d = spec.to_dict()
    del d["latent_bin_noise"]
    assert not ModelSpec.from_dict(d).latent_bin_noise  # older specs load without it


def test_bin_width_bound_pulls_only_widths_above_their_start() -> None:
    """g_bin_width_bound: the penalty is zero at and below the starting width K^(-1/D), grows with the square of
    the log excess above it, and its gradient narrows only the widths above the start."""
    options = {"latent_dim": 3, "latent_categories": 4, "latent_binned_dims": 1, "latent_bin_noise": True}
    _, _, model = make("gan", "points", (2,), **options)
    assert isinstance(model, Generator) and model.bin_log_width is not None
    width = model.bin_log_width
    excess = model.bin_width_excess()
    assert excess is not None and excess.item() == 0.0
    start = -math.log(4) / 2
    with torch.no_grad():
        width[1, 0] = start + 0.5  # above: pulled back
        width[2, 1] = start - 1.0  # below: left alone
    excess = model.bin_width_excess()
    assert excess is not None and excess.item() == pytest.approx(0.25)
    excess.backward()
    assert width.grad is not None
    assert width.grad[1, 0].item() == pytest.approx(1.0)  # d/dw (w - start)^2 = 2 * 0.5: gradient descent narrows it
    assert width.grad.count_nonzero().item() == 1
    _, _, plain = make("gan", "points", (2,), latent_dim=3)
    assert isinstance(plain, Generator) and plain.bin_width_excess() is None
    with pytest.raises(Invalid, match="g_bin_width_bound needs latent_bin_noise"):
        TrainConfig.from_dict({"family": "gan", **options, "latent_bin_noise": False, "g_bin_width_bound": 10.0})


def test_conditional_generate_uses_labels() -> None:
    for family in ("vae", "gan"):
        _, spec, model = make(family, "points", (2,), conditional=True)
        z = torch.randn(1, spec.latent_dim).expand(3, -1)
        out = model.generate(z, torch.tensor([0, 1, 2]))
        assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
        with pytest.raises(ValueError, match="labels"):
            model.generate(z, None)


@pytest.mark.parametrize(("kind", "shape"), [SHAPES[0], SHAPES[2]])
def test_vae_interfaces(kind: str, shape: tuple[int, ...]) -> None:
    _, spec, model = make("vae", kind, shape, conditional=True)
    assert isinstance(model, VAE)
    z, labels = inputs(spec, n=6)
    x = model.generate(z, labels)
    mu, logvar = model.encode(x, labels)
    assert mu.shape == logvar.shape == (6, spec.latent_dim)
    assert model.reconstruct(x, labels).shape == x.shape
    g = torch.Generator().manual_seed(0)
    elbo = model.log_likelihood_bound(x, labels, 1, generator=g)
    iw = model.log_likelihood_bound(x, labels, 64, generator=g)
    assert elbo.shape == iw.shape == (6,)
    assert torch.isfinite(iw).all()
    assert iw.mean() >= elbo.mean() - 0.1  # the IWAE bound is tighter (up to Monte Carlo noise)


@pytest.mark.parametrize(("kind", "shape"), [SHAPES[2], SHAPES[3]])
def test_vae_mode_output_is_the_most_likely_image(kind: str, shape: tuple[int, ...]) -> None:
    """decoder_output "mode": every pixel channel is 1 where the mean is above 1/2, else 0, in samples and
    reconstructions alike; the weights and the likelihood are the mean model's."""
    _, spec, mean_model = make("vae", kind, shape, conditional=True)
    _, mode_spec, mode_model = make("vae", kind, shape, conditional=True, decoder_output="mode")
    assert mode_spec.decoder_output == "mode" and ModelSpec.from_dict(mode_spec.to_dict()) == mode_spec
    mode_model.load_state_dict(mean_model.state_dict())
    z, labels = inputs(spec, n=6)
    mean, mode = mean_model.generate(z, labels), mode_model.generate(z, labels)
    assert set(mode.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mode, (mean > 0.5).float())
    assert torch.equal(mode_model.reconstruct(mean, labels), (mean_model.reconstruct(mean, labels) > 0.5).float())
    g = torch.Generator().manual_seed(0)
    before = mean_model.log_likelihood_bound(mode, labels, 4, generator=g)
    g.manual_seed(0)
    assert torch.equal(mode_model.log_likelihood_bound(mode, labels, 4, generator=g), before)


def test_log_likelihood_is_in_data_space() -> None:
    """Rescaling the data by s shifts the log-likelihood by -D log s: densities are per data unit, not net unit."""
    _, spec, model = make("vae", "points", (2,))
    z, _ = inputs(spec, n=4)
    x = model.generate(z, None)
    g = torch.Generator().manual_seed(0)
    before = model.log_likelihood_bound(x, None, 1, generator=g)
    model.set_data_transform(torch.zeros(2), torch.full((2,), 10.0))
    g.manual_seed(0)
    after = model.log_likelihood_bound(x * 10, None, 1, generator=g)
    assert torch.allclose(after, before - 2 * math.log(10.0), atol=1e-4)


@pytest.mark.parametrize(("kind", "shape"), [SHAPES[0], SHAPES[2], SHAPES[3]])
@pytest.mark.parametrize("pack", [1, 2])
def test_discriminator_packs_and_conditions(kind: str, shape: tuple[int, ...], pack: int) -> None:
    config, spec, gen = make("gan", kind, shape, conditional=True, pack=pack, spectral_norm=True)
    assert isinstance(gen, Generator)
    d = build_discriminator(spec, config)
    assert isinstance(d, Discriminator)
    z, labels = inputs(spec, n=4)
    out = d(gen.forward_net(z, labels), labels)
    assert out.shape == (4 // pack,)
    save(d.state_dict())  # spectral norm state is storable in a checkpoint


def test_conv_stages() -> None:
    assert [conv_stages_for(s) for s in [(8, 8), (28, 28), (16, 16), (32, 32), (64, 64), (12, 20)]] == [
        2,
        2,
        2,
        3,
        4,
        2,
    ]


def test_losses_basics() -> None:
    assert torch.equal(losses.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, 3))
    log_w = torch.randn(1, 5)
    assert torch.allclose(losses.iwae_loss(log_w), -log_w.mean())
    # free bits: a dimension below the floor costs exactly the floor
    kl = torch.tensor([[0.1, 2.0]])
    assert losses.neg_elbo(torch.zeros(1), kl, free_bits=0.5).item() == pytest.approx(2.5)
    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-3.0, -2.0])
    for kind in ("ns", "hinge", "wgan-gp"):
        assert losses.d_loss(real, fake, kind) < losses.d_loss(fake, real, kind)
        assert losses.g_loss(real, kind) < losses.g_loss(fake, kind)
    x = torch.randn(4, 2)
    lin = torch.nn.Linear(2, 1)
    penalty = losses.r1_penalty(lambda t: lin(t).squeeze(1), x)
    assert penalty.item() == pytest.approx(0.5 * lin.weight.pow(2).sum().item(), rel=1e-5)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.6, 0.8]]))  # unit gradient norm: zero penalty
    gp = losses.gradient_penalty(lambda t: lin(t).squeeze(1), x, torch.randn(4, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-6)


def test_mmd_tells_a_collapsed_sample_and_pushes_it_apart() -> None:
    """g_mmd_weight: the unbiased MMD^2 is near zero for two samples of one distribution, clearly positive for a
    sample collapsed onto a few points at the kernel's scale, and its gradient spreads such a sample out."""
    torch.manual_seed(0)
    real, other = torch.randn(400, 2) * 0.02, torch.randn(400, 2) * 0.02
    same = losses.mmd2(other, real, bandwidth=0.02).item()
    collapsed = (torch.randn(8, 2) * 0.02).repeat(50, 1).requires_grad_(True)  # 400 samples on 8 points
    gap = losses.mmd2(collapsed, real, bandwidth=0.02)
    assert abs(same) < 0.01 < 0.1 < gap.item()
    (grad,) = torch.autograd.grad(gap, collapsed)
    assert torch.isfinite(grad).all()  # exact duplicates, as a lookup table makes, still get a gradient
    x = (collapsed.detach() + 1e-4 * torch.randn(400, 2)).requires_grad_(True)  # ties broken
    opt = torch.optim.Adam([x], lr=0.002)
    for _ in range(50):
        opt.zero_grad()
        losses.mmd2(x, real, bandwidth=0.02).backward()
        opt.step()
    assert losses.mmd2(x, real, bandwidth=0.02).item() < 0.01  # the points spread back out to the data's scale
    assert 0.8 < float(x.detach().std() / real.std()) < 1.25
    with pytest.raises(Invalid, match="g_mmd_weight"):
        TrainConfig.from_dict({"family": "gan", "architecture": "conv", "g_mmd_weight": 1.0})


def test_mode_seeking_penalizes_latents_that_land_together() -> None:
    """g_mode_seeking: the term is large when different latents give one sample, small when samples vary with them."""
    torch.manual_seed(0)
    z = torch.randn(64, 8)
    same = torch.randn(1, 1, 8, 8).repeat(64, 1, 1, 1) + 1e-3 * torch.randn(64, 1, 8, 8)  # one image per class
    varied = torch.randn(64, 1, 8, 8)
    assert losses.mode_seeking(same, z).item() > 100 * losses.mode_seeking(varied, z).item()
    assert losses.mode_seeking(varied, z).item() == pytest.approx(1.0, rel=0.1)  # images vary like their latents


def test_fourier_features_give_the_discriminator_fine_detail() -> None:
    """d_fourier_features: the MLP discriminator sees sin and cos of 2 pi x B besides x; B is fixed (a buffer, so a
    checkpoint restores it) and drawn from the training's RNG; conv nets refuse the option."""
    config, spec, _ = make("gan", "points", (2,), d_fourier_features=16, d_fourier_scale=5.0, pack=2)
    torch.manual_seed(1)
    d = build_discriminator(spec, config)
    assert d.frequencies is not None and d.frequencies.shape == (2, 16)
    assert 2.0 < float(d.frequencies.std()) < 8.0  # drawn at the scale asked for
    assert "frequencies" in d.state_dict()
    x = torch.randn(8, 2)
    assert d(x).shape == (4,)
    # Two inputs 1/100 of the data's spread apart: the features differ by far more than the coordinates do
    near = torch.tensor([[0.3, -0.2], [0.31, -0.2]])
    angles = 2 * torch.pi * (near @ d.frequencies)
    assert (angles.sin()[0] - angles.sin()[1]).abs().max() > 5 * 0.01
    plain = build_discriminator(make("gan", "points", (2,), pack=2)[1], make("gan", "points", (2,), pack=2)[0])
    assert plain.frequencies is None and "frequencies" not in plain.state_dict()
    with pytest.raises(Invalid, match="d_fourier_features"):
        TrainConfig.from_dict({"family": "gan", "architecture": "conv", "d_fourier_features": 8})


def test_latent_labels_come_from_the_first_latent_coordinate() -> None:
    """An unconditional generator with latent_labels: its label embedding is a conditional one's, each row's label
    is the class whose cumulative share holds Phi(z_1), row by row, and the shares travel with the weights."""
    _, spec, model = make("gan", "images", (8, 8), latent_labels=True)
    assert isinstance(model, Generator) and spec.num_classes == 0 and spec.latent_labels == NUM_CLASSES
    model.set_label_shares(torch.tensor([1.0, 2.0, 1.0]))  # cdf 0.25, 0.75, 1
    z = torch.tensor([[-1.0, 0.0, 0, 0], [0.0, 5, 0, 0], [0.5, 0, 0, 0], [2.0, 0, 0, 0]])  # Phi: .16 .5 .69 .98
    assert model.latent_label(z).tolist() == [0, 1, 1, 2]
    with torch.no_grad():
        alone = torch.cat([model.generate(z[i : i + 1], None) for i in range(4)])
        together = model.generate(z, None)
        as_conditional = model.generate(z, torch.tensor([0, 1, 1, 2]))
    torch.testing.assert_close(alone, together)
    assert torch.equal(together, as_conditional)
    state = load(save(model.state_dict()))
    fresh = build_model(ModelSpec.from_dict(spec.to_dict()))
    fresh.load_state_dict(state)
    assert isinstance(fresh, Generator) and fresh.latent_label(z).tolist() == [0, 1, 1, 2]
    d = spec.to_dict()
    del d["latent_labels"]
    assert ModelSpec.from_dict(d).latent_labels == 0  # older specs load without it
    disc = build_discriminator(spec, TrainConfig(family="gan", architecture="conv"))
    assert disc.embed is not None and disc.embed.num_embeddings == NUM_CLASSES  # it judges (image, label) pairs


def test_a_vamp_prior_is_sampled_exactly_from_standard_normal_noise() -> None:
    """vamp_components: the prior is the mixture of the pseudo-inputs' posteriors (log_prior against the mixture
    summed by hand), refreshed into buffers at eval(); served noise maps to a component with probability 1/K and,
    within it, to N(mu_k, diag(exp(logvar_k))) exactly (Box-Muller on the first two coordinates), row by row."""
    _, spec, model = make("vae", "images", (8, 8), vamp_components=2)
    assert isinstance(model, VAE) and model.pseudo_inputs is not None
    model.set_pseudo_inputs(torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)]))
    model.eval()
    mu, logvar = model.prior_components()
    assert model.prior_mu is not None and model.prior_logvar is not None
    assert torch.equal(model.prior_mu, mu) and torch.equal(model.prior_logvar, logvar)
    with torch.no_grad():  # two components far apart, so that each sample's component is plain to see
        model.prior_mu.copy_(torch.tensor([[-50.0, 0, 0, 0], [50.0, 0, 0, 0]]))
        model.prior_logvar.copy_(torch.log(torch.tensor([[1.0, 4.0, 1.0, 0.25], [0.25, 1.0, 9.0, 1.0]])))
    noise = torch.randn(200_000, 4, generator=torch.Generator().manual_seed(0))
    z = model.prior_sample(noise, None)
    for k, side in enumerate((z[:, 0] < 0, z[:, 0] > 0)):
        assert abs(side.float().mean().item() - 0.5) < 0.005  # each component at 1/K
        eps = (z[side] - model.prior_mu[k]) / (0.5 * model.prior_logvar[k]).exp()
        assert eps.mean(0).abs().max() < 0.02 and (eps.std(0) - 1).abs().max() < 0.02
        assert torch.corrcoef(eps.T).fill_diagonal_(0).abs().max() < 0.02  # independent coordinates
    with torch.no_grad():
        alone = torch.cat([model.generate(noise[i : i + 1], None) for i in range(6)])
        torch.testing.assert_close(alone, model.generate(noise[:6], None))
    points = torch.randn(7, 4)
    by_hand = torch.logsumexp(
        torch.stack([-0.5 * (math.log(2 * math.pi) + lv + (points - m).pow(2) / lv.exp()).sum(1) for m, lv in
                     zip(model.prior_mu, model.prior_logvar, strict=True)]), 0
    ) - math.log(2)  # fmt: skip
    torch.testing.assert_close(model.log_prior(points, None), by_hand)
    state = load(save(model.state_dict()))
    fresh = build_model(ModelSpec.from_dict(spec.to_dict()))
    fresh.load_state_dict(state)
    assert isinstance(fresh, VAE) and torch.equal(fresh.prior_sample(noise[:5], None), z[:5])
    d = spec.to_dict()
    del d["vamp_components"]
    assert ModelSpec.from_dict(d).vamp_components == 0  # older specs load without it
    plain = make("vae", "images", (8, 8))[2]
    assert isinstance(plain, VAE) and torch.equal(plain.prior_sample(noise[:5], None), noise[:5])


def test_a_conditional_vamp_prior_draws_from_the_requested_class_components() -> None:
    """A conditional VampPrior: K pseudo-inputs per class, each encoded with its class's label; p(z|y) is the
    mixture of class y's K components, and a sample of class y comes from one of them."""
    _, spec, model = make("vae", "images", (8, 8), conditional=True, vamp_components=2)
    assert isinstance(model, VAE) and model.pseudo_inputs is not None and len(model.pseudo_inputs) == 2 * NUM_CLASSES
    pseudo_labels = model.pseudo_labels()
    assert pseudo_labels is not None and pseudo_labels.tolist() == [0, 0, 1, 1, 2, 2]
    model.eval()
    assert model.prior_mu is not None and model.prior_logvar is not None
    with torch.no_grad():  # components far apart along the first two coordinates: class c, component j at (10c, 10j)
        model.prior_mu.copy_(torch.tensor([[10.0 * c, 10.0 * j, 0, 0] for c in range(3) for j in range(2)]))
        model.prior_logvar.zero_()
    noise = torch.randn(30_000, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(len(noise)) % NUM_CLASSES
    z = model.prior_sample(noise, labels)
    assert torch.equal(((z[:, 0] + 5) // 10).long(), labels)  # the class's own components only
    assert abs(float((z[:, 1] > 5).double().mean()) - 0.5) < 0.02  # each of them at 1/K
    points, classes = torch.randn(5, 4) * 5, torch.tensor([0, 1, 2, 1, 0])
    mu, logvar = model.prior_mu.view(3, 2, 4), model.prior_logvar.view(3, 2, 4)
    by_hand = torch.stack(
        [
            torch.logsumexp(-0.5 * (math.log(2 * math.pi) + logvar[c] + (p - mu[c]).pow(2) / logvar[c].exp()).sum(1), 0)
            - math.log(2)
            for p, c in zip(points, classes, strict=True)
        ]
    )
    torch.testing.assert_close(model.log_prior(points, classes), by_hand)
    with torch.no_grad():
        alone = torch.cat([model.generate(noise[i : i + 1], labels[i : i + 1]) for i in range(6)])
        torch.testing.assert_close(alone, model.generate(noise[:6], labels[:6]))
    with pytest.raises(ValueError, match="labels are required"):
        model.generate(noise[:2], None)
