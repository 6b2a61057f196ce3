"""API keys: every route x no key / wrong key / wrong scope / right key; probes stay open; the rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from app.auth import parse_keys
from app.docs import DOC_PATHS
from app.main import create_app
from tests.conftest import make_settings
from tests.helpers import assert_problem

KEYS = "tok-sampler-0123456789:sample,tok-trainer-0123456789:train,tok-admin-0123456789:sample+train"
TOKENS = {"sample": "tok-sampler-0123456789", "train": "tok-trainer-0123456789"}
FILLERS = {
    "model_id": "mdl_0123456789abcdef",
    "dataset_id": "ds_0123456789abcdef",
    "training_id": "tr_0123456789abcdef",
    "name": "digits",
    "alias": "champion",
    "step": "100",
}


@pytest.fixture
def guarded(tmp_path: Path, redis_url: str, redis: Redis) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path, redis_url, api_keys=KEYS, rate_limit_per_s=0, auth_failures_per_s=0, public_docs=False
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


GENERATE_SUFFIXES = ("/samples", "/reconstructions", "/interpolations", "/scores", "/encodings")


def required_scope(method: str, template: str) -> str:
    """The access rule (README, Access): reading and generating need `sample`; changing state needs `train`."""
    if method in ("GET", "HEAD") or (method == "POST" and template.endswith(GENERATE_SUFFIXES)):
        return "sample"
    return "train"


def routes(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, concrete path, template) of every API route (from the OpenAPI schema, plus the docs), public
    probes excluded."""
    schema = client.app.openapi()  # type: ignore[attr-defined]
    out = [("GET", page, page) for page in DOC_PATHS]
    for template, operations in schema["paths"].items():
        if template in ("/healthz", "/readyz"):
            continue
        for method in operations:
            out.append((method.upper(), template.format(**FILLERS), template))
    return out


def test_the_matrix_covers_the_whole_api(guarded: TestClient) -> None:
    templates = {t for _, _, t in routes(guarded)}
    assert {
        "/v1/models/{model_id}/samples",
        "/v1/datasets",
        "/v1/trainings/{training_id}/cancel",
        "/metrics",
        "/openapi.json",
        "/docs",
    } <= templates
    assert len(routes(guarded)) >= 18


def test_every_route_refuses_missing_wrong_and_underscoped_keys(guarded: TestClient) -> None:
    for method, path, template in routes(guarded):
        needed = required_scope(method, template)
        other = "train" if needed == "sample" else "sample"
        cases = {
            "no key": {},
            "wrong key": {"Authorization": "Bearer not-a-key"},
            "not bearer": {"Authorization": "Basic dG9rLWFkbWluOg=="},
            "wrong scope": {"Authorization": f"Bearer {TOKENS[other]}"},
            "right key": {"Authorization": f"Bearer {TOKENS[needed]}"},
            "both scopes": {"Authorization": "Bearer tok-admin-0123456789"},
        }
        for case, headers in cases.items():
            r = guarded.request(method, path, headers=headers, json={} if method == "POST" else None)
            where = f"{method} {path} with {case}: {r.status_code} {r.text[:200]}"
            if case in ("no key", "wrong key", "not bearer"):
                assert r.status_code == 401, where
                assert r.headers["www-authenticate"] == "Bearer", where
                assert_problem(r, 401, "authorization")
            elif case == "wrong scope":
                assert r.status_code == 403, where
                assert needed in r.json()["detail"], where
            else:
                assert r.status_code not in (401, 403, 500), where


def test_probes_stay_open(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/readyz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, redis_url: str, redis: Redis) -> None:
    settings = make_settings(tmp_path, redis_url, api_keys=KEYS, rate_limit_per_s=0.5, rate_limit_burst=3)
    with TestClient(create_app(settings)) as client:
        sampler = {"Authorization": "Bearer tok-sampler-0123456789"}
        assert [client.get("/v1/datasets", headers=sampler).status_code for _ in range(3)] == [200] * 3
        limited = client.get("/v1/datasets", headers=sampler)
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        admin = {"Authorization": "Bearer tok-admin-0123456789"}
        assert client.get("/v1/datasets", headers=admin).status_code == 200  # buckets are per key


def test_open_without_keys(client: httpx.Client) -> None:
    assert client.get("/v1/datasets").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_docs_are_public_by_default_with_keys(tmp_path: Path, redis_url: str, redis: Redis) -> None:
    """A browser cannot send a bearer header to open /docs; the page's Authorize button takes the key for calls."""
    settings = make_settings(tmp_path, redis_url, api_keys=KEYS)
    with TestClient(create_app(settings)) as client:
        for page in DOC_PATHS:
            assert client.get(page).status_code == 200, page
        assert client.get("/v1/datasets").status_code == 401
        schema = client.get("/openapi.json").json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


@pytest.mark.parametrize("bad", ["tok", "tok:", ":sample", "tok:admin", "tok:sample+root", "short-token:sample"])
def test_malformed_key_entries_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_keys([bad])


def test_keys_from_a_file(tmp_path: Path) -> None:
    from app.auth import load_keys

    f = tmp_path / "keys"
    f.write_text("# comment\nfile-token-0123456789:train\n\n")
    keys = load_keys("inline-token-012345:sample", f)
    assert [sorted(k.scopes) for k in keys] == [["sample"], ["train"]]
    assert all("token" not in k.name for k in keys)  # only a digest prefix is kept
