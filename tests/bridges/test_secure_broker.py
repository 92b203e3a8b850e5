"""The bridge against a Mosquitto that wants a password (password file made by mosquitto_passwd),
and one that speaks TLS only (a CA and server certificate made by openssl here)."""
import json
from pathlib import Path

import pytest

from tests.bridges.buses import BridgeProcess, FakeBus, free_endpoint
from tests.bridges.mosquitto import Mosquitto, MqttReader, make_tls_files

pytestmark = pytest.mark.integration

PASSWORD = "pw-Zq8-never-logged"


def _config(endpoint: str, url: str, **mqtt: object) -> dict:
    section = {"url": url, "backoff_initial_s": 0.2, "backoff_max_s": 1.0}
    section.update(mqtt)
    return {"name": "sec", "sources": [{"connect": endpoint}], "mqtt": section}


def test_password_file_and_a_refused_password(tmp_path: Path) -> None:
    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    secret = tmp_path / "mqtt.pass"
    secret.write_text(PASSWORD + "\n")
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-password\n")
    try:
        with Mosquitto(tmp_path / "broker", users={"bridge": PASSWORD, "reader": "r"}) as broker, \
                MqttReader(broker.port, "blipd/#", username="reader", password="r") as reader:
            url = "mqtt://bridge@127.0.0.1:%d" % broker.port
            with BridgeProcess(_config(endpoint, url, password_file=str(wrong)), tmp_path) as refused:
                bus.wait_subscriber()  # its subscription, so the next wait is for the next bridge's
                refused.wait_log("refused the connection", 20)
                assert "not authorised" in refused.log()
                assert refused.terminate(timeout=12) == 0
            assert "not-the-password" not in refused.log()
            with BridgeProcess(_config(endpoint, url, password_file="mqtt.pass"), tmp_path) as bridge:
                bus.wait_subscriber()
                bus.event("caption", "cam", text="behind a password", previous=None)
                reader.wait_for(lambda m: reader.last("blipd/cam/state/caption") == b"behind a password", 20)
                assert bridge.terminate(timeout=12) == 0
            assert PASSWORD not in bridge.log()
    finally:
        bus.close()


def test_tls_broker(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "pki")
    endpoint = free_endpoint()
    bus = FakeBus(endpoint)
    try:
        with Mosquitto(tmp_path / "broker", tls=tls) as broker, \
                MqttReader(broker.port, "blipd/#", ca_file=tls["ca.crt"]) as reader:
            url = "mqtts://localhost:%d" % broker.port
            config = _config(endpoint, url, tls={"ca_file": str(tls["ca.crt"])})
            with BridgeProcess(config, tmp_path) as bridge:
                bus.wait_subscriber()
                event = bus.event("match", "cam", prompt="p", text="a thing", phase="start", score=0.9,
                                  raw_score=0.9, peak=0.9, started=None, duration_s=0.0)
                reader.wait_for(lambda m: reader.last("blipd/cam/state/prompt/p") == b"ON", 20, "over TLS")
                assert json.loads(reader.last("blipd/cam/match")) == event
                assert bridge.terminate(timeout=12) == 0
            # the same broker with a CA that did not sign it: refused, said once, retried
            other = make_tls_files(tmp_path / "other")
            config = _config(endpoint, url, tls={"ca_file": str(other["ca.crt"])})
            with BridgeProcess(config, tmp_path) as untrusted:
                bus.wait_subscriber()
                untrusted.wait_log("cannot connect", 20)
                assert untrusted.terminate(timeout=12) == 0
    finally:
        bus.close()
