"""The quality metrics on inputs whose answers are known; the classifier cache; the metrics a training reports."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from models import classifier as clf
from models.config import TrainConfig
from models.data.arrays import ArrayDataset, DatasetSplits
from models.data.builtin import GRID2D_MEANS, GRID2D_STD, RING2D_MEANS, RING2D_STD, load_builtin, mixture_modes
from models.evaluation import class_variety, compute_metrics
from models.metrics import (
    energy_distance,
    frechet_distance,
    iw_log_likelihood,
    knn_precision_recall,
    knn_radii,
    label_accuracy,
    mean_pairwise_distance,
    mmd_at_width,
    mmd_rbf,
    mode_histogram_kl,
    mode_metrics,
    near_duplicate_share,
    stacked_kl_parts,
    within_mode_spread,
)
from models.nets import build_model, spec_for
from models.recipes import resolve_config
from models.store import ArtifactStore
from models.training import lr_schedule, train
from tests.helpers import DEVICE

CPU = torch.device("cpu")


def mixture_samples(means: np.ndarray, std: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return means[rng.integers(0, len(means), n)] + std * rng.standard_normal((n, means.shape[1]))


# --- spread inside the modes ------------------------------------------------------------------------------------
def test_spread_twins_and_narrow_mmd_tell_data_from_a_lookup_table_and_from_shrunk_modes() -> None:
    """True samples spread like the data, rarely have a near-twin and match fresh data at the mode width; a generator
    that replays a few hundred points (a lookup table) keeps the spread but gives every sample a twin; one that
    shrinks each mode to 0.13 of its width fails all three."""
    means, std, n = RING2D_MEANS, RING2D_STD, 2500
    fresh, other, data = (torch.from_numpy(mixture_samples(means, std, n, seed=s)) for s in (1, 2, 3))
    reference = mmd_at_width(fresh, other, std)
    rng = np.random.default_rng(0)
    table = data[torch.from_numpy(rng.integers(0, 320, n))]  # 40 points per mode, replayed
    centres = torch.from_numpy(means)[torch.cdist(data, torch.from_numpy(means)).argmin(1)]
    shrunk = centres + (data - centres) * 0.13

    assert 0.9 < within_mode_spread(data, means, std) < 1.05
    assert near_duplicate_share(data, 0.02 * std) < 0.06
    assert mmd_at_width(data, fresh, std) / reference < 2
    assert within_mode_spread(table, means, std) > 0.8 and near_duplicate_share(table, 0.02 * std) > 0.9
    assert mmd_at_width(table, fresh, std) / reference > 3
    assert within_mode_spread(shrunk, means, std) < 0.2 and mmd_at_width(shrunk, fresh, std) / reference > 10


# --- mode metrics -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("means", "std"), [(RING2D_MEANS, RING2D_STD), (GRID2D_MEANS, GRID2D_STD)])
def test_true_samples_cover_every_mode(means: np.ndarray, std: float) -> None:
    m = mode_metrics(mixture_samples(means, std, 2500), means, std)
    assert m["modes_captured"] == len(means)
    assert m["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(|N(0, I_2)| < 3) = 98.9%
    assert m["reverse_kl"] < 0.02  # multinomial noise only: about (K - 1) / (2 n)


def test_collapsed_samples_score_one_mode() -> None:
    x = np.tile(RING2D_MEANS[3], (1000, 1)) + 0.001
    m = mode_metrics(x, RING2D_MEANS, RING2D_STD)
    assert m == {"modes_captured": 1.0, "hq_fraction": 1.0, "reverse_kl": pytest.approx(math.log(8))}


def test_off_mode_samples_are_low_quality() -> None:
    x = np.concatenate([np.tile(RING2D_MEANS, (50, 1)), np.zeros((100, 2))])  # 400 on the modes, 100 at the centre
    m = mode_metrics(torch.from_numpy(x), RING2D_MEANS, RING2D_STD)
    assert m["modes_captured"] == 8 and m["hq_fraction"] == pytest.approx(0.8) and m["reverse_kl"] == 0.0
    assert mode_metrics(np.zeros((10, 2)), RING2D_MEANS, RING2D_STD) == {
        "modes_captured": 0.0,
        "hq_fraction": 0.0,
        "reverse_kl": pytest.approx(math.log(8)),
    }


def test_two_modes_balanced_and_not() -> None:
    half = np.concatenate([np.tile(RING2D_MEANS[0], (500, 1)), np.tile(RING2D_MEANS[1], (500, 1))])
    assert mode_metrics(half, RING2D_MEANS, RING2D_STD)["reverse_kl"] == pytest.approx(math.log(4))
    assert mixture_modes("ring2d") is not None and mixture_modes("moons2d") is None


def test_mode_histogram_kl() -> None:
    assert mode_histogram_kl(torch.arange(1000), 1000) == (1000.0, 0.0)
    hits, kl = mode_histogram_kl(torch.zeros(50, dtype=torch.long), 1000)
    assert hits == 1 and kl == pytest.approx(math.log(1000))


def test_stacked_kl_parts_add_up_to_the_modes_kl_and_tell_skew_from_dependence() -> None:
    every = torch.cartesian_prod(torch.arange(10), torch.arange(10), torch.arange(10))  # each mode once
    assert stacked_kl_parts(every) == ([0.0, 0.0, 0.0], pytest.approx(0.0, abs=1e-12))
    same = torch.arange(10).repeat(30)[:, None].expand(-1, 3)  # three equal channels: uniform each, fully dependent
    channel_kl, dependence = stacked_kl_parts(same)
    assert channel_kl == [pytest.approx(0.0, abs=1e-12)] * 3 and dependence == pytest.approx(2 * math.log(10))
    g = torch.Generator().manual_seed(0)
    skewed = torch.cat([torch.randint(0, 10, (40_000, 3), generator=g), torch.zeros(10_000, 3, dtype=torch.long)])
    skewed[40_000:, 1:] = torch.randint(0, 10, (10_000, 2), generator=g)  # channel 0 draws too many zeros, alone
    channel_kl, dependence = stacked_kl_parts(skewed)
    assert channel_kl[0] > 0.05 > max(channel_kl[1:]) and dependence < 0.02  # its noise: about 0.01
    modes = skewed[:, 0] * 100 + skewed[:, 1] * 10 + skewed[:, 2]
    assert sum(channel_kl) + dependence == pytest.approx(mode_histogram_kl(modes, 1000)[1])


# --- two-sample distances ------------------------------------------------------------------------------------------
def test_sample_distances_are_zero_for_equal_sets_and_grow_with_a_shift() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    for dist in (energy_distance, mmd_rbf):
        assert dist(a, a) == pytest.approx(0.0, abs=1e-12)
        assert dist(a, b) < dist(a, b + 0.5) < dist(a, b + 2.0)


def test_frechet_distance() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 16, generator=g) @ torch.randn(16, 16, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifts = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    assert shifts == pytest.approx([16 * 0.25, 16 * 1.0, 16 * 4.0], rel=1e-6)  # ||shift||^2 when covariances agree
    # x and 2x: means m and 2m, covariances C and 4C: FD = |m|^2 + tr(C + 4C - 2 sqrt(4 C^2)) = |m|^2 + tr(C)
    x = torch.randn(5000, 16, generator=g).double()
    expected = float(x.mean(0).pow(2).sum() + torch.cov(x.T).trace())
    assert frechet_distance(x, 2 * x) == pytest.approx(expected, rel=1e-9)


def test_pairwise_distance_and_knn_recall_tell_a_collapsed_class() -> None:
    """Two samples of one distribution: distance ratio ~1, precision and recall high. A sample of three points
    repeated (the digits GAN's failure: one image per class, nearly): the ratio and the recall fall, the precision
    does not (every sample is realistic)."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g)
    collapsed = real[:3].repeat(100, 1) + 0.01 * torch.randn(300, 16, generator=g)
    assert mean_pairwise_distance(torch.zeros(1, 3)) == 0.0
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == 5.0
    assert 0.95 < mean_pairwise_distance(fake) / mean_pairwise_distance(real) < 1.05
    assert mean_pairwise_distance(collapsed) / mean_pairwise_distance(real) < 0.75  # a third of the pairs are twins
    precision, recall = knn_precision_recall(real, fake)
    assert precision > 0.7 and recall > 0.7  # k = 3 balls in 16 dimensions miss some of a sample's own distribution
    precision, recall = knn_precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05  # every sample is realistic, but the data's variety is not covered
    assert knn_precision_recall(real[:3], fake) == (0.0, 0.0)  # too few to draw the balls
    radii = knn_radii(real, 3)  # the real set's radii, computed once for several fake sets: the same figures
    assert knn_precision_recall(real, collapsed, 3, radii) == knn_precision_recall(real, collapsed)


def test_class_variety_is_per_class_and_reports_the_worst() -> None:
    """Class 0 drawn like the data, class 1 as one image: the worst class (1) is what is reported."""
    g = torch.Generator().manual_seed(0)
    real_x = torch.cat([torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g) + 5])
    real_y = torch.tensor([0] * 100 + [1] * 100)
    fake_x = torch.cat([torch.randn(100, 8, generator=g), (torch.randn(1, 8, generator=g) + 5).repeat(100, 1)])
    m = class_variety(fake_x, fake_x, real_y, real_x, real_x, real_y, 2)
    assert m["class_distance_ratio"] == 0.0 and m["class_recall"] < 0.05
    good = class_variety(real_x, real_x, real_y, real_x.flip(0), real_x.flip(0), real_y.flip(0), 2)
    assert good["class_distance_ratio"] == pytest.approx(1.0) and good["class_recall"] == 1.0
    assert class_variety(fake_x[:2], fake_x[:2], real_y[:2], real_x, real_x, real_y, 2) == {}  # too few samples


