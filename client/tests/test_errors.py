"""Error answers of the real service become typed errors, raised on the first answer (4xx are not retried)."""

from __future__ import annotations

import pytest

from conftest import RequestCounter, Service
from genserve_client import (
    Client,
    Forbidden,
    GenserveError,
    NotFound,
    ProblemError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)


def test_an_unknown_model_is_not_found(service: Service, counter: RequestCounter) -> None:
    with service.client(http_client=counter.http_client()) as c, pytest.raises(NotFound) as caught:
        c.models.get("mdl_0000000000000000")
    error = caught.value
    assert isinstance(error, ProblemError) and isinstance(error, GenserveError)
    assert error.status == 404 and error.title and "mdl_0000000000000000" in error.detail
    assert error.body["status"] == 404 and error.response_headers["content-type"] == "application/problem+json"
    assert str(error).startswith("404 ") and len(counter.requests) == 1
    with service.client() as c, pytest.raises(NotFound):
        c.models.sample("no-such-name@champion", n=1)


def test_invalid_input_names_the_field_and_is_not_retried(service: Service, counter: RequestCounter) -> None:
    with service.client(http_client=counter.http_client()) as c:
        with pytest.raises(ValidationError) as caught:
            c.models.sample("mdl_0000000000000000", n=0)  # the body is checked before the model is looked up
        assert caught.value.status == 422 and caught.value.errors[0]["loc"] == ["body", "n"]
        assert "body.n" in str(caught.value)
        with pytest.raises(ValidationError) as unknown:
            c.trainings.create("ring2d", "gan", steps=10, stepz=10)
        assert unknown.value.errors[0]["loc"] == ["body", "stepz"]
        with pytest.raises(ValidationError) as other_family:
            c.trainings.create("ring2d", "gan", beta=2.0)
        assert other_family.value.errors[0]["loc"] == ["body", "beta"]
    assert len(counter.requests) == 3


def test_built_ins_cannot_be_deleted_and_content_must_match_its_name(client: Client) -> None:
    with pytest.raises(Forbidden):
        client.datasets.delete("ring2d")
    with pytest.raises(UnsupportedMediaType):
        client.datasets.upload(b"x,y\n1,2\n", name="not a zip", filename="points.zip")


def test_keys_are_sent_and_their_absence_is_unauthorized(
    keyed_service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENSERVE_API_KEY", raising=False)
    with Client(keyed_service.url) as anonymous, pytest.raises(Unauthorized) as caught:
        next(anonymous.datasets.list())
    assert caught.value.status == 401 and "bearer" in caught.value.response_headers["www-authenticate"].lower()
    assert caught.value.errors and caught.value.errors[0]["loc"][0] == "header"
    with Client(keyed_service.url, api_key="not-a-key-of-this-service") as wrong, pytest.raises(Unauthorized):
        wrong.models.get("mdl_0000000000000000")
    monkeypatch.setenv("GENSERVE_API_KEY", keyed_service.api_key or "")
    with Client(keyed_service.url) as from_env:  # the key from the environment
        assert any(d.id == "ring2d" for d in from_env.datasets.list())
    if keyed_service.read_only_key is None:
        return
    with Client(keyed_service.url, keyed_service.read_only_key) as reader:
        assert reader.datasets.get("ring2d").builtin
        with pytest.raises(Forbidden):
            reader.trainings.create("ring2d", "gan", steps=10)
