"""Scheduler: newest wins per slot, stale frames skipped, fair pick, close wakes workers, every drop counted."""
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from daemon.counters import StreamCounters
from daemon.pipeline.frames import Frame
from daemon.pipeline.scheduler import Scheduler

IMAGE = np.zeros((2, 2, 3), np.uint8)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Counters(Dict[str, StreamCounters]):
    def __missing__(self, name: str) -> StreamCounters:
        self[name] = StreamCounters(name)
        return self[name]

    def dropped(self, name: str) -> Dict[str, int]:
        return self[name].snapshot()["dropped"]  # type: ignore[return-value]


def frame(stream: str, index: int, mono: float = 100.0) -> Frame:
    return Frame(stream, index, index / 10, 0.0, mono, IMAGE)


def make(clock: Optional[Clock] = None) -> Tuple[Scheduler, Counters, Clock]:
    counters = Counters()
    clock = clock or Clock()
    return Scheduler(counters.__getitem__, clock=clock), counters, clock


def test_full_slot_keeps_the_newest_frame() -> None:
    sched, counters, _ = make()
    sched.add_stream("a")
    for i in range(3):
        sched.put(frame("a", i))
    assert sched.depth() == 1 and sched.depth_of("a") == 1
    got = sched.get(timeout=0)
    assert got is not None and got.index == 2
    assert counters.dropped("a")["replaced"] == 2
    assert sched.get(timeout=0) is None