def test_label_accuracy() -> None:
    assert label_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 3])) == 0.75


# --- the likelihood bound ------------------------------------------------------------------------------------------
def test_iw_bound_tightens_with_k_and_is_seeded() -> None:
    config = TrainConfig(family="vae", latent_dim=2, width=16, decoder="gaussian")
    torch.manual_seed(0)
    vae = build_model(spec_for(config, "points", (2,), 0)).eval()
    x = torch.randn(2000, 2)
    with torch.no_grad():
        bounds = [
            float(iw_log_likelihood(vae, x, None, k, generator=torch.Generator().manual_seed(0)).mean())
            for k in (1, 20, 400)
        ]
        again = float(iw_log_likelihood(vae, x, None, 400, generator=torch.Generator().manual_seed(0)).mean())
        eps = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
        shared = [
            vae.log_likelihood_bound(x[:30], None, 50, eps=eps),  # type: ignore[operator]
            torch.cat(
                [
                    vae.log_likelihood_bound(x[:30][i : i + 7], None, 50, eps=eps)  # type: ignore[operator]
                    for i in range(0, 30, 7)
                ]
            ),
        ]
    assert bounds[0] < bounds[1] < bounds[2] and again == bounds[2]
    assert torch.allclose(shared[0], shared[1], rtol=1e-5)  # shared noise: a row's bound ignores its batch


