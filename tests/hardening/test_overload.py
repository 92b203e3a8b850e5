"""Overload and shutdown: four streams offered far more frames than the model can take, for a
short soak; then SIGTERM. Memory stays flat, queues stay within their slots, every decoded frame is
accounted for, the frame in flight is published. In-process: stop() leaves no thread behind, even
with a reader blocked on a silent camera."""
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from daemon.config.config import load_config
from daemon.service import Service
from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps
from tests.hardening import probes
from tests.rtsp import RtspServer, closed_port

pytestmark = pytest.mark.integration

SOAK_S = float(os.environ.get("BLIPD_SOAK_S", "120"))
"""Length of the soak: the issue's two minutes in CI; run it longer by hand (BLIPD_SOAK_S=3600)."""
WARMUP_S = 15.0
SLOT = 2
RSS_GROWTH_MB = 50.0
DUE_ALWAYS_S = 1e-6
"""Caption, question and heartbeat intervals: shorter than any two captures, so every inferred
frame has its caption due and published. (1 ms was not: a paced reader that falls behind on a
loaded machine grabs two frames well under 1 ms apart, and the second one then ran only the
prompt: inferred, rightly, without a caption.)"""
QUESTIONS = (("what", "what is it?"), ("where", "where is the car?"), ("many", "how many people are there?"))
SHUTDOWN_WARNINGS = ("still busy", "still blocked", "did not stop")


def overload_config(package: Path, endpoint: str, clip: Path) -> Dict[str, Any]:
    """Every frame of four 100 fps files, each with a caption, a prompt and three questions due:
    400 frames a second offered to one worker that manages about a hundred."""
    def stream(name: str) -> Dict[str, Any]:
        return {"name": name, "url": str(clip), "loop": True, "caption": {"enabled": True, "every_s": DUE_ALWAYS_S},
                "prompts": [{"id": "thing", "text": "a red circle", "enter": 0.6, "exit": 0.4, "dwell_s": 0}],
                "questions": [{"id": q, "text": text, "every_s": DUE_ALWAYS_S} for q, text in QUESTIONS]}

    return {
        "model": {"package": str(package), "threads": 1},
        "publish": {"bind": endpoint, "stats_every_s": 0.5, "heartbeat_s": DUE_ALWAYS_S},
        "metrics": {"port": 0},
        "defaults": {"sample_every_s": 0.001, "scene_change": 0, "slot_size": SLOT, "max_frame_age_s": 0.5},
        "streams": [stream(name) for name in ("s1", "s2", "s3", "s4")],
    }


def test_overload_soak_then_sigterm(tiny_package: Path, fast_clip: Path, tmp_path: Path) -> None:
    endpoint = free_tcp_endpoint()
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(overload_config(tiny_package, endpoint, fast_clip), sort_keys=False))
    rss: List[float] = []
    with EventCollector(endpoint) as events, DaemonProcess(path) as daemon:
        assert daemon.proc is not None
        events.wait_for(lambda evs: bool(probes.of(evs[-50:], "caption")), timeout=120)
        started = time.monotonic()
        while time.monotonic() - started < SOAK_S:
            probes.wait_seconds_of_events(events, 1.0)  # paces the RSS readings
            rss.append(probes.rss_mb(daemon.proc.pid))
        stopping = time.monotonic()
        code = daemon.terminate(timeout=10)
        stop_s = time.monotonic() - stopping
        events.wait_for(lambda evs: len(probes.of(evs[-20:], "stats")) >= 4 and evs[-1]["type"] == "stats", 10)
    got = events.snapshot()
    log = daemon.log()
    warm = int(min(WARMUP_S, SOAK_S / 4))
    print("soak %.0f s: RSS %.1f MB after warm-up, peak %.1f MB after it; SIGTERM -> exit %d in %.2f s"
          % (SOAK_S, rss[warm], max(rss[warm:]), code, stop_s))
    assert code == 0
    assert max(rss[warm:]) - rss[warm] < RSS_GROWTH_MB, rss
    stats = probes.of(got, "stats")
    assert max(e["queue_depth"] for e in stats) <= SLOT
    final = probes.final_stats(got)
    assert set(final) == {"s1", "s2", "s3", "s4"}
    for name, last in sorted(final.items()):
        dropped = last["dropped"]
        print("%s: decoded %d = inferred %d + failed %d + dropped %s" % (name, last["decoded"], last["inferred"],
                                                                          last["failed"], dropped))
        assert last["decoded"] == last["inferred"] + last["failed"] + sum(dropped.values())
        assert dropped["replaced"] + dropped["too_old"] > 0, "the streams were offered more than the model takes"
        captions = probes.of(got, "caption", name)
        assert len(captions) == last["inferred"], "every inferred frame published, the one in flight included"
    assert seq_gaps(got) == {}
    assert {min(e["seq"] for e in got if e["stream"] == n) for n in final} == {1}, "the subscriber saw each from seq 1"
    assert "Traceback" not in log, log[-3000:]
    for warning in SHUTDOWN_WARNINGS:
        assert warning not in log, log[-3000:]


def _threads_of_the_service() -> List[str]:
    prefixes = ("reader-", "worker-", "publisher", "Thread-")
    return sorted(t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith(prefixes))


def test_stop_leaves_no_thread_behind(tiny_package: Path, clips: Dict[str, Path], rtsp_server: RtspServer,
                                      tmp_path: Path) -> None:
    """Under load, with one reader blocked reading a silent (SIGSTOPped) camera and one between
    attempts at a closed port: stop() returns and every thread it started has ended."""
    before = set(_threads_of_the_service())
    config = overload_config(tiny_package, free_tcp_endpoint(), clips["moving"])
    config["defaults"].update({"stall_timeout_s": 2, "open_timeout_s": 2, "read_timeout_s": 2})
    config["streams"] = config["streams"][:2] + [
        {"name": "silent", "url": rtsp_server.url("live")},
        {"name": "never", "url": "rtsp://127.0.0.1:%d/x" % closed_port()},
    ]
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    service = Service(load_config(str(path)))
    service.start()
    try:
        deadline = time.monotonic() + 60
        while not (service.streams.counters_for("silent").get("decoded") > 0
                   and service.streams.counters_for("s1").get("inferred") > 0):
            assert time.monotonic() < deadline, service.status_line()
            time.sleep(0.05)  # polling the counters
        rtsp_server.pause()
    finally:
        started = time.monotonic()
        service.stop()
        stop_s = time.monotonic() - started
        rtsp_server.resume()
    left = sorted(set(_threads_of_the_service()) - before)
    print("stop() took %.2f s; threads left: %s" % (stop_s, left))
    assert left == []
