"""Bus -> bridge subprocess -> real Mosquitto -> real paho reader: topics, retained state, discovery,
availability and its last will, SIGTERM, restart. A synthetic XPUB stands in for the daemon (the
daemon end to end is tests/bridges/test_daemon_bridge.py)."""
import json
import signal
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.bridges.buses import BridgeProcess, FakeBus, free_endpoint
from tests.bridges.mosquitto import Mosquitto, MqttReader

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
DISCOVERY_KEYS = {"name", "unique_id", "availability", "device"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory):
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running


def bridge_config(bus: str, port: int, **mqtt: Any) -> Dict[str, Any]:
    section: Dict[str, Any] = {"url": "mqtt://127.0.0.1:%d" % port, "home_assistant": {"enabled": True},
                               "backoff_initial_s": 0.2, "backoff_max_s": 1.0}
    section.update(mqtt)
    return {"name": "test", "sources": [{"connect": bus}], "mqtt": section, "stats_every_s": 1}


def send_story(bus: FakeBus) -> None:
    bus.event("stream", "cam", state="online", reason=None, attempt=0, retry_in_s=None)
    bus.event("caption", "cam", text="a red circle on the left", previous=None)
    bus.event("match", "cam", jpeg=JPEG, prompt="red_circle", text="a red circle", phase="start", score=0.9,
              raw_score=0.9, peak=0.9, started="2026-12-03T08:00:00.000Z", duration_s=0.0)
    bus.event("answer", "cam", question="count", text="how many shapes?", answer="two", previous=None)
    bus.event("match", "cam", prompt="red_circle", text="a red circle", phase="end", score=0.2,
              raw_score=0.1, peak=0.9, started="2026-12-03T08:00:00.000Z", duration_s=3.0)


def test_events_state_discovery_and_restart(broker: Mosquitto, tmp_path: Path) -> None:
    endpoint = free_endpoint()
    bus = FakeBus(endpoint, source="box1")
    try:
        with MqttReader(broker.port, "#") as reader:
            with BridgeProcess(bridge_config(endpoint, broker.port), tmp_path) as bridge:
                bus.wait_subscriber()
                send_story(bus)
                reader.wait_for(lambda m: reader.on("blipd/cam/state/prompt/red_circle") == [b"ON", b"OFF"]
                                and reader.on("blipd/cam/state/answer/count"), 30, "the story on MQTT")
                events = [json.loads(p) for p in reader.on("blipd/cam/match")]
                assert [e["phase"] for e in events] == ["start", "end"]
                assert all(e["source"] == "box1" and e["prompt"] == "red_circle" for e in events)
                assert json.loads(reader.last("blipd/cam/caption"))["text"] == "a red circle on the left"
                assert reader.last("blipd/cam/state/caption") == b"a red circle on the left"
                assert reader.last("blipd/cam/state/stream") == b"online"
                assert reader.last("blipd/cam/availability") == b"online"
                assert reader.last("blipd/cam/snapshot") == JPEG
                assert reader.last("blipd/bridge/test/availability") == b"online"
                check_discovery(reader)
                assert bridge.terminate(timeout=12) == 0
                log = bridge.log()
            assert "Traceback" not in log, log[-3000:]
            reader.wait_for(lambda m: reader.last("blipd/bridge/test/availability") == b"offline"
                            and reader.last("blipd/cam/availability") == b"offline", 10, "offline on stop")
        # A late subscriber after the bridge restarted: the retained present, then new events on top.
        with BridgeProcess(bridge_config(endpoint, broker.port), tmp_path) as bridge, \
                MqttReader(broker.port, "blipd/#") as late:
            late.wait_for(lambda m: late.last("blipd/bridge/test/availability") == b"online", 20, "bridge online")
            assert late.last("blipd/cam/state/caption") == b"a red circle on the left"
            assert late.last("blipd/cam/state/prompt/red_circle") == b"OFF"
            assert late.last("blipd/cam/state/answer/count") == b"two"
            assert late.last("blipd/cam/state/stream") == b"online"
            bus.wait_subscriber()
            bus.event("caption", "cam", text="a blue square", previous="a red circle on the left")
            late.wait_for(lambda m: late.last("blipd/cam/state/caption") == b"a blue square", 20, "new caption")
            late.wait_for(lambda m: late.last("blipd/cam/availability") == b"online", 10, "stream online")
            bridge.proc.send_signal(signal.SIGKILL)
            bridge.proc.wait(10)
            late.wait_for(lambda m: late.last("blipd/bridge/test/availability") == b"offline", 60,
                          "the last will after a kill")
    finally:
        bus.close()


