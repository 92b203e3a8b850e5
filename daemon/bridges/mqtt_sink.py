"""The MQTT sink: a bounded queue of events, one thread that owns the paho client.

One thread does everything with the client (connect, network loop, publish), so paho's own
unbounded queue never holds more than `max_inflight` messages: the rest wait in the SinkQueue,
where overflow is counted. QoS 1 messages that were in flight when the connection dropped are resent
by paho after the reconnect (at least once). Reconnects back off exponentially with full jitter up
to `backoff_max_s`. Works with paho-mqtt 1.6 and 2.x (callbacks take *args; both APIs put the
result code at the same place for on_connect).
"""
import logging
import random
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from daemon.bridges.config import MqttSettings
from daemon.bridges.homeassistant import Discovery, read_daemon_config
from daemon.bridges.mqtt_layout import Message, MqttMapper
from daemon.bridges.sinkqueue import SinkQueue
from daemon.bridges.source import BusEvent
from daemon.ops.ratelimit import RateLimiter

log = logging.getLogger(__name__)

IDLE_LOOP_S = 0.05
"""Network-loop wait when there is nothing to send. offer() wakes the loop at once through paho's
own wake-up socket pair (`_sockpairW`, present in 1.6 and 2.x); this bound only matters if a later
paho drops it."""


def _code(value: Any) -> int:
    """A paho result code as int (paho 2 passes ReasonCode objects, 1.6 plain ints)."""
    number = getattr(value, "value", value)
    try:
        return int(number)
    except (TypeError, ValueError):
        return -1


def publishable(topic: str) -> bool:
    """Whether paho will publish to `topic` (names from a non-blipd publisher may hold + or #, or a
    lone surrogate); U+0000 too, which MQTT forbids and a broker answers by disconnecting."""
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 0 < len(encoded) <= 65535 and b"+" not in encoded and b"#" not in encoded and b"\0" not in encoded


def make_client(client_id: str) -> Any:
    import paho.mqtt.client as mqtt

    kwargs: Dict[str, Any] = {"client_id": client_id, "clean_session": True, "protocol": mqtt.MQTTv311}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho >= 2.0
        kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
    return mqtt.Client(**kwargs)


