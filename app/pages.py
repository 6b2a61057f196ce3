"""Cursor pagination for the lists (datasets, trainings, models): keyset cursors, stable under concurrent inserts.

A page is a slice of the list in its order; the cursor encodes the sort key of the page's last item, and the next page
starts after that key. An item inserted meanwhile sorts before the cursor (newest first) or after it (oldest first)
by its own key, so no item already listed is listed again and none is skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Request

from models.errors import Invalid

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CURSOR = ("query", "cursor")


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not one this list gave (use the `next` link as it is)", field=CURSOR) from None
    if not isinstance(key, list):
        raise Invalid("cursor is not one this list gave (use the `next` link as it is)", field=CURSOR)
    return key


def page(
    items: Sequence[T], key: Callable[[T], list[Any]], limit: int, cursor: str | None, *, newest_first: bool
) -> tuple[list[T], str | None]:
    """One page of `items` ordered by `key` (descending when `newest_first`), after `cursor`; and the next cursor."""
    ordered = sorted(items, key=key, reverse=newest_first)
    if cursor is not None:
        last = decode_cursor(cursor)
        try:
            ordered = [i for i in ordered if (key(i) < last if newest_first else key(i) > last)]
        except TypeError:
            raise Invalid("cursor is not one this list gave (use the `next` link as it is)", field=CURSOR) from None
    shown = ordered[:limit]
    return shown, encode_cursor(key(shown[-1])) if len(ordered) > limit and shown else None


def next_link(request: Request, cursor: str | None) -> str | None:
    """The URL of the next page: this request's query with the new cursor."""
    if cursor is None:
        return None
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", cursor)]
    return f"{request.url.path}?{urlencode(params)}"


def tag_filter(tags: dict[str, str], wanted: str) -> bool:
    """`key=value`: the tag has that value; `key`: the tag is there."""
    key, sep, value = wanted.partition("=")
    return key in tags and (not sep or tags[key] == value)
