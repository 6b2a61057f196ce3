"""Model names, versions and aliases, kept in the artifact store beside the models.

A name's registry (`names/<name>/registry.json`) maps versions to model ids and aliases to versions. Every change is
a compare-and-swap on the registry object's ETag (`_change`): read it with its ETag, change it, write it back only if
the ETag is still current (the first version of a name: only if there is none yet), else read again. This replaces
the flock on `names/<name>/.lock` of earlier versions, which serialized these read-modify-writes on one file system;
the CAS keeps what it protected without one (on S3 too): two trainings that finish at once, on any workers sharing the
store, get two distinct consecutive versions, since of two writers that read the same `next_version` only one can
write; a version number is never given twice, even after its model is deleted. A model's name and version are
written into its manifest when it is published and never change: its weights are stored first, then its version is
claimed, then its manifest (create-only) makes it visible. (So for the one PUT between the claim and the manifest, or
for good when a publisher dies there, the new version names a model that is not there: 404, never another model.)

References: a model is named by its id (`mdl_...`), by `name:version`, or by `name@alias`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from models.errors import Conflict, Invalid, NotFound
from models.manifest import ModelManifest
from models.objects import cas_pause
from models.store import ArtifactStore, json_bytes, utcnow

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,62}\Z")  # starts with a letter: never read as a version
NAME_RULE = "1-63 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
ALIAS_RULE = "1-63 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter"


def check_name(name: str, field_: tuple[str | int, ...] = ("model_name",)) -> str:
    if not NAME_PATTERN.match(name):
        raise Invalid(f"model name {name!r} is not valid: {NAME_RULE}", field=field_)
    return name


def check_alias(alias: str, field_: tuple[str | int, ...] = ("alias",)) -> str:
    if not ALIAS_PATTERN.match(alias):
        raise Invalid(f"alias {alias!r} is not valid: {ALIAS_RULE}", field=field_)
    return alias


@dataclass
class NameEntry:
    """One name's versions (version -> model id) and aliases (alias -> version)."""

    name: str
    created_at: str
    versions: dict[int, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    next_version: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created_at": self.created_at,
            "versions": {str(v): m for v, m in self.versions.items()},
            "aliases": self.aliases,
            "next_version": self.next_version,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NameEntry:
        return cls(
            d["name"],
            d["created_at"],
            {int(v): m for v, m in d.get("versions", {}).items()},
            {a: int(v) for a, v in d.get("aliases", {}).items()},
            int(d.get("next_version", 1)),
        )

    def model_id(self, version: int) -> str:
        try:
            return self.versions[version]
        except KeyError:
            raise NotFound(f"model name {self.name!r} has no version {version}") from None

    def aliases_of(self, version: int) -> list[str]:
        return sorted(a for a, v in self.aliases.items() if v == version)


class ModelRegistry:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.objects = store.objects

    @staticmethod
    def _key(name: str) -> str:
        return f"names/{check_name(name, ('path', 'name'))}/registry.json"

    def _change(self, name: str, change: Callable[[NameEntry | None], NameEntry]) -> NameEntry:
        """Apply `change` to the name's entry (None when the name is new) by compare-and-swap, retried until it wins
        (see the module). `change` gets a fresh entry each time and may raise (NotFound, Conflict): nothing is
        written then."""
        key = self._key(name)
        attempt = 0
        while True:
            try:
                raw, etag = self.objects.get_versioned(key)
                entry: NameEntry | None = NameEntry.from_json(json.loads(raw))
            except FileNotFoundError:
                entry, etag = None, None
            changed = change(entry)
            data = json_bytes(changed.to_json())
            if self.objects.put_new(key, data) if etag is None else self.objects.put_if(key, data, etag):
                return changed
            cas_pause(attempt)
            attempt += 1

    def get(self, name: str) -> NameEntry:
        try:
            return NameEntry.from_json(json.loads(self.objects.get(self._key(name))))
        except FileNotFoundError:
            raise NotFound(f"no model name {name!r}") from None

    def names(self) -> list[NameEntry]:
        keys = sorted(e.key for e in self.objects.list("names/", "registry.json"))
        out = []
        for raw in self.objects.get_many(keys).values():
            with contextlib.suppress(ValueError, KeyError):
                out.append(NameEntry.from_json(json.loads(raw)))
        return sorted(out, key=lambda e: e.name)

    def publish(self, manifest: ModelManifest, tensors: dict[str, torch.Tensor], name: str) -> ModelManifest:
        """Publish a model as the next version of `name` (the manifest gets its name and version): its weights
        first, then the version claimed by compare-and-swap, then its manifest (create-only) makes it visible."""
        self._key(name)  # an invalid name stores nothing
        self.store.put_model_weights(manifest.id, tensors)
        claimed: list[int] = []

        def claim(entry: NameEntry | None) -> NameEntry:
            entry = entry or NameEntry(name=name, created_at=utcnow())
            earlier = [v for v, model_id in entry.versions.items() if model_id == manifest.id]
            if earlier:  # claimed by an attempt that died before its manifest: the same version again
                claimed[:] = earlier
                return entry
            claimed[:] = [entry.next_version]
            entry.versions[entry.next_version] = manifest.id
            entry.next_version += 1
            return entry

        self._change(name, claim)
        named = manifest.model_copy(update={"name": name, "version": claimed[0]})
        self.store.put_model_manifest(named)
        return named

    def set_alias(self, name: str, alias: str, version: int) -> NameEntry:
        check_alias(alias, ("path", "alias"))

        def move(entry: NameEntry | None) -> NameEntry:
            if entry is None:
                raise NotFound(f"no model name {name!r}")
            if version not in entry.versions:
                raise NotFound(f"model name {name!r} has no version {version}")
            entry.aliases[alias] = version
            return entry

        return self._change(name, move)

    def delete_alias(self, name: str, alias: str) -> NameEntry:
        def drop(entry: NameEntry | None) -> NameEntry:
            if entry is None:
                raise NotFound(f"no model name {name!r}")
            if alias not in entry.aliases:
                raise NotFound(f"model name {name!r} has no alias {alias!r}")
            del entry.aliases[alias]
            return entry

        return self._change(name, drop)

    def unregister(self, manifest: ModelManifest) -> None:
        """Forget a named model's version before its deletion: 409 naming the aliases that point at it."""
        if manifest.name is None or manifest.version is None:
            return
        name, version = manifest.name, manifest.version

        def forget(entry: NameEntry | None) -> NameEntry:
            if entry is None:
                raise NotFound(f"no model name {name!r}")
            aliases = entry.aliases_of(version)
            if aliases:
                shown = ", ".join(f"{name}@{a}" for a in aliases)
                raise Conflict(
                    f"model {manifest.id} is {name}:{version}, which {shown} points to; move or delete the alias first",
                    field=("path", "model_id"),
                )
            entry.versions.pop(version, None)
            return entry

        self._change(name, forget)

    def resolve(self, ref: str) -> str:
        """The model id a reference names: an id as it is, `name:version`, or `name@alias` (NotFound otherwise)."""
        name = re.split("[:@]", ref, maxsplit=1)[0]
        if name != ref and not NAME_PATTERN.match(name):
            raise NotFound(f"no model {ref!r}")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            entry = self.get(name)
            if alias not in entry.aliases:
                raise NotFound(f"model name {name!r} has no alias {alias!r}")
            return entry.model_id(entry.aliases[alias])
        if ":" in ref:
            name, raw = ref.split(":", 1)
            if not raw.isdigit():
                raise NotFound(f"no model {ref!r}: a version is a number (name:3), an alias follows '@' (name@prod)")
            return self.get(name).model_id(int(raw))
        return ref
