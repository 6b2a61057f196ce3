"""Lists a page at a time (in-process app, real Redis): cursors stable under inserts between pages, filters."""

from __future__ import annotations

import httpx

from app.settings import Settings
from models.registry import ModelRegistry
from models.store import ArtifactStore, new_id
from tests.helpers import assert_problem, store_untrained_model

TRAINING = {"dataset": "ring2d", "family": "gan", "steps": 10}


def walk(client: httpx.Client, url: str, between: int = 0) -> list[str]:
    """Every id a list gives, page after page; `between` trainings are started after each page."""
    ids: list[str] = []
    while url:
        body = client.get(url).json()
        ids += [item["id"] for item in body["items"]]
        for _ in range(between):
            assert client.post("/v1/trainings", json=TRAINING).status_code == 202
        url = body["next"]
    return ids


def test_pages_are_stable_under_inserts(client: httpx.Client) -> None:
    started = [client.post("/v1/trainings", json={**TRAINING, "seed": s}).json()["id"] for s in range(12)]
    everything = client.get("/v1/trainings").json()
    assert everything["next"] is None and [t["id"] for t in everything["items"]] == started[::-1]  # newest first
    seen = walk(client, "/v1/trainings?limit=5", between=2)  # 6 more trainings arrive while it pages
    assert seen == started[::-1]  # every one once, none of the newer ones, in order
    assert len(client.get("/v1/trainings", params={"limit": 1000}).json()["items"]) == 12 + 6
    assert_problem(client.get("/v1/trainings", params={"cursor": "not-a-cursor"}), 422, "cursor")
    assert_problem(client.get("/v1/trainings", params={"limit": 0}), 422, "limit")
    queue = walk(client, "/v1/trainings?status=queued&limit=7")
    assert len(queue) == 18 and len(set(queue)) == 18


def test_filters(client: httpx.Client, settings: Settings) -> None:
    client.post("/v1/trainings", json={**TRAINING, "model_name": "ring"})
    client.post("/v1/trainings", json={"dataset": "moons2d", "family": "vae", "steps": 10})
    assert [t["request"]["dataset"] for t in client.get("/v1/trainings?family=vae").json()["items"]] == ["moons2d"]
    assert len(client.get("/v1/trainings?model_name=ring").json()["items"]) == 1
    assert len(client.get("/v1/trainings?dataset=ring2d&status=queued").json()["items"]) == 1
    store = ArtifactStore(settings.store_dir)
    template = store_untrained_model(settings.store_dir)
    tagged = store.get_model(template).model_copy(update={"id": new_id("mdl"), "tags": {"team": "a"}})
    ModelRegistry(store).publish(tagged, store.load_model_tensors(template), "ring")
    assert [m["id"] for m in client.get("/v1/models?tag=team=a").json()["items"]] == [tagged.id]
    assert [m["id"] for m in client.get("/v1/models?tag=team").json()["items"]] == [tagged.id]
    assert client.get("/v1/models?tag=team=b").json()["items"] == []
    assert [m["id"] for m in client.get("/v1/models?model_name=ring").json()["items"]] == [tagged.id]
    assert len(client.get("/v1/models?family=gan").json()["items"]) == 2
    datasets = walk(client, "/v1/datasets?limit=2")
    assert datasets[:3] == ["ring2d", "grid2d", "moons2d"] and len(datasets) == len(set(datasets)) >= 5
    assert {d["kind"] for d in client.get("/v1/datasets?kind=images").json()["items"]} == {"images"}
