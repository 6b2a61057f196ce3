"""Seeds: the one range of every seed genserve takes or draws, and the one way to draw one."""

from __future__ import annotations

import secrets
from typing import Annotated

from pydantic import Field

from models.integers import WHOLE

SEED_BOUND = 2**31  # seeds are in [0, 2**31): what every torch and numpy generator accepts
SEED_MAX = SEED_BOUND - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="Random seed in [0, 2^31)."), WHOLE]


def draw_seed() -> int:
    """A fresh seed, for requests that leave theirs out (the service then reports the one it drew)."""
    return secrets.randbelow(SEED_BOUND)
