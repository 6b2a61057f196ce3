"""The feature classifier of a labeled image dataset: the yardstick of the image metrics.

A small conv net (LeNet-like: two 5x5 conv + max-pool stages, a 128-unit hidden layer) trained on the dataset's
training split with a fixed seed. Its hidden layer gives the features of the Fréchet distance, its argmax the
class of a generated sample. Its own test accuracy is reported beside every image metric (BENCHMARKS.md).

A trained classifier is cached in the artifact store (`ArtifactStore.put_classifier`), keyed by the content of the
training split and `CLASSIFIER_VERSION`, so every worker trains it at most once per dataset; without a store, a
process-wide in-memory cache serves the same purpose within one process.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data.arrays import ArrayDataset
from models.store import content_id

CLASSIFIER_VERSION = 1  # bump when the net or its training changes: old cache entries are then ignored
CLASSIFIER_SEED = 0
FEATURES = 128  # size of the feature layer (the Fréchet distance's space)
CHANNELS = (32, 64)  # conv stages
MAX_INPUT_SIDE = 32  # px: larger images are average-pooled down to at most this per side first
BATCH = 128
EPOCHS = 3  # passes over the training split ...
MIN_STEPS, MAX_STEPS = 200, 1500  # ... within these bounds
LR = 1e-3
WEIGHT_DECAY = 1e-4
MEMORY_CACHE_SIZE = 4


class Classifier(nn.Module):
    """Images in data space ((n, H, W) or (n, H, W, C), values in [0, 1]) -> class logits (n, K)."""

    def __init__(self, sample_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.num_classes = num_classes
        h, w = self.sample_shape[:2]
        c = self.sample_shape[2] if len(self.sample_shape) == 3 else 1
        self.pool_in = max(1, math.ceil(max(h, w) / MAX_INPUT_SIDE))  # input average-pooling factor
        h, w = math.ceil(h / self.pool_in), math.ceil(w / self.pool_in)
        c1, c2 = CHANNELS
        self.conv1 = nn.Conv2d(c, c1, 5, padding=2)  # (n, c1, h, w), then max-pool -> h/2
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)  # (n, c2, h/2, w/2), then max-pool -> h/4
        flat = c2 * math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
        self.hidden = nn.Linear(flat, FEATURES)  # (n, FEATURES): the features
        self.out = nn.Linear(FEATURES, num_classes)  # (n, K)

    def _net_input(self, x: Tensor) -> Tensor:
        x = x.float()
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (n, C, H, W)
        if self.pool_in > 1:
            x = F.avg_pool2d(x, self.pool_in, ceil_mode=True)
        return x * 2 - 1

    def features(self, x: Tensor) -> Tensor:
        """The hidden layer (after ReLU): (n, FEATURES)."""
        h = F.max_pool2d(F.relu(self.conv1(self._net_input(x))), 2, ceil_mode=True)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2, ceil_mode=True)
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor, batch: int = 1000) -> tuple[Tensor, Tensor]:
        """(features (n, FEATURES), predicted classes (n,)) in eval mode, in batches."""
        feats, preds = [], []
        for i in range(0, x.shape[0], batch):
            f = self.features(x[i : i + batch])
            feats.append(f)
            preds.append(self.out(f).argmax(1))
        if not feats:
            return torch.zeros(0, FEATURES), torch.zeros(0, dtype=torch.long)
        return torch.cat(feats), torch.cat(preds)


@runtime_checkable
class ClassifierCache(Protocol):
    """Where trained classifiers are kept (the artifact store implements it)."""

    def load_classifier(self, key: str) -> tuple[dict[str, Tensor], dict[str, Any]] | None: ...

    def put_classifier(self, key: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> bool: ...

    def classifier_lock(self, key: str) -> contextlib.AbstractContextManager[None]: ...


def cache_key(train: ArrayDataset) -> str:
    """The key of a dataset's classifier: a hash of the training split's content address and CLASSIFIER_VERSION."""
    return f"clf_{hashlib.sha256(f'{CLASSIFIER_VERSION}:{content_id(train)}'.encode()).hexdigest()[:32]}"


def train_classifier(
    train: ArrayDataset,
    *,
    device: torch.device,
    seed: int = CLASSIFIER_SEED,
    steps: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Classifier:
    """Train the classifier on a labeled image set with a fixed seed (Adam, cross-entropy, cosine lr decay)."""
    if train.y is None or train.num_classes == 0 or train.kind != "images":
        raise ValueError("a classifier needs labeled images")
    n = len(train)
    total = steps or int(min(MAX_STEPS, max(MIN_STEPS, math.ceil(EPOCHS * n / BATCH))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Classifier(train.sample_shape, train.num_classes).to(device)
    x = torch.from_numpy(train.float_x()).to(device)
    y = torch.from_numpy(np.array(train.y, dtype=np.int64)).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    net.train()
    with torch.enable_grad():  # callers may be measuring under no_grad
        for step in range(total):
            idx = torch.randint(0, n, (min(BATCH, n),), generator=gen, device=device)
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if on_step is not None:
                on_step(step + 1, total)
    return net.eval()


def _from_tensors(tensors: dict[str, Tensor], meta: dict[str, Any], device: torch.device) -> Classifier:
    net = Classifier(tuple(meta["sample_shape"]), int(meta["num_classes"]))
    net.load_state_dict(tensors)
    return net.to(device).eval()


_memory: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
_memory_lock = threading.Lock()


def classifier_for(
    train: ArrayDataset,
    *,
    device: torch.device,
    cache: ClassifierCache | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Classifier:
    """The dataset's classifier: from the cache (the store, else this process's memory), else trained and cached.

    With a store, a lock per key makes concurrent workers train it once; should the lock not hold (a file system
    without locks), the first writer's classifier wins and every later reader loads that one.
    """
    key = cache_key(train)
    meta = {
        "key": key,
        "version": CLASSIFIER_VERSION,
        "sample_shape": list(train.sample_shape),
        "num_classes": train.num_classes,
        "seed": CLASSIFIER_SEED,
        "train_size": len(train),
    }
    if cache is None:
        with _memory_lock:
            tensors = _memory.get(key)
            if tensors is None:
                tensors = {
                    k: v.detach().cpu().clone()
                    for k, v in train_classifier(train, device=device, on_step=on_step).state_dict().items()
                }
                _memory[key] = tensors
                while len(_memory) > MEMORY_CACHE_SIZE:
                    _memory.popitem(last=False)
            _memory.move_to_end(key)
        return _from_tensors(tensors, meta, device)
    loaded = cache.load_classifier(key)
    if loaded is None:
        with cache.classifier_lock(key):
            loaded = cache.load_classifier(key)  # another worker may have finished while we waited
            if loaded is None:
                net = train_classifier(train, device=device, on_step=on_step)
                cache.put_classifier(key, net.state_dict(), meta)
                loaded = cache.load_classifier(key)  # the first writer's, should two have raced
                if loaded is None:
                    return net
    return _from_tensors(*loaded, device)