def test_bigger_slot_is_fifo() -> None:
    sched, counters, _ = make()
    sched.add_stream("a", slot_size=3)
    for i in range(4):
        sched.put(frame("a", i))
    assert [sched.get(0).index for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert counters.dropped("a")["replaced"] == 1


def test_frames_older_than_max_age_are_skipped_at_pick_time() -> None:
    sched, counters, clock = make()
    sched.add_stream("a", max_frame_age_s=2.0)
    sched.add_stream("b", max_frame_age_s=10.0)
    sched.put(frame("a", 0, mono=100.0))
    sched.put(frame("b", 0, mono=100.0))
    clock.now = 105.0
    got = sched.get(timeout=0)
    assert got is not None and got.stream == "b"
    assert sched.get(timeout=0) is None
    assert counters.dropped("a")["too_old"] == 1 and counters.dropped("b")["too_old"] == 0


def test_streams_are_served_round_robin() -> None:
    sched, _, _ = make()
    sched.add_stream("busy", slot_size=10)
    sched.add_stream("quiet", slot_size=10)
    sched.add_stream("idle")
    for i in range(6):
        sched.put(frame("busy", i))
    sched.put(frame("quiet", 0))
    sched.put(frame("quiet", 1))
    order = []
    while True:
        got = sched.get(timeout=0)
        if got is None:
            break
        order.append("%s%d" % (got.stream, got.index))
    assert order == ["busy0", "quiet0", "busy1", "quiet1", "busy2", "busy3", "busy4", "busy5"]


def two_of_a_one_of_b() -> Tuple[Scheduler, Counters]:
    """Stream a (slot 2) with frames 0 and 1 queued, stream b with frame 0."""
    sched, counters, _ = make()
    sched.add_stream("a", slot_size=2)
    sched.add_stream("b")
    for f in (frame("a", 0), frame("a", 1), frame("b", 0)):
        sched.put(f)
    return sched, counters


def test_a_held_stream_goes_to_no_other_worker_until_done() -> None:
    """Two workers, one stream with two frames queued: the second worker gets the other stream's
    frame, or nothing, never the held stream's next one (that would let it overtake the first)."""
    sched, counters = two_of_a_one_of_b()
    first = sched.get(timeout=0, hold=True)
    second = sched.get(timeout=0, hold=True)
    assert (first.stream, first.index, second.stream) == ("a", 0, "b")  # type: ignore[union-attr]
    assert sched.get(timeout=0, hold=True) is None and sched.depth_of("a") == 1
    waiting = []
    getter = threading.Thread(target=lambda: waiting.append(sched.get(timeout=30, hold=True)))
    getter.start()
    sched.done("a")  # wakes the waiting worker with a's next frame
    getter.join(30)
    assert [(f.stream, f.index) for f in waiting] == [("a", 1)]
    sched.done("b")
    sched.done("b")  # done twice, or for a stream never held: harmless
    assert sum(counters.dropped("a").values()) == 0


def test_remove_close_and_unknown_streams_count_shutdown() -> None:
    sched, counters = two_of_a_one_of_b()
    sched.remove_stream("a")
    sched.remove_stream("a")  # idempotent
    sched.put(frame("a", 2))  # a reader that has not stopped yet
    assert counters.dropped("a")["shutdown"] == 3
    sched.close()
    assert counters.dropped("b")["shutdown"] == 1
    assert sched.get(timeout=0) is None
    with pytest.raises(ValueError):
        sched.add_stream("b")


def test_close_wakes_blocked_workers() -> None:
    sched = Scheduler(StreamCounters)
    results: List[Optional[Frame]] = []
    workers = [threading.Thread(target=lambda: results.append(sched.get(timeout=60))) for _ in range(3)]
    for worker in workers:
        worker.start()
    sched.close()
    for worker in workers:
        worker.join(timeout=10)
    assert not any(worker.is_alive() for worker in workers)
    assert results == [None, None, None]


def test_a_put_wakes_a_waiting_worker() -> None:
    sched = Scheduler(StreamCounters)
    sched.add_stream("a")
    got: List[Optional[Frame]] = []
    worker = threading.Thread(target=lambda: got.append(sched.get(timeout=60)))
    worker.start()
    sched.put(Frame("a", 7, 0.0, 0.0, time.monotonic(), IMAGE))
    worker.join(timeout=10)
    assert not worker.is_alive() and got and got[0] is not None and got[0].index == 7


def test_concurrent_readers_and_workers_account_for_every_frame() -> None:
    counters = Counters()
    for name in ("s0", "s1", "s2"):
        counters[name] = StreamCounters(name)  # made up front: Counters.__missing__ is not thread-safe
    sched = Scheduler(counters.__getitem__)
    streams = list(counters)
    for name in streams:
        sched.add_stream(name, slot_size=2, max_frame_age_s=0.05)
    taken: List[Frame] = []

    def work() -> None:
        while True:
            got = sched.get(timeout=5)
            if got is None:
                return
            taken.append(got)

    def read(name: str) -> None:
        for i in range(300):
            sched.put(Frame(name, i, 0.0, 0.0, time.monotonic(), IMAGE))

    workers = [threading.Thread(target=work) for _ in range(3)]
    readers = [threading.Thread(target=read, args=(name,)) for name in streams]
    for thread in workers + readers:
        thread.start()
    for thread in readers:
        thread.join(timeout=30)
    sched.close()
    for thread in workers:
        thread.join(timeout=30)
    for name in streams:
        dropped = counters.dropped(name)
        handed = sum(1 for f in taken if f.stream == name)
        assert handed + dropped["replaced"] + dropped["too_old"] + dropped["shutdown"] == 300
    assert taken  # the workers did get frames


def _waiting_put(sched: Scheduler, f: Frame) -> threading.Thread:
    thread = threading.Thread(target=sched.put, args=(f,), kwargs={"wait": True}, daemon=True)
    thread.start()
    return thread


def test_a_waiting_put_waits_for_room_and_never_replaces() -> None:
    """realtime: false files: the reader waits for the worker instead of dropping frames."""
    sched, counters, _ = make()
    sched.add_stream("file", slot_size=1, max_frame_age_s=float("inf"))
    sched.put(frame("file", 0), wait=True)
    blocked = _waiting_put(sched, frame("file", 1))
    blocked.join(0.2)
    assert blocked.is_alive(), "the slot is full: the reader waits"
    got = sched.get(timeout=1)
    assert got is not None and got.index == 0
    blocked.join(5)
    assert not blocked.is_alive()
    got = sched.get(timeout=1)
    assert got is not None and got.index == 1
    assert sum(counters.dropped("file").values()) == 0


def test_release_lets_a_waiting_reader_go_and_counts_its_frame() -> None:
    sched, counters, _ = make()
    sched.add_stream("file", slot_size=1, max_frame_age_s=float("inf"))
    sched.put(frame("file", 0), wait=True)
    blocked = _waiting_put(sched, frame("file", 1))
    sched.release("file")
    blocked.join(5)
    assert not blocked.is_alive()
    assert counters.dropped("file")["shutdown"] == 1
    sched.remove_stream("file")
    assert counters.dropped("file")["shutdown"] == 2


def test_an_infinite_max_age_never_drops_too_old() -> None:
    clock = Clock()
    sched, counters, _ = make(clock)
    sched.add_stream("file", max_frame_age_s=float("inf"))
    sched.put(frame("file", 0, mono=100.0))
    clock.now = 1e9
    got = sched.get(timeout=0)
    assert got is not None and counters.dropped("file")["too_old"] == 0
