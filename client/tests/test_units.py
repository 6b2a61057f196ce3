"""The pure parts, without a service: event parsing, Retry-After, error bodies, request bodies."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest

from genserve_client import NetworkError, ProblemError, ServerError, ServiceUnavailable, ValidationError, calls
from genserve_client.errors import problem_error, retry_after_seconds
from genserve_client.events import MAX_RECONNECTS, Resume, SSEDecoder
from genserve_client.payloads import dataset_upload, sniff_filename, vae_inputs


def test_the_decoder_assembles_events_from_lines() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "", "id: 1-0", "event: progress", 'data: {"step": 1}', "", "event: status", "data: x"]
    events = [e for e in map(decoder.feed, [*lines, "data: y", ""]) if e is not None]
    assert [(e.id, e.event, e.data) for e in events] == [("1-0", "progress", {"step": 1}), (None, "status", "x\ny")]


def test_resume_sends_the_last_id_and_gives_up_after_failures_in_a_row() -> None:
    resume = Resume()
    assert resume.headers() == {}
    decoder = SSEDecoder()
    for line in ["id: 7-1", "event: progress", "data: {}", ""]:
        event = decoder.feed(line)
    assert event is not None
    resume.seen(event)
    assert resume.headers() == {"Last-Event-ID": "7-1"}
    delays = [resume.reconnect_delay(None) for _ in range(MAX_RECONNECTS)]
    assert delays == sorted(delays) and delays[0] > 0
    with pytest.raises(NetworkError):
        resume.reconnect_delay(None)
    resume.seen(event)  # an event starts the count again
    assert resume.reconnect_delay(None) == delays[0]


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_error_bodies_become_typed_errors_with_readable_messages() -> None:
    body = b'{"title": "Invalid input", "status": 422, "detail": "bad", "errors": [{"loc": ["body", "labels", 3], "msg": "too big"}], "error_count": 25}'  # noqa: E501
    error = problem_error(422, "Unprocessable Entity", body, {"Content-Type": "application/problem+json"})
    assert isinstance(error, ValidationError) and error.errors[0]["loc"] == ["body", "labels", 3]
    assert str(error) == "422 Invalid input: bad [body.labels.3: too big; and 24 more]"
    plain = problem_error(503, "Service Unavailable", b"Service Unavailable", {"Retry-After": "2"})
    assert isinstance(plain, ServiceUnavailable) and plain.detail == "Service Unavailable" and plain.retry_after == 2
    other = problem_error(502, "Bad Gateway", b"<html>", {})
    assert type(other) is ServerError and isinstance(other, ProblemError)


def test_bytes_get_the_extension_their_content_shows() -> None:
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros((2, 2)))
    assert sniff_filename(npz.getvalue(), "f") == "f.npz"
    assert sniff_filename(b"\x89PNG\r\n\x1a\nrest", "f") == "f.png"
    assert sniff_filename(b"x,y\n1,2\n", "f") == "f.csv"


def test_inputs_are_json_points_or_an_image_upload() -> None:
    assert vae_inputs([[1, 2]], [0], "json").json == {"points": [[1.0, 2.0]], "labels": [0], "format": "json"}
    images = vae_inputs(np.zeros((2, 4, 4)), [0, 1], None)
    assert images.files is not None and images.files["file"][0] == "inputs.npz" and images.data == {"labels": "0,1"}
    upload = dataset_upload(np.zeros((3, 2)), "pts", None, [0, 1, 1])
    assert upload.files is not None and upload.data == {"name": "pts"}
    with np.load(io.BytesIO(upload.files["file"][1])) as arrays:
        assert arrays["x"].shape == (3, 2) and arrays["y"].tolist() == [0, 1, 1]


def test_which_calls_may_be_sent_again() -> None:
    upload = calls.upload_dataset(b"x,y\n1,2\n", "pts", None, None, None)
    assert upload.idempotent and "Idempotency-Key" not in upload.headers  # content-addressed: no key needed
    training = calls.create_training("ring2d", "gan", None, {})
    assert training.idempotent and len(training.headers["Idempotency-Key"]) == 36
    assert calls.create_training("ring2d", "gan", "mine", {}).headers["Idempotency-Key"] == "mine"
    assert not calls.cancel_training("tr_1").idempotent
    assert (
        calls.sample("m", 1, None, None, None, "npy", {}).idempotent and calls.get_model("a@b").path == "/v1/models/a@b"
    )
