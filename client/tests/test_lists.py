"""Lists are iterators that follow the server's `next` links a page at a time."""

from __future__ import annotations

import pytest

from conftest import TINY, RequestCounter, Service
from genserve_client import Client, Model, Training


def test_pages_of_one_give_the_whole_list(service: Service, counter: RequestCounter) -> None:
    with service.client() as c:
        whole = [d.id for d in c.datasets.list()]
        images = [d.id for d in c.datasets.list() if d.kind == "images"]
    assert len(whole) >= 5 and whole[:2] == ["ring2d", "grid2d"]  # built-ins first
    with service.client(http_client=counter.http_client()) as c:
        paged = c.datasets.list(page_size=1)
        assert counter.requests == []  # lazy: nothing is sent before the first item is asked for
        assert [d.id for d in paged] == whole
        assert len(counter.requests) == len(whole)
        assert "cursor=" in str(counter.requests[1].url) and "limit=1" in str(counter.requests[1].url)
        assert [d.id for d in c.datasets.list(kind="images", page_size=1)] == images  # the filter kept on each page


@pytest.fixture(scope="module")
def named(service: Service) -> tuple[Training, Model]:
    """A training on grid2d whose model is published as a version of `client-lists`."""
    with service.client() as c:
        training = c.trainings.create("grid2d", "gan", steps=20, model_name="client-lists", **TINY)
        return training, training.wait(timeout=60)


def test_filters_and_pages_of_trainings_and_models(client: Client, named: tuple[Training, Model]) -> None:
    training, model = named
    everything = [t.id for t in client.trainings.list()]
    assert [t.id for t in client.trainings.list(page_size=1)] == everything  # newest first
    listed = list(client.trainings.list(dataset="grid2d", family="gan", page_size=1))
    assert training.id in [t.id for t in listed] and all(t.request["dataset"] == "grid2d" for t in listed)
    assert [t.id for t in client.trainings.list(status="succeeded", model_name="client-lists")][0] == training.id
    assert [m.id for m in client.models.list(model_name="client-lists", page_size=1)][0] == model.id
    assert model.id in [m.id for m in client.models.list(dataset="grid2d", family="gan", page_size=1)]
    assert list(client.models.list(tag="no-such-tag")) == []


def test_model_names_and_aliases(client: Client, named: tuple[Training, Model]) -> None:
    _, model = named
    names = [n.name for n in client.model_names.list()]
    assert "client-lists" in names and [n.name for n in client.model_names.list(page_size=1)] == names  # every page
    assert model.name == "client-lists" and model.version is not None
    moved = client.model_names.set_alias("client-lists", "champion", model.version)
    assert moved.aliases["champion"] == model.version
    assert any(v.model_id == model.id and "champion" in v.aliases for v in moved.versions)
    assert client.models.get("client-lists@champion").id == model.id
    assert client.models.get(f"client-lists:{model.version}").id == model.id
    client.model_names.delete_alias("client-lists", "champion")
    assert "champion" not in client.model_names.get("client-lists").aliases
