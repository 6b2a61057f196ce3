"""Class labels of uploads: whatever names a file gives its classes become indices 0..K-1 over sorted names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.errors import Invalid


def int_labels(y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if y.size and int(y.min()) < 0:
        raise Invalid(f"y holds a negative label ({int(y.min())}); labels must be >= 0", field=("file", "y"))
    values, inverse = np.unique(y, return_inverse=True)
    return inverse.astype(np.int64).reshape(-1), [str(int(v)) for v in values]


def class_order(names: Sequence[str]) -> list[str]:
    """Sorted class names: numerically when every name is an integer, else as strings."""
    unique = set(names)
    try:
        return sorted(unique, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(unique)


def remap(names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    classes = class_order(names)
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names)), classes
