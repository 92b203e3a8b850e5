"""Publisher against real SUB sockets: sequence numbers, snapshots, never blocking, drops counted."""
import dataclasses
import json
import time
from typing import Dict, List, Optional

import cv2
import jsonschema
import numpy as np
import pytest
import zmq

from daemon.counters import StreamCounters
from daemon.errors import PublishError
from daemon.publish.events import CaptionEvent, Event, StreamEvent, json_schema
from daemon.pipeline.frames import Frame
from daemon.publish.publisher import Publisher
from daemon.publish.snapshot import encode_snapshot

DEADLINE_S = 15.0


class Counters:
    """counters_for() of a test: one StreamCounters per stream, created on first use."""

    def __init__(self) -> None:
        self.by_stream: Dict[str, StreamCounters] = {}

    def __call__(self, stream: str) -> StreamCounters:
        return self.by_stream.setdefault(stream, StreamCounters(stream))

    def get(self, stream: str, name: str) -> int:
        return self(stream).get(name)


def make_publisher(counters: Counters, **kwargs) -> Publisher:
    return Publisher("tcp://127.0.0.1:*", boot="boot1", model="demo", counters_for=counters, **kwargs)


def sub_socket(context: zmq.Context, endpoint: str, topics=("",), rcvhwm: Optional[int] = None,
               **options) -> zmq.Socket:
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    for name, value in options.items():
        setattr(sock, name, value)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sock.connect(endpoint)
    return sock


