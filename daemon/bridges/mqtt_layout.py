"""Bus events -> MQTT messages: the event itself, the retained state topics, discovery when new.

Topic layout under `prefix` (default `blipd`):
  <prefix>/<stream>/<type>                 every event, the bus JSON unchanged (not retained)
  <prefix>/<stream>/state/caption          current caption text (retained)
  <prefix>/<stream>/state/prompt/<id>      ON from match start to end, else OFF (retained)
  <prefix>/<stream>/state/answer/<id>      the question's last answer (retained)
  <prefix>/<stream>/state/stream           the stream's connection state (retained)
  <prefix>/<stream>/availability           online / offline (retained)
  <prefix>/<stream>/snapshot               the latest JPEG, when the daemon sends snapshots (retained)
  <prefix>/bridge/<name>/availability      online / offline, the bridge's last will (retained)
  <prefix>/bridge/<name>/stats             the bridge's counters, periodic (retained)

The mapper runs on the bus thread only; `retained()` (read by the MQTT thread to resend the present
after an overflow) is guarded by a lock.
"""
import threading
import time
from typing import Dict, List, Optional, Set, Tuple

from daemon.bridges.homeassistant import HA_STATE_MAX, Discovery, StreamEntities
from daemon.bridges.source import BusEvent

Message = Tuple[str, bytes, bool]
"""(topic, payload, retain)."""

OFFLINE_STATES = ("offline", "ended", "failed")


def _text(value: object, limit: int = HA_STATE_MAX) -> bytes:
    text = "" if value is None else str(value)
    return text[:limit].encode("utf-8")


