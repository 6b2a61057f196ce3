"""Model names, versions and aliases, kept in the artifact store beside the models.

A name's registry (`names/<name>/registry.json`) maps versions to model ids and aliases to versions. Every change
runs under an exclusive lock on the name (flock, like the training records), so two trainings that finish at once,
on any workers sharing the store, get two distinct consecutive versions; a version number is never given twice, even
after its model is deleted. A model's name and version are written into its manifest when it is published and never
change.

References: a model is named by its id (`mdl_...`), by `name:version`, or by `name@alias`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.errors import Conflict, Invalid, NotFound
from models.manifest import ModelManifest
from models.store import ArtifactStore, atomic_write_json, flocked, read_json, utcnow

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
        self.root = store.root / "names"
        self.root.mkdir(exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / check_name(name, ("path", "name")) / "registry.json"

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        directory = self.root / check_name(name, ("path", "name"))
        directory.mkdir(exist_ok=True)
        with flocked(os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)):
            yield

    def get(self, name: str) -> NameEntry:
        try:
            return NameEntry.from_json(read_json(self._path(name)))
        except FileNotFoundError:
            raise NotFound(f"no model name {name!r}") from None

    def names(self) -> list[NameEntry]:
        out = []
        for directory in sorted(self.root.iterdir()):
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                out.append(NameEntry.from_json(read_json(directory / "registry.json")))
        return out

    def _entry(self, name: str) -> NameEntry:
        try:
            return self.get(name)
        except NotFound:
            return NameEntry(name=name, created_at=utcnow())

    def publish(self, manifest: ModelManifest, tensors: dict[str, torch.Tensor], name: str) -> ModelManifest:
        """Publish a model as the next version of `name` (the manifest gets its name and version)."""
        with self._locked(name):
            entry = self._entry(name)
            version = entry.next_version
            named = manifest.model_copy(update={"name": name, "version": version})
            self.store.put_model(named, tensors)
            entry.versions[version] = named.id
            entry.next_version = version + 1
            atomic_write_json(self._path(name), entry.to_json())
            return named

    def set_alias(self, name: str, alias: str, version: int) -> NameEntry:
        check_alias(alias, ("path", "alias"))
        with self._locked(name):
            entry = self.get(name)
            if version not in entry.versions:
                raise NotFound(f"model name {name!r} has no version {version}")
            entry.aliases[alias] = version
            atomic_write_json(self._path(name), entry.to_json())
            return entry

    def delete_alias(self, name: str, alias: str) -> NameEntry:
        with self._locked(name):
            entry = self.get(name)
            if alias not in entry.aliases:
                raise NotFound(f"model name {name!r} has no alias {alias!r}")
            del entry.aliases[alias]
            atomic_write_json(self._path(name), entry.to_json())
            return entry

    def unregister(self, manifest: ModelManifest) -> None:
        """Forget a named model's version before its deletion: 409 naming the aliases that point at it."""
        if manifest.name is None or manifest.version is None:
            return
        with self._locked(manifest.name):
            entry = self.get(manifest.name)
            aliases = entry.aliases_of(manifest.version)
            if aliases:
                shown = ", ".join(f"{manifest.name}@{a}" for a in aliases)
                raise Conflict(
                    f"model {manifest.id} is {manifest.name}:{manifest.version}, which {shown} points to; move or "
                    "delete the alias first",
                    field=("path", "model_id"),
                )
            entry.versions.pop(manifest.version, None)
            atomic_write_json(self._path(manifest.name), entry.to_json())

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
