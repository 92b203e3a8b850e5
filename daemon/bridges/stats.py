"""The bridge's and the relay's counters for Prometheus, read at scrape time from one snapshot.

The numbers Prometheus sees are the ones the periodic stats message carries: both come from the
`snapshot()` callable of the running bridge (sources and sinks), never from a second tally.
"""
from typing import Any, Callable, Dict, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Snapshot = Callable[[], Dict[str, Any]]

_SINK_COUNTERS = (
    ("accepted", "blipd_bridge_sink_accepted", "Events queued for the sink"),
    ("delivered", "blipd_bridge_sink_delivered", "Events the sink delivered"),
    ("overflow", "blipd_bridge_sink_overflow", "Events refused because the sink's queue was full"),
    ("failed", "blipd_bridge_sink_failed", "Events the sink gave up on after its retries"),
)


class BridgeCollector:
    """Prometheus families from a bridge snapshot: per source and per sink."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        received = CounterMetricFamily("blipd_bridge_events_received", "Events read from a bus", labels=["source"])
        lost = CounterMetricFamily("blipd_bridge_events_lost", "Events missed on a bus (seq gaps)", labels=["source"])
        for source in snap.get("sources", []):
            received.add_metric([source["connect"]], float(source["received"]))
            lost.add_metric([source["connect"]], float(source["lost"]))
        yield received
        yield lost
        families = {key: CounterMetricFamily(name, doc, labels=["sink"]) for key, name, doc in _SINK_COUNTERS}
        queued = GaugeMetricFamily("blipd_bridge_sink_queued", "Events waiting in the sink's queue", labels=["sink"])
        connected = GaugeMetricFamily("blipd_bridge_sink_connected", "1 while the sink is connected",
                                      labels=["sink"])
        for name, sink in sorted(snap.get("sinks", {}).items()):
            for key, family in families.items():
                family.add_metric([name], float(sink.get(key, 0)))
            queued.add_metric([name], float(sink.get("queued", 0)))
            if "connected" in sink:
                connected.add_metric([name], 1.0 if sink["connected"] else 0.0)
        yield from families.values()
        yield queued
        yield connected


def bridge_registry(snapshot: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(BridgeCollector(snapshot))  # type: ignore[arg-type]
    return registry


class RelayCollector:
    """Prometheus families from a relay snapshot: per-upstream state and connects, events forwarded."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        from daemon.bridges.relay import UPSTREAM_STATES

        snap = self._snapshot()
        forwarded = CounterMetricFamily("blipd_relay_events_forwarded", "Events passed through the proxy")
        forwarded.add_metric([], float(snap["forwarded"]))
        state = GaugeMetricFamily("blipd_relay_upstream_state", "1 for the upstream's current state",
                                  labels=["upstream", "state"])
        connects = CounterMetricFamily("blipd_relay_upstream_connects", "Handshakes that succeeded",
                                       labels=["upstream"])
        for upstream in snap["upstreams"]:
            for name in UPSTREAM_STATES:
                state.add_metric([upstream["connect"], name], 1.0 if upstream["state"] == name else 0.0)
            connects.add_metric([upstream["connect"]], float(upstream["connects"]))
        yield forwarded
        yield state
        yield connects


def relay_registry(snapshot: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RelayCollector(snapshot))  # type: ignore[arg-type]
    return registry
