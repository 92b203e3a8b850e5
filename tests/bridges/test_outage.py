"""A broker outage: the bridge queues up to its bound, counts what overflows, delivers the rest in
order after the broker is back; SIGTERM during an outage exits in time and counts what was queued.

The issue's scenario is a 20 s outage; the queue bound, not the duration, is what is tested, so the
default here is shorter (BLIPD_TEST_OUTAGE_S=20 runs the full one)."""
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.bridges.buses import BridgeProcess, FakeBus, free_endpoint, metric
from tests.bridges.mosquitto import Mosquitto, MqttReader, free_port, wait_until
from tests.bridges.test_mqtt import bridge_config

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("BLIPD_TEST_OUTAGE_S", "3"))
QUEUE = 40


def _seqs(reader: MqttReader):
    return [json.loads(p)["seq"] for p in reader.on("blipd/cam/caption")]


def test_outage_loses_nothing_within_the_bound_and_counts_the_rest(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    endpoint, port = free_endpoint(), free_port()
    config = bridge_config(endpoint, broker.port, queue_size=QUEUE, max_inflight=10)
    config["mqtt"]["home_assistant"] = {"enabled": False}
    config["metrics"] = {"port": port}
    bus = FakeBus(endpoint)
    try:
        with MqttReader(broker.port, "blipd/#", client_id="outage-reader", persistent=True) as reader, \
                BridgeProcess(config, tmp_path) as bridge:
            bus.wait_subscriber()
            for n in range(10):
                bus.event("caption", "cam", text="before %d" % n, previous=None)
            reader.wait_for(lambda m: len(_seqs(reader)) >= 10, 30, "10 captions before the outage")
            broker.stop()  # SIGTERM: the broker saves the reader's persistent session
            wait_until(lambda: metric(port, "blipd_bridge_sink_connected", 'sink="mqtt"') == 0.0, 30,
                       "the bridge to see the broker gone")
            started = time.monotonic()
            for n in range(QUEUE + 25):
                bus.event("caption", "cam", text="during %d" % n, previous=None)
            wait_until(lambda: metric(port, "blipd_bridge_sink_overflow_total", 'sink="mqtt"') == 25.0, 30,
                       "25 events counted as overflow")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))  # the outage itself lasts this long
            assert metric(port, "blipd_bridge_sink_queued", 'sink="mqtt"') == float(QUEUE)
            broker.start()
            reader.wait_for(lambda m: len(set(_seqs(reader))) >= 10 + QUEUE, 60, "the queued captions")
            seqs = _seqs(reader)
            first_seen = sorted(set(seqs), key=seqs.index)
            assert first_seen == list(range(1, 11 + QUEUE)), seqs  # in order, the bound's worth, no gap
            wait_until(lambda: metric(port, "blipd_bridge_sink_delivered_total", 'sink="mqtt"') == 10.0 + QUEUE,
                       20, "delivered count")
            reader.wait_for(lambda m: [json.loads(p) for p in reader.on("blipd/bridge/test/stats")
                                       if json.loads(p)["sinks"]["mqtt"]["overflow"] == 25
                                       and json.loads(p)["sinks"]["mqtt"]["delivered"] == 10 + QUEUE], 20,
                            "a stats message with the overflow and the deliveries")
            # after the queue drained, the present is resent: the state is the newest event's
            reader.wait_for(lambda m: reader.last("blipd/cam/state/caption") == b"during %d" % (QUEUE + 24), 20,
                            "the newest caption as the retained state")
            assert bridge.terminate(timeout=12) == 0
            assert "Traceback" not in bridge.log()
            assert "events are being dropped" in bridge.log()
    finally:
        bus.close()
        broker.stop()


def test_sigterm_during_an_outage_exits_in_time_and_counts_the_queue(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    endpoint = free_endpoint()
    config = bridge_config(endpoint, broker.port, queue_size=100)
    bus = FakeBus(endpoint)
    try:
        with MqttReader(broker.port, "blipd/bridge/#") as reader, BridgeProcess(config, tmp_path) as bridge:
            reader.wait_for(lambda m: reader.last("blipd/bridge/test/availability") == b"online", 20, "online")
            bus.wait_subscriber()
            broker.stop(signal.SIGKILL)
            bridge.wait_log("connection to", 20)
            for n in range(7):
                bus.event("caption", "cam", text="queued %d" % n, previous=None)
            time.sleep(0.5)  # let the bridge read them (nothing to poll: the broker is gone)
            started = time.monotonic()
            assert bridge.terminate(timeout=12) == 0
            assert time.monotonic() - started < 10
            assert "7 queued event(s) not delivered" in bridge.log(), bridge.log()[-2000:]
    finally:
        bus.close()
        broker.stop()


def test_sigterm_with_a_full_queue_delivers_or_counts_every_event(tmp_path: Path) -> None:
    """Events delivered + events reported undelivered at exit = events received: none vanish."""
    import re

    broker = Mosquitto(tmp_path / "broker", extra=["max_queued_messages 0"]).start()
    endpoint, port = free_endpoint(), free_port()
    config = bridge_config(endpoint, broker.port, queue_size=5000)
    config["metrics"] = {"port": port}
    bus = FakeBus(endpoint)
    total = 3000
    try:
        with MqttReader(broker.port, "blipd/cam/caption") as reader, BridgeProcess(config, tmp_path) as bridge:
            bus.wait_subscriber()
            for n in range(total):
                bus.event("caption", "cam", text="burst %d" % n, previous=None)
            wait_until(lambda: metric(port, "blipd_bridge_events_received_total") == float(total), 30,
                       "the bridge to read the burst")
            assert bridge.terminate(timeout=12) == 0
            found = re.search(r"stopped \((\d+) event\(s\) not delivered\)", bridge.log())
            assert found is not None, bridge.log()[-2000:]
            undelivered = int(found.group(1))
            reader.wait_for(lambda m: len(set(_seqs(reader))) >= total - undelivered, 20, "the delivered events")
            # an in-flight message whose acknowledgement did not arrive is counted, yet may have arrived
            assert total - undelivered <= len(set(_seqs(reader))) <= total
    finally:
        bus.close()
        broker.stop()