class MqttMapper:
    """Turns each bus event into the MQTT messages to send, keeping the present state retained."""

    def __init__(self, prefix: str, bridge_name: str, snapshots: bool,
                 discovery: Optional[Discovery] = None) -> None:
        self.prefix = prefix
        self.snapshots = snapshots
        self.bridge_availability = "%s/bridge/%s/availability" % (prefix, bridge_name)
        self.stats_topic = "%s/bridge/%s/stats" % (prefix, bridge_name)
        self.discovery = discovery
        self._lock = threading.Lock()
        self._retained: Dict[str, bytes] = {}
        self._last_seen: Dict[str, float] = {}
        """stream availability topic -> time.monotonic() of the stream's last event."""
        self._entities: Dict[Tuple[str, str], StreamEntities] = {}
        self._announced: Set[str] = set()
        self._expected: Dict[str, Set[str]] = {}
        """box -> discovery topics the daemon config lists (only those boxes' entities are removed)."""

    # -- per event ------------------------------------------------------------------------------
    def map(self, item: BusEvent) -> List[Message]:
        stream, kind, event = item.stream, item.type, item.event
        box = str(event.get("source") or "blipd")
        base = "%s/%s" % (self.prefix, stream)
        out: List[Message] = [("%s/%s" % (base, kind), item.raw, False)]
        entities = self._entities.get((box, stream))
        if entities is None:
            entities = self._entities[(box, stream)] = StreamEntities()
        learned = False
        if kind == "caption":
            out.append(self._keep(base + "/state/caption", _text(event.get("text"))))
        elif kind == "match":
            prompt = str(event.get("prompt"))
            state = b"OFF" if event.get("phase") == "end" else b"ON"
            out.append(self._keep("%s/state/prompt/%s" % (base, prompt), state))
            if prompt not in entities.prompts:
                entities.prompts[prompt] = str(event.get("text") or prompt)
                learned = True
        elif kind == "answer":
            question = str(event.get("question"))
            out.append(self._keep("%s/state/answer/%s" % (base, question), _text(event.get("answer"))))
            if question not in entities.questions:
                entities.questions[question] = str(event.get("text") or question)
                learned = True
        elif kind == "stream":
            state = str(event.get("state"))
            out.append(self._keep(base + "/state/stream", state.encode("utf-8")))
            out.append(self._keep(base + "/availability", b"offline" if state in OFFLINE_STATES else b"online"))
        with self._lock:
            self._last_seen[base + "/availability"] = time.monotonic()
        if kind != "stream" and self._retained_get(base + "/availability") != b"online":
            out.append(self._keep(base + "/availability", b"online"))
        if item.jpeg is not None and self.snapshots:
            out.append(self._keep(base + "/snapshot", item.jpeg))
            if not entities.snapshot:
                entities.snapshot = learned = True
        if self.discovery is not None:
            out.extend(self._announce(box, stream, entities, learned))
        return out

    def _announce(self, box: str, stream: str, entities: StreamEntities, learned: bool) -> List[Message]:
        key = "%s/%s" % (box, stream)
        if key in self._announced and not learned:
            return []
        self._announced.add(key)
        assert self.discovery is not None
        return [self._keep(topic, payload) for topic, payload in
                self.discovery.stream_entities(box, stream, entities)]

    # -- HA entities known from the daemon config -------------------------------------------------
    def expect(self, box: str, streams: Dict[str, StreamEntities]) -> List[Message]:
        """Entities from the daemon config: announce them all, remove those that left it."""
        if self.discovery is None:
            return []
        out: List[Message] = []
        wanted: Set[str] = set()
        for stream, entities in streams.items():
            known = self._entities.setdefault((box, stream), StreamEntities())
            known.prompts = dict(entities.prompts)
            known.questions = dict(entities.questions)
            known.snapshot = known.snapshot or entities.snapshot
            self._announced.add("%s/%s" % (box, stream))
            for topic, payload in self.discovery.stream_entities(box, stream, known):
                wanted.add(topic)
                out.append(self._keep(topic, payload))
        with self._lock:
            before = self._expected.get(box, set())
            self._expected[box] = wanted
        for topic in sorted(before - wanted):
            out.append(self._forget(topic))
        for (owner, stream) in list(self._entities):
            if owner == box and stream not in streams:
                del self._entities[(owner, stream)]
                self._announced.discard("%s/%s" % (owner, stream))
        return out

    def stale_discovery(self, topic: str, payload: bytes) -> Optional[Message]:
        """A retained discovery config seen on the broker that the daemon config no longer lists:
        the message that removes it (None when it is ours and wanted, or not ours)."""
        if self.discovery is None or not payload:
            return None
        with self._lock:
            for box, wanted in self._expected.items():
                if self.discovery.owned_by(topic, box) and topic not in wanted:
                    return self._forget_locked(topic)
        return None

    # -- retained state ---------------------------------------------------------------------------
    def _keep(self, topic: str, payload: bytes) -> Message:
        with self._lock:
            self._retained[topic] = payload
        return (topic, payload, True)

    def _forget(self, topic: str) -> Message:
        with self._lock:
            return self._forget_locked(topic)

    def _forget_locked(self, topic: str) -> Message:
        self._retained.pop(topic, None)
        return (topic, b"", True)

    def _retained_get(self, topic: str) -> Optional[bytes]:
        with self._lock:
            return self._retained.get(topic)

    def retained(self) -> List[Message]:
        """The present: every retained topic with its latest payload (resent after an overflow)."""
        with self._lock:
            return [(topic, payload, True) for topic, payload in self._retained.items()]

    def stale(self, after_s: float) -> List[Message]:
        """Streams online but silent for `after_s` (their daemon died or the bus broke): set offline."""
        now = time.monotonic()
        out: List[Message] = []
        with self._lock:
            for topic, seen in self._last_seen.items():
                if now - seen >= after_s and self._retained.get(topic) == b"online":
                    self._retained[topic] = b"offline"
                    out.append((topic, b"offline", True))
        return out

    def offline_messages(self) -> List[Message]:
        """Every stream's availability set offline: sent when the bridge stops cleanly."""
        with self._lock:
            topics = [t for t in self._retained if t.endswith("/availability") and t != self.bridge_availability]
        return [(topic, b"offline", True) for topic in topics]
