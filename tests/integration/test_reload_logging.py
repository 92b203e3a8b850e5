"""Reload and logging with the daemon as a real subprocess and a real SIGHUP: the reloaded config's
passwords never appear in a log line or an event, its `log_level` is applied, `--log-level` is
honoured by `run` and `demo`; the final stats count every event of the stream before them."""
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from tests.daemon_proc import REPO, DaemonProcess, EventCollector, free_tcp_endpoint
from tests.integration.conftest import base_config, stream_entry
from tests.rtsp import closed_port

pytestmark = pytest.mark.integration

NEW_PASSWORD = "Reload3dPassw0rd"
NEW_TOKEN = "Reload3dT0ken"
ENV_PASSWORD = "Env1ronPassw0rd"


def _config(package: Path, endpoint: str, clip: Path, streams: List[Dict[str, Any]], level: str) -> Dict[str, Any]:
    config = base_config(package, endpoint, [stream_entry("file", str(clip), loop=True)] + streams)
    config["log_level"] = level
    return config


def _after(text: str, marker: str) -> str:
    return text[text.index(marker):] if marker in text else ""


def test_reload_secrets_log_level_and_final_stats(tiny_package, clips, write_config) -> None:
    endpoint = free_tcp_endpoint()
    port = closed_port()
    path = write_config(_config(tiny_package, endpoint, clips["short"], [], "info"))
    added = [
        dict(stream_entry("cam", "rtsp://viewer:%s@127.0.0.1:%d/stream1" % (NEW_PASSWORD, port)),
             backoff_initial_s=0.05, backoff_max_s=0.2),
        dict(stream_entry("web", "http://127.0.0.1:%d/y?token=%s" % (port, NEW_TOKEN)),
             backoff_initial_s=0.05, backoff_max_s=0.2),
        dict(stream_entry("env", "rtsp://admin:${RELOAD_TEST_PASSWORD}@127.0.0.1:%d/s" % port),
             backoff_initial_s=0.05, backoff_max_s=0.2),
    ]
    with DaemonProcess(path, env={"RELOAD_TEST_PASSWORD": ENV_PASSWORD}) as daemon, \
            EventCollector(endpoint) as collector:
        assert daemon.wait_log("blipd started", 90), daemon.log()
        collector.wait_for(lambda evs: any(e["type"] == "caption" for e in evs), timeout=60)
        assert " DEBUG " not in daemon.log()
        path.write_text(yaml.safe_dump(_config(tiny_package, endpoint, clips["short"], added, "debug"),
                                       sort_keys=False))
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("reloaded: 3 added", 60), daemon.log()
        collector.wait_for(lambda evs: {"cam", "web", "env"} <= {
            e["stream"] for e in evs if e["type"] == "stream" and e["state"] == "reconnecting" and e["attempt"] >= 3},
            timeout=60)
        text = daemon.log()
        assert " DEBUG " in _after(text, "reload: log level now debug"), "log_level: debug applied"
        assert daemon.terminate() == 0, daemon.log()
        events = collector.snapshot()
        raw = b"".join(b"".join(parts) for parts in collector.parts)
    log = daemon.log()
    for secret in (NEW_PASSWORD, NEW_TOKEN, ENV_PASSWORD):
        assert secret not in log, "a reloaded secret reached the log"
        assert secret.encode() not in raw, "a reloaded secret reached an event"
    for stream in ("file", "cam", "web", "env"):
        mine = [e for e in events if e["stream"] == stream]
        last = mine[-1]
        assert last["type"] == "stats", "the final stats are the stream's last event"
        assert last["published"] + last["publish_dropped"] == last["seq"] - 1, last


def test_log_level_option_reaches_the_daemon_of_demo(tiny_package, clips, write_config) -> None:
    """`blipd --log-level debug demo` runs its daemon at debug although the config says warning."""
    path = write_config(_config(tiny_package, free_tcp_endpoint(), clips["short"], [], "warning"))
    proc = subprocess.run([sys.executable, "-m", "daemon.commands.cli", "--log-level", "debug", "demo",
                           "-c", str(path), "--seconds", "4"], cwd=str(REPO), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert " DEBUG " in proc.stderr and " INFO " in proc.stderr, proc.stderr
