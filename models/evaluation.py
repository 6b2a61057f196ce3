"""The quality metrics measured when a training ends, on held-out data: what every stored model carries.

Seeded (METRIC_SEED), on the model's device, within compute budgets that keep the evaluation a small part of a
training. The metric functions themselves are in `models.metrics`; this module decides what is measured for which
model and on how many samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from models.classifier import ClassifierCache, classifier_for
from models.config import TrainConfig
from models.data.arrays import ArrayDataset
from models.metrics import (
    energy_distance,
    frechet_distance,
    iw_log_likelihood,
    knn_precision_recall,
    label_accuracy,
    mean_pairwise_distance,
    mmd_rbf,
    mode_metrics,
)
from models.nets import VAE, GenerativeModel

METRIC_SEED = 0  # seed of the samples drawn for the end-of-training metrics
METRIC_SAMPLES = 2000  # generated samples (and at most this many test points) for the energy distance
MAX_ELBO_TEST_SAMPLES = 2000  # test samples for test_neg_elbo
MAX_IW_TEST_SAMPLES = 1000  # test samples for test_nll_iw ...
IW_EVAL_ELEMENTS_CPU = 8_000_000  # ... and at most this many decoded values (samples * k * features) on CPU,
IW_EVAL_ELEMENTS_ACCEL = 400_000_000  # or on an accelerator
MIN_IW_TEST_SAMPLES = 100  # but at least this many samples, whatever k
MODE_METRIC_SAMPLES = 2500  # generated samples for the mode metrics of known mixtures (PacGAN's protocol)
MAX_FD_SAMPLES = 5000  # generated and test images for the Fréchet distance (and label accuracy)
FD_GENERATE_BATCH = 500  # images generated per forward pass for it
VARIETY_K = 3  # neighbours of the per-class recall (Kynkäänniemi et al. 2019 use 3)
BINARIZE_TEST_SEED = 0  # the one binarization of the test images of dynamically binarized trainings
MetricsProgress = Callable[[str, float], None]  # (phase, fraction done) while the metrics are computed


def binarized_test_x(test: ArrayDataset) -> np.ndarray:
    """The test images binarized once with a fixed seed (the evaluation set of dynamically binarized training)."""
    x = test.float_x()
    return (np.random.default_rng(BINARIZE_TEST_SEED).random(x.shape, dtype=np.float32) < x).astype(np.float32)


@torch.no_grad()
def compute_metrics(
    model: GenerativeModel,
    test: ArrayDataset,
    config: TrainConfig,
    *,
    train_set: ArrayDataset | None = None,
    mixture: tuple[np.ndarray, float] | None = None,
    classifier_cache: ClassifierCache | None = None,
    on_progress: MetricsProgress | None = None,
) -> dict[str, float]:
    """End-of-training quality metrics on held-out data, on the model's device, seeded (METRIC_SEED).

    VAE: test_neg_elbo (nats per sample, on at most MAX_ELBO_TEST_SAMPLES test samples), test_nll_iw (the IWAE
    bound with test_nll_iw_k = eval_iw_k importance samples, nats per sample, on test_nll_iw_samples test
    samples: at most MAX_IW_TEST_SAMPLES and within a compute budget). Test images are binarized once with a fixed
    seed when the training binarized its batches. Points: energy_distance and mmd (RBF, `models.metrics.mmd_rbf`)
    between METRIC_SAMPLES generated samples and as many test points; on a known Gaussian mixture (`mixture`,
    ring2d and grid2d) also PacGAN's modes_captured, hq_fraction and reverse_kl on MODE_METRIC_SAMPLES samples.
    Labeled images (with `train_set`): frechet_distance between the features of MAX_FD_SAMPLES generated and test
    images in the dataset's classifier (`models.classifier`, trained once per dataset and cached), the
    classifier's own test accuracy (classifier_test_accuracy), and for conditional models label_accuracy, the share
    of samples (classes in turn) that the classifier assigns to the requested class, and how varied each class's
    samples are (`class_variety`).
    """
    if len(test) == 0:
        return {}
    device = next(model.buffers()).device
    spec = model.spec
    gen = torch.Generator(device=device)
    gen.manual_seed(METRIC_SEED)
    rng = np.random.default_rng(METRIC_SEED)
    x_np = binarized_test_x(test) if config.binarize and test.kind == "images" else test.float_x()
    x_all = torch.from_numpy(x_np).to(device)
    y_all = torch.tensor(test.y, dtype=torch.long).to(device) if spec.num_classes and test.y is not None else None
    if spec.num_classes and y_all is None:
        return {}  # a conditional model needs labeled test data
    metrics: dict[str, float] = {}

    def report(phase: str, fraction: float) -> None:
        if on_progress is not None:
            on_progress(phase, fraction)

    def subset(n: int) -> tuple[Tensor, Tensor | None]:
        idx = torch.from_numpy(np.sort(rng.permutation(len(test))[:n])).to(device)
        return x_all[idx], None if y_all is None else y_all[idx]

    def draw(n: int) -> Tensor:
        labels = None
        if spec.num_classes:
            assert y_all is not None
            labels = y_all[torch.randint(0, len(y_all), (n,), generator=gen, device=device)]
        z = torch.randn(n, spec.latent_dim, generator=gen, device=device)
        return model.generate(z, labels)

    if isinstance(model, VAE):
        report("test_neg_elbo", 0.0)
        x, y = subset(MAX_ELBO_TEST_SAMPLES)
        metrics["test_neg_elbo"] = -float(model.log_likelihood_bound(x, y, 1, generator=gen).mean())
        k = config.eval_iw_k
        budget = IW_EVAL_ELEMENTS_CPU if device.type == "cpu" else IW_EVAL_ELEMENTS_ACCEL
        n = min(MAX_IW_TEST_SAMPLES, max(MIN_IW_TEST_SAMPLES, budget // (k * spec.features)))
        x, y = subset(n)
        n = x.shape[0]  # fewer when the test split is smaller
        parts = []
        step = max(1, min(n, 100))
        for i in range(0, n, step):
            report("test_nll_iw", i / n)
            parts.append(
                iw_log_likelihood(model, x[i : i + step], None if y is None else y[i : i + step], k, generator=gen)
            )
        metrics["test_nll_iw"] = -float(torch.cat(parts).mean())
        metrics["test_nll_iw_k"] = float(k)
        metrics["test_nll_iw_samples"] = float(x.shape[0])

    if spec.kind == "points":
        report("sample_distances", 0.0)
        x, _ = subset(METRIC_SAMPLES)
        fake = draw(METRIC_SAMPLES)
        metrics["energy_distance"] = energy_distance(fake, x)
        metrics["mmd"] = mmd_rbf(fake, x)
        if mixture is not None and spec.num_classes == 0:
            means, std = mixture
            metrics.update(mode_metrics(draw(MODE_METRIC_SAMPLES), means, std))

    if spec.kind == "images" and train_set is not None and train_set.num_classes and train_set.y is not None:

        def classifier_step(step: int, total: int) -> None:
            if step % 50 == 0 or step == total:
                report("classifier", step / total)

        report("classifier", 0.0)
        clf = classifier_for(train_set, device=device, cache=classifier_cache, on_step=classifier_step)
        report("frechet_distance", 0.0)
        n = min(MAX_FD_SAMPLES, len(test))
        x_real = torch.from_numpy(test.float_x()).to(device)  # gray values: what the classifier was trained on
        y_real = torch.tensor(test.y, dtype=torch.long, device=device) if test.y is not None else None
        idx = torch.from_numpy(np.sort(rng.permutation(len(test))[:n])).to(device)
        real_feats, real_pred = clf.predict(x_real[idx])
        if y_real is not None:
            metrics["classifier_test_accuracy"] = label_accuracy(real_pred, y_real[idx])
        labels = None
        if spec.num_classes:
            labels = torch.arange(n, device=device) % spec.num_classes
        fakes = []
        for i in range(0, n, FD_GENERATE_BATCH):
            report("frechet_distance", i / n)
            m = min(FD_GENERATE_BATCH, n - i)
            z = torch.randn(m, spec.latent_dim, generator=gen, device=device)
            fakes.append(model.generate(z, None if labels is None else labels[i : i + m]))
        fake_x = torch.cat(fakes)
        fake_feats, fake_pred = clf.predict(fake_x)
        metrics["frechet_distance"] = frechet_distance(fake_feats, real_feats)
        if labels is not None:
            metrics["label_accuracy"] = label_accuracy(fake_pred, labels)
            if y_real is not None:
                metrics.update(
                    class_variety(fake_x, fake_feats, labels, x_real[idx], real_feats, y_real[idx], spec.num_classes)
                )
    report("done", 1.0)
    return metrics


def class_variety(
    fake_x: Tensor,
    fake_feats: Tensor,
    fake_y: Tensor,
    real_x: Tensor,
    real_feats: Tensor,
    real_y: Tensor,
    num_classes: int,
) -> dict[str, float]:
    """How varied a conditional model's samples are inside each class, against the real class; the worst class.

    class_distance_ratio: the samples' mean pairwise L2 distance (in data space) over the real class's;
    class_recall: the improved recall (`models.metrics.knn_precision_recall`, k = VARIETY_K) of the real class by
    the class's samples, in the classifier's features. A generator that draws each class as a few images keeps
    its label accuracy and fails both. Classes with too few samples on either side (at most k) are left out.
    """
    per_class = variety_by_class(fake_x, fake_feats, fake_y, real_x, real_feats, real_y, num_classes)
    ratios = [ratio for ratio, _ in per_class.values() if ratio is not None]
    recalls = [recall for _, recall in per_class.values()]
    out = {}
    if ratios:
        out["class_distance_ratio"] = min(ratios)
    if recalls:
        out["class_recall"] = min(recalls)
    return out


def variety_by_class(
    fake_x: Tensor,
    fake_feats: Tensor,
    fake_y: Tensor,
    real_x: Tensor,
    real_feats: Tensor,
    real_y: Tensor,
    num_classes: int,
) -> dict[int, tuple[float | None, float]]:
    """`class_variety`'s two numbers for each class with more than VARIETY_K samples on both sides: {class:
    (distance ratio, or None when the real class's images are all one; recall)}."""
    out: dict[int, tuple[float | None, float]] = {}
    for c in range(num_classes):
        fake_c, real_c = fake_y == c, real_y == c
        if int(fake_c.sum()) <= VARIETY_K or int(real_c.sum()) <= VARIETY_K:
            continue
        real_spread = mean_pairwise_distance(real_x[real_c])
        ratio = mean_pairwise_distance(fake_x[fake_c]) / real_spread if real_spread > 0 else None
        out[c] = ratio, knn_precision_recall(real_feats[real_c], fake_feats[fake_c], VARIETY_K)[1]
    return out
