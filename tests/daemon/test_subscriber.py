"""`blipd sub` against the real publisher: raw lines, pretty lines, topics, CURVE, Ctrl-C."""
import json
import logging
import threading
import time
from typing import List

import pytest

from daemon.publish.events import AnswerEvent, MatchEvent, StatsEvent, StreamEvent
from daemon.publish.publisher import Publisher
from daemon.commands.sub import format_event, run_subscriber
from tests.daemon.test_curve import Settings, keys  # noqa: F401  (fixture)
from tests.daemon.test_publisher import Counters, caption, make_publisher

DEADLINE_S = 15.0


class Lines:
    """A text stream the subscriber thread writes while the test reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text = ""

    def write(self, text: str) -> int:
        with self._lock:
            self._text += text
        return len(text)

    def flush(self) -> None:
        pass

    def lines(self) -> List[str]:
        with self._lock:
            return self._text.splitlines()


class Running:
    """run_subscriber in a thread, with a probe to beat the slow joiner."""

    def __init__(self, publisher: Publisher, **kwargs) -> None:
        self.publisher = publisher
        self.out = Lines()
        self.stop = threading.Event()
        self.rc = None
        kwargs.setdefault("topics", ["caption/", "match/", "stream/probe"])
        kwargs.setdefault("pretty", False)
        self._thread = threading.Thread(target=self._run, args=(kwargs,), daemon=True)
        self._thread.start()

    def _run(self, kwargs) -> None:
        self.rc = run_subscriber(self.publisher.endpoint, out=self.out, stop_event=self.stop, **kwargs)

    def wait_joined(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not self.out.lines():
            assert time.monotonic() < deadline, "the subscriber never received a probe"
            assert self._thread.is_alive(), "the subscriber ended early (rc %s)" % self.rc
            self.publisher.publish(StreamEvent.now("probe", state="online"))
            time.sleep(0.05)  # pacing the probes; arrival of a line is the synchronisation

    def wait_lines(self, predicate, count: int) -> List[str]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            found = [line for line in self.out.lines() if predicate(line)]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, "got %r" % found
            time.sleep(0.01)

    def finish(self) -> int:
        self.stop.set()
        self._thread.join(DEADLINE_S)
        assert not self._thread.is_alive()
        return self.rc


@pytest.fixture
def publisher():
    pub = make_publisher(Counters())
    pub.start()
    yield pub
    pub.stop(timeout=2.0)


def test_raw_lines_are_the_published_json(publisher):
    sub = Running(publisher)
    sub.wait_joined()
    for i in range(3):
        publisher.publish(caption(i))
    lines = sub.wait_lines(lambda line: '"stream":"demo"' in line, 3)
    assert sub.finish() == 0
    events = [json.loads(line) for line in lines]
    assert [(e["type"], e["seq"], e["text"]) for e in events] == [
        ("caption", 1, "caption 0"), ("caption", 2, "caption 1"), ("caption", 3, "caption 2")]


def test_topics_filter_and_max_events(publisher):
    sub = Running(publisher, topics=["match/", "stream/probe"], max_events=None)
    sub.wait_joined()
    publisher.publish(caption(1))
    publisher.publish(MatchEvent.now("demo", prompt="red", text="a red circle", phase="start", score=0.8,
                                     raw_score=0.9, peak=0.8, started=time.time(), duration_s=0.0))
    (line,) = sub.wait_lines(lambda line: '"stream":"demo"' in line, 1)
    assert json.loads(line)["type"] == "match"  # the caption, sent first, was filtered out
    assert sub.finish() == 0


def test_pretty_end_to_end_with_max_events(publisher):
    sub = Running(publisher, pretty=True, max_events=4)
    sub.wait_joined()
    deadline = time.monotonic() + DEADLINE_S
    index = 0
    while sub._thread.is_alive():  # it must return by itself once 4 events are printed
        assert time.monotonic() < deadline
        index += 1
        publisher.publish(caption(index))
        sub._thread.join(0.02)
    assert sub.rc == 0
    lines = sub.out.lines()
    assert len(lines) == 4
    for line in lines:
        clock, stream, kind, detail = line.split(None, 3)
        assert len(clock) == 8 and clock[2] == clock[5] == ":"
        assert (stream, kind, detail) == ("probe", "stream", "online") or (
            stream == "demo" and kind == "caption" and detail.startswith('"caption '))


def test_curve_client_receives(keys):  # noqa: F811
    publisher = make_publisher(Counters(), curve=Settings(keys["server_secret"], keys["clients"]))
    publisher.start()
    try:
        sub = Running(publisher, curve_server_key=keys["server_public"], curve_client_keys=keys["allowed"])
        sub.wait_joined()
        assert sub.finish() == 0
    finally:
        publisher.stop(timeout=2.0)


def test_bad_client_key_file_exits_2(tmp_path):
    rc = run_subscriber("tcp://127.0.0.1:1", [], False, Lines(), curve_server_key="x" * 40,
                        curve_client_keys=str(tmp_path / "missing.key_secret"))
    assert rc == 2


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5556", "tcp://127.0.0.1", "tcp://127.0.0.1:x", "udp://h:1"])
def test_bad_endpoint_exits_2_with_one_line(endpoint, caplog):
    with caplog.at_level(logging.ERROR):
        rc = run_subscriber(endpoint, [], False, Lines())
    assert rc == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][0].startswith("endpoint %s: " % endpoint)


def test_ctrl_c_exits_0():
    class Interrupting(threading.Event):
        def is_set(self) -> bool:
            raise KeyboardInterrupt

    assert run_subscriber("tcp://127.0.0.1:1", ["caption/"], True, Lines(), stop_event=Interrupting()) == 0


def _event(e) -> dict:
    from daemon.publish.events import Stamp

    return json.loads(e.to_json(Stamp(5, "b", "demo", 3.0)))


def test_pretty_formats():
    started = 1714564801.0
    frame_fields = dict(stream="demo", time=1714564801.0, pts_s=1.0, frame=10)
    cap = _event(caption(1))
    cap["time"] = "2024-05-01T12:00:01.000Z"
    cap["text"] = "a red circle on the left"
    assert format_event(cap) == '12:00:01 demo caption   "a red circle on the left"'
    match = _event(MatchEvent(prompt="red_circle", text="x", phase="start", score=0.82, raw_score=0.9,
                              peak=0.82, started=started, duration_s=0.0, **frame_fields))
    assert format_event(match) == "12:00:01 demo match     start red_circle 0.82"
    answer = _event(AnswerEvent(question="count", text="how many shapes?", answer="2", **frame_fields))
    assert format_event(answer).endswith("answer    how many shapes? -> 2")
    stream = _event(StreamEvent.now("demo", state="reconnecting", attempt=3, retry_in_s=4.0))
    assert format_event(stream).endswith("stream    reconnecting (attempt 3, retry in 4.0 s)")
    stats = _event(StatsEvent.from_counters("demo", {"decoded": 30, "inferred": 3}, {}, 10.0, 0, None))
    assert "stats     decoded 30 inferred 3" in format_event(stats)
    assert "lost" not in format_event(stats) and "overflows" not in format_event(stats)
    lossy = _event(StatsEvent.from_counters("demo", {"decoded": 30, "publish_dropped": 2, "subscriber_overflows": 1},
                                            {}, 10.0, 0, None))
    assert format_event(lossy).endswith(", events lost 2, subscriber overflows 1")
    seen = {}
    format_event(cap, seen)
    cap["seq"] = 9
    assert format_event(cap, seen).endswith("(3 lost)")
    assert format_event(cap, seen, jpeg_bytes=20480).endswith("[jpeg 20 kB]")


def test_pretty_gap_table_is_one_entry_per_stream_across_boots():
    cap = _event(caption(1))
    seen = {}
    for boot in range(50):  # a daemon restarted many times: seq starts at 1 again, no gap
        cap["boot"], cap["seq"] = "boot%d" % boot, 1
        assert "lost" not in format_event(cap, seen)
    assert len(seen) == 1
    cap["seq"] = 4
    assert format_event(cap, seen).endswith("(2 lost)")
