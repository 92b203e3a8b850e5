"""Two real daemons (CURVE servers) -> `blipd relay` (CURVE client upstream, CURVE server downstream
with its own key set) -> subscribers: an authorised one gets both boxes' events with contiguous seq
per stream and the relay's stats; one whose key is not listed gets nothing."""
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
import zmq
import zmq.auth

from daemon.publish.curve import write_keypair
from tests.bridges.test_daemon_bridge import daemon_config
from tests.daemon_proc import CommandProcess, DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps

pytestmark = pytest.mark.integration


def _client_options(server_public: Path, client_secret: Path) -> Dict[int, Any]:
    public, secret = zmq.auth.load_certificate(str(client_secret))
    server, _ = zmq.auth.load_certificate(str(server_public))
    return {zmq.CURVE_SERVERKEY: server, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret}


def _keys(folder: Path) -> Dict[str, Path]:
    """Separate key sets: each box's server key, the relay's client key (listed by the boxes), the
    relay's server key, and the console's client key (listed by the relay); an intruder's, listed nowhere."""
    keys = {}
    for name in ("box1", "box2", "relay_up", "relay", "console", "intruder"):
        public, secret = write_keypair(folder / name, name)
        keys[name], keys[name + "_secret"] = Path(public), Path(secret)
    for box in ("box1", "box2"):
        allowed = folder / ("%s_clients" % box)
        allowed.mkdir()
        (allowed / "relay_up.key").write_bytes(keys["relay_up"].read_bytes())
    allowed = folder / "relay_clients"
    allowed.mkdir()
    (allowed / "console.key").write_bytes(keys["console"].read_bytes())
    return keys


class RelayProcess(CommandProcess):
    def __init__(self, config: Path) -> None:
        super().__init__(["relay", "-c", str(config)], log_prefix="relay-")


def _boxes_seen(events: List[Dict[str, Any]], n: int) -> bool:
    counts: Dict[str, int] = {}
    for e in events:
        if "seq" in e:
            counts[e.get("source", "?")] = counts.get(e.get("source", "?"), 0) + 1
    relay_up = [e for e in events if e.get("type") == "relay"
                and all(u["state"] == "up" for u in e["upstreams"])]
    return counts.get("box1", 0) >= n and counts.get("box2", 0) >= n and bool(relay_up)


def test_two_daemons_through_the_relay(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    boxes = []
    for box in ("box1", "box2"):
        endpoint = free_tcp_endpoint()
        config = daemon_config(endpoint)
        config["name"] = box
        config["streams"][0]["loop"] = True
        config["publish"]["curve"] = {"secret_key_file": str(keys[box + "_secret"]),
                                      "clients_dir": str(tmp_path / ("%s_clients" % box))}
        path = tmp_path / ("%s.yaml" % box)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        boxes.append((box, endpoint, path))
    relay_bind = free_tcp_endpoint()
    relay_config = {
        "name": "site",
        "upstreams": [{"connect": endpoint, "curve": {"server_key": str(keys[box]),
                                                     "client_key_file": str(keys["relay_up_secret"])}}
                      for box, endpoint, _ in boxes],
        "publish": {"bind": relay_bind, "secret_key_file": str(keys["relay_secret"]),
                    "clients_dir": str(tmp_path / "relay_clients")},
        "stats_every_s": 1,
    }
    relay_path = tmp_path / "relay.yaml"
    relay_path.write_text(yaml.safe_dump(relay_config, sort_keys=False))
    with RelayProcess(relay_path) as relay, \
            EventCollector(relay_bind, socket_options=_client_options(keys["relay"], keys["console_secret"])) as console, \
            EventCollector(relay_bind, socket_options=_client_options(keys["relay"], keys["intruder_secret"])) as intruder, \
            DaemonProcess(boxes[0][2]), DaemonProcess(boxes[1][2]):
        events = console.wait_for(lambda evs: _boxes_seen(evs, 10), timeout=120)
        assert intruder.snapshot() == []
        relay.proc.terminate()
        assert relay.proc.wait(15) == 0
    assert "Traceback" not in relay.log(), relay.log()[-2000:]
    bus_events = [e for e in events if "seq" in e]
    assert {(e["source"], e["stream"]) for e in bus_events} == {("box1", "demo"), ("box2", "demo")}
    assert len({e["boot"] for e in bus_events}) == 2
    assert seq_gaps(bus_events) == {}


def test_upstream_states_plain_and_refused(tmp_path: Path) -> None:
    """One plain upstream (up) and one CURVE upstream that does not list the relay's key (refused):
    both states in the relay's stats message and metrics; the plain box's events still flow."""
    from daemon.publish.curve import CurveServer
    from tests.bridges.buses import FakeBus, metric
    from tests.bridges.mosquitto import free_port, wait_until

    keys = _keys(tmp_path)
    plain_endpoint, locked_endpoint, bind, port = (free_tcp_endpoint(), free_tcp_endpoint(),
                                                   free_tcp_endpoint(), free_port())
    plain = FakeBus(plain_endpoint, source="plain")
    ctx = zmq.Context()
    locked = ctx.socket(zmq.XPUB)
    server = CurveServer(ctx, keys["box1_secret"], tmp_path / "relay_clients")  # lists the console only
    server.apply(locked)
    locked.bind(locked_endpoint)
    config = {"name": "mixed", "stats_every_s": 0.5, "metrics": {"port": port}, "publish": {"bind": bind},
              "upstreams": [{"connect": locked_endpoint, "curve": {"server_key": str(keys["box1"]),
                                                                   "client_key_file": str(keys["relay_up_secret"])}},
                            {"connect": plain_endpoint}]}
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        with RelayProcess(path) as relay, EventCollector(bind) as sub:
            def states() -> Dict[str, str]:
                found = [e for e in sub.snapshot() if e.get("type") == "relay"]
                return {u["connect"]: u["state"] for u in found[-1]["upstreams"]} if found else {}

            sub.wait_for(lambda evs: states() == {locked_endpoint: "refused", plain_endpoint: "up"}, 60)
            plain.wait_subscriber()
            sent = plain.event("caption", "cam", text="through", previous=None)
            sub.wait_for(lambda evs: sent in evs, 20)
            wait_until(lambda: metric(port, "blipd_relay_upstream_state",
                                      'state="refused",upstream="%s"' % locked_endpoint) == 1.0, 20,
                       "the refused state in metrics")
            relay.proc.terminate()
            assert relay.proc.wait(15) == 0
        assert "Traceback" not in relay.log()
    finally:
        plain.close()
        locked.close(0)
        server.stop()
        ctx.term()
