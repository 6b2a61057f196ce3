"""Webhook URLs and signatures without a receiver: what a training request may name, and signatures that a
verifier written from the Standard Webhooks spec (and the spec's own library) accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from app.settings import Settings
from app.webhooks import check_url, sign
from models.errors import Invalid
from tests.conftest import make_settings
from tests.helpers import assert_problem

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def settings_with(tmp_path: Path, allow: str = "") -> Settings:
    return make_settings(tmp_path, "redis://unused", webhook_secret=SecretStr(SECRET), webhook_allow=allow)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",  # loopback
        "http://10.1.2.3/hook",  # private
        "http://169.254.169.254/latest/meta-data",  # link-local: the cloud metadata service
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",  # multicast
        "ftp://8.8.8.8/hook",
        "http:///nohost",
        "http://nonexistent.invalid/hook",
    ],
)
def test_urls_that_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_url(url, settings_with(tmp_path))
    assert refused.value.field == ("body", "webhook")


def test_public_addresses_and_what_the_operator_allows(tmp_path: Path) -> None:
    check_url("https://8.8.8.8/hook", settings_with(tmp_path))
    allowing = settings_with(tmp_path, "127.0.0.1, 10.0.0.0/8")
    check_url("http://127.0.0.1:9000/hook", allowing)
    check_url("http://10.200.0.7/hook", allowing)
    with pytest.raises(Invalid):
        check_url("http://192.168.1.1/hook", allowing)
    with pytest.raises(Invalid, match="GENSERVE_WEBHOOK_SECRET"):
        check_url("https://8.8.8.8/hook", make_settings(tmp_path, "redis://unused"))


def test_the_signature_verifies_by_the_spec_and_by_its_library() -> None:
    body = json.dumps({"type": "training.completed", "data": {"id": "tr_1"}})
    now = datetime.now(UTC)
    headers = sign(SECRET, "msg_1", body, now)
    # A receiver's check, as the README shows it: HMAC-SHA256 of "id.timestamp.body" with the decoded secret.
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in headers["webhook-signature"].split()
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    assert abs(int(headers["webhook-timestamp"]) - now.timestamp()) < 1


def test_a_training_request_names_a_bad_webhook(client: httpx.Client) -> None:
    base = {"dataset": "ring2d", "family": "gan", "steps": 10}
    no_secret = client.post("/v1/trainings", json={**base, "webhook": "https://8.8.8.8/hook"})
    problem = assert_problem(no_secret, 422, "webhook")
    assert "GENSERVE_WEBHOOK_SECRET" in problem["detail"] and problem["errors"][0]["loc"] == ["body", "webhook"]
    events_alone = client.post("/v1/trainings", json={**base, "webhook_events": ["completed"]})
    assert_problem(events_alone, 422, "webhook_events")
    unknown = client.post("/v1/trainings", json={**base, "webhook": "https://8.8.8.8/", "webhook_events": ["done"]})
    assert_problem(unknown, 422, "webhook_events")
