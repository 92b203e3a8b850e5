"""Cameras that die, hang or never existed, and files that are no video, all in one daemon beside
five healthy streams: each fault shows up as `stream` events of its own stream only, the healthy
streams keep their caption rate, and the faulty cameras come back when their server does."""
import signal
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps
from tests.hardening import probes
from tests.privileges import command_prefix
from tests.rtsp import closed_port

pytestmark = pytest.mark.integration

LIVE = ("live1", "live2", "file1", "file2", "file3")
WINDOW_S = 5.0
BACKOFF = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}
RATE_TOLERANCE = 0.3
BAD_FILE_REASONS = {
    "zero": ("failed", "empty file"),
    "random": ("failed", "not a video file"),
    "header": ("failed", "not a video file"),
    "truncated": ("ended", "ended early"),
    "text": ("failed", "not a video (text)"),
    "huge": ("failed", "no decodable frame"),
    "no_permission": ("failed", "permission denied"),
}
"""bad_media name -> (terminal state, words its reason must hold)."""


def entry(name: str, url: str, **extra: Any) -> Dict[str, Any]:
    """Caption on every sampled frame (4 a second), published every time (heartbeat 0.1 s)."""
    return dict({"name": name, "url": url, "caption": {"enabled": True, "every_s": 0.1}}, **extra)


def config(package: Path, endpoint: str, streams: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "model": {"package": str(package), "threads": 1},
        "publish": {"bind": endpoint, "stats_every_s": 1, "heartbeat_s": 0.1},
        "metrics": {"port": 0},
        "defaults": dict({"sample_every_s": 0.25, "scene_change": 0, "stall_timeout_s": 2, "open_timeout_s": 2,
                          "read_timeout_s": 2}, **BACKOFF),
        "streams": streams,
    }


def caption_counts(events: EventCollector, start: float) -> Dict[str, int]:
    """Captions per healthy stream with a capture time in [start, start + WINDOW_S)."""
    end = start + WINDOW_S
    got = events.wait_for(lambda evs: all(
        any(probes.iso_to_epoch(e["time"]) >= end + 0.5 for e in probes.of(evs[-400:], "caption", s)) for s in LIVE),
        timeout=WINDOW_S + 30)
    return probes.counts_between(got, "caption", LIVE, start, end)


def online_after(events: List[Dict[str, Any]], index: int, stream: str) -> bool:
    return bool(probes.of(events[index:], "stream", stream, state="online"))


def test_faults_stay_in_their_own_stream(tiny_package: Path, long_clip: Path, bad_media: Dict[str, Path],
                                         rtsp_factory, tmp_path: Path) -> None:
    """Five healthy streams (two cameras, three files) keep 4 captions a second while ten dead
    streams are added and two cameras fail; the failed cameras come back."""
    killed = rtsp_factory({"cam": "h264"})
    silent = rtsp_factory({"cam": "h264"})
    healthy = rtsp_factory({"live1": "h264", "live2": "h264"})
    endpoint = free_tcp_endpoint()
    streams = [entry("live1", healthy.url("live1")), entry("live2", healthy.url("live2"))]
    streams += [entry("file%d" % i, str(long_clip), loop=True) for i in (1, 2, 3)]
    streams += [entry("killed", killed.url("cam")), entry("silent", silent.url("cam"))]
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(config(tiny_package, endpoint, streams), sort_keys=False))

    with EventCollector(endpoint) as events, DaemonProcess(path, prefix=command_prefix()) as daemon:
        every = LIVE + ("killed", "silent")
        events.wait_for(lambda evs: all(probes.of(evs, "caption", s) for s in every), timeout=120)
        before = caption_counts(events, time.time())

        # Ten dead streams join the five healthy ones, then two cameras fail.
        dead = [entry("never", "rtsp://127.0.0.1:%d/none" % closed_port()),
                entry("nohost", "rtsp://viewer:pw@no-such-camera.invalid/stream1")]
        dead += [entry(name, str(file)) for name, file in sorted(bad_media.items())]
        path.write_text(yaml.safe_dump(config(tiny_package, endpoint, streams + dead), sort_keys=False))
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("reloaded: %d added" % len(dead), timeout=20), daemon.log()[-2000:]
        fault = len(events.snapshot())
        killed.kill()
        silent.pause()
        during = caption_counts(events, time.time())
        events.wait_for(lambda evs: any(e["attempt"] >= 4 for e in probes.of(evs[fault:], "stream", "killed")), 60)
        events.wait_for(lambda evs: bool(probes.of(evs[fault:], "stream", "silent", state="stalled")), 30)

        back = len(events.snapshot())
        killed.restart()
        silent.resume()
        events.wait_for(lambda evs: all(online_after(evs, back, s) for s in ("killed", "silent")), timeout=60)
        online = len(events.snapshot())
        events.wait_for(lambda evs: all(probes.of(evs[online:], "caption", s) for s in ("killed", "silent")), 30)
        assert daemon.terminate(timeout=15) == 0
    got = events.snapshot()
    log = daemon.log()
    print("captions per %.0f s before the faults: %s; during: %s" % (WINDOW_S, before, during))

    for name in LIVE:
        assert abs(during[name] - before[name]) <= RATE_TOLERANCE * before[name], (name, before, during)
    assert abs(sum(during.values()) - sum(before.values())) <= RATE_TOLERANCE * sum(before.values())

    retries = probes.of(got[fault:back], "stream", "killed", state="reconnecting")
    attempts = [e["attempt"] for e in retries]
    assert attempts == list(range(1, len(attempts) + 1)), attempts
    delays = [e["retry_in_s"] for e in retries]
    assert all(0 < d <= BACKOFF["backoff_max_s"] for d in delays), delays
    assert delays[0] <= 0.1 < 0.4 <= max(delays), "the delay grows: %s" % delays

    stalled = probes.of(got[fault:back], "stream", "silent", state="stalled")
    assert stalled and "no frame for" in stalled[0]["reason"], stalled

    for name in ("never", "nohost"):
        assert probes.of(got, "stream", name, state="reconnecting")
        assert not probes.of(got, "stream", name, state="failed")
    for name in bad_media:
        state, words = BAD_FILE_REASONS[name]
        final = [e for e in probes.of(got, "stream", name) if e["state"] in ("failed", "ended")]
        assert len(final) == 1 and final[0]["state"] == state, (name, final)
        assert words in final[0]["reason"] and name in final[0]["reason"], final[0]
        assert any("[%s]" % name in line and words in line for line in log.splitlines()), "no log line for " + name
    assert "Traceback" not in log, log[-3000:]
    assert seq_gaps(got) == {}
