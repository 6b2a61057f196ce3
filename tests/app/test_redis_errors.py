"""What the API answers when Redis fails mid-request, as redis-py fails during a Sentinel failover: 503 with
Retry-After (a problem+json), never a 500."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.exceptions import BusyLoadingError, ConnectionError, ReadOnlyError, RedisError, TimeoutError
from redis.sentinel import MasterNotFoundError

from app import problems

FAILOVER_ERRORS = [
    MasterNotFoundError("No master found for 'mymaster'"),  # the sentinels know no master yet
    ConnectionError("The previous master is now a slave"),  # a Sentinel connection to a demoted master
    ConnectionError("Error 111 connecting to 10.0.0.1:6379. Connection refused."),  # the dead master, not yet down
    ReadOnlyError("You can't write against a read only replica."),  # a plain URL that names a demoted master
    BusyLoadingError("Redis is loading the dataset in memory"),  # a master that restarted with its data
    TimeoutError("Timeout reading from 10.0.0.1:6379"),
]


@pytest.mark.parametrize("error", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
def test_redis_errors_of_a_failover_are_503_with_retry_after(error: RedisError) -> None:
    app = FastAPI()
    problems.install(app)

    @app.post("/needs-redis")
    def needs_redis() -> None:
        raise error

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/needs-redis")
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "10.0.0.1" not in response.text and "mymaster" not in response.text  # no internals in the answer
