"""Event types and their JSON form (schema version 1); `python -m daemon.publish.events` prints the JSON Schema.

Workers build the frozen events below from a frame (or, for `stream` and `stats`, from the clock)
and hand them to the publisher, which alone knows the per-stream sequence number, the boot id and
when the message actually leaves: it stamps those with a `Stamp` at send time. The schema is
generated from these dataclasses so the code and `config/events.schema.json` cannot drift apart.
"""
import datetime
import json
import math
import sys
import time as _time
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import (Any, ClassVar, Dict, Literal, Mapping, Optional, Sequence, Tuple, Type, Union,
                    get_args, get_origin)

from daemon.counters import DROP_REASONS, TASK_FAILURES
from daemon.states import StreamStateName  # the one list of stream states

SCHEMA_VERSION = 1

MatchPhaseName = Literal["start", "update", "end"]

_ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
_STREAM_PATTERN = r"^[a-z0-9_-]+$"


_REQUIRED = object()
_OPTIONAL_COMMON = ("source",)
"""Common fields left out of an event unless configured (schema 1 gains no required field)."""


def _doc(text: str, iso: bool = False, default: Any = _REQUIRED) -> Any:
    """A dataclass field whose description ends up in the JSON Schema; `iso` renders epoch seconds
    as an ISO 8601 UTC string. Every field is in the JSON whatever its default."""
    if default is _REQUIRED:
        return field(metadata={"doc": text, "iso": iso})
    return field(default=default, metadata={"doc": text, "iso": iso})


def iso_time(epoch_s: float) -> str:
    """Epoch seconds -> '2024-05-01T12:00:01.250Z' (UTC, milliseconds)."""
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Stamp:
    """What only the publisher knows, added at send time.

    seq:        per-stream sequence number, +1 for every event of the stream (a gap means loss)
    boot:       id of this daemon run (a new boot restarts seq at 1)
    model:      model package name
    latency_ms: capture -> publish; None for events not tied to a frame
    source:     the box's configured `name` (fleets tell boxes apart by it); None = field left out
    """

    seq: int
    boot: str
    model: str
    latency_ms: Optional[float]
    source: Optional[str] = None


_DROP_DOCS = {
    "replaced": "a newer frame took its slot",
    "too_old": "older than max_frame_age_s when a worker got to it",
    "unchanged": "the scene-change gate found it identical to the last inferred one",
    "not_sampled": "between sample points",
    "not_due": "sampled but no task was due on it",
    "shutdown": "still queued when the stream stopped",
}

# Built from DROP_REASONS so a new reason reaches events and schema (the schema test then asks
# for `make schema`) without anyone editing this file.
DropCounts = make_dataclass(
    "DropCounts",
    [(reason, int, _doc(_DROP_DOCS.get(reason, "dropped: " + reason))) for reason in DROP_REASONS],
    frozen=True)
DropCounts.__module__ = __name__
DropCounts.__doc__ = "Frames dropped since the stream started, by reason (daemon.counters.DROP_REASONS)."


TaskFailures = make_dataclass(
    "TaskFailures",
    [(name[len("failed_"):], int, _doc("inference calls of the %s task that failed" % name[len("failed_"):]))
     for name in TASK_FAILURES],
    frozen=True)
TaskFailures.__module__ = __name__
TaskFailures.__doc__ = ("Per task, inference calls that failed since the stream started "
                        "(daemon.counters.TASK_FAILURES); the others of the frame still publish.")


@dataclass(frozen=True)
class LatencySummary:
    """Capture -> publish latency of the frame events published during one stats interval."""

    count: int = _doc("events measured")
    p50_ms: float = _doc("median")
    p95_ms: float = _doc("95th percentile (nearest rank)")
    max_ms: float = _doc("maximum")

    @staticmethod
    def of(samples_ms: Sequence[float]) -> Optional["LatencySummary"]:
        """None when nothing was measured, so 'no data' never reads as 'zero latency'."""
        if not samples_ms:
            return None
        ordered = sorted(samples_ms)

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(len(ordered) * q) - 1)]  # nearest rank

        return LatencySummary(len(ordered), rank(0.50), rank(0.95), ordered[-1])


