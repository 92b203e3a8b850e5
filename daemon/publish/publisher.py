"""The only owner of the ZeroMQ publishing socket: a thread that stamps and sends what others queue.

ZeroMQ sockets are not thread-safe, so workers and stream supervisors hand events over a bounded
queue and never wait: a full queue or a refused send is counted as `publish_dropped` for the
event's stream. Sequence numbers are taken when an event is queued, so an event lost anywhere
after that (queue full, send refused) leaves a visible gap in its stream's `seq`.

The socket is an XPUB (subscribers are plain SUB sockets, as with PUB) so that a subscriber that
falls behind is seen: a PUB socket drops messages for a subscriber whose queue (`send_hwm`) is full
without telling anyone. Each event is first sent with ZMQ_XPUB_NODROP, which refuses it (EAGAIN)
when any subscriber of its topic is full; the refusal is counted as `subscriber_overflows` and the
event is sent again without NODROP, so every other subscriber still gets it. libzmq then skips the
full subscriber until it has caught up by half its queue; what it misses meanwhile shows as gaps in
its `seq` (libzmq does not say how many: the counter is of overflows, not of messages).

Memory is bounded in bytes, not only in messages: libzmq keeps up to `send_hwm` messages per
subscriber, and with 4K snapshots 1000 messages are gigabytes. With snapshots on, the socket's
high-water mark is lowered so that `send_hwm` messages of the largest size a snapshot may have
(`snapshot.max_bytes`) fit in `max_buffer_bytes` per subscriber; the publisher's own queue is held
to the same number of bytes. What these bounds refuse is counted like any other loss
(`subscriber_overflows`, `publish_dropped`).

On stop the queue is flushed (bounded in time); what is left is counted as `publish_dropped`;
then the final stats events are built and sent last, so they count everything the publisher did.
An `ipc://` path that a live process still accepts connections on is refused (libzmq would
silently take it over), and the socket file is removed after a clean stop.
"""
import logging
import os
import queue
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import zmq

from daemon.counters import StreamCounters
from daemon.publish.curve import CurveServer, KeyFileError
from daemon.errors import PublishError
from daemon.publish.events import Event, LatencySummary, Stamp
from daemon.ops.ratelimit import RateLimiter

log = logging.getLogger(__name__)

_LATENCY_SAMPLES = 10000  # per stream between two stats events; older ones are discarded

MAX_INBOUND_BYTES = 4096
"""Largest message a peer may send us. Subscribers only send subscriptions (topic prefixes of at
most ~80 bytes); without this bound one peer subscribing to a 10 MB topic costs the PUB socket
~500 MB of subscription trie. A peer that sends more is disconnected."""

MAX_INBOUND_PER_TURN = 1000
"""Subscription messages read from the XPUB socket per loop turn (they are read only to be
discarded: unread, libzmq would keep queueing them)."""

EVENT_JSON_BYTES = 4 * 1024
"""Allowance for the topic, JSON and Python objects of one queued event when budgeting bytes (a
stats event's JSON is ~1 KB, a match with a long prompt ~2 KB)."""

MIN_SEND_HWM = 10
"""The byte budget never lowers the socket's high-water mark below this many messages."""


def effective_send_hwm(send_hwm: int, max_buffer_bytes: Optional[int], max_snapshot_bytes: Optional[int]) -> int:
    """The socket's high-water mark: `send_hwm`, lowered so that that many messages of the largest
    possible size (JSON + snapshot) fit in `max_buffer_bytes`; unchanged without snapshots."""
    if not max_buffer_bytes or not max_snapshot_bytes:
        return send_hwm
    fits = max_buffer_bytes // (EVENT_JSON_BYTES + max_snapshot_bytes)
    return max(MIN_SEND_HWM, min(send_hwm, fits))


