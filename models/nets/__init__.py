"""Networks: `ModelSpec` describes a served net, `build_model` rebuilds it, `build_discriminator` pairs a GAN's."""

from __future__ import annotations

from models.config import Kind, TrainConfig
from models.nets.gan import Discriminator, Generator
from models.nets.layers import GenerativeModel, ModelSpec, conv_stages_for
from models.nets.vae import VAE

__all__ = [
    "VAE",
    "Discriminator",
    "GenerativeModel",
    "Generator",
    "ModelSpec",
    "build_discriminator",
    "build_model",
    "spec_for",
]


def spec_for(config: TrainConfig, kind: Kind, sample_shape: tuple[int, ...], num_classes: int) -> ModelSpec:
    """The spec of the net a (resolved) config trains on data of this shape."""
    shape = tuple(int(s) for s in sample_shape)
    return ModelSpec(
        family=config.family,
        kind=kind,
        sample_shape=shape,
        latent_dim=config.latent_dim,
        num_classes=num_classes if config.conditional else 0,
        architecture=config.architecture,
        width=config.width,
        decoder=config.decoder if config.family == "vae" else None,
        conv_stages=conv_stages_for(shape) if config.architecture == "conv" else 0,
        mlp_depth=config.depth,
        activation=config.activation,
        latent_categories=config.latent_categories if config.family == "gan" else 0,
        latent_bin_positions=config.latent_bin_positions if config.family == "gan" else False,
        latent_binned_dims=config.latent_binned_dims if config.family == "gan" else 0,
        latent_bin_scales=config.latent_bin_scales if config.family == "gan" else False,
        latent_bin_noise=config.latent_bin_noise if config.family == "gan" else False,
        latent_labels=num_classes if config.family == "gan" and config.latent_labels else 0,
        vamp_components=config.vamp_components if config.family == "vae" else 0,
        decoder_output=config.decoder_output if config.family == "vae" else "mean",
    )


def build_model(spec: ModelSpec) -> GenerativeModel:
    """The served model of a spec: the whole VAE, or the GAN's generator."""
    if spec.family == "vae":
        return VAE(spec)
    if spec.family == "gan":
        return Generator(spec)
    raise ValueError(f"unknown model family {spec.family!r}")


def build_discriminator(spec: ModelSpec, config: TrainConfig) -> Discriminator:
    """The training-only discriminator of a GAN, with the config's packing and spectral norm."""
    return Discriminator(
        spec,
        pack=config.pack,
        spectral_norm=config.spectral_norm,
        fourier_features=config.d_fourier_features,
        fourier_scale=config.d_fourier_scale,
    )
