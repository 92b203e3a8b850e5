"""The recorder thread: SUB sockets on every bus -> batches -> the store -> live listeners.

One thread owns the ZeroMQ sockets and the writer connection (neither is thread-safe). It drains
what has arrived, writes it in one transaction and commits at least every `commit_every_s`, so a
kill loses at most that much. ZeroMQ's receive queue (RCVHWM) is the bound: what it drops shows
up as a seq gap, which the store records ("missed N events").
"""
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import zmq

from daemon.console.config import Bus
from daemon.console.store import Incoming, Store
from daemon.ops.ratelimit import RateLimiter
from daemon.publish.curve import load_public_key, make_curve_client

log = logging.getLogger(__name__)

RCVHWM = 100000
MAX_BATCH = 2000
Listener = Callable[[List[Dict[str, Any]]], None]


def apply_curve(sock: zmq.Socket, bus: Bus) -> None:
    """Make `sock` a CURVE client of the bus's daemon; key material is never logged."""
    if bus.curve is None:
        return
    make_curve_client(sock, load_public_key(bus.curve.server_key_file), bus.curve.client_secret_key_file)


class Recorder:
    """start() subscribes and records in a thread; stop(timeout) commits what it has and joins."""

    def __init__(self, store: Store, buses: Sequence[Bus], commit_every_s: float = 0.25,
                 retention_every_s: float = 10.0, listener: Optional[Listener] = None) -> None:
        self.store = store
        self.buses = tuple(buses)
        self.commit_every_s = commit_every_s
        self.retention_every_s = retention_every_s
        self.listener = listener
        self.received = 0
        self.malformed = 0
        self.failed_batches = 0
        self.lost_on_error = 0
        self._limiter = RateLimiter(60.0)
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._sockets: List[zmq.Socket] = []
        self._thread = threading.Thread(target=self._run, name="console-recorder", daemon=True)

    def start(self) -> None:
        """Create and connect the sockets here, so a bad key file fails the start (exit 2)."""
        for bus in self.buses:
            sock = self._context.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, RCVHWM)
            apply_curve(sock, bus)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(bus.endpoint)
            self._sockets.append(sock)
            log.info("subscribed to %s%s", bus.endpoint, " (curve)" if bus.curve else "")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # start() may have failed on a key file before the thread
            self._thread.join(timeout)
        for sock in self._sockets:
            sock.close(linger=0)
        self._context.term()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in self._sockets:
            poller.register(sock, zmq.POLLIN)
        next_retention = time.monotonic()
        pending: List[Incoming] = []
        last_commit = time.monotonic()
        while not self._stop.is_set():
            try:
                wait_ms = max(1, int((self.commit_every_s - (time.monotonic() - last_commit)) * 1000))
                ready = dict(poller.poll(wait_ms if pending else 100))
                for sock in self._sockets:
                    if sock in ready:
                        self._drain(sock, pending)
                now = time.monotonic()
                if pending and (now - last_commit >= self.commit_every_s or len(pending) >= MAX_BATCH):
                    self._flush(pending)
                    pending = []
                    last_commit = now
                elif not pending:
                    last_commit = now
                if now >= next_retention:
                    next_retention = now + self.retention_every_s
                    self.store.enforce_retention()
            except Exception:  # one bad batch or a full disk must not end recording
                self.failed_batches += 1
                self.lost_on_error += len(pending)
                pending = []
                if self._limiter.allow("loop")[0]:
                    log.exception("recorder: batch failed, going on")
                self._stop.wait(0.5)
        if pending:
            try:
                self._flush(pending)
            except Exception:
                self.lost_on_error += len(pending)
                log.exception("recorder: final batch of %d events failed", len(pending))

    def _drain(self, sock: zmq.Socket, pending: List[Incoming]) -> None:
        for _ in range(MAX_BATCH):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.received += 1
            item = self._parse(parts)
            if item is not None:
                pending.append(item)

    def _parse(self, parts: List[bytes]) -> Optional[Incoming]:
        try:
            event = json.loads(parts[1].decode("utf-8")) if len(parts) >= 2 else None
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("type") == "relay":
            return None  # a relay's own stats message (`relay/<name>`): not a camera event, not malformed
        if not isinstance(event, dict) or not isinstance(event.get("type"), str) \
                or not isinstance(event.get("stream"), str) or not event["stream"]:
            self.malformed += 1
            allowed, skipped = self._limiter.allow("malformed")
            if allowed:
                log.warning("a message that is not a blipd event was dropped (%d in the last minute)", skipped + 1)
            return None
        return Incoming(event, parts[2] if len(parts) > 2 and parts[2] else None, time.time())

    def _flush(self, pending: List[Incoming]) -> None:
        rows = self.store.write(pending)
        if self.listener is not None:
            try:
                self.listener(rows)
            except Exception:
                if self._limiter.allow("listener")[0]:
                    log.exception("recorder: live listener failed")

    def status(self) -> Dict[str, Any]:
        counters = self.store.counters
        out: Dict[str, Any] = {"received": self.received, "malformed": self.malformed,
                               "failed_batches": self.failed_batches, "lost_on_error": self.lost_on_error,
                               "recording": self.alive}
        out.update(vars(counters))
        out["snapshot_bytes"] = self.store.snapshot_bytes
        return out
