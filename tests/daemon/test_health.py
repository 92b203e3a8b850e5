"""Health: sd_notify over a real datagram socket, the progress monitor, metrics scraped over HTTP."""
import os
import socket
import threading
import urllib.request
from typing import Dict, FrozenSet, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.counters import StreamCounters
from daemon.ops.health import Metrics, Notifier, ProgressMonitor, WatchdogPinger
from daemon.ops.metrics import MetricsServer


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5.0)
    yield path, sock
    sock.close()


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_notifier_sends_the_protocol_lines(notify_socket):
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("2 streams")
    assert _recv(sock) == "READY=1\nSTATUS=2 streams"
    assert notifier.status("gate: online\nyard: reconnecting")
    assert _recv(sock) == "STATUS=gate: online yard: reconnecting"
    assert notifier.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    assert notifier.reloading()
    assert _recv(sock).startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert notifier.stopping()
    assert _recv(sock) == "STOPPING=1"


def test_notifier_abstract_socket():
    name = "blipd-test-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5.0)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert _recv(sock) == "WATCHDOG=1"


def test_notifier_without_socket_is_a_no_op(tmp_path):
    assert not Notifier({}).ready()
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing")}).ready()  # logged, not raised


def test_watchdog_interval():
    assert Notifier({"WATCHDOG_USEC": "20000000"}).watchdog_interval() == 10.0
    assert Notifier({}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    mine = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval() == 1.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_monitor_wedged_worker_is_unhealthy():
    clock = FakeClock()
    monitor = ProgressMonitor(stall_after_s=30.0, clock=clock)
    monitor.work_started()
    clock.now += 20
    assert monitor.healthy()  # a long inference is not yet a stall
    clock.now += 20
    assert not monitor.healthy()
    assert "in inference for 40 s" in monitor.problem()
    monitor.work_done()
    assert monitor.healthy()


def test_progress_monitor_idle_is_healthy_waiting_is_not():
    clock = FakeClock()
    waiting = threading.Event()
    monitor = ProgressMonitor(stall_after_s=30.0, waiting=waiting.is_set, clock=clock)
    with monitor.working():
        clock.now += 1
    clock.now += 100
    assert monitor.healthy()  # nothing due: idle is fine
    waiting.set()
    assert not monitor.healthy()  # frames wait and no worker takes them
    assert monitor.healthy(waiting=False)  # the caller's view wins
    monitor.beat()
    assert monitor.healthy()


def test_watchdog_pinger_withholds_pings_while_unhealthy(notify_socket):
    path, sock = notify_socket
    clock = FakeClock()
    monitor = ProgressMonitor(stall_after_s=5.0, clock=clock)
    pinger = WatchdogPinger(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}), monitor, clock=clock)
    assert pinger.tick()
    assert _recv(sock) == "WATCHDOG=1"
    monitor.work_started()
    clock.now += 10
    assert not pinger.tick()
    assert _recv(sock).startswith("STATUS=unhealthy: ")  # said once, then silence
    clock.now += 1
    assert not pinger.tick()
    monitor.work_done()
    assert pinger.tick()
    assert _recv(sock) == "WATCHDOG=1"


def test_watchdog_pinger_pings_at_half_of_watchdog_usec(notify_socket):
    path, sock = notify_socket
    clock = FakeClock()
    monitor = ProgressMonitor(stall_after_s=60.0, clock=clock)
    pinger = WatchdogPinger(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}), monitor, clock=clock)
    assert pinger.interval_s == 2.0
    sent = []
    for _ in range(40):  # 10 s of a main loop ticking every 0.25 s
        sent.append(pinger.tick())
        clock.now += 0.25
    assert [i * 0.25 for i, ping in enumerate(sent) if ping] == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("env", [{}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}],
                         ids=["unset", "zero", "other-pid"])
def test_watchdog_pinger_is_silent_without_a_watchdog(notify_socket, env):
    path, sock = notify_socket
    clock = FakeClock()
    pinger = WatchdogPinger(Notifier(dict(env, NOTIFY_SOCKET=path)), ProgressMonitor(60.0, clock=clock), clock=clock)
    for _ in range(5):
        assert not pinger.tick()
        clock.now += 10
    sock.settimeout(0.01)
    with pytest.raises(socket.timeout):
        sock.recv(4096)


def _scrape(port: int) -> Dict[Tuple[str, FrozenSet], float]:
    """{(sample name, labels): value} of a real HTTP scrape, label order not mattering."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as resp:
        text = resp.read().decode("utf-8")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _key(name: str, **labels: str) -> Tuple[str, FrozenSet]:
    return name, frozenset(labels.items())


def test_metrics_endpoint_shows_stream_counters():
    metrics = Metrics()
    counters = StreamCounters("gate")
    counters.add("decoded", 12)
    counters.add("inferred", 3)
    counters.add("publish_dropped", 2)
    counters.drop("too_old", 4)
    counters.add("failed_answer", 5)
    counters.add("undecodable", 6)
    counters.add("pts_discontinuities", 7)
    metrics.watch(counters, queue_depth=lambda: 1)
    metrics.set_state("gate", "reconnecting")
    metrics.observe_inference("caption", 0.2)
    server = MetricsServer(metrics.registry, "127.0.0.1", 0)
    try:
        got = _scrape(server.port)
        assert got[_key("blipd_frames_decoded_total", stream="gate")] == 12
        assert got[_key("blipd_frames_inferred_total", stream="gate")] == 3
        assert got[_key("blipd_events_publish_dropped_total", stream="gate")] == 2
        assert got[_key("blipd_frames_dropped_total", stream="gate", reason="too_old")] == 4
        assert got[_key("blipd_frames_dropped_total", stream="gate", reason="replaced")] == 0
        assert got[_key("blipd_queue_depth", stream="gate")] == 1
        assert got[_key("blipd_task_failures_total", stream="gate", task="answer")] == 5
        assert got[_key("blipd_task_failures_total", stream="gate", task="caption")] == 0
        assert got[_key("blipd_undecodable_total", stream="gate")] == 6
        assert got[_key("blipd_pts_discontinuities_total", stream="gate")] == 7
        assert got[_key("blipd_stream_state", stream="gate", state="reconnecting")] == 1
        assert got[_key("blipd_stream_state", stream="gate", state="online")] == 0
        assert got[_key("blipd_inference_seconds_count", task="caption")] == 1
        counters.add("decoded", 1)  # read at scrape time: exact, no copying
        assert _scrape(server.port)[_key("blipd_frames_decoded_total", stream="gate")] == 13
        metrics.unwatch("gate")
        assert not [k for k in _scrape(server.port) if ("stream", "gate") in k[1]]
    finally:
        server.close()


def test_metrics_port_zero_is_disabled_and_instances_are_independent():
    assert Metrics().serve("127.0.0.1", 0) is None
    Metrics()  # a second instance must not collide with the first (no global registry)


def test_a_metrics_client_that_sends_nothing_is_disconnected(monkeypatch):
    """Defect: a connection that never sent its request held a server thread forever (no read
    timeout), so idle connections could pile up threads without bound."""
    from daemon.ops import metrics as metrics_module

    monkeypatch.setattr(metrics_module, "REQUEST_TIMEOUT_S", 0.5)
    server = MetricsServer(Metrics().registry, "127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as idle:
            assert idle.recv(1) == b"", "the server closes the idle connection"
    finally:
        server.close()
