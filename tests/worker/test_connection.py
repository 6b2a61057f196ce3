"""The one Redis connection factory (worker/state/connection.py): a plain client from a URL, Sentinel clients from the
settings, and nothing else in the product building Redis clients of its own. No server needed, except where named."""

from __future__ import annotations

import ast
import re
import time

import pytest
from pydantic import ValidationError
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from genserve import free_port
from tests.conftest import ROOT
from worker.state import connection
from worker.state.connection import RedisTarget, parse_sentinels
from worker.state.settings import WorkerSettings

SENTINEL_ENV = {
    "GENSERVE_REDIS_URL": "redis://ignored-with-sentinel:6379/3",
    "GENSERVE_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380,[fd00::3]",
    "GENSERVE_REDIS_SENTINEL_MASTER": "genserve",
    "GENSERVE_REDIS_PASSWORD": "data-secret",
    "GENSERVE_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
}


@pytest.fixture
def sentinel_settings(monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    for name, value in SENTINEL_ENV.items():
        monkeypatch.setenv(name, value)
    return WorkerSettings()


def test_a_url_gives_a_plain_client_with_timeouts() -> None:
    client = connection.connect("redis://:pw@example.invalid:6390/2")
    kwargs = client.connection_pool.connection_kwargs
    assert type(client) is Redis and not isinstance(client.connection_pool, SentinelConnectionPool)
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("example.invalid", 6390, 2, "pw")
    assert kwargs["socket_connect_timeout"] == connection.CONNECT_TIMEOUT_S
    assert kwargs["socket_timeout"] == connection.SOCKET_TIMEOUT_S
    assert (
        connection.connect("redis://h/0", socket_timeout_s=None).connection_pool.connection_kwargs["socket_timeout"]
        is None
    )


def test_the_settings_without_sentinels_give_the_url_and_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENSERVE_REDIS_PASSWORD", "from-settings")
    target = WorkerSettings(redis_url="redis://example.invalid:6390/1").redis_target
    assert target == RedisTarget("redis://example.invalid:6390/1", password="from-settings")
    assert connection.connect(target).connection_pool.connection_kwargs["password"] == "from-settings"
    with_own = RedisTarget("redis://:in-url@example.invalid/0", password="from-settings")
    assert connection.connect(with_own).connection_pool.connection_kwargs["password"] == "in-url"  # the URL's wins
    monkeypatch.delenv("GENSERVE_REDIS_PASSWORD")
    monkeypatch.delenv("GENSERVE_REDIS_URL", raising=False)
    assert WorkerSettings().redis_target == RedisTarget("redis://127.0.0.1:6379/0")  # unset: the default URL


def test_the_settings_give_a_sentinel_target(sentinel_settings: WorkerSettings) -> None:
    target = sentinel_settings.redis_target
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("fd00::3", 26379))
    assert (target.master, target.password, target.sentinel_password) == ("genserve", "data-secret", "sentinel-secret")
    shown = f"{target} {target!r}"
    assert "secret" not in shown and "genserve" in shown and "10.0.0.2:26380" in shown and "db 3" in shown


def test_the_factory_builds_sentinel_clients_from_the_settings(sentinel_settings: WorkerSettings) -> None:
    client = connection.connect(sentinel_settings.redis_target, socket_timeout_s=None)
    pool = client.connection_pool
    assert isinstance(client, Redis) and isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "genserve" and pool.is_master
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "data-secret", None)
    assert "host" not in kwargs  # the master's address comes from the sentinels, connection by connection
    sentinels = pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in sentinels
    ] == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("fd00::3", 26379),
    ]
    for s in sentinels:
        own = s.connection_pool.connection_kwargs
        assert own["password"] == "sentinel-secret"
        assert own["socket_timeout"] == own["socket_connect_timeout"] == connection.SENTINEL_TIMEOUT_S
        assert own["retry"].get_retries() == 0  # a sentinel that is down: ask the next one at once
    client.close()


