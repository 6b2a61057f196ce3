"""Log-densities, in nats, summed over dimensions: what a VAE's likelihood and its bounds are made of (the served
models' scores and the training objectives both use them)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log Bern(x; sigmoid(logits)) summed over all but the first dimension: (n, ...) -> (n,).

    For x in [0, 1] this is the usual (continuous-target) cross-entropy of VAEs on grayscale images.
    """
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, diag(exp(logvar))) summed over all but the first dimension: (n, ...) -> (n,)."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar)).flatten(1).sum(1)


def diag_gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))) over the last dimension: (..., L) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) over the last dimension: (..., L) -> (...)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def diag_gaussian_log_density_each(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu_k, diag(exp(logvar_k))) for each of K Gaussians: z (N, L), mu and logvar (K, L) -> (N, K).

    The squared distances to every component come from two matrix products rather than an (N, K, L) difference
    tensor, which at K = 500 components and a few thousand latents would take gigabytes (a VampPrior's mixture)."""
    inv_var = torch.exp(-logvar)  # (K, L)
    quad = z.pow(2) @ inv_var.T - 2 * z @ (mu * inv_var).T + (mu.pow(2) * inv_var).sum(1)  # (N, K)
    return -0.5 * (z.shape[-1] * LOG_2PI + logvar.sum(1) + quad)
