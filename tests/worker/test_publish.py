"""Publishing a training's model is idempotent per training, on both store backends: a worker that dies after
publishing (or half-way through it) is retried, and the retry ends with the one model the first attempt meant, not
an orphan beside a second one."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from models.nets import build_model, spec_for
from models.recipes import resolve_config
from models.registry import ModelRegistry
from models.store import ArtifactStore
from models.training import TrainResult
from tests.helpers import training_record
from worker.jobs import model_id_for, store_model


def trained(name: str | None = None) -> tuple[Any, TrainResult]:
    config = resolve_config(
        {"family": "gan", "width": 8, "latent_dim": 2, "seed": 0},
        dataset_id="upload",
        kind="points",
        sample_shape=(2,),
        num_classes=0,
    )
    spec = spec_for(config, "points", (2,), 0)
    record = training_record("ds_x", config.to_dict(), None)
    if name:
        record.request["model_name"] = name
    return record, TrainResult(build_model(spec).eval(), spec, {}, 1, False)


def model_ids(store: ArtifactStore) -> list[str]:
    return sorted(m.id for m in store.list_models())


def test_a_retry_after_publication_returns_the_published_model(store: ArtifactStore) -> None:
    record, result = trained()
    first = store_model(store, record, result)
    assert first == model_id_for(record.id)
    with torch.no_grad():  # the retry's weights may differ (it resumed from a checkpoint): the first one stays
        next(result.model.parameters()).add_(1.0)
    assert store_model(store, record, result) == first
    assert model_ids(store) == [first]
    store.drop_unpublished_weights(first)  # a published model's weights are not for dropping
    assert store.load_model_tensors(first).keys() == result.model.state_dict().keys()
    other, other_result = trained()
    assert store_model(store, other, other_result) not in (first, None)  # another training: another model


@pytest.mark.parametrize("name", [None, "ring"])
def test_a_retry_after_a_publication_cut_short_publishes_once(
    store: ArtifactStore,
    name: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Weights written (and, for a named model, the version claimed) but no manifest: nothing was visible, and the
    retry publishes the model under the same id and version."""
    record, result = trained(name)
    cut = monkeypatch.context()
    with cut as patch:

        def die(*_: Any) -> None:
            raise RuntimeError("worker killed")

        patch.setattr(store, "put_model_manifest", die)
        with pytest.raises(RuntimeError):
            store_model(store, record, result)
    assert model_ids(store) == []
    model_id = store_model(store, record, result)
    assert (
        model_ids(store) == [model_id] and store.load_model_tensors(model_id).keys() == result.model.state_dict().keys()
    )
    if name:
        entry = ModelRegistry(store).get(name)
        assert entry.versions == {1: model_id} and entry.next_version == 2
        assert store.get_model(model_id).version == 1
