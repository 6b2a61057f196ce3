"""What the VAE and GAN nets share: `ModelSpec`, the `GenerativeModel` base, and the MLP and conv bodies.

Nets work in "net space": points standardized per dimension, images channel-first (N, C, H, W) and, for GANs,
scaled to [-1, 1]. The served models take and return data space (points as given, images in [0, 1] channel-last);
the affine map between the two lives in the model's buffers, so a stored model needs nothing but its spec and weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.config import Activation, Architecture, Decoder, DecoderOutput, Family, Kind

MLP_DEPTH = 3  # hidden layers of every MLP
LABEL_DIM = 16  # size of the learned label embedding of conditional nets
MAX_CONV_STAGES = 5  # the conv nets halve (encoders) or double (decoders) the image at most this many times
MIN_CONV_BOTTOM = 4  # px: extra stages beyond two are added while the smallest feature map stays >= this
CONV_CHANNEL_MULT_CAP = 8  # stage i has width * 2**i channels, at most width * this


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a served net from its weights (JSON-serializable)."""

    family: Family
    kind: Kind
    sample_shape: tuple[int, ...]  # points (D,); images (H, W) grayscale or (H, W, C) color
    latent_dim: int
    num_classes: int  # 0 = unconditional
    architecture: Architecture
    width: int  # MLP hidden units or conv base channels
    decoder: Decoder | None = None  # VAE only
    mlp_depth: int = MLP_DEPTH
    label_dim: int = LABEL_DIM
    conv_stages: int = 0  # 0 for MLPs
    activation: Activation = "default"  # of the MLP hidden layers; see `mlp`
    latent_categories: int = 0  # GAN generators: K > 0 bins per latent coordinate; see `Generator`
    latent_bin_positions: bool = False  # GAN generators with K > 0: each coordinate's position inside its bin too
    latent_binned_dims: int = 0  # GAN generators with K > 0: only the first this many coordinates binned; 0 = all
    latent_bin_scales: bool = False  # GAN generators with 0 < B < L: a scale and shift of the rest per first bin
    latent_bin_noise: bool = False  # GAN point generators, L - B = D: the rest is output noise of a width per bin
    latent_labels: int = 0  # unconditional GAN generators: K > 0 labels drawn from the latent; see `Generator`
    vamp_components: int = 0  # VAEs: K > 0 pseudo-inputs of a VampPrior; see `VAE`
    decoder_output: DecoderOutput = "mean"  # VAEs: what `decode` gives, E[x|z] or the most likely x; see `VAE`

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sample_shape"] = list(self.sample_shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["sample_shape"] = tuple(int(s) for s in kw["sample_shape"])
        return cls(**kw)

    @property
    def channels(self) -> int:
        """Image channels (1 for grayscale); 0 for points."""
        if self.kind == "points":
            return 0
        return self.sample_shape[2] if len(self.sample_shape) == 3 else 1

    @property
    def net_shape(self) -> tuple[int, ...]:
        """Shape of one sample in net space: (D,) or (C, H, W)."""
        if self.kind == "points":
            return (int(math.prod(self.sample_shape)),)
        return (self.channels, self.sample_shape[0], self.sample_shape[1])

    @property
    def features(self) -> int:
        return int(math.prod(self.net_shape))

    @property
    def label_classes(self) -> int:
        """The labels the nets take: a conditional model's classes, or those an unconditional generator draws."""
        return self.num_classes or self.latent_labels

    @property
    def cond_dim(self) -> int:
        return self.label_dim if self.label_classes else 0


def conv_stages_for(sample_shape: tuple[int, ...]) -> int:
    """Two halvings, then more while both sides stay even and the smaller one >= MIN_CONV_BOTTOM px.

    8x8 -> 2 (bottom 2x2), 28x28 -> 2 (7x7), 16x16 -> 2 (4x4), 32x32 -> 3 (4x4), 64x64 -> 4 (4x4).
    """
    h, w = sample_shape[:2]
    n = 2
    while n < MAX_CONV_STAGES:
        f = 2 ** (n + 1)
        if h % f or w % f or min(h, w) // f < MIN_CONV_BOTTOM:
            break
        n += 1
    return n


def stage_channels(width: int, stages: int) -> list[int]:
    """Channels after each encoder stage (decoders use them in reverse)."""
    return [width * 2 ** min(i, int(math.log2(CONV_CHANNEL_MULT_CAP))) for i in range(stages)]


