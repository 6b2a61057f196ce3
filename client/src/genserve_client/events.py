"""A training's server-sent events: parsing the stream, and resuming it after a dropped connection.

The sync and async handles each run the same loop (open, read lines, feed `SSEDecoder`, tell `Resume` what was seen
or that the connection dropped); only the reading and the sleeping differ. The server replays everything after the
`Last-Event-ID` it is sent, so resuming from the id of the last event handed out loses and repeats nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

from .errors import NetworkError
from .types import Event

MAX_RECONNECTS = 5  # in a row without an event in between; any event received starts the count again
RECONNECT_BASE_S = 0.25  # doubled on each further failure in a row
RECONNECT_MAX_S = 5.0
STREAM_READ_TIMEOUT_S = 45.0  # the server sends a keep-alive comment after 15 s without events

DROPPED = (httpx.TransportError,)
"""What a broken stream raises while being read (a reset, an incomplete chunked body, a read timeout)."""


@dataclass
class SSEDecoder:
    """Builds events from the lines of a `text/event-stream` (the WHATWG rules for `id`, `event`, `data` and
    comments); one decoder per connection, so a half-received event is dropped with the connection that cut it."""

    _id: str | None = None
    _event: str | None = None
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Event | None:
        """Take one line (without its end); return the event a blank line completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: the server's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields: nothing this client uses

    def _dispatch(self) -> Event | None:
        event_id, name, data = self._id, self._event or "message", self._data
        self._id, self._event, self._data = None, None, []
        if not data:
            return None
        text = "\n".join(data)
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return Event(id=event_id, event=name, data=payload)


@dataclass
class Resume:
    """Where a followed stream is: the id to resume after, and how many reconnects in a row have failed."""

    last_event_id: str | None = None
    max_reconnects: int = MAX_RECONNECTS
    failures: int = 0

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}

    def seen(self, event: Event) -> None:
        if event.id:
            self.last_event_id = event.id
        self.failures = 0

    def reconnect_delay(self, cause: BaseException | None) -> float:
        """The pause before opening the stream again after it dropped (`cause`) or ended before the training did;
        NetworkError once too many reconnects in a row brought nothing."""
        self.failures += 1
        if self.failures > self.max_reconnects:
            raise NetworkError(
                f"the event stream dropped {self.failures} times in a row without an event in between "
                f"(resuming after {self.last_event_id or 'the start'}); the training may still be running"
            ) from cause
        return min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2.0 ** (self.failures - 1))
