"""Model names over HTTP (in-process app, real Redis): every model route takes `name:version` and `name@alias`, an
alias moves with one PUT, a version an alias points at cannot be deleted."""

from __future__ import annotations

import httpx

from app.settings import Settings
from models.registry import ModelRegistry
from models.store import ArtifactStore, new_id
from tests.helpers import assert_problem, store_untrained_model


def named_versions(settings: Settings, name: str, n: int) -> list[str]:
    store = ArtifactStore(settings.store_dir)
    registry = ModelRegistry(store)
    ids = []
    for width in (8, 16, 32)[:n]:  # different nets: different samples
        template = store_untrained_model(settings.store_dir, width=width)
        manifest = store.get_model(template).model_copy(update={"id": new_id("mdl")})
        ids.append(registry.publish(manifest, store.load_model_tensors(template), name).id)
    return ids


def samples(client: httpx.Client, ref: str) -> list[list[float]]:
    r = client.post(f"/v1/models/{ref}/samples", json={"n": 3, "seed": 5})
    assert r.status_code == 200, r.text
    return r.json()["samples"]  # type: ignore[no-any-return]


def test_references_on_every_model_route(client: httpx.Client, settings: Settings) -> None:
    v1, v2 = named_versions(settings, "ring", 2)
    assert client.get("/v1/models/ring:2").json()["id"] == v2
    model = client.get(f"/v1/models/{v1}").json()
    assert (model["name"], model["version"]) == ("ring", 1)
    assert samples(client, "ring:1") == samples(client, v1) != samples(client, v2)
    r = client.put("/v1/model-names/ring/aliases/champion", json={"version": 1})
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 1}
    assert samples(client, "ring@champion") == samples(client, v1)
    r = client.post("/v1/models/ring@champion/interpolations", json={"seed_a": 1, "seed_b": 2, "steps": 3})
    assert r.status_code == 200
    client.put("/v1/model-names/ring/aliases/champion", json={"version": 2})
    assert samples(client, "ring@champion") == samples(client, v2)  # moved: this replica at once
    listed = client.get("/v1/model-names").json()["items"]
    assert [(n["name"], [v["version"] for v in n["versions"]]) for n in listed] == [("ring", [1, 2])]
    assert client.get("/v1/model-names/ring").json()["versions"][1] == {
        "version": 2,
        "model_id": v2,
        "aliases": ["champion"],
    }


def test_names_are_listed_a_page_at_a_time(client: httpx.Client, settings: Settings) -> None:
    for name in ("gamma", "alpha", "beta"):
        named_versions(settings, name, 1)
    first = client.get("/v1/model-names", params={"limit": 2}).json()
    assert [n["name"] for n in first["items"]] == ["alpha", "beta"] and "cursor=" in first["next"]
    named_versions(settings, "aardvark", 1)  # sorts before the cursor: not listed on the next page, none skipped
    last = client.get(first["next"]).json()
    assert [n["name"] for n in last["items"]] == ["gamma"] and last["next"] is None
    whole = client.get("/v1/model-names").json()
    assert [n["name"] for n in whole["items"]] == ["aardvark", "alpha", "beta", "gamma"] and whole["next"] is None
    assert_problem(client.get("/v1/model-names", params={"limit": 0}), 422, "query.limit")
    assert_problem(client.get("/v1/model-names", params={"cursor": "not-a-cursor"}), 422, "query.cursor")


def test_what_cannot_be_done(client: httpx.Client, settings: Settings) -> None:
    v1, v2 = named_versions(settings, "digits", 2)
    client.put("/v1/model-names/digits/aliases/prod", json={"version": 2})
    body = assert_problem(client.delete("/v1/models/digits:2"), 409)
    assert "digits@prod" in body["detail"]
    assert client.get(f"/v1/models/{v2}").status_code == 200  # nothing deleted
    assert client.delete("/v1/models/digits:1").status_code == 204
    assert client.get("/v1/models/digits:1").status_code == 404
    assert client.delete("/v1/model-names/digits/aliases/prod").status_code == 204
    assert client.delete("/v1/models/digits@prod").status_code == 404
    assert client.delete(f"/v1/models/{v2}").status_code == 204
    for ref in ("digits:7", "digits@nope", "nope@prod", "nope:1"):
        assert_problem(client.post(f"/v1/models/{ref}/samples", json={"n": 1}), 404)
    assert_problem(client.put("/v1/model-names/nope/aliases/prod", json={"version": 1}), 404)
    assert_problem(client.put("/v1/model-names/digits/aliases/Prod", json={"version": 1}), 422, "alias")
    assert_problem(client.put("/v1/model-names/digits/aliases/prod", json={"version": 0}), 422, "version")
    assert_problem(client.get("/v1/model-names/nope"), 404)


def test_a_training_request_names_its_model(client: httpx.Client) -> None:
    base = {"dataset": "ring2d", "family": "gan", "steps": 10}
    assert client.post("/v1/trainings", json={**base, "model_name": "ring", "tags": {"team": "a"}}).status_code == 202
    for bad in ({"model_name": "Ring"}, {"model_name": "a:b"}, {"tags": {"bad key": "x"}}):
        field = "model_name" if "model_name" in bad else "tags"
        assert_problem(client.post("/v1/trainings", json={**base, **bad}), 422, field)
