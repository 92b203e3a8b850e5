"""WATCHDOG=1 is sent only while inference makes progress, at half of WATCHDOG_USEC, and not at
all without a watchdog: a wedged worker stops the pings, so systemd restarts the daemon. Runs the
service in-process with an engine that blocks on demand, its real main loop driven by tick()."""
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from blip.engine import EngineResult
from daemon.config.config import load_config
from daemon.service import Service
from tests.daemon_proc import free_tcp_endpoint
from tests.integration.conftest import base_config, stream_entry

pytestmark = pytest.mark.integration


class WedgeableEngine:
    """Answers instantly until `wedge` is set, then blocks inside infer until `release` is set."""

    def __init__(self) -> None:
        self.wedge = threading.Event()
        self.release = threading.Event()
        self.entered_wedge = threading.Event()

    def infer(self, frame: Any, caption: bool = False, prompts: Optional[Dict[str, str]] = None,
              questions: Optional[Dict[str, str]] = None, pixels: Optional[Dict[int, Any]] = None) -> EngineResult:
        if self.wedge.is_set():
            self.entered_wedge.set()
            self.release.wait(60)
        return EngineResult(caption="a thing" if caption else None,
                            scores={k: 0.1 for k in (prompts or {})},
                            answers={k: "yes" for k in (questions or {})})


def _pings(sock: socket.socket, seconds: float, tick) -> int:
    """Run the service's main-thread tick for `seconds`, counting WATCHDOG=1 datagrams."""
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick()
        try:
            while True:
                if b"WATCHDOG=1" in sock.recv(4096):
                    count += 1
        except BlockingIOError:
            pass
        time.sleep(0.05)  # pacing of the simulated main loop, not synchronisation
    return count


def _notify_socket(tmp_path: Path, monkeypatch, watchdog_usec: Optional[str]) -> socket.socket:
    notify_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    if watchdog_usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", watchdog_usec)
    return sock


def test_no_watchdog_configured_means_no_pings(tiny_package, clip, write_config, tmp_path: Path, monkeypatch) -> None:
    sock = _notify_socket(tmp_path, monkeypatch, None)
    settings = load_config(str(write_config(base_config(
        tiny_package, free_tcp_endpoint(), [stream_entry("a", str(clip), loop=True)]))))
    service = Service(settings, engine_factory=WedgeableEngine)
    service.start()
    try:
        assert _pings(sock, 1.5, service.tick) == 0
    finally:
        service.stop()
        sock.close()


def test_wedged_worker_stops_watchdog(tiny_package, clip, write_config, tmp_path: Path, monkeypatch) -> None:
    sock = _notify_socket(tmp_path, monkeypatch, "400000")
    settings = load_config(str(write_config(base_config(
        tiny_package, free_tcp_endpoint(), [stream_entry("a", str(clip), loop=True)]))))
    engine = WedgeableEngine()
    service = Service(settings, engine_factory=lambda: engine)
    assert service.watchdog.interval_s == 0.2  # half of WATCHDOG_USEC
    service.progress.stall_after_s = 1.0
    service.start()
    try:
        assert _pings(sock, 1.5, service.tick) > 0, "pings while inference progresses"
        engine.wedge.set()
        assert engine.entered_wedge.wait(30)
        deadline = time.monotonic() + 10
        while service.progress.problem(waiting=service.scheduler.depth() > 0) is None:
            assert time.monotonic() < deadline, "the monitor never noticed the wedged worker"
            time.sleep(0.05)
        assert _pings(sock, 2.0, service.tick) == 0, "no pings while the worker is wedged"
        engine.release.set()
        engine.wedge.clear()
        assert _pings(sock, 3.0, service.tick) > 0, "pings resume once inference progresses again"
    finally:
        engine.release.set()
        service.stop()
        sock.close()
