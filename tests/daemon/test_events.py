"""Events: every type validates against the generated schema; wrong events do not."""
import json
import pathlib
import subprocess
import sys

import jsonschema
import numpy as np
import pytest

from daemon.counters import DROP_REASONS, StreamCounters
from daemon.publish.events import (AnswerEvent, CaptionEvent, DropCounts, LatencySummary, MatchEvent, Stamp,
                           StatsEvent, StreamEvent, iso_time, json_schema, schema_text)
from daemon.pipeline.frames import Frame
from daemon.pipeline.tracking import MatchPhase

ROOT = pathlib.Path(__file__).resolve().parents[2]
STAMP = Stamp(seq=7, boot="b0a1", model="demo", latency_ms=12.5)


def _frame() -> Frame:
    return Frame(stream="demo", index=42, pts_s=2.8, wall_time=1714564801.25, mono_time=100.0,
                 image=np.zeros((4, 4, 3), np.uint8))


def sample_events():
    """One event of every type, as workers and supervisors build them."""
    frame = _frame()
    counters = StreamCounters("demo")
    counters.add("decoded", 30)
    counters.add("inferred", 3)
    counters.drop("replaced", 2)
    phase = MatchPhase("red_circle", "a red circle", "start", np.float32(0.82), 0.9, 0.82,
                       1714564800.0, 1.25)
    return [
        CaptionEvent.at_frame(frame, text="a red circle on the left", previous=None),
        MatchEvent.from_phase(frame, phase),
        AnswerEvent.at_frame(frame, question="count", text="how many shapes?", answer="2", previous="3"),
        StreamEvent.now("demo", state="reconnecting", reason="connection refused", attempt=3,
                        retry_in_s=4.0),
        StatsEvent.from_counters("demo", counters.snapshot(), {}, 10.0, queue_depth=1,
                                 latency=LatencySummary.of([10.0, 20.0, 30.0])),
        StatsEvent.from_counters("demo", counters.snapshot(), counters.snapshot(), 10.0, 0, None),
    ]


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("index", range(6))
def test_every_event_type_validates(validator, index):
    event = sample_events()[index]
    data = json.loads(event.to_json(STAMP).decode("utf-8"))
    validator.validate(data)
    assert data["type"] == event.TYPE and data["seq"] == 7 and data["boot"] == "b0a1"
    assert event.topic == "%s/demo" % event.TYPE


def test_frame_fields_and_json_form():
    caption, match = sample_events()[:2]
    raw = caption.to_json(STAMP)
    assert b" " not in raw.replace(b"a red circle on the left", b"")  # compact
    data = json.loads(raw)
    assert list(data)[:10] == ["schema", "type", "stream", "seq", "boot", "time", "pts_s", "frame",
                               "latency_ms", "model"]
    assert data["time"] == "2024-05-01T12:00:01.250Z"
    assert (data["pts_s"], data["frame"], data["latency_ms"]) == (2.8, 42, 12.5)
    assert json.loads(match.to_json(STAMP))["started"] == iso_time(1714564800.0)


def test_stream_event_has_no_frame(validator):
    data = json.loads(StreamEvent.now("cam-1", state="online").to_json(
        Stamp(1, "b", "demo", None)))
    validator.validate(data)
    assert data["pts_s"] is None and data["frame"] is None and data["latency_ms"] is None


def test_stats_rates_and_latency():
    counters = StreamCounters("demo")
    before = counters.snapshot()
    counters.add("decoded", 50)
    counters.add("inferred", 5)
    stats = StatsEvent.from_counters("demo", counters.snapshot(), before, 10.0, 2,
                                     LatencySummary.of([float(v) for v in range(1, 101)]))
    data = json.loads(stats.to_json(STAMP))
    assert (data["fps_in"], data["fps_out"], data["decoded"]) == (5.0, 0.5, 50)
    assert data["latency"] == {"count": 100, "p50_ms": 50.0, "p95_ms": 95.0, "max_ms": 100.0}
    assert LatencySummary.of([]) is None


def test_stats_carry_task_failures_and_source_damage(validator):
    counters = StreamCounters("demo")
    counters.add("failed_match", 2)
    counters.add("undecodable", 3)
    counters.add("pts_discontinuities", 1)
    data = StatsEvent.from_counters("demo", counters.snapshot(), {}, 10.0, 0, None).to_dict(STAMP)
    validator.validate(data)
    assert data["task_failures"] == {"caption": 0, "match": 2, "answer": 0}
    assert (data["undecodable"], data["pts_discontinuities"]) == (3, 1)


def test_drop_counts_match_counter_reasons():
    assert tuple(DropCounts.__dataclass_fields__) == DROP_REASONS


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(extra=1),
    lambda d: d.pop("seq"),
    lambda d: d.update(schema=2),
    lambda d: d.update(time="2024-05-01 12:00:01"),
    lambda d: d.update(stream="Bad Name"),
    lambda d: d.update(score="high"),
    lambda d: d.update(phase="begin"),
])
def test_wrong_event_is_rejected(validator, mutate):
    data = json.loads(sample_events()[1].to_json(STAMP))
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(data)


def test_bad_values_fail_early():
    with pytest.raises(ValueError, match="stream demo"):
        StreamEvent.now("demo", state="asleep")
    with pytest.raises(ValueError):  # NaN must never become invalid JSON on the wire
        CaptionEvent.at_frame(_frame(), text="x").to_json(Stamp(1, "b", "m", float("nan")))


def test_committed_schema_is_the_generated_one():
    committed = (ROOT / "config" / "events.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text()
    out = subprocess.run([sys.executable, "-m", "daemon.publish.events"], cwd=str(ROOT), check=True,
                         stdout=subprocess.PIPE, timeout=60).stdout.decode("utf-8")
    assert out == committed