def wait_joined(publisher: Publisher, sock: zmq.Socket) -> None:
    """Beat the slow joiner: publish probe events until the SUB receives one."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        publisher.publish(StreamEvent.now("probe", state="online"))
        if sock.poll(50):
            return
    raise AssertionError("the subscription never took")


def recv_events(sock: zmq.Socket, stream: str, count: int) -> List[List[bytes]]:
    """The next `count` messages of `stream` (probes and other streams skipped)."""
    got: List[List[bytes]] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < count:
        assert time.monotonic() < deadline, "got %d of %d events" % (len(got), count)
        if sock.poll(100):
            parts = sock.recv_multipart()
            if json.loads(parts[1])["stream"] == stream:
                got.append(parts)
    return got


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)  # polling interval, not synchronisation: the condition decides


def caption(index: int, stream: str = "demo", text: Optional[str] = None) -> Event:
    frame = Frame(stream, index, index / 10.0, time.time(), time.monotonic(), np.zeros((1, 1, 3), np.uint8))
    return CaptionEvent.at_frame(frame, text=text or "caption %d" % index, previous=None)


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def counters():
    return Counters()


@pytest.fixture
def publisher(counters):
    pub = make_publisher(counters)
    pub.start()
    yield pub
    pub.stop(timeout=2.0)


def test_seq_is_contiguous_and_events_validate(context, publisher, counters):
    sock = sub_socket(context, publisher.endpoint, topics=("caption/", "stream/probe"))
    try:
        wait_joined(publisher, sock)
        for i in range(200):
            assert publisher.publish(caption(i), mono_time=time.monotonic())
        messages = recv_events(sock, "demo", 200)
    finally:
        sock.close()
    validator = jsonschema.Draft202012Validator(json_schema())
    events = [json.loads(parts[1]) for parts in messages]
    for parts, event in zip(messages, events):
        validator.validate(event)
        assert len(parts) == 2 and parts[0] == b"caption/demo"
    assert [e["seq"] for e in events] == list(range(1, 201))
    assert {e["boot"] for e in events} == {"boot1"} and {e["model"] for e in events} == {"demo"}
    assert all(e["latency_ms"] >= 0 for e in events)
    wait_for(lambda: counters.get("demo", "published") == 200, "published count")
    summary = publisher.latency_summary("demo")
    assert summary is not None and summary.count == 200
    assert publisher.latency_summary("demo") is None  # taken per interval


def test_snapshot_travels_as_third_part(context, publisher):
    image = np.full((360, 640, 3), (0, 0, 255), np.uint8)
    jpeg = encode_snapshot(image, max_side=160, quality=80)
    sock = sub_socket(context, publisher.endpoint)
    try:
        wait_joined(publisher, sock)
        publisher.publish(caption(1), jpeg=jpeg)
        (parts,) = recv_events(sock, "demo", 1)
    finally:
        sock.close()
    assert len(parts) == 3 and parts[2] == jpeg
    decoded = cv2.imdecode(np.frombuffer(parts[2], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (90, 160, 3)  # aspect kept, longer side = max_side
    assert decoded[45, 80, 2] > 200 and decoded[45, 80, 0] < 50


def test_snapshot_keeps_small_images_and_rejects_empty():
    small = np.zeros((20, 30, 3), np.uint8)
    assert cv2.imdecode(np.frombuffer(encode_snapshot(small, 640, 80), np.uint8), 1).shape == (20, 30, 3)
    from blip.errors import ImageError
    with pytest.raises(ImageError):
        encode_snapshot(np.zeros((0, 0, 3), np.uint8), 640, 80)


def test_a_subscriber_that_never_reads_does_not_block(context, counters):
    publisher = make_publisher(counters, send_hwm=50)
    publisher.start()
    sock = sub_socket(context, publisher.endpoint, rcvhwm=50)
    try:
        wait_joined(publisher, sock)
        accepted = sum(publisher.publish(caption(i)) for i in range(20000))
        assert counters.get("demo", "publish_dropped") == 20000 - accepted
        wait_for(lambda: counters.get("demo", "published") + counters.get("demo", "publish_dropped") == 20000,
                 "every event sent or counted as dropped")
        # what the SUB holds is in order; losses would show as gaps in seq
        seqs = [json.loads(p[1])["seq"] for p in recv_events(sock, "demo", 20)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 20
    finally:
        sock.close()
        publisher.stop(timeout=2.0)


def test_a_stuck_subscriber_is_counted_and_the_others_lose_nothing(context, counters):
    """NODROP first, then a lossy resend: the full subscriber is skipped and counted, nobody else is."""
    publisher = make_publisher(counters, send_hwm=100)
    publisher.start()
    stuck = sub_socket(context, publisher.endpoint, rcvhwm=1, rcvbuf=64 * 1024)
    good = sub_socket(context, publisher.endpoint, rcvhwm=0)
    total, batch = 5000, 50
    try:
        wait_joined(publisher, stuck)
        wait_joined(publisher, good)
        received: List[int] = []
        for start in range(0, total, batch):
            # a batch below send_hwm, read before the next: the good subscriber is never full itself
            assert all(publisher.publish(caption(i, text="x" * 2000)) for i in range(start, start + batch))
            received += [json.loads(p[1])["seq"] for p in recv_events(good, "demo", batch)]
        wait_for(lambda: counters.get("demo", "published") == total, "every event sent")
        stuck_seqs = []
        while stuck.poll(200):
            parts = stuck.recv_multipart()
            if json.loads(parts[1])["stream"] == "demo":
                stuck_seqs.append(json.loads(parts[1])["seq"])
    finally:
        for sock in (stuck, good):
            sock.close()
        publisher.stop(timeout=2.0)
    assert received == list(range(1, total + 1))
    assert counters.get("demo", "publish_dropped") == 0
    assert counters.get("demo", "subscriber_overflows") >= 1
    assert len(stuck_seqs) < total, "the stuck subscriber missed events"
    assert counters.get("probe", "subscriber_overflows") == 0  # probes went out before anyone was stuck


def test_messages_from_a_raw_peer_are_read_and_dropped(context, counters):
    """An XPUB hands peers' messages up; the publisher reads and drops them and keeps serving."""
    publisher = make_publisher(counters)
    publisher.start()
    good = sub_socket(context, publisher.endpoint, rcvhwm=0)
    peer = context.socket(zmq.XSUB)
    peer.setsockopt(zmq.LINGER, 0)
    peer.setsockopt(zmq.SNDTIMEO, int(DEADLINE_S * 1000))  # a send that blocks this long fails the test
    peer.connect(publisher.endpoint)
    try:
        wait_joined(publisher, good)
        for i in range(20000):  # not subscriptions, subscriptions and cancels, empty messages
            peer.send([b"\x05not a subscription", b"\x01caption/x%d" % i, b"\x00caption/x%d" % i, b""][i % 4])
        for i in range(100):
            publisher.publish(caption(i))
        seqs = [json.loads(p[1])["seq"] for p in recv_events(good, "demo", 100)]
    finally:
        for sock in (peer, good):
            sock.close()
        publisher.stop(timeout=2.0)
    assert seqs == list(range(1, 101))
    assert counters.get("demo", "publish_dropped") == 0


