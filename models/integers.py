"""`WHOLE`: integers as JSON Schema means one, a number with no fractional part, so `8.0` is 8.

Request models are strict (`"8"` is not 8), and pydantic's strict mode also refuses `8.0`; but a JSON number has no
separate integer type, and some encoders write every number with a decimal point (numpy floats, JavaScript
libraries), so a schema-valid `8.0` must be taken as 8 while `8.5` and `"8"` stay errors.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


def _whole(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# Last in an `Annotated[int, Field(ge=..., le=...), WHOLE]`: placed before the bounds, it would hide them from the JSON
# Schema (pydantic writes `ge`/`le` there instead of `minimum`/`maximum`, which validators and generators ignore).
WHOLE = BeforeValidator(_whole)
Integer = Annotated[int, WHOLE]  # for fields whose bounds are given by their own `Field(...)`
