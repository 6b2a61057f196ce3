"""Model names in the store: versions assigned once and in order, also by processes publishing at the same time;
aliases; references; a version an alias points at cannot be deleted."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from models.errors import Conflict, Invalid, NotFound
from models.registry import ModelRegistry
from models.store import ArtifactStore, new_id
from tests.helpers import store_untrained_model


def publish_copies(root: str, template_id: str, n: int) -> None:
    store = ArtifactStore(root)
    manifest, tensors = store.get_model(template_id), store.load_model_tensors(template_id)
    registry = ModelRegistry(store)
    for _ in range(n):
        registry.publish(manifest.model_copy(update={"id": new_id("mdl")}), tensors, "digits")


def test_versions_are_consecutive_and_distinct_across_processes(tmp_path: Path) -> None:
    template = store_untrained_model(tmp_path)
    workers = [
        multiprocessing.get_context("fork").Process(target=publish_copies, args=(str(tmp_path), template, 8))
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    store = ArtifactStore(tmp_path)
    entry = ModelRegistry(store).get("digits")
    assert sorted(entry.versions) == list(range(1, 25)) and len(set(entry.versions.values())) == 24
    for version, model_id in entry.versions.items():
        manifest = store.get_model(model_id)
        assert (manifest.name, manifest.version) == ("digits", version)


def test_aliases_references_and_deletion(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    registry = ModelRegistry(store)
    template = store_untrained_model(tmp_path)
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
