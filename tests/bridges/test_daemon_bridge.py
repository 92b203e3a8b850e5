"""End to end: a real daemon on samples/demo.mp4 -> `blipd bridge` -> real Mosquitto -> paho reader.

The demo clip's captions and match start/end reach `blipd/demo/<type>` and the retained state
topics; Home Assistant entities come from the daemon config up front, and a prompt removed from that
config (then SIGHUP to the bridge) gets its discovery config cleared.
"""
import json
import signal
from typing import Any, Dict

import pytest
import yaml

from tests.bridges.buses import BridgeProcess
from tests.bridges.mosquitto import Mosquitto, MqttReader
from tests.daemon_proc import REPO, DaemonProcess, free_tcp_endpoint

pytestmark = pytest.mark.integration


def daemon_config(endpoint: str) -> Dict[str, Any]:
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    stream = dict(demo["streams"][0], url=str(REPO / "samples" / "demo.mp4"), loop=False, realtime=False)
    stream["prompts"] = [dict(p, dwell_s=0) for p in stream["prompts"]]
    return {"name": "box1", "model": {"package": str(REPO / "models" / "demo")},
            "publish": {"bind": endpoint, "stats_every_s": 2}, "metrics": {"port": 0},
            "defaults": dict(demo["defaults"]), "streams": [stream]}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("e2e")
    endpoint = free_tcp_endpoint()
    daemon_path = folder / "blipd.yaml"
    config = daemon_config(endpoint)
    daemon_path.write_text(yaml.safe_dump(config, sort_keys=False))
    with Mosquitto(folder / "broker") as broker, MqttReader(broker.port, "#") as reader:
        bridge_config = {"name": "e2e", "sources": [{"connect": endpoint}],
                         "mqtt": {"url": "mqtt://127.0.0.1:%d" % broker.port,
                                  "home_assistant": {"enabled": True, "daemon_config": str(daemon_path)}}}
        with BridgeProcess(bridge_config, folder) as bridge:
            reader.wait_for(lambda m: reader.last("blipd/bridge/e2e/availability") == b"online", 30, "bridge")
            with DaemonProcess(daemon_path) as daemon:
                reader.wait_for(lambda m: any(json.loads(p)["phase"] == "end" for p in reader.on("blipd/demo/match"))
                                and reader.on("blipd/demo/caption"), 240, "a match start/end and captions")
                yield {"reader": reader, "bridge": bridge, "daemon": daemon, "daemon_path": daemon_path,
                       "config": config}


def test_captions_and_matches_reach_their_topics(run: Dict[str, Any]) -> None:
    reader: MqttReader = run["reader"]
    captions = [json.loads(p) for p in reader.on("blipd/demo/caption")]
    assert all(c["type"] == "caption" and c["stream"] == "demo" and c["source"] == "box1" for c in captions)
    assert reader.last("blipd/demo/state/caption") == captions[-1]["text"].encode()
    matches = [json.loads(p) for p in reader.on("blipd/demo/match")]
    ended = next(m for m in matches if m["phase"] == "end")
    started = [m for m in matches if m["phase"] == "start" and m["prompt"] == ended["prompt"]]
    assert started and matches.index(started[0]) < matches.index(ended)
    topic = "blipd/demo/state/prompt/%s" % ended["prompt"]  # the state follows its event: wait for it
    states = reader.wait_for(lambda m: b"ON" in reader.on(topic) and b"OFF" in reader.on(topic)[
        reader.on(topic).index(b"ON"):] and reader.on(topic), 20, "ON then OFF on " + topic)
    assert states[0] == b"ON"
    assert reader.last("blipd/demo/availability") == b"online"


def test_entities_from_the_daemon_config_and_removal_on_reload(run: Dict[str, Any]) -> None:
    reader: MqttReader = run["reader"]
    node = "homeassistant/binary_sensor/blipd_box1_demo"
    for prompt in ("red_circle", "blue_square"):
        config = json.loads(reader.last("%s/prompt_%s/config" % (node, prompt)) or b"{}")
        assert config.get("unique_id") == "blipd_box1_demo_prompt_%s" % prompt, config
    for question in ("shape_count", "triangle"):
        assert reader.last("homeassistant/sensor/blipd_box1_demo/question_%s/config" % question)
    changed = dict(run["config"])
    changed["streams"] = [dict(changed["streams"][0], prompts=changed["streams"][0]["prompts"][:1])]
    run["daemon_path"].write_text(yaml.safe_dump(changed, sort_keys=False))
    run["bridge"].proc.send_signal(signal.SIGHUP)
    reader.wait_for(lambda m: reader.last("%s/prompt_blue_square/config" % node) == b"", 30,
                    "the removed prompt's discovery config cleared")
    assert json.loads(reader.last("%s/prompt_red_circle/config" % node))["unique_id"]
    assert "Traceback" not in run["bridge"].log()
