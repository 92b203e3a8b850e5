"""`blipd bridge`: daemon buses -> sinks (MQTT with Home Assistant discovery, webhooks).

The bus thread hands each event to every sink's `offer()` (map + bounded put, never blocking).
Each sink owns its thread. The main thread handles signals, the periodic stats (log line, MQTT stats
topic, Prometheus), SIGHUP reloads (only the parts whose settings changed are replaced; the daemon
config behind Home Assistant discovery is re-read every time) and SIGTERM: stop reading, flush each
sink for a few seconds, count what stayed queued, exit well within systemd's 10 s.
"""
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from daemon.bridges.config import BridgeSettings, load_bridge_config
from daemon.bridges.mqtt_sink import MqttSink
from daemon.bridges.source import BusEvent, BusSubscriber
from daemon.bridges.stats import bridge_registry
from daemon.bridges.webhook_sink import WebhookSink
from daemon.errors import ConfigError
from daemon.ops.logsetup import RedactFilter, set_level
from daemon.ops.metrics import MetricsServer
from daemon.ops.notify import Notifier

log = logging.getLogger(__name__)

TICK_S = 0.5
FLUSH_S = 5.0
"""How long SIGTERM lets sinks deliver what is queued (systemd's stop timeout is 10 s+)."""


class Bridge:
    """Wires the bus subscriber to the sinks; start()/stop() mirror, reload() swaps changed parts."""

    def __init__(self, settings: BridgeSettings, config_path: Optional[Path] = None,
                 log_filter: Optional[RedactFilter] = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.log_filter = log_filter
        self.notifier = Notifier()
        self.subscriber: Optional[BusSubscriber] = None
        self.mqtt: Optional[MqttSink] = None
        self.webhooks: List[WebhookSink] = []
        self._sinks: List[Any] = []
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._last_stats = time.monotonic()
        self._metrics_server: Optional[MetricsServer] = None
        self.unsent = 0

    # -- wiring ------------------------------------------------------------------------------------
    def _deliver(self, item: BusEvent) -> None:
        for sink in self._sinks:
            sink.offer(item)

    def _start_sinks(self, settings: BridgeSettings, mqtt: bool, webhooks: bool) -> None:
        if mqtt and settings.mqtt is not None:
            self.mqtt = MqttSink(settings.mqtt, settings.name)
            self.mqtt.start()
        if webhooks:
            self.webhooks = [WebhookSink(hook, n) for n, hook in enumerate(settings.webhooks)]
            for hook in self.webhooks:
                hook.start()
        self._sinks = ([self.mqtt] if self.mqtt is not None else []) + list(self.webhooks)

    def start(self) -> None:
        self._start_sinks(self.settings, mqtt=True, webhooks=True)
        self.subscriber = BusSubscriber(self.settings.sources, self._deliver)
        self.subscriber.start()
        if self.settings.metrics.port:
            self._metrics_server = MetricsServer(bridge_registry(self.snapshot), self.settings.metrics.host,
                                                 self.settings.metrics.port)
        self.notifier.ready("bridging %d bus(es) to %d sink(s)" % (len(self.settings.sources), len(self._sinks)))

    def stop(self, flush_s: float = FLUSH_S) -> int:
        """Stop reading, then flush all sinks in parallel for up to `flush_s`; returns events not delivered."""
        self.notifier.stopping()
        if self.subscriber is not None:
            self.subscriber.stop()
        self._stop_sinks(list(self._sinks), flush_s)
        self._sinks = []
        if self._metrics_server is not None:
            self._metrics_server.close()
        return self.unsent

    def _stop_sinks(self, sinks: List[Any], flush_s: float) -> None:
        results: Dict[str, int] = {}
        threads = [threading.Thread(target=lambda s=sink: results.__setitem__(s.name, s.stop(flush_s)))
                   for sink in sinks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(flush_s + 4.0)
        lost = sum(results.values())
        self.unsent += lost
        if lost:
            log.warning("stopped with %d event(s) not delivered: %s", lost,
                        ", ".join("%s %d" % item for item in sorted(results.items()) if item[1]))

    # -- stats -------------------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """Counters of every source and sink: the stats message and the metrics both read this."""
        sources = []
        if self.subscriber is not None:
            for settings, counts in zip(self.settings.sources, self.subscriber.snapshot()):
                sources.append(dict(counts, connect=settings.connect))
        sinks = {sink.name: sink.snapshot() for sink in list(self._sinks)}
        return {"type": "bridge_stats", "bridge": self.settings.name, "time": time.time(),
                "sources": sources, "sinks": sinks}

    def publish_stats(self) -> None:
        snap = self.snapshot()
        if self.mqtt is not None:
            self.mqtt.publish_stats(json.dumps(snap, sort_keys=True).encode("utf-8"))
        lost = sum(s["lost"] for s in snap["sources"])
        overflow = sum(s.get("overflow", 0) for s in snap["sinks"].values())
        failed = sum(s.get("failed", 0) for s in snap["sinks"].values())
        summary = "received %d, lost on bus %d, %s" % (
            sum(s["received"] for s in snap["sources"]), lost,
            ", ".join("%s queued %d delivered %d overflow %d" % (name, s["queued"], s["delivered"], s["overflow"])
                      for name, s in sorted(snap["sinks"].items())))
        (log.warning if overflow or failed or lost else log.info)("stats: %s", summary)
        self.notifier.status(summary)

    # -- reload ------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the config; replace only what changed; an invalid file leaves everything running."""
        if self.config_path is None:
            log.info("reload: no config file (options on the command line); nothing to re-read")
            return
        self.notifier.reloading()
        try:
            new = load_bridge_config(self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running config: %s", str(exc).splitlines()[0])
            self.notifier.ready()
            return
        old, self.settings = self.settings, new
        if self.log_filter is not None:
            self.log_filter.add_secrets(new.secrets())
        set_level(new.log_level)
        mqtt_changed, hooks_changed = new.mqtt != old.mqtt, new.webhooks != old.webhooks
        gone = ([self.mqtt] if mqtt_changed and self.mqtt is not None else []) + \
               (list(self.webhooks) if hooks_changed else [])
        if gone:
            self._sinks = [s for s in self._sinks if s not in gone]
            self._stop_sinks(gone, FLUSH_S)
            if mqtt_changed:
                self.mqtt = None
        self._start_sinks(new, mqtt=mqtt_changed, webhooks=hooks_changed)
        if not mqtt_changed and self.mqtt is not None:
            try:
                self.mqtt.load_expected()
            except ConfigError as exc:
                log.error("home assistant: daemon config unreadable, entities unchanged: %s",
                          str(exc).splitlines()[0])
        if new.sources != old.sources and self.subscriber is not None:
            self.subscriber.stop()
            self.subscriber = BusSubscriber(new.sources, self._deliver)
            self.subscriber.start()
        log.info("reloaded: sources %s, mqtt %s, webhooks %s",
                 *("replaced" if changed else "kept" for changed in
                   (new.sources != old.sources, mqtt_changed, hooks_changed)))
        self.notifier.ready()

    # -- main thread -------------------------------------------------------------------------------
    def run(self, installed: Callable[[], None] = lambda: None) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        self.start()
        installed()
        try:
            while not self._stop.wait(TICK_S):
                if self.mqtt is not None:
                    self.mqtt.sweep()
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                if time.monotonic() - self._last_stats >= self.settings.stats_every_s:
                    self._last_stats = time.monotonic()
                    self.publish_stats()
        finally:
            log.info("stopping")
            self.publish_stats()
            unsent = self.stop()
        log.info("stopped (%d event(s) not delivered)", unsent)
        return 0
