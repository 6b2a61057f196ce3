"""What every upload parser shares: the limits it enforces, how errors name the part of the file at fault, and
the running count of decompressed bytes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.errors import TooLarge

FILE: tuple[str, ...] = ("file",)
MAX_REASON_CHARS = 200
_OBJECT_REPR = re.compile(r"<([^<>]*?) at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class UploadLimits:
    """The bounds an upload must keep.

    The service builds them from its settings in one place (`app.settings.Settings.upload_limits`); `names` says what
    each bound is called there (the environment variable), so that an error tells the user which setting raises it.
    A bound without a name is called by its own field name.
    """

    max_bytes: int
    max_images: int
    max_image_side: int
    max_points: int
    max_point_dims: int
    max_zip_entries: int
    max_zip_ratio: float
    max_uncompressed_bytes: int
    names: Mapping[str, str] = field(default_factory=dict, compare=False)

    def name_of(self, bound: str) -> str:
        return self.names.get(bound, bound)


def too_large(what: str, limits: UploadLimits, name: str, field: Sequence[str | int] = FILE) -> TooLarge:
    value = getattr(limits, name)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return TooLarge(f"{what}; the limit is {shown} ({limits.name_of(name)})", field=field, limit=value)


def entry_field(name: str) -> tuple[str, str]:
    return ("file", name.replace("\x00", "\\0"))


class Budget:
    """Bytes decompressed so far, against max_uncompressed_bytes (enforced again while reading)."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.used = 0

    def take(self, n: int, what: str) -> None:
        self.used += n
        if self.used > self.limits.max_uncompressed_bytes:
            raise too_large(
                f"{what} bring the uncompressed size to {self.used} bytes", self.limits, "max_uncompressed_bytes"
            )


def first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def reason(exc: BaseException) -> str:
    """A parser's exception as a short reason for a client: no object addresses, at most MAX_REASON_CHARS."""
    text = _OBJECT_REPR.sub(r"<\1>", str(exc)) or type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
