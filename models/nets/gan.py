"""The GAN (Goodfellow et al. 2014): a generator (the served model) and a discriminator used only in training.

Conv nets follow DCGAN (Radford et al. 2016) with GroupNorm instead of BatchNorm in the generator, so that a sample
never depends on the rest of its batch. Conditional nets: the label embedding is concatenated to z in the generator
(Mirza & Osindero 2014); the discriminator takes it concatenated to the input (MLP) or through a projection
(conv; Miyato & Koyama 2018). PacGAN (Lin et al. 2018): the discriminator judges `pack` samples at once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from models.nets.layers import ConvDown, GenerativeModel, ModelSpec, he_linear, mlp, required_labels, up_body


class Generator(GenerativeModel):
    """z (n, L) [+ label] -> sample. Images leave the net through tanh ([-1, 1]), mapped to [0, 1] by `from_net`.

    With `spec.latent_categories` = K > 0 the latent also has a discrete part: each coordinate z_j falls in one of
    K equiprobable bins, c_j = floor(K * Phi(z_j)), and the one-hot codes of all L bins join z at the input. A net
    from a connected latent space must stretch its output across the gaps between separated modes ("bridges"); at
    a bin edge it can jump instead, in any latent direction. Served latents stay plain Gaussian vectors, so seeds
    and batching are unchanged.

    With `spec.latent_bin_positions` each coordinate's position inside its bin, K * Phi(z_j) - c_j, also joins the
    input, rescaled to zero mean and unit variance. Without it a fine bin covers so little of z that the net treats
    it as a constant and draws a few points per bin (collapse inside the modes, issue 24); with it every bin's
    samples can fill a region.

    With `spec.latent_binned_dims` = B > 0 only the first B coordinates have bins (and positions); the others enter
    as plain continuous inputs. One binned coordinate with a bin per mode keeps the modes apart as the default
    recipes do, while the rest of z spreads the samples inside each mode.

    With `spec.latent_bin_scales` (needs 0 < B < L) each bin c of the first coordinate also has a learned scale s_c
    and shift m_c of the continuous coordinates, which enter as m_c + s_c * z (DeLiGAN, Gurumurthy et al. 2017:
    a mixture of Gaussians as the latent). A linear first layer can only add a bin's code to the continuous part;
    a bin that would carry some of its samples out of its mode (a bridge) can narrow its noise here instead.

    With `spec.latent_bin_noise` (points; the L - B unbinned coordinates as many as the data's) no latent coordinate
    enters the net as a raw value: the net sees the bins alone (and the positions in them, if asked for), and the
    unbinned coordinates are noise added to its output, scaled by a learned width per bin c of the first coordinate
    and per data coordinate, w_c * eps. No continuous input can carry a bin's samples across a gap between modes (a
    bridge; with the raw binned coordinate as an input, the net swung each bin's point toward the next mode near
    the bin's edges), and the noise spreads them inside the mode: a mixture of K Gaussians whose centres a net
    draws. The widths start at K^(-1/D), about the spacing of K points spread over the standardized data.

    With `spec.latent_labels` = K > 0 (an unconditional model of labeled data) the generator is built like a
    conditional one, but draws each sample's label from its own latent: label c where Phi(z_1) falls in c's slice of
    [0, 1), the slices sized by the classes' shares of the training data (`label_cdf`, set by the training). The
    discriminator judges (image, label) pairs, real ones with the data's labels, as for a conditional GAN; the
    served model takes z alone. An unconditional discriminator has to find every class's features by itself, which
    on small color images it did not (BENCHMARKS.md, colored shapes); the labels tell it.
    """

    label_cdf: Tensor | None

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        k = spec.latent_labels  # the classes' cumulative shares, equal until `set_label_shares`
        self.register_buffer("label_cdf", torch.arange(1, k + 1, dtype=torch.float32) / k if k else None)
        self.categories = spec.latent_categories
        self.positions = spec.latent_bin_positions and self.categories > 0
        self.binned = (spec.latent_binned_dims or spec.latent_dim) if self.categories else 0  # B coordinates
        self.bin_scale: nn.Parameter | None = None
        self.bin_shift: nn.Parameter | None = None
        if spec.latent_bin_scales:  # (K, L - B) each: the continuous coordinates' scale and shift per first bin
            self.bin_scale = nn.Parameter(torch.ones(self.categories, spec.latent_dim - self.binned))
            self.bin_shift = nn.Parameter(torch.zeros(self.categories, spec.latent_dim - self.binned))
        self.bin_log_width: nn.Parameter | None = None
        if spec.latent_bin_noise:  # (K, D): each first bin's noise width per data coordinate, in net space
            noise = spec.latent_dim - self.binned
            if not self.categories or noise != spec.features:
                raise ValueError(
                    "latent_bin_noise needs latent_categories > 0 and latent_dim - B = the data's features"
                )
            self.bin_log_width = nn.Parameter(torch.full((self.categories, noise), -math.log(self.categories) / noise))
        inputs = 0 if self.bin_log_width is not None else spec.latent_dim  # with noise: no raw z, only the bins
        dense = inputs + (self.binned if self.positions else 0) + spec.cond_dim
        self.body = up_body(dense + self.binned * self.categories, spec)  # (n, dense + B*K) -> (n, *net_shape)
        if self.categories:  # takes (n, dense + B): z, cond, [the positions in the bins], the bins
            _bin_input_layer(self.body, dense, self.categories)
        if spec.kind == "images":
            self.set_data_transform(torch.tensor([0.5]), torch.tensor([0.5]))  # net = 2 * data - 1

    def bins(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The discrete latent part of z (n, L): each binned coordinate's bin, int64 in [0, K), equiprobable under
        N(0, 1), and its position inside the bin, uniform on [0, 1); (n, B) each."""
        scaled = 0.5 * (1.0 + torch.erf(z[:, : self.binned] * 0.5**0.5)) * self.categories  # K * Phi(z), on [0, K]
        bins = scaled.long().clamp_(0, self.categories - 1)
        return bins, (scaled - bins).clamp_(0.0, 1.0)

    def bin_width_excess(self) -> Tensor | None:
        """How far the bins' noise widths have grown above where they started (K^(-1/D)): the sum over bins and
        coordinates of relu(log w - log w_start)^2; None without `latent_bin_noise`.

        Why (`g_bin_width_bound`): a bin left between modes early on can widen its noise until the tails reach a mode
        on either side, which the discriminator rewards over staying put, and then it never moves to a mode of its
        own (a bin of the grid's, BENCHMARKS.md). The start is about the spacing of K points over the standardized
        data, wider than a mode of a mixture with K modes, so a bin that fits its mode is never pulled on. A soft
        penalty, not a clamp: a clamped width has no gradient left to bring it back.
        """
        if self.bin_log_width is None:
            return None
        start = -math.log(self.categories) / self.bin_log_width.shape[1]
        return torch.relu(self.bin_log_width - start).pow(2).sum()

    def set_label_shares(self, shares: Tensor) -> None:
        """The classes' shares of the training data (K,), which `latent_label` draws labels by."""
        assert self.label_cdf is not None
        cdf = shares.double().cumsum(0) / shares.double().sum()
        self.label_cdf.copy_(cdf.to(self.label_cdf.dtype))

    def latent_label(self, z: Tensor) -> Tensor:
        """Each row's label, int64 (n,), drawn by its first latent coordinate: the class whose slice of the
        cumulative shares holds Phi(z_1). Comparisons and a sum, no search: every row alone, any batch size."""
        assert self.label_cdf is not None
        u = 0.5 * (1.0 + torch.erf(z[:, :1] * 0.5**0.5))  # (n, 1), uniform on [0, 1]
        return (u >= self.label_cdf[:-1]).sum(1)

    def forward_net(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Samples in net space (n, *net_shape): what the discriminator sees."""
        if labels is None and self.label_cdf is not None:
            labels = self.latent_label(z)
        if self.categories:
            bins, position = self.bins(z)
            if self.bin_scale is not None and self.bin_shift is not None:  # m_c + s_c * z on the continuous part
                first = bins[:, 0]
                continuous = self.bin_shift[first] + self.bin_scale[first] * z[:, self.binned :]
                z = torch.cat([z[:, : self.binned], continuous], dim=1)
        noise = None
        if self.bin_log_width is not None:  # no coordinate enters raw: the bins only, the rest output noise
            z, noise = z[:, :0], z[:, self.binned :]
        h = self.condition(z, labels)
        if self.categories:  # the bins, which `BinnedInput` reads as one-hot codes
            parts = [h, (position - 0.5) * 12**0.5] if self.positions else [h]  # unit variance
            h = torch.cat([*parts, bins.to(h.dtype)], dim=1)
        out = self.body(h)
        if noise is not None and self.bin_log_width is not None:
            return out + self.bin_log_width[bins[:, 0]].exp() * noise
        return torch.tanh(out) if self.spec.kind == "images" else out

    def generate(self, z: Tensor, labels: Tensor | None) -> Tensor:
        return self.from_net(self.forward_net(z, labels))


class BinnedInput(nn.Module):
    """The generator's first linear layer when its input ends in one-hot codes, without building them.

    The product of a one-hot row and the weight is one column of the weight: the dense columns go through a matmul,
    each code adds the column it names. Same function and parameters (the state dict is unchanged), fewer operations
    when K is large (bench/train_steps.py; BENCHMARKS.md has the step times).
    Input (n, dense + L): the dense columns, then each latent coordinate's bin in [0, K) (floats, exact below 2^24).
    """

    def __init__(self, linear: nn.Linear, dense: int, categories: int) -> None:
        super().__init__()
        self.weight, self.bias, self.dense, self.categories = linear.weight, linear.bias, dense, categories

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.linear(x[:, : self.dense], self.weight[:, : self.dense], self.bias)  # (n, out)
        bins = x[:, self.dense :].long()  # (n, L); coordinate j's K codes follow the dense columns at dense + j*K
        columns = bins + self.dense + torch.arange(bins.shape[1], device=x.device) * self.categories
        picked = self.weight.t().index_select(0, columns.flatten())  # (n * L, out)
        return h + picked.view(*columns.shape, -1).sum(1)


def _bin_input_layer(body: nn.Module, dense: int, categories: int) -> None:
    """Swap the body's first linear layer (the one that meets the latent) for a `BinnedInput` in its place."""
    name, linear = next((n, m) for n, m in body.named_modules() if isinstance(m, nn.Linear))
    parent, _, child = name.rpartition(".")
    setattr(body.get_submodule(parent), child, BinnedInput(linear, dense, categories))


class Discriminator(nn.Module):
    """Net-space samples (B, *net_shape) [+ labels (B,)] -> one logit per pack of `pack` samples, (B / pack,)."""

    frequencies: Tensor | None

    def __init__(
        self,
        spec: ModelSpec,
        *,
        pack: int = 1,
        spectral_norm: bool = False,
        fourier_features: int = 0,
        fourier_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.pack = pack
        self.embed: nn.Embedding | None = None
        # MLP only: random Fourier features (Tancik et al. 2020), sin and cos of 2 pi x B, B ~ N(0, scale^2), drawn
        # once from the training's RNG and fixed. An MLP on raw coordinates resolves detail on the scale of its
        # input's spread much sooner than detail a hundred times finer, like the width of one mode of a 2-D mixture
        # in standardized units; these features give it that resolution from the start.
        use = fourier_features and spec.architecture != "conv"
        self.register_buffer(
            "frequencies", torch.randn(spec.features, fourier_features) * fourier_scale if use else None
        )
        if spec.architecture == "conv":
            self.body: nn.Module = ConvDown(pack * spec.channels, spec)  # (B/m, m*C, H, W) -> (B/m, F)
            features = self.body.out_features
            if spec.label_classes:
                self.embed = nn.Embedding(spec.label_classes, features)  # projection (Miyato & Koyama 2018)
        else:
            if spec.label_classes:
                self.embed = nn.Embedding(spec.label_classes, spec.label_dim)  # concatenated to the input
            in_features = pack * (spec.features + (2 * fourier_features if use else 0) + spec.cond_dim)
            self.body = mlp(
                in_features, spec.width, spec.mlp_depth, nn.LeakyReLU, spec.activation
            )  # (B/m, m*(D+E)) -> (B/m, width)
            features = spec.width
        self.out = nn.Linear(features, 1) if spec.architecture == "conv" else he_linear(features, 1)  # (B/m, 1)
        if spectral_norm:
            for m in list(self.modules()):
                if isinstance(m, nn.Linear | nn.Conv2d):
                    _spectral_norm(m)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        b, m = x.shape[0], self.pack
        if b % m:
            raise ValueError(f"batch of {b} is not a multiple of pack {m}")
        if self.embed is not None:
            labels = required_labels(labels, "discriminator")
        if self.spec.architecture == "conv":
            h = self.body(x.reshape(b // m, m * x.shape[1], *x.shape[2:]))  # (B/m, F)
            out = self.out(h).squeeze(1)  # (B/m,)
            if self.embed is not None:
                proj = self.embed(labels).view(b // m, m, -1).sum(1)  # (B/m, F)
                out = out + (proj * h).sum(1)
            return out
        x = x.flatten(1)  # (B, D)
        if self.frequencies is not None:
            angles = (2 * torch.pi) * (x @ self.frequencies)  # (B, m)
            x = torch.cat([x, angles.sin(), angles.cos()], dim=1)  # (B, D + 2m)
        if self.embed is not None:
            x = torch.cat([x, self.embed(labels)], dim=1)  # (B, D + E)
        return self.out(self.body(x.reshape(b // m, -1))).squeeze(1)  # (B/m, m*(D+E)) -> (B/m,)