def group_norm(channels: int) -> nn.GroupNorm:
    """Normalization without batch statistics, so a sample never depends on the rest of its batch."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class GenerativeModel(nn.Module):
    """Base of the served models: a map from (latent, label) to a sample in data space."""

    data_loc: Tensor
    data_scale: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        # net = (data - loc) / scale, per dimension for points, one scalar for images
        n = spec.features if spec.kind == "points" else 1
        self.register_buffer("data_loc", torch.zeros(n))
        self.register_buffer("data_scale", torch.ones(n))
        self.embed = nn.Embedding(spec.label_classes, spec.label_dim) if spec.label_classes else None

    def set_data_transform(self, loc: Tensor, scale: Tensor) -> None:
        self.data_loc.copy_(loc)
        self.data_scale.copy_(scale)

    def to_net(self, x: Tensor) -> Tensor:
        """Data space (n, *sample_shape) -> net space (n, *net_shape)."""
        x = (x - self.data_loc) / self.data_scale
        if self.spec.kind == "points":
            return x.reshape(x.shape[0], -1)
        if x.dim() == 3:
            return x.unsqueeze(1)  # (n, H, W) -> (n, 1, H, W)
        return x.permute(0, 3, 1, 2).contiguous()  # (n, H, W, C) -> (n, C, H, W)

    def from_net(self, t: Tensor) -> Tensor:
        """Net space -> data space (images clamped to [0, 1])."""
        if self.spec.kind == "images":
            t = t.squeeze(1) if len(self.spec.sample_shape) == 2 else t.permute(0, 2, 3, 1).contiguous()
        x = t * self.data_scale + self.data_loc
        if self.spec.kind == "images":
            return x.clamp(0.0, 1.0)
        return x.reshape(x.shape[0], *self.spec.sample_shape)

    def log_det_data_to_net(self) -> Tensor:
        """log |d net / d data| per sample: turns densities in net space into densities in data space."""
        s = self.data_scale.log()
        return -(s.sum() if s.numel() > 1 else s.sum() * self.spec.features)

    def condition(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Concatenate the label embedding to z (conditional nets); z (n, L) -> (n, L + label_dim)."""
        if self.embed is None:
            return z
        return torch.cat([z, self.embed(required_labels(labels))], dim=1)

    def generate(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """z (n, latent_dim), labels (n,) int64 or None -> samples (n, *sample_shape) in data space."""
        raise NotImplementedError

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generate(z, labels)


def required_labels(labels: Tensor | None, what: str = "model") -> Tensor:
    """A conditional net's labels, or the error that says they are missing (a caller's mistake, not the data's)."""
    if labels is None:
        raise ValueError(f"this {what} is conditional: labels are required")
    return labels


def he_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear layer with He init (He et al. 2015) and zero bias.

    PyTorch's default init shrinks activations by about sqrt(6) per ReLU layer, so an untrained MLP generator
    puts all its samples within a few hundredths of one point; with He init they start spread like the
    standardized data, and small GANs stop hopping between modes in their first hundreds of steps.
    """
    layer = nn.Linear(in_features, out_features)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


class GatedLinear(nn.Module):
    """h = (W x + b) * sigmoid(V x + c): the gated unit of Dauphin et al. 2017, as in the MLP VAEs of Tomczak &
    Welling 2018 (VampPrior); (n, in_features) -> (n, out_features)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.linear(x).chunk(2, dim=1)
        return h * torch.sigmoid(gate)


def mlp(
    in_features: int, width: int, depth: int, act: type[nn.Module], activation: Activation = "default"
) -> nn.Sequential:
    """depth x (Linear -> activation); (n, in_features) -> (n, width).

    activation "default" uses `act` (ReLU or LeakyReLU(0.2), He init); "elu" and "silu" replace it; "gated" makes
    every layer a `GatedLinear`.
    """
    layers: list[nn.Module] = []
    for i in range(depth):
        n_in = in_features if i == 0 else width
        if activation == "gated":
            layers.append(GatedLinear(n_in, width))
        elif activation == "default":
            layers += [he_linear(n_in, width), _act(act)]
        else:
            layers += [nn.Linear(n_in, width), nn.ELU() if activation == "elu" else nn.SiLU()]
    return nn.Sequential(*layers)


def _act(act: type[nn.Module]) -> nn.Module:
    return nn.LeakyReLU(0.2) if act is nn.LeakyReLU else act()


class ConvDown(nn.Module):
    """Strided convs: (n, C, H, W) -> (n, ch[-1] * H/2^s * W/2^s) features, LeakyReLU, no normalization
    (so that it can serve as a discriminator with gradient penalties or spectral norm)."""

    def __init__(self, in_channels: int, spec: ModelSpec) -> None:
        super().__init__()
        ch = stage_channels(spec.width, spec.conv_stages)
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [nn.Conv2d(in_channels if i == 0 else ch[i - 1], c, 4, 2, 1), nn.LeakyReLU(0.2)]
            # stage i: (n, c, H / 2^(i+1), W / 2^(i+1))
        self.net = nn.Sequential(*layers)
        h, w = spec.sample_shape[:2]
        f = 2**spec.conv_stages
        self.out_features = ch[-1] * (h // f) * (w // f)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)  # (n, out_features)


class ConvUp(nn.Module):
    """A linear layer to the bottom feature map, then transposed convs that double it back to the image size:
    (n, in_features) -> (n, C, H, W) raw outputs. GroupNorm + ReLU between layers."""

    def __init__(self, in_features: int, spec: ModelSpec) -> None:
        super().__init__()
        ch = stage_channels(spec.width, spec.conv_stages)
        h, w = spec.sample_shape[:2]
        f = 2**spec.conv_stages
        self.bottom = (ch[-1], h // f, w // f)
        self.fc = nn.Sequential(nn.Linear(in_features, math.prod(self.bottom)), nn.ReLU())
        layers: list[nn.Module] = []
        for i in reversed(range(spec.conv_stages)):
            out = ch[i - 1] if i > 0 else ch[0]
            layers += [nn.ConvTranspose2d(ch[i], out, 4, 2, 1), group_norm(out), nn.ReLU()]
            # (n, out, H / 2^i, W / 2^i)
        layers.append(nn.Conv2d(ch[0], spec.channels, 3, 1, 1))  # (n, C, H, W)
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(self.fc(h).view(-1, *self.bottom))  # (n, ch[-1], H/2^s, W/2^s) -> (n, C, H, W)


class MLPUp(nn.Module):
    """(n, in_features) -> (n, *net_shape) raw outputs."""

    def __init__(self, in_features: int, spec: ModelSpec) -> None:
        super().__init__()
        self.net = mlp(in_features, spec.width, spec.mlp_depth, nn.ReLU, spec.activation)  # (n, width)
        self.out = he_linear(spec.width, spec.features)  # (n, features)
        self.net_shape = spec.net_shape

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.net(h)).view(-1, *self.net_shape)


def up_body(in_features: int, spec: ModelSpec) -> nn.Module:
    return ConvUp(in_features, spec) if spec.architecture == "conv" else MLPUp(in_features, spec)
