"""Start-up of `blipd run` as a real subprocess: a busy port or an ipc path held by a live daemon
is one line naming the setting and exit 1 (no traceback, no abort, no thread left running); a
SIGHUP that arrives while the daemon starts is kept and applied once it runs."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

from tests.daemon_proc import REPO, DaemonProcess, EventCollector, free_tcp_endpoint
from tests.integration.conftest import base_config, stream_entry

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 90.0


def run_blipd(config: Path, timeout: float = START_TIMEOUT_S) -> Tuple[int, List[str]]:
    """(exit code, output lines) of `blipd run -c CONFIG` that is expected to exit by itself."""
    proc = subprocess.run([sys.executable, "-m", "daemon.commands.cli", "run", "-c", str(config)],
                          cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout)
    return proc.returncode, proc.stdout.splitlines()


def assert_one_error_line(lines: List[str], expected: str) -> None:
    """Exactly one ERROR line, containing `expected`; no traceback, no C++ abort text."""
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, "\n".join(lines)
    assert expected in errors[0], errors[0]
    text = "\n".join(lines)
    assert "Traceback" not in text and "terminate called" not in text, text


def file_config(package: Path, clip: Path, endpoint: str, **extra: Any) -> Dict[str, Any]:
    config = base_config(package, endpoint, [stream_entry("file", str(clip), loop=True)])
    config.update(extra)
    return config


def test_a_busy_metrics_port_is_one_line_and_exit_1(tiny_package, clip, write_config) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        config = write_config(file_config(tiny_package, clip, free_tcp_endpoint(),
                                          metrics={"host": "127.0.0.1", "port": port}))
        code, lines = run_blipd(config)
    assert code == 1, "\n".join(lines)
    assert_one_error_line(lines, "cannot start: metrics.port %d (host 127.0.0.1): Address already in use" % port)


def test_a_busy_publish_bind_is_one_line_and_exit_1(tiny_package, clip, write_config) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        endpoint = "tcp://127.0.0.1:%d" % busy.getsockname()[1]
        code, lines = run_blipd(write_config(file_config(tiny_package, clip, endpoint)))
    assert code == 1, "\n".join(lines)
    assert_one_error_line(lines, "cannot start: publish.bind %s: Address already in use" % endpoint)


def test_an_ipc_path_held_by_a_live_daemon_is_refused(tiny_package, clip, write_config, tmp_path) -> None:
    """The second daemon exits 1 with one line; the first keeps serving new subscribers; after
    the first stops cleanly no socket file is left."""
    path = tmp_path / "events.ipc"
    endpoint = "ipc://%s" % path
    first_config = write_config(file_config(tiny_package, clip, endpoint), name="first.yaml")
    second_config = write_config(file_config(tiny_package, clip, endpoint), name="second.yaml")
    with DaemonProcess(first_config) as first:
        assert first.wait_log("blipd started", START_TIMEOUT_S), first.log()
        code, lines = run_blipd(second_config)
        assert code == 1, "\n".join(lines)
        assert_one_error_line(lines, "cannot start: publish.bind %s: in use by another running process" % endpoint)
        with EventCollector(endpoint) as events:  # a subscriber that joins now still reaches the first
            events.wait_for(lambda evs: any(e["type"] == "caption" for e in evs), timeout=60)
        assert first.terminate() == 0, first.log()
    assert not path.exists(), "a clean stop leaves no socket file"


def _catches_sighup(pid: int) -> bool:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def _open_writer(fifo: Path, proc: "subprocess.Popen[bytes]", timeout: float) -> int:
    """Open the FIFO for writing once the daemon has opened it for reading (polling, non-blocking)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(str(fifo), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert proc.poll() is None, "the daemon exited (rc %s) before reading its config" % proc.returncode
            assert time.monotonic() < deadline, "the daemon never opened its config"
            time.sleep(0.02)  # polling interval; the open decides


def _write_all(fd: int, text: str) -> None:
    os.set_blocking(fd, True)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def test_sighup_while_starting_is_kept_and_applied(tiny_package, clip, tmp_path) -> None:
    """The config is a FIFO: the daemon blocks reading it, i.e. in the middle of its start-up,
    when SIGHUP arrives (SIGHUP's default action would kill it). The reload is then applied
    once the daemon runs, and reads the config again (a second stream this time)."""
    endpoint = free_tcp_endpoint()
    fifo = tmp_path / "blipd.yaml"
    os.mkfifo(str(fifo))
    one = file_config(tiny_package, clip, endpoint)
    two = dict(one, streams=one["streams"] + [stream_entry("second", str(clip), loop=True)])
    with DaemonProcess(fifo) as daemon:
        assert daemon.proc is not None
        writer = _open_writer(fifo, daemon.proc, 60)
        assert _catches_sighup(daemon.proc.pid), "SIGHUP must be handled before the config is read"
        daemon.signal(signal.SIGHUP)
        _write_all(writer, yaml.safe_dump(one, sort_keys=False))
        assert daemon.wait_log("blipd started", START_TIMEOUT_S), daemon.log()
        _write_all(_open_writer(fifo, daemon.proc, 60), yaml.safe_dump(two, sort_keys=False))
        assert daemon.wait_log("reloaded: 1 added, 0 removed, 0 changed, 1 unchanged", 60), daemon.log()
        assert daemon.terminate() == 0, daemon.log()


def test_a_failed_start_stops_every_thread_it_started(tiny_package, clip, write_config) -> None:
    """In-process: the metrics port is bound after the publisher and before the engines and
    streams; its failure raises MetricsError (a DaemonError) and leaves no thread behind."""
    import threading

    from daemon.config.config import load_config
    from daemon.errors import DaemonError, MetricsError
    from daemon.service import Service

    before = set(threading.enumerate())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        settings = load_config(str(write_config(file_config(
            tiny_package, clip, free_tcp_endpoint(), metrics={"host": "127.0.0.1", "port": busy.getsockname()[1]}))))
        service = Service(settings)
        with pytest.raises(MetricsError) as caught:
            service.start()
    assert isinstance(caught.value, DaemonError)
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == [], left


def test_an_engine_that_fails_to_load_stops_the_publisher_and_metrics(tiny_package, clip, write_config) -> None:
    import threading

    from daemon.config.config import load_config
    from daemon.errors import ServiceError
    from daemon.service import Service

    def broken_engine() -> None:
        raise RuntimeError("no such device\nsecond line")

    before = set(threading.enumerate())
    settings = load_config(str(write_config(file_config(
        tiny_package, clip, free_tcp_endpoint(), metrics={"host": "127.0.0.1", "port": free_port()}))))
    service = Service(settings, engine_factory=broken_engine)
    with pytest.raises(ServiceError) as caught:
        service.start()
    assert str(caught.value) == "cannot load the model: no such device"
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == [], left


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_stop_signal_during_a_long_model_load_stops_without_waiting_for_it(tiny_package, clip, write_config) -> None:
    """SIGTERM while the engines load (minutes for a large model on a slow box): run() returns
    while the load is still going, with no stream started and READY never sent."""
    import threading

    from daemon.config.config import load_config
    from daemon.ops.signals import Signals
    from daemon.service import EXIT_OK, Service

    loading, release = threading.Event(), threading.Event()

    def slow_engine() -> None:
        loading.set()
        release.wait(60)
        raise RuntimeError("released")

    signals = Signals()  # not installed: the test sets its events itself
    service = Service(load_config(str(write_config(file_config(tiny_package, clip, free_tcp_endpoint())))),
                      engine_factory=slow_engine, signals=signals)
    readies: List[str] = []
    service.notifier.ready = lambda: readies.append("READY=1")  # type: ignore[method-assign]
    codes: List[int] = []
    runner = threading.Thread(target=lambda: codes.append(service.run()), daemon=True)
    runner.start()
    try:
        assert loading.wait(30), "the engine factory was never called"
        signals.stop.set()
        runner.join(30)
        assert not runner.is_alive(), "run() waited for the model load"
        assert not release.is_set()
        assert codes == [EXIT_OK]
        assert service.streams.names() == [] and readies == []
    finally:
        release.set()
