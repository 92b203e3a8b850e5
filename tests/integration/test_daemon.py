"""The daemon as a real subprocess: real RTSP cameras, a file, a real ZeroMQ subscriber, sd_notify
over a real unix datagram socket, SIGHUP and SIGTERM."""
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Set

import jsonschema
import pytest

from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint, seq_gaps
from tests.integration.conftest import base_config, stream_entry
from tests.rtsp import RtspServer

pytestmark = pytest.mark.integration


def _types_by_stream(events: List[Dict[str, Any]]) -> Dict[str, Set[str]]:
    out: Dict[str, Set[str]] = {}
    for e in events:
        out.setdefault(e["stream"], set()).add(e["type"])
    return out


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: List[str] = []

    def drain_until(self, wanted: Set[str], timeout: float) -> Set[str]:
        """Read datagrams until every key in `wanted` was seen (READY, STATUS, WATCHDOG...)."""
        seen: Set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not wanted <= seen:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append(data)
            seen.update(line.split("=", 1)[0] for line in data.splitlines())
        return seen

    def close(self) -> None:
        self.sock.close()


def test_two_cameras_and_a_file(tiny_package, clip, rtsp_factory, write_config, schema, tmp_path) -> None:
    """Caption, stats and stream events for all three streams; every event schema-valid; seq
    contiguous per stream; READY/STATUS/WATCHDOG over sd_notify; SIGTERM exits 0 promptly."""
    server = rtsp_factory({"cam1": "h264", "cam2": "h264"})
    endpoint = free_tcp_endpoint()
    config = write_config(base_config(tiny_package, endpoint, [
        stream_entry("cam1", server.url("cam1")),
        stream_entry("cam2", server.url("cam2")),
        stream_entry("file", str(clip), loop=True),
    ]))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"}
    try:
        with EventCollector(endpoint) as events, DaemonProcess(config, env) as daemon:
            wanted = {"caption", "stats", "stream"}
            got = events.wait_for(
                lambda evs: all(wanted <= _types_by_stream(evs).get(s, set()) for s in ("cam1", "cam2", "file")),
                timeout=120,
            )
            seen = notify.drain_until({"READY", "STATUS", "WATCHDOG"}, timeout=30)
            assert {"READY", "STATUS", "WATCHDOG"} <= seen, notify.messages
            assert daemon.terminate(timeout=15) == 0
            assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
    finally:
        notify.close()
    validator = jsonschema.Draft202012Validator(schema)
    for event in got:
        validator.validate(event)
    assert seq_gaps(got) == {}
    assert len({e["boot"] for e in got}) == 1
    online = [e for e in got if e["type"] == "stream" and e["state"] == "online"]
    assert {e["stream"] for e in online} >= {"cam1", "cam2", "file"}


