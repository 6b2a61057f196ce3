"""Many API processes behind one port (`genserve serve --workers 2`): /metrics answers the same totals whichever
process is asked, and a key's rate limit holds across the processes."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.metrics import SNAPSHOT_INTERVAL_S
from tests.conftest import LiveService, make_settings, wait_until
from tests.helpers import store_untrained_model

pytestmark = pytest.mark.slow
REQUESTS = 60
RATE, BURST = 10.0, 10  # low enough that the clients offer about twice it even on a busy machine
METRICS_KEY, RATE_KEY = "processes-metrics-key-0123456789", "processes-rate-key-0123456789"
SCRAPE_KEY = "processes-scrape-key-0123456789"
TRAIN_KEY = "processes-train-key-0123456789"
MODEL_KEY = "processes-model-key-0123456789"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[LiveService, Path]]:
    tmp = tmp_path_factory.mktemp("processes")
    shared = tmp / "metrics"
    shared.mkdir()
    keys = f"{METRICS_KEY}:sample,{RATE_KEY}:sample,{SCRAPE_KEY}:sample,{TRAIN_KEY}:train,{MODEL_KEY}:sample"
    settings = make_settings(
        tmp, redis_url, metrics_dir=shared, api_keys=keys, rate_limit_per_s=RATE, rate_limit_burst=BURST
    )
    service = LiveService(settings, tmp)
    service.api = service._spawn(["serve", "--port", str(service.port), "--workers", "2"], "api.log")
    try:
        wait_until(service._healthy, 60, message="the API to answer /healthz")
        wait_until(lambda: len(list(shared.glob("*.json"))) == 2, 30, message="both processes' first snapshots")
        yield service, shared
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.stop()


def requests_per_process(shared: Path, route: str) -> list[float]:
    """The requests of `route` each process counted, from their snapshots in the shared directory."""
    return [
        sum(
            value
            for family in json.loads(path.read_text())
            for name, labels, value in family["samples"]
            if name == "genserve_http_requests_total" and labels.get("route") == route
        )
        for path in shared.glob("*.json")
    ]


def served(text: str, route: str, status: int) -> float:
    pattern = rf'genserve_http_requests_total{{method="GET",route="{re.escape(route)}",status="{status}"}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_metrics_are_totals_across_the_processes(two_processes: tuple[LiveService, Path]) -> None:
    service, shared = two_processes
    key = {"Authorization": f"Bearer {METRICS_KEY}"}
    statuses = Counter(  # a connection each: the kernel hands them to either process
        httpx.get(f"{service.base_url}/v1/datasets", headers=key, timeout=30).status_code for _ in range(REQUESTS)
    )
    assert set(statuses) <= {200, 429}, statuses
    time.sleep(SNAPSHOT_INTERVAL_S * 2.5)
    per_process = requests_per_process(shared, "/v1/datasets")
    assert len(per_process) == 2 and all(n > 0 for n in per_process), per_process  # both served some
    assert sum(per_process) == REQUESTS
    scraper = {"Authorization": f"Bearer {SCRAPE_KEY}"}
    scrapes = [httpx.get(f"{service.base_url}/metrics", headers=scraper, timeout=30).text for _ in range(12)]
    for status, count in statuses.items():
        assert {served(text, "/v1/datasets", status) for text in scrapes} == {count}, (status, per_process)


def test_a_keys_rate_limit_holds_across_the_processes(two_processes: tuple[LiveService, Path]) -> None:
    """Eight clients, a new connection per request (spread over both processes), for a few seconds: the key gets
    its burst plus the rate over the time, within 10%, not that per process."""
    service, _ = two_processes
    key = {"Authorization": f"Bearer {RATE_KEY}"}
    seconds = 3.0

    sent: list[float] = []  # when each request was sent

    def client() -> Counter[int]:
        got: Counter[int] = Counter()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent.append(time.monotonic())
            got[httpx.get(f"{service.base_url}/v1/datasets", headers=key, timeout=30).status_code] += 1
        return got

    with ThreadPoolExecutor(8) as pool:
        outcomes = sum((f.result() for f in [pool.submit(client) for _ in range(8)]), Counter())
    # The key's allowance over the time requests were being sent: its bucket starts full, so the time before the
    # first request (threads starting) and after the last (its answer) would count tokens no request could take.
    elapsed = max(sent) - min(sent)
    expected = BURST + RATE * elapsed
    print(f"2 processes, {elapsed:.1f} s: {outcomes[200]} admitted of {sum(outcomes.values())}, {expected:.0f} allowed")
    assert set(outcomes) <= {200, 429} and outcomes[429] > 0, outcomes
    assert abs(outcomes[200] - expected) <= 0.1 * expected, (outcomes, expected)


def test_every_process_serves_a_model_and_forgets_it_when_deleted(two_processes: tuple[LiveService, Path]) -> None:
    """The model cache and hot reload work in every process: both load a model on use, and a deletion through one
    reaches the other (the models channel) — no request after the deletion's answer is served from either."""
    service, shared = two_processes
    key = {"Authorization": f"Bearer {MODEL_KEY}"}  # a key of its own: the other tests' buckets stay as they were
    model_id = store_untrained_model(service.settings.store_dir)
    url = f"{service.base_url}/v1/models/{model_id}/samples"
    # A connection each, paced within the key's rate limit, until both processes have taken some: the kernel hands
    # connections to whichever process accepts first, which on a busy machine can be one of them 16 times running.
    sampled: list[float] = []
    for seed in range(64):
        assert httpx.post(url, json={"seed": seed}, headers=key, timeout=30).status_code == 200
        time.sleep(1.0 / RATE)
        if seed % 16 == 15:
            time.sleep(SNAPSHOT_INTERVAL_S * 2.5)
            sampled = requests_per_process(shared, "/v1/models/{model_id}/samples")
            if len(sampled) == 2 and all(n > 0 for n in sampled):
                break
    assert len(sampled) == 2 and all(n > 0 for n in sampled), sampled  # both processes loaded and served it
    admin = {"Authorization": f"Bearer {TRAIN_KEY}"}
    assert httpx.delete(f"{service.base_url}/v1/models/{model_id}", headers=admin, timeout=30).status_code == 204
    time.sleep(0.5)  # the announcement's round trip
    after: Counter[int] = Counter()
    for _ in range(16):
        after[httpx.post(url, json={"seed": 1}, headers=key, timeout=30).status_code] += 1
        time.sleep(1.0 / RATE)
    assert after == Counter({404: 16}), after
