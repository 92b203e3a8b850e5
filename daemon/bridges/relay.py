"""`blipd relay`: fan-in of many daemon buses onto one bind, with ZeroMQ's own XSUB/XPUB proxy.

    box A XPUB ─┐                                  ┌─ console
    box B XPUB ─┼─> XSUB ══ zmq.proxy ══ XPUB ─────┼─ bridge
    box C XPUB ─┘   (CURVE client keys)  (CURVE server, own clients_dir)

Messages pass unchanged, so `(boot, stream, seq)` and the daemon's `source` field arrive intact;
subscriptions flow upstream, so each box sends only what someone downstream asked for. The proxy
runs in its own thread (`proxy_steerable`, stopped over a control socket). A socket monitor on the
XSUB reports each upstream's state (connecting, up, down, refused); a stats thread publishes it as
`relay/<name>` messages through an inproc PUB the XSUB also reads, and Prometheus reads the same.

CURVE options set on a socket apply to the connections made after them, so each upstream's server
key is set just before its connect(); plain upstreams are connected before any CURVE one.
"""
import json
import logging
import threading
import time
from typing import Any, Dict, List, Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

from daemon.bridges.config import RelaySettings
from daemon.bridges.source import apply_curve
from daemon.ops.ratelimit import RateLimiter
from daemon.publish.curve import CurveServer

log = logging.getLogger(__name__)

_STATES = {
    zmq.EVENT_CONNECTED: "connected",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "up",
    zmq.EVENT_DISCONNECTED: "down",
    zmq.EVENT_CONNECT_RETRIED: "down",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "refused",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "refused",
}
UPSTREAM_STATES = ("connecting", "connected", "up", "down", "refused")


