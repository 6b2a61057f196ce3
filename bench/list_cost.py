"""How long a list takes with many items: GET /v1/trainings on a store of N finished trainings (and a few queued
ones), in-process over the ASGI app, first page and a page deep in the list. Prints a markdown table.

    python -m bench.list_cost [--trainings 10000] [--repeats 5]

It writes N training records into a temporary store and uses Redis database 12 of the local server (flushed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from models.store import ArtifactStore, new_id, utcnow

REDIS_URL = "redis://127.0.0.1:6379/12"


def fill(store: ArtifactStore, n: int) -> None:
    for i in range(n):
        store.put_training(
            {
                "id": new_id("tr"),
                "status": "succeeded",
                "request": {"dataset": "ring2d", "family": "gan", "seed": i},
                "config": {"family": "gan", "steps": 100},
                "created_at": utcnow(),
                "started_at": utcnow(),
                "finished_at": utcnow(),
                "model_id": None,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trainings", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(store_dir=Path(tmp) / "store", data_dir=Path(tmp) / "data", redis_url=REDIS_URL)
        t = time.perf_counter()
        fill(ArtifactStore(settings.store_dir), args.trainings)
        print(f"{args.trainings} training records written in {time.perf_counter() - t:.1f} s")
        with TestClient(create_app(settings)) as client:
            for _ in range(3):
                client.post("/v1/trainings", json={"dataset": "ring2d", "family": "gan", "steps": 10})
            print("| request | items | median ms | max ms |")
            print("|---|---|---|---|")
            first = client.get("/v1/trainings").json()
            deep = first["next"]
            for _ in range(40):
                deep = client.get(deep).json()["next"] or deep
            for label, url in (
                ("first page (100)", "/v1/trainings"),
                ("a page of 1,000", "/v1/trainings?limit=1000"),
                ("page 41 by cursor", deep),
                ("the queue", "/v1/trainings?status=queued"),
            ):
                times, count = [], 0
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    r = client.get(url)
                    times.append((time.perf_counter() - t) * 1000)
                    count = len(r.json()["items"])
                print(f"| {label} | {count} | {statistics.median(times):.0f} | {max(times):.0f} |", flush=True)


if __name__ == "__main__":
    main()
