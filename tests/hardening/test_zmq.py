"""The PUB side under CURVE: only authorised subscribers receive; a subscriber that stops reading
slows nothing and costs the others nothing; garbage at the port changes nothing.

ZeroMQ PUB drops silently per subscriber once that subscriber's queue (SNDHWM) is full; neither
the socket nor the daemon can count those drops. A subscriber detects its own loss by per-stream
`seq` gaps (docs/operations.md); this test shows both sides of that.
"""
import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
import zmq
import zmq.auth

from daemon.publish.curve import write_keypair
from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps
from tests.hardening import probes

pytestmark = pytest.mark.integration

STREAMS = ("a", "b", "c", "d")
PROMPTS = 12
EVENTS = 10000
LONG_TEXT = "a small red car parked on the left side of a long street next to a tall white house " * 2


def curve_options(server_public: str, client_secret: str) -> Dict[int, Any]:
    server_key, _ = zmq.auth.load_certificate(server_public)
    public, secret = zmq.auth.load_certificate(client_secret)
    return {zmq.CURVE_SERVERKEY: server_key, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret}


def flood_config(package: Path, endpoint: str, clip: Path, secret: str, clients: Path) -> Dict[str, Any]:
    """Every frame of four looping files scored against 12 always-matching prompts: one `match
    update` event per prompt per frame, about a thousand events a second."""
    def prompts() -> List[Dict[str, Any]]:  # a new list per stream: yaml would write a shared one as an alias
        return [{"id": "p%d" % i, "text": "%s %d" % (LONG_TEXT, i), "enter": 0.0001, "exit": 0, "dwell_s": 0}
                for i in range(PROMPTS)]

    return {
        "model": {"package": str(package), "threads": 1},
        "publish": {"bind": endpoint, "stats_every_s": 0.5,
                    "curve": {"secret_key_file": secret, "clients_dir": str(clients)}},
        "metrics": {"port": 0},
        "defaults": {"sample_every_s": 0.001, "scene_change": 0, "update_every_s": 0.001},
        "streams": [{"name": name, "url": str(clip), "loop": True, "caption": {"enabled": False}, "prompts": prompts()}
                    for name in STREAMS],
    }


def inferred_per_s(stats: List[Dict[str, Any]]) -> float:
    """Frames inferred per second, all streams together, between the first and last stats of each."""
    total = 0.0
    for name in STREAMS:
        mine = probes.of(stats, "stats", name)
        assert len(mine) >= 2, "too few stats events of %s" % name
        span = probes.iso_to_epoch(mine[-1]["time"]) - probes.iso_to_epoch(mine[0]["time"])
        total += (mine[-1]["inferred"] - mine[0]["inferred"]) / span
    return total


def drain_until_gap(sock: zmq.Socket, most: int = 50000) -> List[Dict[str, Any]]:
    """Read the stuck subscriber until its events show a `seq` gap (or it runs dry): what it held
    is contiguous, what came after it was let go again jumps ahead.

    The wait per message is long on purpose: after a long zero TCP window the receiving kernel may
    not announce the reopened window by itself (silly-window avoidance), and the sender only
    learns of it at its next zero-window probe, which backs off exponentially (seconds)."""
    out: List[Dict[str, Any]] = []
    last: Dict[str, int] = {}
    longest = 0.0
    while len(out) < most:
        waited = time.monotonic()
        if not sock.poll(30000):
            break
        longest = max(longest, time.monotonic() - waited)
        event = json.loads(sock.recv_multipart()[1])
        out.append(event)
        previous = last.get(event["stream"])
        last[event["stream"]] = event["seq"]
        if previous is not None and event["seq"] != previous + 1:
            break
    print("drained %d events from the stuck subscriber; longest wait for one %.2f s" % (len(out), longest))
    return out


def test_curve_and_a_subscriber_that_stops_reading(tiny_package: Path, clips: Dict[str, Path], tmp_path: Path) -> None:
    server_public, server_secret = write_keypair(tmp_path / "server", "server")
    client_public, client_secret = write_keypair(tmp_path / "client", "client")
    _, stranger_secret = write_keypair(tmp_path / "stranger", "stranger")
    clients = tmp_path / "clients"
    clients.mkdir()
    shutil.copy(client_public, str(clients))
    endpoint = free_tcp_endpoint()
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(flood_config(tiny_package, endpoint, clips["moving"], server_secret, clients)))

    authorised = curve_options(server_public, client_secret)
    authorised[zmq.RCVHWM] = 0  # the good subscriber never drops on its side
    context = zmq.Context()
    stuck = context.socket(zmq.SUB)
    with EventCollector(endpoint, socket_options=authorised) as good, \
            EventCollector(endpoint) as plain, \
            EventCollector(endpoint, socket_options=curve_options(server_public, stranger_secret)) as stranger, \
            DaemonProcess(path) as daemon:
        try:
            good.wait_for(lambda evs: len(evs) > 0, timeout=120)
            probes.wait_seconds_of_events(good, 2.0)  # warm-up
            rate_before = inferred_per_s(probes.wait_seconds_of_events(good, 3.0))

            for option, value in curve_options(server_public, client_secret).items():
                stuck.setsockopt(option, value)
            stuck.setsockopt(zmq.RCVHWM, 1)
            # small, but above the loopback MSS: a smaller buffer never reopens its TCP window by
            # itself (silly-window avoidance) and the drain below would wait for the sender's probes
            stuck.setsockopt(zmq.RCVBUF, 256 * 1024)
            stuck.setsockopt(zmq.SUBSCRIBE, b"")
            stuck.connect(endpoint)  # ... and never read until the end
            joined = len(good.snapshot())
            good.wait_for(lambda evs: len(evs) - joined >= EVENTS, timeout=120)
            rate_after = inferred_per_s(probes.wait_seconds_of_events(good, 3.0))

            probes.send_garbage(endpoint)
            with probes.oversized_subscription(endpoint):
                more = len(good.snapshot())
                good.wait_for(lambda evs: len(evs) - more >= 1000, timeout=30)
            assert daemon.proc is not None and daemon.proc.poll() is None
            stuck_got = drain_until_gap(stuck)
            assert daemon.terminate(timeout=15) == 0
        finally:
            stuck.close(linger=0)
            context.term()
        got = good.snapshot()
        assert plain.snapshot() == [] and stranger.snapshot() == [], "unauthorised subscribers received events"
    print("inferred frames/s before the stuck subscriber: %.1f, with it: %.1f; the good one got %d events after "
          "it joined, the stuck one %d" % (rate_before, rate_after, len(got) - joined, len(stuck_got)))
    assert rate_after >= 0.7 * rate_before
    assert len(got) - joined >= EVENTS and seq_gaps(got) == {}
    assert seq_gaps(stuck_got), "the stuck subscriber lost events and can tell from the seq gaps"
    final = probes.final_stats(got)
    print("publish_dropped at the end: %s, subscriber_overflows: %s" % (
        {name: final[name]["publish_dropped"] for name in STREAMS},
        {name: final[name]["subscriber_overflows"] for name in STREAMS}))
    assert sum(final[name]["subscriber_overflows"] for name in STREAMS) >= 1, "the stuck subscriber is not counted"
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]
