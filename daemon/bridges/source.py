"""SUB sockets on one or more daemon buses, in one thread; every event handed on with its gaps counted.

Each daemon numbers the events of a stream (`seq`, +1 each) within a run (`boot`). A jump means
events were lost between the daemon and us (slow-joiner start, a full queue, a restart of ours):
the jump is counted per source and logged (rate-limited), never hidden.
"""
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import zmq

from daemon.bridges.config import SourceSettings
from daemon.ops.ratelimit import RateLimiter
from daemon.publish.curve import load_public_key, make_curve_client

log = logging.getLogger(__name__)

_POLL_MS = 100


@dataclass(frozen=True)
class BusEvent:
    """One event read from a bus.

    source: index of the bus in the config's `sources`
    topic:  `<type>/<stream>` as published
    event:  the parsed JSON object
    raw:    the JSON bytes exactly as published (sinks forward these, not a re-encoding)
    jpeg:   the snapshot part when the daemon sends snapshots, else None
    received: time.monotonic() when read (for latency figures)
    """

    source: int
    topic: str
    event: Dict[str, object]
    raw: bytes
    jpeg: Optional[bytes]
    received: float

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))

    @property
    def stream(self) -> str:
        return str(self.event.get("stream", ""))


@dataclass
class SourceCounters:
    """Per-bus counts: events received, events lost (seq gaps), messages that were not events."""

    received: int = 0
    lost: int = 0
    malformed: int = 0
    last_seq: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    """stream -> (boot, seq) of its last event: one entry per stream, not one per daemon run."""

    def track(self, event: Dict[str, object]) -> int:
        """Record `event`'s (boot, stream, seq); returns how many events were missed before it."""
        self.received += 1
        seq = event.get("seq")
        if not isinstance(seq, int):
            return 0
        stream, boot = str(event.get("stream")), str(event.get("boot"))
        known = self.last_seq.get(stream)
        self.last_seq[stream] = (boot, seq)
        if known is None or known[0] != boot:
            return 0  # a new daemon run starts its seq again
        previous = known[1]
        if seq <= previous + 1:
            return 0
        missed = seq - previous - 1
        self.lost += missed
        return missed


def apply_curve(sock: zmq.Socket, settings: SourceSettings) -> None:
    """Make `sock` a CURVE client of the bus; KeyFileError names the file, never the key."""
    curve = settings.curve
    if curve is None:
        return
    make_curve_client(sock, load_public_key(str(curve.server_key)), curve.client_key_file)


class BusSubscriber:
    """Reads every bus in `sources` in one thread and calls `deliver(BusEvent)` for each event.

    `deliver` must not block (sinks put into bounded queues). start()/stop(timeout) mirror.
    """

    def __init__(self, sources: Sequence[SourceSettings], deliver: Callable[[BusEvent], None],
                 rcvhwm: int = 100000) -> None:
        self._sources = list(sources)
        self._deliver = deliver
        self._rcvhwm = rcvhwm
        self.counters: List[SourceCounters] = [SourceCounters() for _ in self._sources]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._sockets: List[zmq.Socket] = []
        self._thread: Optional[threading.Thread] = None
        self._limiter = RateLimiter(60.0)

    def start(self) -> None:
        """Create and connect the sockets here (errors raise now), then read in a thread."""
        try:
            for settings in self._sources:
                sock = self._context.socket(zmq.SUB)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
                apply_curve(sock, settings)
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                sock.connect(settings.connect)
                self._sockets.append(sock)
        except Exception:
            self._close()
            raise
        self._thread = threading.Thread(target=self._run, name="bus-subscriber", daemon=True)
        self._thread.start()
        log.info("subscribed to %d bus(es): %s", len(self._sources), ", ".join(s.connect for s in self._sources))

    def snapshot(self) -> List[Dict[str, int]]:
        with self._lock:
            return [{"received": c.received, "lost": c.lost, "malformed": c.malformed} for c in self.counters]

    def _run(self) -> None:
        poller = zmq.Poller()
        index = {}
        for number, sock in enumerate(self._sockets):
            poller.register(sock, zmq.POLLIN)
            index[sock] = number
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(_POLL_MS):
                    for _ in range(1000):  # drain a burst, then look at the stop flag again
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(index[sock], parts)
        except Exception:
            log.exception("bus subscriber failed")
        finally:
            self._close()

    def _handle(self, source: int, parts: List[bytes]) -> None:
        try:
            event = json.loads(parts[1].decode("utf-8")) if len(parts) >= 2 else None
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("type") == "relay":
            return  # a relay's own stats message (`relay/<name>`): not a camera event, never forwarded
        if not isinstance(event, dict) or not isinstance(event.get("type"), str) \
                or not isinstance(event.get("stream"), str) or not event["stream"]:
            with self._lock:  # sinks would make topics and entities of an empty stream name
                self.counters[source].malformed += 1
            return
        with self._lock:
            missed = self.counters[source].track(event)
        if missed:
            allowed, _ = self._limiter.allow("gap%d" % source)
            if allowed:
                log.warning("bus %s: %d event(s) of stream %s lost before the bridge (seq gap)",
                            self._sources[source].connect, missed, event.get("stream"))
        bus_event = BusEvent(source, parts[0].decode("utf-8", "replace"), event, parts[1],
                             parts[2] if len(parts) > 2 else None, time.monotonic())
        try:
            self._deliver(bus_event)
        except Exception:  # one bad event must not end the subscriber
            log.exception("stream %s: handing on an event failed", event.get("stream"))

    def _close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets = []

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._close()
        self._context.term()
