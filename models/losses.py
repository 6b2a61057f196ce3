"""Training objectives of the VAE and the GAN, each citing the paper it comes from (the log-densities they are made
of are in `models.densities`, which the served models use too).

In nats. Per-sample terms are summed over dimensions and averaged over the minibatch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from models.config import GanLoss


# --- VAE -------------------------------------------------------------------------------------------------------
def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per sample and latent dimension, (n, L) (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def neg_elbo(log_px: Tensor, kl: Tensor, *, kl_weight: float = 1.0, free_bits: float = 0.0) -> Tensor:
    """Negative evidence lower bound, nats per sample (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

    log_px (n,): log p(x|z) of one posterior sample; kl (n, L) from `gaussian_kl`. `kl_weight` is beta
    (Higgins et al. 2017) times the warm-up factor. `free_bits` > 0 applies the free-bits objective of Kingma et al.
    2016 ("Improved Variational Inference with Inverse Autoregressive Flow", App. C.8): the minibatch-averaged KL
    of each latent dimension is not pushed below `free_bits` nats, which keeps latents from collapsing early.
    """
    kl_per_dim = kl.mean(0)  # (L,)
    if free_bits > 0:
        kl_per_dim = kl_per_dim.clamp(min=free_bits)
    return -log_px.mean() + kl_weight * kl_per_dim.sum()


def iwae_loss(log_w: Tensor) -> Tensor:
    """Negative importance-weighted bound, nats per sample (Burda et al. 2015, "Importance Weighted Autoencoders").

    log_w (k, n): log p(x, z_i) - log q(z_i|x) for k posterior samples per input. Tighter than the ELBO for k > 1.
    """
    k = log_w.shape[0]
    return -(torch.logsumexp(log_w, dim=0) - math.log(k)).mean()


# --- GAN -------------------------------------------------------------------------------------------------------
def d_loss(real: Tensor, fake: Tensor, kind: GanLoss) -> Tensor:
    """Discriminator loss from its outputs (logits / critic values) on real and generated data.

    ns: the original minimax D loss, -log D(x) - log(1 - D(G(z))) (Goodfellow et al. 2014, "Generative
    Adversarial Nets"). hinge: relu(1 - D(x)) + relu(1 + D(G(z))) (Lim & Ye 2017, "Geometric GAN"; Miyato et al.
    2018). wgan-gp: the critic loss D(G(z)) - D(x) (Arjovsky et al. 2017); add `gradient_penalty`.
    """
    if kind == "ns":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "wgan-gp":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def g_loss(fake: Tensor, kind: GanLoss) -> Tensor:
    """Generator loss from the discriminator's outputs on generated data.

    ns: the non-saturating -log D(G(z)) (Goodfellow et al. 2014, Sec. 3), strong gradients early in training.
    hinge and wgan-gp: -D(G(z)) (Lim & Ye 2017; Gulrajani et al. 2017).
    """
    if kind == "ns":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wgan-gp"):
        return -fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def _grad_sq_norms(out: Tensor, inputs: Tensor) -> Tensor:
    """||d out_j / d inputs||^2 per discriminator output j (a PacGAN output covers several input rows)."""
    (grad,) = torch.autograd.grad(out.sum(), inputs, create_graph=True)
    return grad.reshape(out.shape[0], -1).pow(2).sum(1)


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """(||grad D(x_hat)|| - 1)^2 at random interpolates of real and fake samples (Gulrajani et al. 2017,
    "Improved Training of Wasserstein GANs", Eq. 3). Multiply by the penalty weight lambda."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, generator=generator)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    norms = (_grad_sq_norms(critic(x_hat), x_hat) + 1e-12).sqrt()  # eps: sqrt has no gradient at 0
    return (norms - 1.0).pow(2).mean()


def r1_penalty(critic: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """(1/2) E ||grad D(x)||^2 on real data (Mescheder et al. 2018, "Which Training Methods for GANs do actually
    Converge?", Eq. 9). Multiply by gamma."""
    x = real.detach().requires_grad_(True)
    return 0.5 * _grad_sq_norms(critic(x), x).mean()


def mmd2(fake: Tensor, real: Tensor, bandwidth: float) -> Tensor:
    """Unbiased squared MMD between two samples with the RBF kernel exp(-||a - b||^2 / (2 h^2)) (Gretton et al.
    2012, "A Kernel Two-Sample Test", Eq. 3), as a generator loss (Li et al. 2015, "Generative Moment Matching
    Networks"; Dziugaite et al. 2015).

    Why beside the adversarial loss: at a bandwidth of one mode's width its fake-fake term pushes apart samples that
    sit closer than the data's do, which a discriminator that cannot resolve the inside of a mode never asks for.
    fake (n, D), real (m, D), flattened rows; n, m >= 2.
    """
    fake, real = fake.flatten(1), real.flatten(1)
    n, m = fake.shape[0], real.shape[0]
    scale = -0.5 / bandwidth**2

    def kernel(a: Tensor, b: Tensor) -> Tensor:  # squared distances without a square root: finite at a = b
        sq = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T
        return torch.exp(scale * sq.clamp(min=0))

    k_ff, k_rr, k_fr = kernel(fake, fake), kernel(real, real), kernel(fake, real)
    within_fake = (k_ff.sum() - k_ff.diagonal().sum()) / (n * (n - 1))
    within_real = (k_rr.sum() - k_rr.diagonal().sum()) / (m * (m - 1))
    return within_fake + within_real - 2 * k_fr.mean()


def mode_seeking(fake: Tensor, z: Tensor, eps: float = 1e-5) -> Tensor:
    """The mode-seeking term of MSGAN (Mao et al. 2019, "Mode Seeking Generative Adversarial Networks for Diverse
    Image Synthesis", Eq. 3, as their code computes it): 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2| + eps), the
    batch's first half against its second, drawn for the same labels. A generator that maps different latents to
    the same image (one image per class) pays for it; one whose images vary as much as their latents do, little.
    fake (n, ...), z (n, L), n even.
    """
    half = fake.shape[0] // 2
    images = (fake[:half] - fake[half : 2 * half]).abs().mean()
    latents = (z[:half] - z[half : 2 * half]).abs().mean()
    return 1.0 / (images / latents + eps)
