"""Uploaded datasets as a newcomer meets them: trained on by name, and told when an upload is one they made before."""

from __future__ import annotations

import httpx

from tests.helpers import assert_problem, blobs_csv


def upload(client: httpx.Client, name: str, content: bytes) -> httpx.Response:
    return client.post("/v1/datasets", files={"file": ("points.csv", content, "text/csv")}, data={"name": name})


def test_a_training_names_its_dataset_by_name_when_no_other_has_it(client: httpx.Client) -> None:
    first = upload(client, "my points", blobs_csv(seed=1))
    assert first.status_code == 201, first.text
    dataset_id = first.json()["id"]
    r = client.post("/v1/trainings", json={"dataset": "my points", "family": "vae", "steps": 5})
    assert r.status_code == 202, r.text
    assert r.json()["request"]["dataset"] == dataset_id  # the record keeps the id: a later upload cannot change it

    assert upload(client, "my points", blobs_csv(seed=2)).status_code == 201  # other content, the same name
    body = assert_problem(client.post("/v1/trainings", json={"dataset": "my points", "family": "vae"}), 422, "dataset")
    assert "2 datasets" in body["detail"] and dataset_id in body["detail"]
    assert client.post("/v1/trainings", json={"dataset": dataset_id, "family": "vae", "steps": 5}).status_code == 202

    body = assert_problem(client.post("/v1/trainings", json={"dataset": "no such data", "family": "vae"}), 422)
    assert body["errors"][0]["loc"] == ["body", "dataset"] and "id or name" in body["detail"]


def test_the_same_content_under_a_new_name_says_it_exists_under_the_old_one(client: httpx.Client) -> None:
    content = blobs_csv(seed=3)
    first = upload(client, "blobs", content)
    assert first.status_code == 201 and first.json()["note"] is None
    again = upload(client, "blobs", content)
    assert again.status_code == 200 and again.json()["note"] is None  # a retry: nothing to say
    renamed = upload(client, "blobs v2", content)
    assert renamed.status_code == 200 and renamed.headers["location"] == f"/v1/datasets/{first.json()['id']}"
    body = renamed.json()
    assert body["id"] == first.json()["id"] and body["name"] == "blobs"
    assert "'blobs'" in body["note"] and "'blobs v2'" in body["note"]
    assert client.get(f"/v1/datasets/{body['id']}").json()["note"] is None


def test_swagger_says_what_an_upload_holds(client: httpx.Client) -> None:
    """The CSV header row, the label column, the .npz array names and the zip layout are in the schema."""
    spec = client.get("/openapi.json").json()
    upload_op = spec["paths"]["/v1/datasets"]["post"]
    text = upload_op["description"]
    for fact in ("header row", "`label`", "array `x`", "array `y`", "folder per class"):
        assert fact in text, fact
    body_schema = spec["components"]["schemas"][
        upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert "header row" in body_schema["properties"]["file"]["description"]