@dataclass(frozen=True)
class _Item:
    event: Event
    seq: int
    mono_time: Optional[float]
    jpeg: Optional[bytes] = field(default=None, repr=False)

    @property
    def cost(self) -> int:
        """Bytes this item may hold while queued (an allowance for the JSON, plus the snapshot)."""
        return EVENT_JSON_BYTES + (len(self.jpeg) if self.jpeg is not None else 0)


class Publisher:
    """Publishes events as `[topic, json]` or `[topic, json, jpeg]` on an XPUB socket bound to `bind`.

    counters_for(stream) returns that stream's StreamCounters (None for a stream no longer known);
    `published`, `publish_dropped` and `subscriber_overflows` are counted there. curve: anything
    with `secret_key_file` and `clients_dir` (config's `publish.curve`); None = plain TCP, anyone
    may subscribe. max_buffer_bytes: the byte budget of the queue and of each subscriber's socket
    queue (None = count bounds only); max_snapshot_bytes: the largest snapshot the emitter makes
    (None = no snapshots), to size the socket's high-water mark from the budget.
    """

    def __init__(self, bind: str, boot: str, model: str,
                 counters_for: Callable[[str], Optional[StreamCounters]],
                 send_hwm: int = 1000, linger_ms: int = 1000, queue_size: int = 1000,
                 curve: Optional[Any] = None, source: Optional[str] = None,
                 max_buffer_bytes: Optional[int] = None, max_snapshot_bytes: Optional[int] = None) -> None:
        self.bind = bind
        self.boot = boot
        self.model = model
        self.source = source
        self.endpoint: Optional[str] = None
        """The bound endpoint once started (the real port when `bind` asked for `*`)."""
        self._counters_for = counters_for
        self._send_hwm = effective_send_hwm(send_hwm, max_buffer_bytes, max_snapshot_bytes)
        if self._send_hwm < send_hwm:
            log.info("publish: send_hwm %d lowered to %d so a subscriber's queue of snapshots stays "
                     "within max_buffer_mb", send_hwm, self._send_hwm)
        self._linger_ms = linger_ms
        self._curve = curve
        self._queue: "queue.Queue[_Item]" = queue.Queue(maxsize=queue_size)
        self._max_queued_bytes = max_buffer_bytes
        self._queued_bytes = 0
        """Bytes (`_Item.cost`) in the queue; changed under _seq_lock."""
        self._final: Optional[Callable[[], Sequence[Event]]] = None
        self._ipc_file: Optional[Tuple[str, int]] = None
        """(path, inode) of the ipc:// socket file this publisher bound, to remove on stop."""
        self._seq_lock = threading.Lock()
        self._seq: Dict[str, int] = {}
        self._closed = False
        self._latency_lock = threading.Lock()
        self._latencies: Dict[str, List[float]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._deadline = 0.0
        self._start_error: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._overflow_log = RateLimiter(60.0)

    def start(self, timeout: float = 10.0) -> None:
        """Bind (in the publisher thread) and return once bound; PublishError if it cannot."""
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise PublishError("publish.bind %s: not bound after %.0f s" % (self.bind, timeout))
        if self._start_error is not None:
            self._thread.join(timeout)
            raise PublishError(self._start_error)
        log.info("publishing events on %s", self.endpoint)

    def publish(self, event: Event, jpeg: Optional[bytes] = None,
                mono_time: Optional[float] = None) -> bool:
        """Queue `event` (with an optional JPEG snapshot) without waiting; False if it was dropped.

        mono_time: time.monotonic() at capture, for latency_ms; None for events not tied to a frame.
        """
        with self._seq_lock:
            seq = self._seq.get(event.stream, 0) + 1
            self._seq[event.stream] = seq
            item = _Item(event, seq, mono_time, jpeg)
            over_budget = (self._max_queued_bytes is not None and self._queued_bytes > 0
                           and self._queued_bytes + item.cost > self._max_queued_bytes)
            if not self._closed and not over_budget:
                try:
                    self._queue.put_nowait(item)
                    self._queued_bytes += item.cost
                    return True
                except queue.Full:
                    pass
        self._count(event.stream, "publish_dropped")
        return False

    def _take(self, block: bool) -> _Item:
        """The next queued item (queue.Empty when none), its bytes released from the budget."""
        item = self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
        with self._seq_lock:
            self._queued_bytes -= item.cost
        return item

    def _next_seq(self, stream: str) -> int:
        with self._seq_lock:
            seq = self._seq.get(stream, 0) + 1
            self._seq[stream] = seq
            return seq

    def latency_summary(self, stream: str) -> Optional[LatencySummary]:
        """Capture -> publish latency of the stream's frame events since the previous call."""
        with self._latency_lock:
            samples = self._latencies.pop(stream, [])
        return LatencySummary.of(samples)

    def stop(self, timeout: float = 5.0, final: Optional[Callable[[], Sequence[Event]]] = None) -> None:
        """Send what is queued (for at most about `timeout` s), count what is left as dropped,
        then build the `final` events (the closing stats) in the publisher thread and send them
        last; close with linger, join."""
        with self._seq_lock:
            self._closed = True
        self._final = final
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                log.warning("publisher did not stop within %.1f s", timeout)
        self._drop_queued()

    def _run(self) -> None:
        context = zmq.Context()
        curve: Optional[CurveServer] = None
        sock: Optional[zmq.Socket] = None
        try:
            try:
                curve, sock = self._open(context)
            finally:
                self._ready.set()
            if sock is not None:
                self._loop(sock)
        finally:
            if sock is not None:
                remaining_ms = int(max(0.0, self._deadline - time.monotonic()) * 1000)
                sock.close(linger=min(self._linger_ms, remaining_ms))
            if curve is not None:
                curve.stop()
            context.term()
            self._remove_ipc_file()

    def _open(self, context: zmq.Context) -> Tuple[Optional[CurveServer], Optional[zmq.Socket]]:
        """(curve, bound socket), or (curve, None) with _start_error set."""
        curve: Optional[CurveServer] = None
        sock: Optional[zmq.Socket] = None
        try:
            if self._curve is not None:
                curve = CurveServer(context, self._curve.secret_key_file, self._curve.clients_dir)
            sock = context.socket(zmq.XPUB)
            sock.setsockopt(zmq.XPUB_NODROP, 1)
            sock.setsockopt(zmq.SNDHWM, self._send_hwm)
            sock.setsockopt(zmq.LINGER, self._linger_ms)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
            if curve is not None:
                curve.apply(sock)
            self._refuse_live_ipc()
            sock.bind(self.bind)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            if self.bind.startswith("ipc://") and not self.bind.startswith("ipc://@"):
                path = self.bind[len("ipc://"):]
                self._ipc_file = (path, os.lstat(path).st_ino)
            return curve, sock
        except Exception as exc:  # whatever it is, start() must report it rather than hang
            if isinstance(exc, (KeyFileError, PublishError)):
                self._start_error = ("publish.curve: %s" if isinstance(exc, KeyFileError) else "%s") % exc
            else:
                reason = exc.strerror if isinstance(exc, zmq.ZMQError) else str(exc)
                self._start_error = "publish.bind %s: %s" % (self.bind, reason)
            if sock is not None:
                sock.close(linger=0)
            return curve, None

    def _refuse_live_ipc(self) -> None:
        """PublishError when `bind` is an ipc:// socket file that a live process accepts
        connections on: libzmq would unlink it and bind anew, cutting that daemon off from every
        new subscriber. A stale file (nothing listening) is left to libzmq to replace."""
        if not self.bind.startswith("ipc://") or self.bind.startswith("ipc://@"):
            return  # abstract sockets (ipc://@name) fail to bind twice by themselves
        path = self.bind[len("ipc://"):]
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return
        except OSError:
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return  # refused: a stale file from a daemon that did not stop cleanly
        finally:
            probe.close()
        raise PublishError("publish.bind %s: in use by another running process (another blipd?)" % self.bind)

    def _remove_ipc_file(self) -> None:
        """After a clean stop no socket file is left (libzmq leaves it); only our own file, not
        one another process bound at the same path since."""
        if self._ipc_file is None:
            return
        path, inode = self._ipc_file
        try:
            info = os.lstat(path)
            if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
                os.unlink(path)
        except OSError:
            pass

    def _loop(self, sock: zmq.Socket) -> None:
        while not self._stop.is_set():
            try:
                self._send(sock, self._take(block=True))
            except queue.Empty:
                pass
            self._discard_inbound(sock)
        while time.monotonic() < self._deadline:  # flush on stop, bounded
            try:
                item = self._take(block=False)
            except queue.Empty:
                break
            self._send(sock, item)
        self._drop_queued()
        self._send_final(sock)

    def _send_final(self, sock: zmq.Socket) -> None:
        """The `final` events of stop(), built now so they count everything sent or dropped before."""
        if self._final is None:
            return
        try:
            events = list(self._final())
        except Exception:  # the closing stats must not break the shutdown
            log.exception("final stats could not be built")
            return
        for event in events:
            self._send(sock, _Item(event, self._next_seq(event.stream), None))

    def _send(self, sock: zmq.Socket, item: _Item) -> None:
        stream = item.event.stream
        latency = None if item.mono_time is None else round((time.monotonic() - item.mono_time) * 1000, 1)
        try:
            payload = item.event.to_json(Stamp(item.seq, self.boot, self.model, latency, self.source))
            parts = [item.event.topic.encode("utf-8"), payload]
            if item.jpeg is not None:
                parts.append(item.jpeg)
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK)
            except zmq.Again:  # a subscriber of this topic is send_hwm behind: skip it, serve the rest
                self._overflowed(stream)
                sock.setsockopt(zmq.XPUB_NODROP, 0)
                try:
                    sock.send_multipart(parts, flags=zmq.NOBLOCK)
                finally:
                    sock.setsockopt(zmq.XPUB_NODROP, 1)
        except zmq.Again:
            self._count(stream, "publish_dropped")
            return
        except Exception as exc:  # whatever it is, this event only: the thread serves the rest
            log.error("stream %s: %s event seq %d not sent: %s", stream, item.event.TYPE, item.seq, exc,
                      extra={"stream": stream})
            self._count(stream, "publish_dropped")
            return
        self._count(stream, "published")
        if latency is not None:
            with self._latency_lock:
                samples = self._latencies.setdefault(stream, [])
                samples.append(latency)
                if len(samples) > _LATENCY_SAMPLES:
                    del samples[: len(samples) - _LATENCY_SAMPLES]

    def _overflowed(self, stream: str) -> None:
        self._count(stream, "subscriber_overflows")
        allowed, suppressed = self._overflow_log.allow("overflow")
        if allowed:
            log.warning("stream %s: a subscriber's queue (send_hwm %d events) is full; it misses events "
                        "until it catches up and sees the gap in seq%s", stream, self._send_hwm,
                        " (%d more overflows in the last minute)" % suppressed if suppressed else "")

    @staticmethod
    def _discard_inbound(sock: zmq.Socket) -> None:
        """Read and drop what subscribers sent (subscriptions): XPUB queues them until read."""
        for _ in range(MAX_INBOUND_PER_TURN):
            try:
                sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                log.debug("reading subscriptions: %s", exc)
                return

    def _drop_queued(self) -> None:
        """What the bounded flush could not send is lost: count it."""
        while True:
            try:
                item = self._take(block=False)
            except queue.Empty:
                return
            self._count(item.event.stream, "publish_dropped")

    def _count(self, stream: str, name: str) -> None:
        counters = self._counters_for(stream)
        if counters is not None:
            counters.add(name)
