"""Sample-quality metrics: pure functions of tensors (and of a model, for the likelihood bound).

- `mode_metrics`: PacGAN's mode coverage on Gaussian mixtures (Lin et al. 2018, Sec. 5; after Srivastava et al.
  2017, VEEGAN): modes captured, share of high-quality samples, reverse KL of the mode histogram to uniform.
- `energy_distance`, `mmd_rbf`: two-sample distances between generated and held-out samples.
- `frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID),
  here in the features of a classifier trained on the dataset (`models.classifier`).
- `iw_log_likelihood`: the importance-weighted bound on log p(x) of a VAE (Burda et al. 2015).
- `label_accuracy`: the share of (conditional) samples a classifier assigns to the requested class.
- `mean_pairwise_distance`, `knn_precision_recall`: how varied samples are (per class, against the real class), which
  label accuracy cannot see: a generator that draws one image per class scores 100% there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

HQ_STD_THRESHOLD = 3.0  # PacGAN: a sample is high quality within 3 standard deviations of its nearest mean
MMD_BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)  # RBF kernel widths, in units of the pooled per-dimension std


def mode_metrics(
    samples: Tensor | np.ndarray,
    means: Tensor | np.ndarray,
    std: float,
    *,
    threshold: float = HQ_STD_THRESHOLD,
) -> dict[str, float]:
    """Mode coverage of samples (n, D) from a mixture of K isotropic Gaussians with these means (K, D) and std.

    Each sample goes to its nearest mean; it is high quality when that distance is below `threshold` stds. A mode
    is captured when it has at least one high-quality sample. `reverse_kl` is KL(histogram of the high-quality
    samples over the modes || uniform), in nats: 0 for a perfectly balanced histogram, log K when every
    high-quality sample sits at one mode (and log K, the worst value, when there is no high-quality sample).
    """
    x = (samples if isinstance(samples, Tensor) else torch.from_numpy(np.array(samples))).double().flatten(1)
    mu = (means if isinstance(means, Tensor) else torch.from_numpy(np.array(means))).double().to(x.device)
    k = mu.shape[0]
    if x.shape[0] == 0:
        return {"modes_captured": 0.0, "hq_fraction": 0.0, "reverse_kl": math.log(k)}
    dist, nearest = torch.cdist(x, mu).min(dim=1)  # (n,) each
    hq = dist / std < threshold
    counts = torch.bincount(nearest[hq], minlength=k).double()  # (K,)
    total = float(counts.sum())
    if total == 0:
        reverse_kl = math.log(k)
    else:
        p = counts[counts > 0] / total
        reverse_kl = float((p * (p * k).log()).sum())
    return {
        "modes_captured": float((counts > 0).sum()),
        "hq_fraction": float(hq.double().mean()),
        "reverse_kl": max(0.0, reverse_kl),
    }


def energy_distance(a: Tensor, b: Tensor) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| between two samples (Székely & Rizzo 2013), in data units.

    Between the empirical distributions (V-statistics), so it is >= 0 and 0 only for identical samples.
    """
    a, b = a.double().flatten(1), b.double().flatten(1)
    return max(0.0, float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()))


def mmd_rbf(a: Tensor, b: Tensor, bandwidths: Sequence[float] = MMD_BANDWIDTHS) -> float:
    """Squared maximum mean discrepancy (Gretton et al. 2012) with a sum of RBF kernels, biased (V-statistic).

    Kernel widths are `bandwidths` times the pooled per-dimension std of both samples, so the value does not
    depend on the data's units; >= 0, and 0 for identical samples.
    """
    a, b = a.double().flatten(1), b.double().flatten(1)
    scale = torch.cat([a, b]).std(0).mean().clamp_min(1e-12)

    def kernel(u: Tensor, v: Tensor) -> Tensor:
        d2 = torch.cdist(u, v).pow(2) / scale**2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths) / len(bandwidths)  # type: ignore[return-value]

    return max(0.0, float(kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()))


