"""The bridge's pure parts, in process: seq-gap counting on a real SUB socket, the MQTT mapping,
discovery ownership, webhook filters and signatures."""
import hashlib
import hmac
import json
import threading
from typing import List

from daemon.bridges.config import SourceSettings, WebhookSettings
from daemon.bridges.homeassistant import Discovery
from daemon.bridges.mqtt_layout import MqttMapper
from daemon.bridges.mqtt_sink import publishable
from daemon.bridges.source import BusEvent, BusSubscriber, SourceCounters
from daemon.bridges.webhook_sink import sign, wanted
from tests.bridges.buses import FakeBus, free_endpoint
from tests.bridges.mosquitto import wait_until


def _item(kind: str, stream: str = "cam", jpeg: bytes = None, **fields: object) -> BusEvent:
    event = dict({"type": kind, "stream": stream, "seq": 1, "boot": "b", "source": "box"}, **fields)
    return BusEvent(0, "%s/%s" % (kind, stream), event, json.dumps(event).encode(), jpeg, 0.0)


def test_seq_gaps_are_counted_per_boot_and_stream() -> None:
    counters = SourceCounters()
    for boot, stream, seq in [("a", "x", 1), ("a", "x", 2), ("a", "y", 7), ("a", "x", 5), ("b", "x", 1),
                              ("b", "x", 2), ("a", "y", 8)]:
        counters.track({"boot": boot, "stream": stream, "seq": seq})
    assert (counters.received, counters.lost) == (7, 2)
    for boot in range(100):  # daemon restarts: one entry per stream, not one per run
        counters.track({"boot": "r%d" % boot, "stream": "x", "seq": 1})
    assert len(counters.last_seq) == 2 and counters.lost == 2


def test_subscriber_reads_a_real_bus_and_counts_a_gap() -> None:
    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    got: List[BusEvent] = []
    lock = threading.Lock()

    def deliver(item: BusEvent) -> None:
        with lock:
            got.append(item)

    subscriber = BusSubscriber([SourceSettings(connect=endpoint)], deliver)
    subscriber.start()
    try:
        bus.wait_subscriber()
        bus.event("caption", "cam", text="a", previous=None)
        bus.seq["cam"] += 3  # three events the bridge never sees
        bus.sock.send_multipart([b"relay/r1", b'{"type": "relay", "relay": "r1", "upstreams": []}'])
        bus.sock.send_multipart([b"x", b'{"type": "caption"}'])  # no stream: no topic or entity of ""
        bus.event("match", "cam", jpeg=b"jpeg", prompt="p", text="t", phase="start")
        wait_until(lambda: len(got) == 2, 10, "two events")
        assert subscriber.snapshot() == [{"received": 2, "lost": 3, "malformed": 1}]
        assert got[1].jpeg == b"jpeg" and got[1].topic == "match/cam" and got[1].type == "match"
    finally:
        subscriber.stop()
        bus.close()


def test_mapper_state_topics_and_learned_entities() -> None:
    mapper = MqttMapper("p", "br", snapshots=True, discovery=Discovery("ha", "p", "p/bridge/br/availability"))
    first = mapper.map(_item("caption", text="x" * 300))
    topics = [t for t, _, _ in first]
    assert topics[0] == "p/cam/caption" and ("p/cam/state/caption", b"x" * 255, True) in first
    assert "ha/sensor/blipd_box_cam/caption/config" in topics
    assert not any("binary_sensor" in t for t in topics)
    start = mapper.map(_item("match", prompt="dog", text="a dog", phase="start"))
    assert ("p/cam/state/prompt/dog", b"ON", True) in start
    assert any(t == "ha/binary_sensor/blipd_box_cam/prompt_dog/config" for t, _, _ in start)
    end = mapper.map(_item("match", prompt="dog", text="a dog", phase="end"))
    assert ("p/cam/state/prompt/dog", b"OFF", True) in end and not any(t.startswith("ha/") for t, _, _ in end)
    gone = mapper.map(_item("stream", state="failed"))
    assert ("p/cam/availability", b"offline", True) in gone
    assert dict((t, p) for t, p, _ in mapper.retained())["p/cam/state/prompt/dog"] == b"OFF"
    assert mapper.offline_messages() == [("p/cam/availability", b"offline", True)]


def test_expected_entities_and_stale_discovery() -> None:
    from daemon.bridges.homeassistant import StreamEntities

    mapper = MqttMapper("p", "br", snapshots=False, discovery=Discovery("ha", "p", "p/bridge/br/availability"))
    mapper.expect("box", {"cam": StreamEntities(prompts={"a": "A", "b": "B"})})
    removed = mapper.expect("box", {"cam": StreamEntities(prompts={"a": "A"})})
    assert ("ha/binary_sensor/blipd_box_cam/prompt_b/config", b"", True) in removed
    # retained configs found on the broker: another box's are left alone, ours not wanted are cleared
    assert mapper.stale_discovery("ha/binary_sensor/blipd_other_cam/prompt_z/config", b"{}") is None
    assert mapper.stale_discovery("ha/binary_sensor/blipd_box_cam/prompt_a/config", b"{}") is None
    assert mapper.stale_discovery("ha/binary_sensor/blipd_box_old/prompt_a/config", b"{}") == (
        "ha/binary_sensor/blipd_box_old/prompt_a/config", b"", True)


def test_webhook_filters_and_signature() -> None:
    hook = WebhookSettings(url="http://h/x", types=("match",), prompts=("dog",))
    assert wanted(hook, _item("match", prompt="dog", phase="start"))
    assert not wanted(hook, _item("match", prompt="dog", phase="update"))
    assert not wanted(hook, _item("match", prompt="cat", phase="start"))
    assert not wanted(hook, _item("caption", text="x"))
    body = b'{"a": 1}'
    assert sign(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_topics_paho_would_refuse_are_recognised() -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2) if hasattr(mqtt, "CallbackAPIVersion") else mqtt.Client()
    for topic in ("blipd/cam/caption", "blipd/cam/state/prompt/a+b", "blipd/#/caption", "", "a\ud800b"):
        try:
            client.publish(topic, b"x", qos=1)
            refused = False
        except ValueError:
            refused = True
        assert publishable(topic) != refused, topic
    assert not publishable("a\0b")  # paho sends it; MQTT forbids it and the broker disconnects