def test_reload_applies_valid_config_and_keeps_old_on_error(tiny_package, clip, write_config) -> None:
    """SIGHUP with a new stream starts it and leaves the running one untouched; SIGHUP with a
    broken file is logged and changes nothing; a stream that failed on a broken video file is
    restarted by the SIGHUP after the file was fixed in place; SIGTERM then exits 0."""
    endpoint = free_tcp_endpoint()
    first = base_config(tiny_package, endpoint, [stream_entry("a", str(clip), loop=True)])
    config = write_config(first)
    with EventCollector(endpoint) as events, DaemonProcess(config) as daemon:
        events.wait_for(lambda evs: any(e["stream"] == "a" and e["type"] == "caption" for e in evs), timeout=90)
        boot = events.snapshot()[0]["boot"]

        second = dict(first, streams=first["streams"] + [stream_entry("b", str(clip), loop=True)])
        write_config(second)
        daemon.signal(signal.SIGHUP)
        events.wait_for(lambda evs: any(e["stream"] == "b" and e["type"] == "caption" for e in evs), timeout=60)
        assert daemon.wait_log("reloaded: 1 added, 0 removed, 0 changed, 1 unchanged", timeout=10)

        config.write_text(config.read_text() + "\nunknown_section: {x: 1}\n")
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("reload rejected", timeout=10), daemon.log()[-2000:]
        before = len(events.snapshot())
        events.wait_for(
            lambda evs: {e["stream"] for e in evs[before:] if e["type"] == "caption"} >= {"a", "b"}, timeout=60
        )
        # A stream whose file is broken fails; fixed in place, the next SIGHUP restarts it.
        broken = config.parent / "later.mp4"
        broken.write_bytes(b"")
        fixable = stream_entry("c", str(broken), realtime=False, backoff_initial_s=0.1, backoff_max_s=0.2)
        third = dict(second, streams=second["streams"] + [fixable])
        write_config(third)
        daemon.signal(signal.SIGHUP)
        events.wait_for(lambda evs: any(e["stream"] == "c" and e.get("state") == "failed" for e in evs), timeout=60)
        shutil.copyfile(str(clip), str(broken))
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("reload: restarting stream c (it was failed", timeout=15), daemon.log()[-2000:]
        events.wait_for(lambda evs: any(e["stream"] == "c" and e["type"] == "caption" for e in evs), timeout=60)
        started = time.monotonic()
        assert daemon.terminate(timeout=15) == 0
        assert time.monotonic() - started < 10
    got = events.snapshot()
    assert {e["boot"] for e in got} == {boot}
    assert seq_gaps(got) == {}, "an unchanged stream must keep its sequence across reloads"
    assert "unknown_section" in daemon.log() or "reload rejected" in daemon.log()


def test_a_static_camera_resends_on_heartbeat_and_right_after_an_outage(tiny_package, write_config,
                                                                         tmp_path) -> None:
    """Defects: on a static scene the scene gate kept out the frame a heartbeat needed (re-send after
    heartbeat_s + max_skip_s), and after an outage the unchanged caption came back only at the next
    heartbeat. Now the heartbeat forces an inference, and the first caption and answer after the
    stream is online again are published even though they did not change."""
    from tests import media

    static = media.make_static_clip(tmp_path / "static.mp4", 60, fps=10)
    server = RtspServer({"cam": "file:%s" % static})
    server.start()
    endpoint = free_tcp_endpoint()
    entry = stream_entry("cam", server.url("cam"), prompts=[],
                         questions=[{"id": "what", "text": "what is it?", "every_s": 1}])
    config = base_config(tiny_package, endpoint, [entry])
    config["publish"]["heartbeat_s"] = 4
    config["defaults"].update({"scene_change": 0.02, "max_skip_s": 30, "stall_timeout_s": 2, "read_timeout_s": 2,
                               "backoff_initial_s": 0.2, "backoff_max_s": 0.5})
    try:
        with EventCollector(endpoint) as events, DaemonProcess(write_config(config)) as daemon:
            captions = lambda evs: [e for e in evs if e["type"] == "caption"]  # noqa: E731
            got = events.wait_for(lambda evs: len(captions(evs)) >= 2, timeout=90)
            first, second = captions(got)[:2]
            assert second["previous"] is None, "the same caption again: a heartbeat"
            assert second["pts_s"] - first["pts_s"] < 30, "the heartbeat waited for max_skip_s"

            server.kill()
            events.wait_for(lambda evs: any(e["type"] == "stream" and e["state"] != "online" for e in evs), 30)
            server.start()
            online = events.wait_for(lambda evs: any(e["type"] == "stream" and e["state"] == "online"
                                                     for e in evs[len(got):]), timeout=60)
            back = len(online)
            after = events.wait_for(lambda evs: {"caption", "answer"} <= {e["type"] for e in evs[back:]}, 60)
            assert daemon.terminate(timeout=15) == 0
    finally:
        server.stop()
    resent = {e["type"]: e for e in after[back:] if e["type"] in ("caption", "answer")}
    assert all(e["frame"] < 10 for e in resent.values()), "re-sent from the first second after the outage"
    assert resent["caption"]["text"] == first["text"] and resent["caption"]["previous"] is None