class Upstream:
    """One daemon bus as the relay sees it; changed by the monitor thread only."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.state = "connecting"
        self.since = time.time()
        self.connects = 0
        self.disconnects = 0

    def snapshot(self) -> Dict[str, Any]:
        return {"connect": self.endpoint, "state": self.state, "since": round(self.since, 3),
                "connects": self.connects, "disconnects": self.disconnects}


class Relay:
    """start() binds and connects (errors raise there), stop(timeout) ends every thread."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.context = zmq.Context()
        self.upstreams = [Upstream(u.connect) for u in settings.upstreams]
        self._by_endpoint = {u.endpoint: u for u in self.upstreams}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._curve: Optional[CurveServer] = None
        self._stats_endpoint = "inproc://relay-stats-%x" % id(self)
        self._control_endpoint = "inproc://relay-control-%x" % id(self)
        self._capture_endpoint = "inproc://relay-capture-%x" % id(self)
        self.forwarded = 0

    def start(self) -> None:
        s = self.settings
        stats_pub = self.context.socket(zmq.PUB)
        stats_pub.bind(self._stats_endpoint)
        backend = self.context.socket(zmq.XPUB)
        backend.setsockopt(zmq.SNDHWM, s.publish.send_hwm)
        backend.setsockopt(zmq.LINGER, 0)
        if s.publish.secret_key_file is not None and s.publish.clients_dir is not None:
            self._curve = CurveServer(self.context, s.publish.secret_key_file, s.publish.clients_dir)
            self._curve.apply(backend)
        backend.bind(s.publish.bind)
        frontend = self.context.socket(zmq.XSUB)
        frontend.setsockopt(zmq.LINGER, 0)
        monitor = frontend.get_monitor_socket()
        frontend.connect(self._stats_endpoint)
        for settings in sorted(s.upstreams, key=lambda u: u.curve is not None):
            apply_curve(frontend, settings)
            frontend.connect(settings.connect)
        control = self.context.socket(zmq.PAIR)
        control.bind(self._control_endpoint)
        capture = self.context.socket(zmq.PAIR)
        capture.bind(self._capture_endpoint)
        self._control = self.context.socket(zmq.PAIR)
        self._control.connect(self._control_endpoint)
        counter = self.context.socket(zmq.PAIR)
        counter.connect(self._capture_endpoint)
        self._spawn("relay-proxy", self._proxy, frontend, backend, capture, control)
        self._spawn("relay-monitor", self._watch, monitor, counter)
        self._spawn("relay-stats", self._stats, stats_pub)
        log.info("relay %s: %d upstream(s) -> %s%s", s.name, len(s.upstreams), s.publish.bind,
                 " (CURVE)" if self._curve else "")

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _proxy(self, frontend: zmq.Socket, backend: zmq.Socket, capture: zmq.Socket, control: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(frontend, backend, capture, control)
        except zmq.ContextTerminated:
            pass
        except Exception:
            log.exception("relay proxy failed")
        finally:
            for sock in (frontend, backend, capture, control):
                sock.close(linger=0)

    def _watch(self, monitor: zmq.Socket, counter: zmq.Socket) -> None:
        """Upstream states from the XSUB's monitor; forwarded events from the proxy's capture."""
        poller = zmq.Poller()
        poller.register(monitor, zmq.POLLIN)
        poller.register(counter, zmq.POLLIN)
        limiter = RateLimiter(60.0)
        try:
            while not self._stop.is_set():
                try:
                    self._watch_once(poller, monitor, counter)
                except zmq.ContextTerminated:
                    raise
                except Exception:  # going on matters: the proxy blocks once its capture queue is full
                    if limiter.allow("watch")[0]:
                        log.exception("relay monitor: one round failed, going on")
        except zmq.ContextTerminated:
            pass
        finally:
            monitor.close(linger=0)
            counter.close(linger=0)

    def _watch_once(self, poller: zmq.Poller, monitor: zmq.Socket, counter: zmq.Socket) -> None:
        for sock, _ in poller.poll(200):
            if sock is monitor:
                self._on_monitor(recv_monitor_message(monitor))
                continue
            for _ in range(10000):
                try:
                    parts = counter.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(parts) >= 2:  # events; one-part messages are subscriptions
                    with self._lock:
                        self.forwarded += 1

    def _on_monitor(self, message: Dict[str, Any]) -> None:
        endpoint = message.get("endpoint", b"")
        endpoint = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else str(endpoint)
        upstream = self._by_endpoint.get(endpoint)
        state = _STATES.get(message.get("event"))
        if upstream is None or state is None:
            return
        with self._lock:
            previous = upstream.state
            if state == "down" and previous == "refused":
                state = "refused"  # a retry after a refused handshake: still refused, say so
            if state == "up" and previous != "up":
                upstream.connects += 1
            if state == "down" and previous == "up":
                upstream.disconnects += 1
            if state != previous:
                upstream.state, upstream.since = state, time.time()
        if state != previous:
            (log.warning if state in ("down", "refused") else log.info)(
                "upstream %s: %s -> %s", endpoint, previous, state)

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {"type": "relay", "relay": self.settings.name, "time": time.time(),
                    "forwarded": self.forwarded, "upstreams": [u.snapshot() for u in self.upstreams]}

    def _stats(self, pub: zmq.Socket) -> None:
        topic = ("relay/%s" % self.settings.name).encode("utf-8")
        try:
            while not self._stop.wait(self.settings.stats_every_s):
                snap = self.snapshot()
                pub.send_multipart([topic, json.dumps(snap, sort_keys=True).encode("utf-8")])
                log.info("stats: forwarded %d; %s", snap["forwarded"],
                         ", ".join("%s %s" % (u["connect"], u["state"]) for u in snap["upstreams"]))
        except zmq.ContextTerminated:
            pass
        finally:
            pub.close(linger=0)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            self._control.send(b"TERMINATE")
        except zmq.ZMQError:
            log.debug("relay: control socket gone", exc_info=True)
        for thread in reversed(self._threads):
            thread.join(timeout)
        self._control.close(linger=0)
        if self._curve is not None:
            self._curve.stop()
        self.context.term()