class Interrupted(BaseException):
    """What a signal handler raises mid-read (RQ's warm shutdown raises StopRequested in BLPOP)."""


def test_a_sentinel_connection_whose_read_was_interrupted_is_closed(sentinel_settings: WorkerSettings) -> None:
    """redis-py's Sentinel connection keeps a connection whose reply was never read (redis/redis-py#4292): the next
    command reads the old reply, or waits behind it. Ours closes it, as every other connection class does."""
    client = connection.connect(sentinel_settings.redis_target)
    conn = client.connection_pool.make_connection()
    closed: list[bool] = []

    def interrupted(*args: object, **kwargs: object) -> None:
        raise Interrupted

    conn._parser.read_response = interrupted  # type: ignore[method-assign]
    conn.disconnect = lambda *args, **kwargs: closed.append(True)  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        conn.read_response()
    assert closed == [True]
    with pytest.raises(Interrupted):
        conn.read_response(disconnect_on_error=False)  # PubSub asks for this explicitly: still honoured
    assert closed == [True]


async def test_the_factory_builds_asyncio_sentinel_clients_from_the_settings(sentinel_settings: WorkerSettings) -> None:
    client = connection.connect_async(sentinel_settings.redis_target, max_connections=7)
    pool = client.connection_pool
    assert isinstance(client, AsyncRedis) and isinstance(pool, AsyncSentinelPool)
    assert pool.service_name == "genserve" and pool.max_connections == 7
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (3, "data-secret")
    assert [s.connection_pool.connection_kwargs["password"] for s in pool.sentinel_manager.sentinels] == [
        "sentinel-secret"
    ] * 3
    await client.aclose()
    plain = connection.connect_async("redis://example.invalid:6390/4", max_connections=7)
    assert type(plain) is AsyncRedis and plain.connection_pool.connection_kwargs["db"] == 4
    await plain.aclose()


def test_answers_is_false_quickly_when_no_sentinel_answers() -> None:
    target = RedisTarget("redis://127.0.0.1:9/0", sentinels=(("127.0.0.1", free_port()), ("127.0.0.1", free_port())))
    started = time.monotonic()
    assert not connection.answers(target)
    assert time.monotonic() - started < 2


def test_a_url_still_connects_to_a_real_server(redis_url: str) -> None:
    assert connection.answers(redis_url)
    with connection.connect(redis_url) as client:
        assert client.ping()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("a:1,b:2", (("a", 1), ("b", 2))),
        (" sentinel-0 , sentinel-1:26380 ", (("sentinel-0", 26379), ("sentinel-1", 26380))),
        ("[::1]:26381", (("::1", 26381),)),
    ],
)
def test_parse_sentinels(text: str, expected: tuple[tuple[str, int], ...]) -> None:
    assert parse_sentinels(text) == expected


@pytest.mark.parametrize("bad", ["a:b", ":26379", "a:1:2", "::1", "a:0", "a:70000", "[::1]x"])
def test_a_bad_sentinel_list_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("GENSERVE_REDIS_SENTINELS", f"ok:26379,{bad}")
    with pytest.raises(ValidationError, match=re.escape(f"{bad!r} is not host:port")) as caught:
        WorkerSettings()
    assert "redis_sentinels" in str(caught.value)


# Building a Redis client: only worker/state/connection.py does (the tests, benchmarks and scripts may).
CLIENT_BUILDERS = {
    "Redis",
    "StrictRedis",
    "Sentinel",
    "ConnectionPool",
    "SentinelConnectionPool",
    "from_url",
    "from_pool",
}


def test_nothing_else_in_the_product_builds_a_redis_client() -> None:
    factory = ROOT / "worker" / "state" / "connection.py"
    sources = [ROOT / "genserve.py", *(ROOT / "app").rglob("*.py"), *(ROOT / "worker").rglob("*.py")]
    builders = []
    for path in sources:
        if path == factory:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called in CLIENT_BUILDERS:
                    builders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not builders, "Redis clients built outside worker/state/connection.py:\n" + "\n".join(builders)
