"""Model references on every model route: an id, `name:version` or `name@alias`, resolved to a model id in memory.

Each name's registry entry is read from the store on first use and kept; an alias moved or deleted through any API
replica is announced on the models channel (`{"event": "name", "name": ...}`), and every replica drops its copy
(app/model_events.py), so a move reaches them all within a pub/sub round trip. Entries are also re-read after
ENTRY_TTL_S, in case an announcement was lost while Redis was down, and on a miss (a version published since). An id
costs one prefix check: the sampling hot path does not notice the registry.
"""

from __future__ import annotations

import time

from models.errors import NotFound
from models.registry import ModelRegistry, NameEntry

ENTRY_TTL_S = 10.0
ID_PREFIX = "mdl_"


class ModelRefs:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._entries: dict[str, tuple[NameEntry, float]] = {}

    def resolve(self, ref: str) -> str:
        """The model id `ref` names (NotFound for an unknown name, version or alias)."""
        if ref.startswith(ID_PREFIX):
            return ref
        sep = "@" if "@" in ref else ":" if ":" in ref else None
        if sep is None:
            return ref  # not a reference form: the store answers 404 for it
        name, rest = ref.split(sep, 1)
        for fresh in (False, True):
            entry = self._entry(name, fresh)
            if sep == "@" and rest in entry.aliases:
                return entry.model_id(entry.aliases[rest])
            if sep == ":" and rest.isdigit() and int(rest) in entry.versions:
                return entry.versions[int(rest)]
        return self.registry.resolve(ref)  # raises NotFound naming what is missing

    def _entry(self, name: str, fresh: bool) -> NameEntry:
        held = self._entries.get(name)
        if not fresh and held is not None and time.monotonic() - held[1] < ENTRY_TTL_S:
            return held[0]
        try:
            entry = self.registry.get(name)
        except NotFound:
            self._entries.pop(name, None)
            raise
        except Exception:  # an invalid name: not a model
            raise NotFound(f"no model {name!r}") from None
        self._entries[name] = (entry, time.monotonic())
        return entry

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)