class MqttSink:
    """Bus events -> MQTT (events, retained state, availability, Home Assistant discovery)."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, bridge_name: str) -> None:
        self.settings = settings
        self.bridge_name = bridge_name
        self.queue = SinkQueue("mqtt", settings.queue_size)
        ha = settings.home_assistant
        discovery = None
        if ha.enabled:
            discovery = Discovery(ha.discovery_prefix, settings.prefix,
                                  "%s/bridge/%s/availability" % (settings.prefix, bridge_name))
        self.mapper = MqttMapper(settings.prefix, bridge_name, settings.snapshots, discovery)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._client: Any = None
        self._connected = False
        self._just_connected = False
        self._inflight: Dict[int, List[int]] = {}
        self._early: Dict[int, bool] = {}
        self._resynced_overflow = 0
        self._stats_payload: Optional[bytes] = None
        self._lock = threading.Lock()
        self._limiter = RateLimiter(60.0)
        self.connects = 0
        self.unsent = 0
        self._flush_deadline = 0.0

    # -- the bus side -----------------------------------------------------------------------------
    def offer(self, item: BusEvent) -> None:
        """Map and queue (never blocks); a full queue counts the event as overflow."""
        was_empty = len(self.queue) == 0
        if self.queue.put(tuple(self.mapper.map(item))):
            if was_empty:
                self._wake()
        else:
            allowed, skipped = self._limiter.allow("overflow")
            if allowed:
                log.warning("mqtt queue full (%d events): events are being dropped, %d so far "
                            "(logged once a minute)", self.queue.size, self.queue.overflow)

    def _wake(self) -> None:
        """Make the sink thread's select() return now (paho reads and discards the byte)."""
        pair = getattr(self._client, "_sockpairW", None)
        if pair is not None:
            try:
                pair.send(b"0")
            except OSError:  # the pair is being replaced (reconnect): the loop's timeout covers it
                pass

    def load_expected(self) -> None:
        """Announce (and prune) Home Assistant entities from the daemon config, when one is given."""
        path = self.settings.home_assistant.daemon_config
        if not self.settings.home_assistant.enabled or path is None:
            return
        box, streams = read_daemon_config(path)
        messages = self.mapper.expect(box, streams)
        if messages:
            self.queue.put(tuple(messages))
        log.info("home assistant: %d stream(s) of box %s from %s", len(streams), box, path)

    def sweep(self) -> None:
        """Mark streams that went silent offline (called from the bridge's main loop)."""
        messages = self.mapper.stale(self.settings.stale_after_s)
        if messages:
            for topic, _, _ in messages:
                log.warning("mqtt: no event for %.0f s on %s: offline", self.settings.stale_after_s, topic)
            if self.queue.put(tuple(messages)):
                self._wake()

    def publish_stats(self, payload: bytes) -> None:
        with self._lock:
            self._stats_payload = payload

    @property
    def connected(self) -> bool:
        return self._connected

    def snapshot(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(self.queue.snapshot())
        out.update(connected=self._connected, connects=self.connects, inflight=len(self._inflight),
                   unsent=self.unsent)
        return out

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._client = self._build_client()
        self.load_expected()
        self._thread = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> int:
        """Flush what is queued for up to `timeout` s while connected; returns the events not delivered."""
        self._flush_deadline = time.monotonic() + timeout
        self._stop.set()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(timeout + 3.0)
        return self.unsent

    def _build_client(self) -> Any:
        s = self.settings
        client = make_client(s.client_id or "blipd-bridge-%s" % self.bridge_name)
        if s.username is not None:
            client.username_pw_set(s.username, s.password.get_secret_value() if s.password else None)
        if s.use_tls:
            tls = s.tls
            client.tls_set(ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                           certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                           keyfile=str(tls.key_file) if tls and tls.key_file else None)
        client.will_set(self.mapper.bridge_availability, b"offline", qos=1, retain=True)
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- paho callbacks (run inside client.loop on the sink thread) ------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        code = _code(rc)
        if code == 0:
            self._connected = self._just_connected = True
            self.connects += 1
            log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
        else:
            allowed, _ = self._limiter.allow("refused")
            if allowed:
                log.error("mqtt: broker %s:%d refused the connection (code %d: %s)", self.settings.host,
                          self.settings.port, code, "not authorised" if code in (4, 5, 134, 135) else "refused")

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        if self._connected:
            log.warning("mqtt: connection to %s:%d lost; queueing (bound %d events)",
                        self.settings.host, self.settings.port, self.queue.size)
        self._connected = False

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        bundle = self._inflight.pop(mid, None)
        if bundle is None:
            self._early[mid] = True  # acked (QoS 0: written) before publish() returned
            return
        self._acked(bundle)

    def _acked(self, bundle: List[int]) -> None:
        """bundle = [messages not yet acknowledged, 1 if it is a queued event (counted) else 0]."""
        bundle[0] -= 1
        if bundle[0] == 0 and bundle[1]:
            self.queue.count_delivered()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        stale = self.mapper.stale_discovery(message.topic, message.payload)
        if stale is not None:
            log.info("home assistant: removing %s (no longer in the daemon config)", stale[0])
            self._publish_one(stale[0], stale[1], self.settings.qos, True)

    # -- the sink thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        open_socket = False
        try:
            while not self._finished(open_socket):
                if not open_socket:
                    open_socket = self._connect(attempt)
                    attempt = 0 if open_socket else attempt + 1
                    continue
                busy = self._send_some()
                rc = self._client.loop(timeout=0.0 if busy else IDLE_LOOP_S)
                if _code(rc) != 0:
                    open_socket = self._connected = False
                    attempt += 1
        except Exception:
            log.exception("mqtt sink failed")
        finally:
            self._close(open_socket)

    def _finished(self, open_socket: bool) -> bool:
        if not self._stop.is_set():
            return False
        if not open_socket or not self._connected or time.monotonic() >= self._flush_deadline:
            return True
        return len(self.queue) == 0 and not self._inflight

    def _connect(self, attempt: int) -> bool:
        s = self.settings
        if attempt:
            delay = random.uniform(0, min(s.backoff_max_s, s.backoff_initial_s * 2 ** min(attempt - 1, 20)))
            if self._stop.wait(delay):
                return False
        try:
            if self.connects == 0 and attempt == 0:
                self._client.connect(s.host, s.port, s.keepalive_s)
            else:
                self._client.reconnect()
        except (OSError, ValueError) as exc:
            allowed, skipped = self._limiter.allow("connect")
            if allowed:
                log.warning("mqtt: cannot connect to %s:%d: %s (retrying with backoff)", s.host, s.port,
                            getattr(exc, "strerror", None) or exc.__class__.__name__)
            return False
        return True

    def _send_some(self) -> bool:
        """Publish queued events while the in-flight window has room; True when something was sent."""
        if not self._connected:
            return False
        client, qos = self._client, self.settings.qos
        if self._just_connected:
            self._just_connected = False
            self._publish_one(self.mapper.bridge_availability, b"online", qos, True)
            if self.mapper.discovery is not None and self.settings.home_assistant.daemon_config is not None:
                client.subscribe("%s/+/+/+/config" % self.settings.home_assistant.discovery_prefix, qos=0)
        sent = False
        while len(self._inflight) < self.settings.max_inflight:
            bundle = self.queue.pop()
            if bundle is None:
                break
            self._publish_bundle(bundle)
            sent = True
        if not sent and not self._inflight and self.queue.overflow != self._resynced_overflow:
            self._resynced_overflow = self.queue.overflow  # events were dropped: resend the present
            self._publish_bundle(tuple(self.mapper.retained()), count=False)
        with self._lock:
            stats, self._stats_payload = self._stats_payload, None
        if stats is not None:
            self._publish_one(self.mapper.stats_topic, stats, 0, True)
        return sent

    def _publish_bundle(self, messages: Sequence[Message], count: bool = True) -> None:
        bad = [topic for topic, _, _ in messages if not publishable(topic)]
        if bad:  # paho raises on these, which would end the sink thread: drop the event, counted
            if count:
                self.queue.count_failed()
            if self._limiter.allow("topic")[0]:
                log.warning("mqtt: an event with a topic MQTT cannot carry (%r) was dropped", bad[0][:200])
            return
        bundle = [len(messages), 1 if count else 0]
        if not messages and count:
            self.queue.count_delivered()
        for topic, payload, retain in messages:
            self._track(self._client.publish(topic, payload, qos=self.settings.qos, retain=retain).mid, bundle)

    def _publish_one(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """A message outside the queue (availability, stats, discovery clean-up), tracked like the
        rest so every message id's acknowledgement finds its owner."""
        self._track(self._client.publish(topic, payload, qos=qos, retain=retain).mid, [1, 0])

    def _track(self, mid: int, bundle: List[int]) -> None:
        if self._early.pop(mid, False):
            self._acked(bundle)
        else:
            self._inflight[mid] = bundle

    def _close(self, open_socket: bool) -> None:
        """Say offline (streams, then the bridge) and disconnect; count what was not delivered."""
        pending = {id(b): b for b in self._inflight.values() if b[0] > 0 and b[1]}
        self.unsent = len(self.queue.drain()) + len(pending)
        if self.unsent:
            log.warning("mqtt: %d queued event(s) not delivered at shutdown", self.unsent)
        if open_socket and self._connected:
            infos = [self._client.publish(t, p, qos=1, retain=r) for t, p, r in self.mapper.offline_messages()]
            infos.append(self._client.publish(self.mapper.bridge_availability, b"offline", qos=1, retain=True))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not all(i.is_published() for i in infos):
                if _code(self._client.loop(timeout=0.05)) != 0:
                    break
        try:
            self._client.disconnect()
        except Exception:
            log.debug("mqtt: disconnect failed", exc_info=True)