def check_discovery(reader: MqttReader) -> None:
    configs = {t: json.loads(p) for t, p, _ in reader.snapshot() if t.startswith("homeassistant/") and p}
    node = "blipd_box1_cam"
    expected = {"homeassistant/binary_sensor/%s/prompt_red_circle/config" % node,
                "homeassistant/sensor/%s/caption/config" % node,
                "homeassistant/sensor/%s/stream_state/config" % node,
                "homeassistant/sensor/%s/question_count/config" % node,
                "homeassistant/image/%s/snapshot/config" % node}
    assert expected <= set(configs), sorted(configs)
    unique = {}
    for topic, payload in configs.items():
        assert DISCOVERY_KEYS <= set(payload), (topic, payload)
        unique[payload["unique_id"]] = topic
        topics = [a["topic"] for a in payload["availability"]]
        assert topics == ["blipd/bridge/test/availability", "blipd/cam/availability"]
        assert payload["availability_mode"] == "all"
        assert payload["device"]["identifiers"] == [node]
        state = payload.get("state_topic") or payload.get("image_topic")
        assert state and state.startswith("blipd/cam/"), payload
    assert len(unique) == len(configs)
    prompt = configs["homeassistant/binary_sensor/%s/prompt_red_circle/config" % node]
    assert (prompt["payload_on"], prompt["payload_off"]) == ("ON", "OFF")
    assert prompt["name"] == "a red circle"
    assert configs["homeassistant/image/%s/snapshot/config" % node]["content_type"] == "image/jpeg"


def test_sd_notify_and_sighup_reload(broker: Mosquitto, tmp_path: Path) -> None:
    """READY over a real notify socket; an invalid file on SIGHUP is refused and the bridge goes on;
    a valid one with a new prefix replaces the MQTT sink (events then go to the new prefix)."""

    import yaml

    from tests.integration.test_daemon import NotifySocket

    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    notify = NotifySocket(tmp_path / "notify.sock")
    config = bridge_config(endpoint, broker.port)
    try:
        with MqttReader(broker.port, "#") as reader, \
                BridgeProcess(config, tmp_path, env={"NOTIFY_SOCKET": notify.path}) as bridge:
            assert "READY" in notify.drain_until({"READY"}, timeout=20)
            bus.wait_subscriber()
            bridge.path.write_text("sources: [\n")
            bridge.proc.send_signal(signal.SIGHUP)
            bridge.wait_log("reload rejected, keeping the running config", 20)
            bus.event("caption", "cam2", text="still here", previous=None)
            reader.wait_for(lambda m: reader.last("blipd/cam2/state/caption") == b"still here", 20, "old prefix")
            config["mqtt"]["prefix"] = "site1"
            bridge.path.write_text(yaml.safe_dump(config))
            bridge.proc.send_signal(signal.SIGHUP)
            bridge.wait_log("mqtt replaced", 20)
            bus.event("caption", "cam2", text="new prefix", previous=None)
            reader.wait_for(lambda m: reader.last("site1/cam2/state/caption") == b"new prefix", 20, "new prefix")
            assert "RELOADING" in notify.drain_until({"RELOADING"}, timeout=10)
            assert bridge.terminate(timeout=12) == 0
            assert "STOPPING" in notify.drain_until({"STOPPING"}, timeout=5)
            assert "Traceback" not in bridge.log()
    finally:
        notify.close()
        bus.close()


def test_a_silent_stream_goes_offline_and_back(broker: Mosquitto, tmp_path: Path) -> None:
    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    try:
        with MqttReader(broker.port, "blipd/quiet/#") as reader, \
                BridgeProcess(bridge_config(endpoint, broker.port, stale_after_s=1), tmp_path) as bridge:
            bus.wait_subscriber()
            bus.event("caption", "quiet", text="one", previous=None)
            reader.wait_for(lambda m: reader.on("blipd/quiet/availability")[-1:] == [b"online"], 20, "online")
            reader.wait_for(lambda m: reader.on("blipd/quiet/availability")[-1:] == [b"offline"], 20,
                            "offline after a second of silence")
            bus.event("caption", "quiet", text="two", previous=None)
            reader.wait_for(lambda m: reader.on("blipd/quiet/availability") == [b"online", b"offline", b"online"],
                            20, "online again")
            assert "no event for 1 s on blipd/quiet/availability" in bridge.log()
    finally:
        bus.close()
