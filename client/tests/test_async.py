"""AsyncClient against the real service: the same answers as the blocking client."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from conftest import TINY, Service
from genserve_client import AsyncClient, Event, NotFound


async def test_the_async_client_answers_as_the_sync_one(service: Service) -> None:
    with service.client() as sync:
        sync_ids = [d.id for d in sync.datasets.list()]
        async with AsyncClient(service.url, service.api_key) as ac:
            assert [d.id async for d in ac.datasets.list(page_size=2)] == sync_ids
            training = await ac.trainings.create("ring2d", "gan", steps=200, model_name="async-lists", **TINY)
            async with aclosing(training.events()) as events:  # leaving early closes the stream at once
                first = await anext(events)
            assert first.id is not None
            seen: list[object] = []
            model = await training.wait(progress=seen.append, timeout=60)
            assert all(isinstance(e, Event) for e in seen) and seen[0] == first  # from the stream's start
            progress = [e.progress.step for e in seen if isinstance(e, Event) and e.event == "progress" and e.progress]
            assert progress == sorted(progress) and progress[-1] == 200
            assert training.status == "succeeded" and training.model_id == model.id and training.finished_at
            after = [e async for e in training.events()]  # ended: its final status alone
            assert len(after) == 1 and after[0].is_terminal and after[0].id is None
            assert model == sync.models.get(model.id) == await ac.models.get(model.id)
            assert [m.id async for m in ac.models.list(dataset="ring2d", page_size=1)][0] == model.id
            names = await ac.model_names.list(page_size=1)  # every page
            assert "async-lists" in [n.name for n in names] and names == sync.model_names.list()
            samples = await ac.models.sample(model.id, n=16, seed=3)
            assert samples.content == sync.models.sample(model.id, n=16, seed=3).content
            assert samples.array().shape == (16, 2)
            listed = [t async for t in ac.trainings.list(status="succeeded", page_size=1)]
            assert listed[0].id == training.id and (await listed[0].refresh()).model_id == model.id
            with pytest.raises(NotFound):
                await ac.models.get("mdl_0000000000000000")