def test_a_full_queue_counts_drops_and_leaves_a_seq_gap(context, counters):
    publisher = make_publisher(counters, queue_size=5)
    results = [publisher.publish(caption(i)) for i in range(8)]  # not started: nothing drains
    assert results == [True] * 5 + [False] * 3
    assert counters.get("demo", "publish_dropped") == 3
    publisher.start()
    sock = sub_socket(context, publisher.endpoint)
    try:
        wait_joined(publisher, sock)
        publisher.publish(caption(9))
        seqs = [json.loads(recv_events(sock, "demo", 1)[0][1])["seq"]]
        while seqs[-1] <= 5:  # the five queued before anyone subscribed may or may not arrive
            seqs.append(json.loads(recv_events(sock, "demo", 1)[0][1])["seq"])
    finally:
        sock.close()
        publisher.stop(timeout=2.0)
    assert seqs[-1] == 9  # 6, 7, 8 were dropped: the gap shows it


def test_stop_flushes_what_is_queued(context, counters):
    publisher = make_publisher(counters)
    publisher.start()
    sock = sub_socket(context, publisher.endpoint)
    try:
        wait_joined(publisher, sock)
        for i in range(100):
            publisher.publish(caption(i))
        publisher.stop(timeout=5.0)
        seqs = [json.loads(p[1])["seq"] for p in recv_events(sock, "demo", 100)]
    finally:
        sock.close()
    assert seqs == list(range(1, 101))
    assert not publisher.publish(caption(101))  # after stop: dropped and counted, never blocks
    assert counters.get("demo", "publish_dropped") == 1


def test_bind_error_is_one_line(counters):
    first = make_publisher(counters)
    first.start()
    try:
        second = Publisher(first.endpoint, boot="b", model="m", counters_for=counters)
        with pytest.raises(PublishError) as info:
            second.start()
        message = str(info.value)
        assert message.startswith("publish.bind %s: " % first.endpoint)
        assert "in use" in message and "\n" not in message
    finally:
        first.stop(timeout=1.0)


def test_an_ipc_path_held_by_a_live_publisher_is_refused_and_removed_after_stop(tmp_path, counters):
    path = tmp_path / "events.sock"
    first = Publisher("ipc://%s" % path, boot="a", model="m", counters_for=counters)
    first.start()
    try:
        second = Publisher("ipc://%s" % path, boot="b", model="m", counters_for=counters)
        with pytest.raises(PublishError) as info:
            second.start()
        assert str(info.value) == "publish.bind ipc://%s: in use by another running process (another blipd?)" % path
        assert path.exists()
    finally:
        first.stop(timeout=1.0)
    assert not path.exists(), "a clean stop leaves no socket file"


def test_a_stale_ipc_file_is_replaced(tmp_path, counters):
    import socket

    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a file left by a daemon that was killed: nothing listens on it
    dead.close()
    publisher = Publisher("ipc://%s" % path, boot="a", model="m", counters_for=counters)
    publisher.start()
    publisher.stop(timeout=1.0)
    assert not path.exists()


