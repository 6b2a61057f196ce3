"""Following a training: a stream cut mid-way resumes without loss or repeats; resuming after a given id; cancel;
wait's timeout."""

from __future__ import annotations

import re
import threading

import pytest

from conftest import TINY, CuttableProxy, Service
from genserve_client import Client, Conflict, Event, TrainingCanceled, WaitTimeout

CUT_AFTER = 5  # events read before the connection is cut


def id_key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def test_a_cut_stream_resumes_after_the_last_event_seen(service: Service, proxy: CuttableProxy) -> None:
    with service.client() as direct:
        training = direct.trainings.create("ring2d", "gan", steps=600, **TINY)
        uncut: list[Event] = []
        reader = threading.Thread(target=lambda: uncut.extend(direct.trainings.get(training.id).events()))
        reader.start()
        with Client(proxy.url, service.api_key) as through_proxy:
            cut: list[Event] = []
            for event in through_proxy.trainings.get(training.id).events():
                cut.append(event)
                if len(cut) == CUT_AFTER:
                    proxy.cut()  # the connection dies under the reader, as a network failure would do it
        reader.join(60)
    assert not reader.is_alive()

    streams = [r for r in proxy.requests_text() if f"/v1/trainings/{training.id}/events" in r]
    assert len(streams) >= 2, "the stream was not opened again"
    resumed_after = re.search(r"(?im)^last-event-id: *(\S+)", streams[1])
    assert resumed_after is not None and "last-event-id" not in streams[0].lower()
    ids = [e.id for e in cut]
    assert resumed_after.group(1) in ids[CUT_AFTER - 1 : -1]  # the last event handed out before the cut was noticed
    assert cut[-1].is_terminal and cut[-1].status == "succeeded"
    assert all(i is not None for i in ids)
    keys = [id_key(i) for i in ids if i is not None]
    assert keys == sorted(set(keys)), "ids not strictly increasing: an event was repeated"
    assert [(e.id, e.event, e.data) for e in cut] == [(e.id, e.event, e.data) for e in uncut], "an event was lost"
    assert len(cut) > CUT_AFTER + 3  # events came after the reconnection too

    # Cut off while the training ended: a resume after it has ended still gets every event it missed.
    with service.client() as late:
        replayed = list(late.trainings.get(training.id).events(last_event_id=ids[2]))
    assert [(e.id, e.event, e.data) for e in replayed] == [(e.id, e.event, e.data) for e in cut[3:]]


def test_events_after_a_given_id_then_cancel_ends_wait_with_training_canceled(client: Client) -> None:
    training = client.trainings.create("ring2d", "gan", steps=200_000, **TINY)
    stream = training.events()
    first = [next(stream) for _ in range(3)]
    stream.close()
    later = training.events(last_event_id=first[-1].id)
    for event in later:
        assert event.id is not None and id_key(event.id) > id_key(first[-1].id or "")
        if event.event == "progress":
            break  # running now
    later.close()
    with pytest.raises(WaitTimeout):
        training.wait(timeout=0.3)
    assert training.cancel() is training and training.status in ("canceling", "canceled")
    with pytest.raises(TrainingCanceled) as caught:
        training.wait(timeout=60)
    assert caught.value.training is training and training.status == "canceled" and training.model_id is None
    with pytest.raises(Conflict):
        training.cancel()  # it has ended
    assert client.trainings.get(training.id).status == "canceled"