def test_lr_schedule() -> None:
    c = TrainConfig(family="gan", steps=100, lr_decay="linear", lr_decay_start=0.5)
    assert [lr_schedule(c, s) for s in (0, 49, 50, 75)] == [1.0, 1.0, 1.0, 0.5]
    assert lr_schedule(TrainConfig(family="gan", steps=100, lr_decay="cosine"), 50) == pytest.approx(0.5)
    assert lr_schedule(TrainConfig(family="gan", steps=100), 99) == 1.0


# --- the classifier and its cache ----------------------------------------------------------------------------------
def bars(n: int, seed: int = 0) -> ArrayDataset:
    """8x8 images: a bright row (class 0) or column (class 1) at a random place."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.random((n, 8, 8)) * 40).astype(np.uint8)
    k = rng.integers(0, 8, n)
    for i in range(n):
        if y[i] == 0:
            x[i, k[i], :] = 230
        else:
            x[i, :, k[i]] = 230
    return ArrayDataset(x, y.astype(np.int64), "images", ["row", "column"])


def test_classifier_learns_and_is_trained_once_per_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bars(400)
    store = ArtifactStore(tmp_path)
    calls: list[int] = []
    real = clf.train_classifier

    def counting(*args: object, **kw: object) -> clf.Classifier:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(clf, "train_classifier", counting)
    nets: list[clf.Classifier] = []
    threads = [
        threading.Thread(target=lambda: nets.append(clf.classifier_for(data, device=CPU, cache=store)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(nets) == 2  # the second waited for the first's lock, then loaded its weights
    test = bars(200, seed=1)
    _, pred = nets[0].predict(torch.from_numpy(test.float_x()))
    assert label_accuracy(pred, torch.from_numpy(test.y)) > 0.95  # type: ignore[arg-type]
    for k, v in nets[0].state_dict().items():
        assert torch.equal(v, nets[1].state_dict()[k])
    assert store.load_classifier(clf.cache_key(data)) is not None
    clf.classifier_for(data, device=CPU, cache=ArtifactStore(tmp_path))  # another process: loads it
    assert len(calls) == 1


def test_the_first_classifier_written_wins(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    net = clf.Classifier((8, 8), 2)
    meta = {"sample_shape": [8, 8], "num_classes": 2}
    assert store.put_classifier("clf_0123456789abcdef", net.state_dict(), meta) is True
    other = {k: v + 1 for k, v in net.state_dict().items()}
    assert store.put_classifier("clf_0123456789abcdef", other, meta) is False
    loaded = store.load_classifier("clf_0123456789abcdef")
    assert loaded is not None and torch.equal(loaded[0]["out.bias"], net.state_dict()["out.bias"])
    assert store.load_classifier("clf_ffffffffffffffff") is None


# --- metrics of a training ------------------------------------------------------------------------------------------
def test_ring_gan_reports_mode_metrics() -> None:
    splits = load_builtin("ring2d", Path("."))
    small = DatasetSplits(train=splits.train.subset(np.arange(2000)), test=splits.test, mixture=splits.mixture)
    config = resolve_config(
        {"family": "gan", "steps": 30, "seed": 0, "width": 32},
        dataset_id="ring2d",
        kind="points",
        sample_shape=(2,),
        num_classes=0,
    )
    result = train(config, small, device=torch.device(DEVICE))  # the metrics run where the model trained
    m = result.metrics
    assert {"energy_distance", "mmd", "modes_captured", "hq_fraction", "reverse_kl"} <= m.keys()
    assert 0 <= m["modes_captured"] <= 8 and 0 <= m["hq_fraction"] <= 1 and 0 <= m["reverse_kl"] <= math.log(8)


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_labeled_images_report_frechet_distance_and_label_accuracy(family: str) -> None:
    data = bars(300)
    splits = DatasetSplits(train=data, test=bars(100, seed=2))
    config = resolve_config(
        {"family": family, "conditional": True, "steps": 20, "seed": 0, "width": 8, "latent_dim": 4, "eval_iw_k": 4}
        | ({"binarize": True} if family == "vae" else {}),
        dataset_id="ds_bars",
        kind="images",
        sample_shape=(8, 8),
        num_classes=2,
    )
    phases: list[str] = []
    result = train(
        config,
        splits,
        device=CPU,
        classifier_cache=None,
        progress_interval_s=0.0,
        on_progress=lambda p: phases.append(p.phase),
    )
    m = result.metrics
    assert {"frechet_distance", "label_accuracy", "classifier_test_accuracy"} <= m.keys()
    assert m["class_distance_ratio"] >= 0 and 0 <= m["class_recall"] <= 1
    assert m["frechet_distance"] > 0 and 0 <= m["label_accuracy"] <= 1 and m["classifier_test_accuracy"] > 0.9
    assert phases[-1] == "metrics" and "train" in phases
    if family == "vae":
        assert {"test_neg_elbo", "test_nll_iw", "test_nll_iw_k"} <= m.keys() and m["test_nll_iw_k"] == 4
    assert all(math.isfinite(v) for v in m.values())


def test_compute_metrics_of_a_true_model_on_a_mixture() -> None:
    """A 'generator' that draws from the ring itself scores like the data: full coverage, near-zero distances."""
    config = TrainConfig(family="gan", latent_dim=2, width=8)
    model = build_model(spec_for(config, "points", (2,), 0)).eval()
    means = torch.from_numpy(np.array(RING2D_MEANS, dtype=np.float32))

    def generate(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        idx = (torch.atan2(z[:, 1], z[:, 0]) / (2 * math.pi) * 8).floor().long() % 8  # 8 equal sectors of z
        return means[idx] + RING2D_STD * torch.randn(z.shape, generator=torch.Generator().manual_seed(1))

    model.generate = generate  # type: ignore[method-assign]
    test = ArrayDataset(mixture_samples(RING2D_MEANS, RING2D_STD, 2000).astype(np.float32), None, "points")
    m = compute_metrics(model, test, config, mixture=(RING2D_MEANS, RING2D_STD))
    assert m["modes_captured"] == 8 and m["hq_fraction"] > 0.97 and m["reverse_kl"] < 0.01
    assert m["energy_distance"] < 0.01 and m["mmd"] < 0.01