def mmd_at_width(a: Tensor, b: Tensor, width: float) -> float:
    """Squared MMD with one RBF kernel of an absolute `width` (data units), biased (V-statistic). At the width of a
    mixture's components it sees how samples spread inside each mode, which distances at the data's own scale (the
    energy distance, `mmd_rbf`) barely notice."""
    a, b = a.double().flatten(1), b.double().flatten(1)

    def kernel(u: Tensor, v: Tensor) -> Tensor:
        return torch.exp(-torch.cdist(u, v).pow(2) / (2 * width * width))

    return max(0.0, float(kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()))


def within_mode_spread(
    samples: Tensor, means: Tensor | np.ndarray, std: float, *, threshold: float = HQ_STD_THRESHOLD
) -> float:
    """How widely samples spread inside the modes of a mixture of isotropic Gaussians (component std `std`): for
    each mode with at least two high-quality samples, their per-coordinate std over `std`, averaged over coordinates;
    the median over those modes. True samples give a little under 1 (the high-quality cut trims the tails); a
    generator that puts a mode's samples on a few points gives far less."""
    x = samples.double().flatten(1)
    mu = (means if isinstance(means, Tensor) else torch.from_numpy(np.array(means))).double()
    dist, nearest = torch.cdist(x, mu).min(dim=1)
    hq = dist / std < threshold
    ratios = [
        float(x[hq & (nearest == k)].std(0).mean() / std)
        for k in range(mu.shape[0])
        if int((hq & (nearest == k)).sum()) >= 2
    ]
    return float(np.median(ratios)) if ratios else 0.0


def near_duplicate_share(samples: Tensor, radius: float) -> float:
    """The share of samples with another sample within `radius`: for a continuous distribution it depends only on
    the density and the number of samples (compare it with as many true samples), while a generator that places
    its samples on a few dozen points per mode gives nearly every sample a twin."""
    x = samples.double().flatten(1)
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return float((d.min(dim=1).values < radius).double().mean())


def mean_pairwise_distance(x: Tensor) -> float:
    """The mean L2 distance between two distinct samples of x (n, ...), flattened; 0 for fewer than two."""
    n = x.shape[0]
    if n < 2:
        return 0.0
    d = torch.cdist(x.double().flatten(1), x.double().flatten(1))
    return float(d.sum() / (n * (n - 1)))


def knn_radii(x: Tensor, k: int = 3) -> Tensor:
    """Each sample's distance to its k-th nearest other sample in x (n, F), float64: the radii of its manifold."""
    x = x.double().flatten(1)
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # column 0 is the sample itself