def test_the_final_events_count_everything_sent_before_them(context, counters):
    """stop(final=...) builds the closing stats after the flush: their counts include every event
    that was queued when stop began, and seq accounts for all of them."""
    from daemon.publish.events import StatsEvent

    publisher = make_publisher(counters)
    publisher.start()
    sock = sub_socket(context, publisher.endpoint, rcvhwm=0)
    try:
        wait_joined(publisher, sock)
        for i in range(300):
            publisher.publish(caption(i, text="y" * 1000))
        final = lambda: [StatsEvent.from_counters("demo", counters("demo").snapshot(), {}, 1.0, 0, None)]
        publisher.stop(timeout=5.0, final=final)
        messages = recv_events(sock, "demo", 301)
    finally:
        sock.close()
    stats = json.loads(messages[-1][1])
    assert stats["type"] == "stats" and stats["seq"] == 301
    assert stats["published"] + stats["publish_dropped"] == 300 == stats["published"]


def test_snapshots_are_bounded_in_bytes():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8)  # 4K that compresses badly
    unbounded = encode_snapshot(noise, max_side=3840, quality=95)
    assert len(unbounded) > 1_000_000
    bounded = encode_snapshot(noise, max_side=3840, quality=95, max_bytes=200_000)
    assert len(bounded) <= 200_000
    assert cv2.imdecode(np.frombuffer(bounded, np.uint8), cv2.IMREAD_COLOR) is not None


def test_the_queue_is_bounded_in_bytes(counters):
    publisher = make_publisher(counters, max_buffer_bytes=1024 * 1024, max_snapshot_bytes=300_000)
    jpeg = b"\xff" * 300_000
    results = [publisher.publish(caption(i), jpeg=jpeg) for i in range(6)]  # not started: nothing drains
    assert results == [True] * 3 + [False] * 3  # 3 x (300 kB + JSON allowance) fit in 1 MiB
    assert counters.get("demo", "publish_dropped") == 3
    assert publisher.publish(caption(7))  # a small event still fits
    publisher.stop(timeout=0.5)


def test_a_stopped_subscriber_pins_a_bounded_number_of_snapshot_bytes(context, counters):
    """With snapshots, send_hwm is lowered to what the byte budget holds: a subscriber that
    stopped reading overflows (counted) after a few megabytes, not after 1000 snapshots."""
    from daemon.publish.publisher import effective_send_hwm

    assert effective_send_hwm(1000, 4 * 1024 * 1024, 256 * 1024) == 15
    assert effective_send_hwm(1000, 4 * 1024 * 1024, None) == 1000
    publisher = make_publisher(counters, send_hwm=1000, max_buffer_bytes=4 * 1024 * 1024,
                               max_snapshot_bytes=256 * 1024)
    publisher.start()
    stuck = sub_socket(context, publisher.endpoint, rcvhwm=1, rcvbuf=64 * 1024)
    jpeg = b"\xff" * 200_000
    try:
        wait_joined(publisher, stuck)
        for i in range(100):  # 20 MB offered to a subscriber that reads nothing
            assert publisher.publish(caption(i), jpeg=jpeg)
            wait_for(lambda: counters.get("demo", "published") == i + 1, "event %d sent" % i)
    finally:
        stuck.close()
        publisher.stop(timeout=1.0)
    assert counters.get("demo", "subscriber_overflows") >= 1


class _Unwritable(CaptionEvent):
    """An event whose JSON cannot be built for a reason the publisher does not foresee."""

    def to_json(self, stamp):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot write this event")


def test_an_event_that_cannot_be_written_is_counted_and_the_publisher_goes_on(context, publisher, counters):
    """Defect: an exception other than ValueError/TypeError/ZMQError ended the publisher thread;
    every later event then filled the queue and was dropped."""
    sock = sub_socket(context, publisher.endpoint, topics=("caption/", "stream/probe"))
    try:
        wait_joined(publisher, sock)
        good = caption(1)
        bad = _Unwritable(**{f.name: getattr(good, f.name) for f in dataclasses.fields(good) if f.init})
        assert publisher.publish(bad)
        assert publisher.publish(caption(2))
        (parts,) = recv_events(sock, "demo", 1)
    finally:
        sock.close()
    assert json.loads(parts[1])["seq"] == 2, "the unwritable event leaves its gap in seq"
    wait_for(lambda: counters.get("demo", "publish_dropped") == 1, "the unwritable event counted dropped")