@dataclass(frozen=True)
class Event:
    """Fields every event carries besides the stamp. Not published itself: use a subclass."""

    TYPE: ClassVar[str] = ""

    stream: str = _doc("stream name from the config")
    time: float = _doc("frame capture time (now for events not tied to a frame)", iso=True)
    pts_s: Optional[float] = _doc("presentation time of the frame in the source, seconds")
    frame: Optional[int] = _doc("decoded-frame index of the stream since it (re)opened")

    def __post_init__(self) -> None:
        for f in fields(self):
            if get_origin(f.type) is Literal and getattr(self, f.name) not in get_args(f.type):
                raise ValueError("%s event for stream %s: %s must be one of %s, not %r"
                                 % (self.TYPE, self.stream, f.name, "|".join(get_args(f.type)),
                                    getattr(self, f.name)))

    @classmethod
    def at_frame(cls, frame: Any, **values: Any) -> Any:
        """Build the event of `frame` (a daemon.pipeline.frames.Frame): stream, time, pts_s, frame from it."""
        return cls(stream=frame.stream, time=frame.wall_time, pts_s=frame.pts_s,  # type: ignore
                   frame=frame.index, **values)

    @classmethod
    def now(cls, stream: str, **values: Any) -> Any:
        """Build an event not tied to a frame: time = now, pts_s and frame null."""
        return cls(stream=stream, time=_time.time(), pts_s=None, frame=None, **values)  # type: ignore

    @property
    def topic(self) -> str:
        """ZeroMQ topic `<type>/<stream>`: subscribers filter by prefix (`match/` = all matches)."""
        return "%s/%s" % (self.TYPE, self.stream)

    def to_dict(self, stamp: Stamp) -> Dict[str, Any]:
        """The published JSON object, common fields first."""
        out: Dict[str, Any] = {
            "schema": SCHEMA_VERSION, "type": self.TYPE, "stream": self.stream,
            "seq": stamp.seq, "boot": stamp.boot,
        }
        if stamp.source is not None:
            out["source"] = stamp.source
        out.update({
            "time": iso_time(self.time),
            "pts_s": _plain(self.pts_s), "frame": self.frame,
            "latency_ms": _plain(stamp.latency_ms), "model": stamp.model,
        })
        for f in fields(self):
            if f.name not in out:
                out[f.name] = _json_value(f, getattr(self, f.name))
        return out

    def to_json(self, stamp: Stamp) -> bytes:
        """Compact UTF-8 JSON; raises ValueError on NaN/inf so no invalid JSON ever leaves."""
        return json.dumps(self.to_dict(stamp), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class CaptionEvent(Event):
    """A new caption of the stream: published when the text changes, and at least every heartbeat."""

    TYPE: ClassVar[str] = "caption"

    text: str = _doc("the caption")
    previous: Optional[str] = _doc("the caption published before this one (null for the first)",
                                   default=None)


@dataclass(frozen=True)
class MatchEvent(Event):
    """A prompt match changed phase (or is still going on: `update`)."""

    TYPE: ClassVar[str] = "match"

    prompt: str = _doc("prompt id from the config")
    text: str = _doc("prompt text")
    phase: MatchPhaseName = _doc("start: the smoothed score stayed >= enter for dwell_s; "
                                 "update: still matching; end: it fell below exit")
    score: float = _doc("smoothed score, 0..1")
    raw_score: float = _doc("score of this frame, 0..1")
    peak: float = _doc("highest smoothed score since start")
    started: float = _doc("when the match began (the smoothed score first crossed enter)", iso=True)
    duration_s: float = _doc("seconds since started")

    @classmethod
    def from_phase(cls, frame: Any, phase: Any, stream: Optional[str] = None) -> "MatchEvent":
        """Event of `frame` for a daemon.pipeline.tracking.MatchPhase; with no frame (a stream that
        stopped before any), an event of `stream` at the current time."""
        names = ("prompt", "text", "phase", "score", "raw_score", "peak", "started", "duration_s")
        values = {name: getattr(phase, name) for name in names}
        if frame is None:
            return cls.now(stream or "", **values)
        return cls.at_frame(frame, **values)


@dataclass(frozen=True)
class AnswerEvent(Event):
    """The answer to one configured question."""

    TYPE: ClassVar[str] = "answer"

    question: str = _doc("question id from the config")
    text: str = _doc("question text")
    answer: str = _doc("the answer")
    previous: Optional[str] = _doc("the answer published before this one (null for the first)",
                                   default=None)


@dataclass(frozen=True)
class StreamEvent(Event):
    """The stream's connection changed state; not tied to a frame (pts_s, frame, latency_ms null)."""

    TYPE: ClassVar[str] = "stream"

    state: StreamStateName = _doc("online | reconnecting | stalled | offline | ended | failed")
    reason: Optional[str] = _doc("why, one line (credentials redacted)", default=None)
    attempt: int = _doc("reconnect attempt number, 0 when online", default=0)
    retry_in_s: Optional[float] = _doc("seconds until the next attempt, when one is planned",
                                       default=None)


@dataclass(frozen=True)
class StatsEvent(Event):
    """Periodic counters of one stream: counts since start, rates and latency over the interval."""

    TYPE: ClassVar[str] = "stats"

    interval_s: float = _doc("length of the interval the rates and latency cover")
    decoded: int = _doc("frames decoded since the stream started")
    sampled: int = _doc("frames kept by the sampler")
    dropped: DropCounts = _doc(  # type: ignore[valid-type]
        "frames dropped, by reason")
    inferred: int = _doc("frames inferred")
    failed: int = _doc("frames whose inference failed")
    task_failures: TaskFailures = _doc(  # type: ignore[valid-type]
        "inference calls that failed, by task")
    pts_discontinuities: int = _doc(
        "times the source's timestamps went back or leapt ahead (a new segment of the sampling grid)")
    undecodable: int = _doc("damaged packets or frame positions the decoder skipped")
    published: int = _doc("events sent")
    publish_dropped: int = _doc("events lost before the socket (queue full or send refused)")
    subscriber_overflows: int = _doc(
        "sends that found a subscriber's queue full: that subscriber misses events (a seq gap) until "
        "it catches up; the others get them")
    fps_in: float = _doc("decoded frames per second over the interval")
    fps_out: float = _doc("inferred frames per second over the interval")
    queue_depth: int = _doc("frames waiting for a worker now")
    latency: Optional[LatencySummary] = _doc("capture -> publish over the interval; null if none")

    @classmethod
    def from_counters(cls, stream: str, snapshot: Mapping[str, Any], previous: Mapping[str, Any],
                      interval_s: float, queue_depth: int,
                      latency: Optional[LatencySummary]) -> "StatsEvent":
        """From two StreamCounters.snapshot() taken interval_s apart (`previous` may be {})."""
        def delta(name: str) -> float:
            return (snapshot.get(name, 0) - previous.get(name, 0)) / interval_s if interval_s > 0 else 0.0

        drops = snapshot.get("dropped", {})
        return cls.now(stream, interval_s=interval_s,
                       decoded=snapshot.get("decoded", 0), sampled=snapshot.get("sampled", 0),
                       dropped=DropCounts(**{r: drops.get(r, 0) for r in DROP_REASONS}),
                       inferred=snapshot.get("inferred", 0), failed=snapshot.get("failed", 0),
                       task_failures=TaskFailures(**{n[len("failed_"):]: snapshot.get(n, 0)
                                                     for n in TASK_FAILURES}),
                       pts_discontinuities=snapshot.get("pts_discontinuities", 0),
                       undecodable=snapshot.get("undecodable", 0),
                       published=snapshot.get("published", 0),
                       publish_dropped=snapshot.get("publish_dropped", 0),
                       subscriber_overflows=snapshot.get("subscriber_overflows", 0),
                       fps_in=delta("decoded"), fps_out=delta("inferred"),
                       queue_depth=queue_depth, latency=latency)


EVENT_TYPES: Tuple[Type[Event], ...] = (CaptionEvent, MatchEvent, AnswerEvent, StreamEvent, StatsEvent)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (json cannot write them); floats rounded to keep lines short."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        return int(value)
    return round(float(value), 4)


def _json_value(f: Any, value: Any) -> Any:
    if value is None:
        return None
    if f.metadata.get("iso"):
        return iso_time(value)
    if is_dataclass(value):
        return {g.name: _json_value(g, getattr(value, g.name)) for g in fields(value)}
    return _plain(value)


def _type_schema(hint: Any) -> Dict[str, Any]:
    """JSON Schema of one field type: str, int, float, Literal, dataclass, Optional of those."""
    if get_origin(hint) is Union:
        inner = [a for a in get_args(hint) if a is not type(None)]
        schema = _type_schema(inner[0])
        if "type" in schema and "enum" not in schema:
            schema["type"] = [schema["type"], "null"]
            return schema
        return {"anyOf": [schema, {"type": "null"}]}
    if get_origin(hint) is Literal:
        return {"type": "string", "enum": list(get_args(hint))}
    if is_dataclass(hint):
        return _object_schema(hint, {})
    simple = {str: "string", int: "integer", float: "number"}
    return {"type": simple[hint]}


def _object_schema(cls: Any, head: Dict[str, Any]) -> Dict[str, Any]:
    props = dict(head)
    for f in fields(cls):
        if f.name in props:
            continue
        schema = _type_schema(f.type)
        if f.metadata.get("iso"):
            schema = {"type": "string", "pattern": _ISO_PATTERN}
        props[f.name] = dict(schema, description=f.metadata["doc"])
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def json_schema() -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) every published event validates against."""
    variants = []
    for cls in EVENT_TYPES:
        head = {
            "schema": {"const": SCHEMA_VERSION, "description": "event schema version"},
            "type": {"const": cls.TYPE, "description": "event type; the topic is <type>/<stream>"},
            "stream": {"type": "string", "pattern": _STREAM_PATTERN,
                       "description": "stream name from the config"},
            "seq": {"type": "integer", "minimum": 1,
                    "description": "per stream, +1 for every event of the stream: a gap means loss"},
            "boot": {"type": "string", "description": "id of this daemon run"},
            "source": {"type": "string", "pattern": _STREAM_PATTERN,
                       "description": "the box's configured name (optional: only when the config sets `name`)"},
            "time": {"type": "string", "pattern": _ISO_PATTERN,
                     "description": "frame capture time, ISO 8601 UTC (now for events not tied to a frame)"},
            "pts_s": {"type": ["number", "null"], "description": "presentation time of the frame, seconds"},
            "frame": {"type": ["integer", "null"], "description": "decoded-frame index of the stream"},
            "latency_ms": {"type": ["number", "null"],
                           "description": "capture -> publish; null for events not tied to a frame"},
            "model": {"type": "string", "description": "model package name"},
        }
        variant = _object_schema(cls, head)
        variant["required"] = [key for key in variant["required"] if key not in _OPTIONAL_COMMON]
        variant["title"] = cls.TYPE
        variant["description"] = (cls.__doc__ or "").strip().splitlines()[0]
        variants.append(variant)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "blipd event, schema %d" % SCHEMA_VERSION,
        "description": "Generated by `python -m daemon.publish.events`; do not edit by hand.",
        "oneOf": variants,
    }


def schema_text() -> str:
    """The committed form of the schema (stable key order, trailing newline)."""
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