def knn_precision_recall(
    real: Tensor, fake: Tensor, k: int = 3, real_radii: Tensor | None = None
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
    Generative Models", Sec. 2): each set's manifold is the union of balls around its samples reaching their k-th
    nearest neighbour in the set. Precision: the share of fake samples inside the real manifold (are samples like
    the data?); recall: the share of real samples inside the fake manifold (is the data's variety covered?).

    real (n, F), fake (m, F) in a feature space (here a classifier's); both need more than k samples, else (0, 0).
    `real_radii`: `knn_radii(real, k)`, when several fake sets are compared with one real set.
    """
    if real.shape[0] <= k or fake.shape[0] <= k:
        return 0.0, 0.0
    r, f = real.double().flatten(1), fake.double().flatten(1)
    r_radii = knn_radii(r, k) if real_radii is None else real_radii
    f_radii = knn_radii(f, k)
    fr = torch.cdist(f, r)  # (m, n)
    precision = float((fr <= r_radii[None, :]).any(dim=1).double().mean())
    recall = float((fr <= f_radii[:, None]).any(dim=0).double().mean())
    return precision, recall


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and covariance (F, F) of features (n, F), in float64."""
    f = features.double().flatten(1)
    mu = f.mean(0)
    centered = f - mu
    return mu, centered.T @ centered / max(1, f.shape[0] - 1)


def _psd_sqrt(c: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh((c + c.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance_from_stats(mu1: Tensor, c1: Tensor, mu2: Tensor, c2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)) between two Gaussians (Dowson & Landau 1982).

    tr (C1 C2)^(1/2) is computed as tr (C1^(1/2) C2 C1^(1/2))^(1/2), a symmetric PSD matrix, so only symmetric
    eigendecompositions are needed (no complex parts to discard, unlike scipy.linalg.sqrtm).
    """
    mu1, mu2, c1, c2 = mu1.double(), mu2.double(), c1.double(), c2.double()
    s1 = _psd_sqrt(c1)
    inner = s1 @ c2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * tr_sqrt
    return max(0.0, float(value))


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, F) and (m, F); 0 for a set with itself."""
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def iw_log_likelihood(
    model: torch.nn.Module,
    x: Tensor,
    labels: Tensor | None,
    k: int,
    *,
    generator: torch.Generator | None = None,
    batch: int = 100,
) -> Tensor:
    """The IWAE bound on log p(x) with k importance samples, nats per input (n,), for a VAE (data space).

    Inputs go through `model.log_likelihood_bound` in batches of `batch`, so the caller can report progress
    between calls; the bound is a lower bound on log p(x) that tightens as k grows (k = 1 is the ELBO).
    """
    out = []
    for i in range(0, x.shape[0], batch):
        out.append(
            model.log_likelihood_bound(  # type: ignore[operator]
                x[i : i + batch], None if labels is None else labels[i : i + batch], k, generator=generator
            )
        )
    return torch.cat(out) if out else torch.zeros(0, device=x.device)


def label_accuracy(predicted: Tensor, requested: Tensor) -> float:
    """Share of samples whose predicted class (n,) is the requested one (n,)."""
    if requested.numel() == 0:
        return 0.0
    return float((predicted.cpu() == requested.cpu()).double().mean())


def mode_histogram_kl(classes: Tensor, num_modes: int) -> tuple[float, float]:
    """(modes hit, KL(histogram || uniform)) of predicted mode ids (n,) over `num_modes` modes (Stacked MNIST)."""
    counts = torch.bincount(classes.cpu().long(), minlength=num_modes).double()
    p = counts[counts > 0] / counts.sum()
    return float((counts > 0).sum()), max(0.0, float((p * (p * num_modes).log()).sum()))


def stacked_kl_parts(digits: Tensor, base: int = 10) -> tuple[list[float], float]:
    """Stacked MNIST's KL(histogram || uniform) split in two, for predicted digits (n, channels): each channel's own
    KL(its digits || uniform), and the dependence between the channels (the KL of the joint histogram from the
    product of the channels' histograms). The two add up to `mode_histogram_kl`'s KL: a skew in every channel points
    at the generator drawing (or the classifier reading) some digits more often, the dependence term at channels
    that are not drawn independently. With n samples the dependence term alone sits near (base^c - c(base-1) - 1) / 2n
    for a uniform generator (sampling noise), where the channels' terms are near (base-1) / 2n."""
    digits = digits.cpu().long()
    n, channels = digits.shape
    marginals = [torch.bincount(digits[:, c], minlength=base).double() / n for c in range(channels)]
    channel_kl = [float((q[q > 0] * (q[q > 0] * base).log()).sum()) for q in marginals]
    modes = torch.zeros(n, dtype=torch.long)
    for c in range(channels):
        modes = modes * base + digits[:, c]
    joint = torch.bincount(modes, minlength=base**channels).double() / n
    product = marginals[0]
    for q in marginals[1:]:
        product = torch.outer(product, q).flatten()
    hit = joint > 0
    return channel_kl, float((joint[hit] * (joint[hit] / product[hit]).log()).sum())
