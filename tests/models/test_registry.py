"""Model names in the store, on both backends (a local directory, S3 on moto: tests/models/conftest.py): versions
assigned once and in order, also by processes publishing at the same time (compare-and-swap on the name's registry);
aliases; references; a version an alias points at cannot be deleted."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from models.errors import Conflict, Invalid, NotFound
from models.registry import ModelRegistry
from models.store import ArtifactStore, new_id, utcnow
from tests.models.conftest import Backend, tiny_model


def publish_copies(backend: Backend, template_id: str, n: int) -> None:
    store = backend.open()
    manifest, tensors = store.get_model(template_id), store.load_model_tensors(template_id)
    registry = ModelRegistry(store)
    for _ in range(n):
        registry.publish(manifest.model_copy(update={"id": new_id("mdl")}), tensors, "digits")


def test_versions_are_consecutive_and_distinct_across_processes(backend: Backend) -> None:
    template = tiny_model(backend.open())
    workers = [
        multiprocessing.get_context("fork").Process(target=publish_copies, args=(backend, template, 8))
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    store = backend.open()
    entry = ModelRegistry(store).get("digits")
    assert sorted(entry.versions) == list(range(1, 25)) and len(set(entry.versions.values())) == 24
    for version, model_id in entry.versions.items():
        manifest = store.get_model(model_id)
        assert (manifest.name, manifest.version) == ("digits", version)


def test_aliases_references_and_deletion(store: ArtifactStore) -> None:
    registry = ModelRegistry(store)
    template = tiny_model(store)
    tensors = store.load_model_tensors(template)
    first = registry.publish(store.get_model(template).model_copy(update={"id": new_id("mdl")}), tensors, "ring")
    second = registry.publish(store.get_model(template).model_copy(update={"id": new_id("mdl")}), tensors, "ring")
    registry.set_alias("ring", "champion", 1)
    assert registry.resolve("ring@champion") == first.id and registry.resolve("ring:2") == second.id
    assert registry.resolve(first.id) == first.id
    registry.set_alias("ring", "champion", 2)  # moved
    assert registry.resolve("ring@champion") == second.id
    for missing in ("ring@nope", "ring:3", "nope:1", "ring:x", "Bad Name@a"):
        with pytest.raises(NotFound):
            registry.resolve(missing)
    with pytest.raises(NotFound):
        registry.set_alias("ring", "champion", 7)
    with pytest.raises(Invalid):
        registry.set_alias("ring", "9lives", 1)  # an alias starts with a letter: never read as a version
    with pytest.raises(Conflict, match="ring@champion"):
        registry.unregister(second)
    registry.unregister(first)  # no alias points at it
    store.delete_model(first.id)
    registry.delete_alias("ring", "champion")
    registry.unregister(second)
    third = registry.publish(store.get_model(template).model_copy(update={"id": new_id("mdl")}), tensors, "ring")
    assert third.version == 3  # never reused
    assert registry.get("ring").versions == {3: third.id}
    assert [e.name for e in registry.names()] == ["ring"]


def test_alias_moves_and_publications_at_once_lose_nothing(store: ArtifactStore) -> None:
    """Aliases set and versions published at the same time on one name: every change lands (none overwrites
    another's, as a read-modify-write without the compare-and-swap would)."""
    registry = ModelRegistry(store)
    template = tiny_model(store)
    manifest, tensors = store.get_model(template), store.load_model_tensors(template)
    registry.publish(manifest.model_copy(update={"id": new_id("mdl")}), tensors, "mix")
    start = threading.Barrier(4)

    def aliases(i: int) -> None:
        start.wait()
        for j in range(3):
            registry.set_alias("mix", f"a{i}x{j}", 1)

    def publishes() -> None:
        start.wait()
        for _ in range(3):
            registry.publish(manifest.model_copy(update={"id": new_id("mdl")}), tensors, "mix")

    threads = [threading.Thread(target=aliases, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=publishes) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    entry = registry.get("mix")
    assert sorted(entry.versions) == list(range(1, 8))
    assert set(entry.aliases) == {f"a{i}x{j}" for i in range(2) for j in range(3)}


def test_a_registry_of_an_earlier_version_still_loads(tmp_path: Path) -> None:
    """The local layout is the one earlier versions wrote (names/<name>/registry.json beside a .lock file)."""
    store = ArtifactStore(tmp_path)
    template = tiny_model(store)
    directory = tmp_path / "names" / "old"
    directory.mkdir(parents=True)
    (directory / ".lock").touch()
    old = {"name": "old", "created_at": utcnow(), "versions": {"1": template}, "aliases": {"prod": 1}}
    old["next_version"] = 2
    (directory / "registry.json").write_text(json.dumps(old, indent=2, sort_keys=True))
    registry = ModelRegistry(store)
    assert registry.resolve("old@prod") == template
    copy = store.get_model(template).model_copy(update={"id": new_id("mdl")})
    assert registry.publish(copy, store.load_model_tensors(template), "old").version == 2
